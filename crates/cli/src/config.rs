//! Server configuration: a TOML file whose sections and option names follow StackStorm's
//! `st2.conf` where one exists, overridden by `SQUALL_<SECTION>__<OPTION>` environment
//! variables. Unknown or ill-typed options stop the start-up with a message naming them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api: Api,
    pub content: ContentSection,
    pub actionrunner: ActionRunner,
    pub stream: Stream,
    pub webui: Webui,
    pub system_user: SystemUser,
    pub ssh_runner: SshRunner,
    pub auth: Auth,
    pub rbac: RbacSection,
    pub garbagecollector: GarbageCollector,
    pub keyvalue: KeyValue,
    pub database: Database,
    pub messaging: Messaging,
    pub cluster: Cluster,
    pub log: Log,
}

/// `[log]` — the server's own log (st2 points each service at a Python logging file instead).
/// `SQUALL_LOG` overrides `level`; `--json` or `SQUALL_LOG_FORMAT=json` overrides `format`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` (coloured only on a terminal, never with `NO_COLOR`) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: a level, or `level,target=level,…`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log { format: LogFormat::Text, level: "info,sqlx=warn,async_nats=warn".into() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[database]` — st2.conf's section for MongoDB; squall's distributed store is PostgreSQL.
/// Without `url`, squall keeps everything in SQLite in the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// `postgres://user:password@host:5432/database?sslmode=verify-full&sslrootcert=…`: the
    /// libpq options sqlx understands (TLS included) pass through.
    pub url: Option<String>,
    /// Schema of squall's tables (created if missing). Unset: the server's default search path.
    pub schema: Option<String>,
    /// Connections this node keeps open at most.
    pub pool_size: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database { url: None, schema: None, pool_size: 16 }
    }
}

/// `[messaging]` — st2.conf's section for RabbitMQ; squall's cluster messaging is NATS (core
/// for live output, JetStream for work). Without `url`, everything stays in-process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Messaging {
    /// `nats://host:4222`, `tls://host:4222`, or several, comma-separated.
    pub url: Option<String>,
    /// Prefix of every subject and stream (deployments sharing a NATS server differ here).
    pub prefix: String,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_required: bool,
    /// A NATS `.creds` file.
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
}

impl Default for Messaging {
    fn default() -> Self {
        Messaging {
            url: None,
            prefix: "squall".into(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            credentials_file: None,
            token: None,
        }
    }
}

/// `[cluster]` — node leases on the distributed backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// Seconds between lease renewals.
    pub heartbeat_interval: u64,
    /// Seconds a lease lasts without renewal; a runner silent that long is dead and its
    /// executions are abandoned.
    pub lease_ttl: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster { heartbeat_interval: 2, lease_ttl: 6 }
    }
}
/// `[keyvalue]` — st2.conf's datastore section; squall uses its key to seal secret parameter
/// values at rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyValue {
    /// The key file (32 bytes, hex, mode 0600). Unset: `<data dir>/encryption.key`, created on
    /// first start.
    pub encryption_key_path: Option<PathBuf>,
}

/// `[garbagecollector]` — retention of executions and their output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GarbageCollector {
    /// Seconds between collection passes.
    pub collection_interval: u64,
    /// Seconds to pause between object types within a pass.
    pub sleep_delay: u64,
    /// Days after an execution *ended* before it and its output are deleted (unset: keep).
    pub action_executions_ttl: Option<u64>,
    /// Days after an execution ended before its output is deleted (the execution stays).
    pub action_executions_output_ttl: Option<u64>,
    /// Per action ref or pack, days before its executions and output are deleted, overriding
    /// the TTLs above: `action_ttl = { "core.local" = 30, "backups" = 365 }`.
    pub action_ttl: BTreeMap<String, u64>,
}

impl Default for GarbageCollector {
    fn default() -> Self {
        GarbageCollector {
            collection_interval: 600,
            sleep_delay: 2,
            action_executions_ttl: None,
            action_executions_output_ttl: Some(7),
            action_ttl: BTreeMap::new(),
        }
    }
}

impl GarbageCollector {
    pub fn policy(&self) -> squall_store::retention::RetentionPolicy {
        squall_store::retention::RetentionPolicy {
            executions_ttl_days: self.action_executions_ttl,
            output_ttl_days: self.action_executions_output_ttl,
            overrides: self.action_ttl.clone(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Require a token or API key on every request. `false` is a development mode: every
    /// request acts as `[system_user] user`, with admin rights.
    pub enable: bool,
    /// Default and maximum lifetime of a user token, seconds.
    pub token_ttl: u64,
    /// Lifetime of the token handed to an action (`ST2_ACTION_AUTH_TOKEN`), seconds; it is
    /// revoked when the execution ends anyway.
    pub service_token_ttl: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { enable: true, token_ttl: 86400, service_token_ttl: 86400 }
    }
}

/// `[rbac]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RbacSection {
    /// Enforce roles. When off, every authenticated user is an admin (StackStorm's default).
    pub enable: bool,
    /// Users other than admins see only the executions they started.
    pub permission_isolation: bool,
    /// Directory with `roles/*.yaml` and `assignments/*.yaml` in StackStorm's format.
    pub definitions_path: PathBuf,
}

impl Default for RbacSection {
    fn default() -> Self {
        RbacSection { enable: false, permission_isolation: false, definitions_path: PathBuf::from("/opt/stackstorm/rbac") }
    }
}

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Public base URL of the API, including `/v1`, handed to actions as `ST2_ACTION_API_URL`.
    /// Default: `http://<first listen address>/v1`.
    pub public_url: Option<String>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    pub header_read_timeout: u64,
    /// Seconds a response may wait on a client that reads nothing before the connection is
    /// dropped (a stream viewer resumes where it was with `Last-Event-ID`).
    pub write_timeout: u64,
    /// Connections served at once on all listeners; more clients wait until one closes.
    pub max_connections: usize,
    /// The largest `limit` a non-admin may ask a list for (StackStorm's `[api] max_page_size`).
    pub max_page_size: u64,
}

impl Default for Api {
    fn default() -> Self {
        let limits = squall_server::ConnectionLimits::default();
        Api {
            public_url: None,
            header_read_timeout: limits.header_read_timeout.as_secs(),
            write_timeout: limits.write_timeout.as_secs(),
            max_connections: limits.max_connections,
            max_page_size: 100,
        }
    }
}

impl Api {
    /// The connection limits these options describe.
    pub fn connection_limits(&self) -> squall_server::ConnectionLimits {
        squall_server::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout.max(1)),
            write_timeout: std::time::Duration::from_secs(self.write_timeout.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

/// `[content]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentSection {
    /// Directories holding packs, separated by `:` as in st2.conf.
    pub packs_base_paths: String,
}

impl Default for ContentSection {
    fn default() -> Self {
        ContentSection { packs_base_paths: "/opt/stackstorm/packs".into() }
    }
}

impl ContentSection {
    pub fn paths(&self) -> Vec<PathBuf> {
        self.packs_base_paths.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect()
    }
}

/// `[actionrunner]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionRunner {
    /// Store and publish output live (StackStorm's flag). When false, viewers get the output
    /// when the execution completes; nothing is lost either way.
    pub stream_output: bool,
    /// Executions run at once.
    pub actions_pool_size: usize,
    /// On SIGINT/SIGTERM, let running executions finish before stopping them.
    pub graceful_shutdown: bool,
    /// Seconds running executions get to finish on shutdown before they are killed and marked
    /// `abandoned`.
    pub exit_still_active_check: u64,
    /// Seconds between SIGTERM and SIGKILL when an action is stopped (timeout, cancel, shutdown).
    pub kill_grace_period: u64,
    /// Bytes of stdout and of stderr kept in an execution's `result` (first and last halves,
    /// with a marker between them when cut). The full output stays in the log.
    pub result_max_bytes: usize,
    /// Server environment variables actions inherit (`NAME` or `PREFIX*`); nothing else of the
    /// server's environment reaches an action.
    pub env_allowlist: Vec<String>,
    /// Secret values shorter than this are not masked in output: masking a one- or two-character
    /// value would shred ordinary output while protecting nothing.
    pub mask_min_length: usize,
    /// Most output bytes stored per execution (0: unlimited). Past it squall keeps the first
    /// half and a rolling last half, with a marker saying how much was omitted between them.
    pub max_output_bytes: u64,
}

impl Default for ActionRunner {
    fn default() -> Self {
        ActionRunner {
            stream_output: true,
            actions_pool_size: 60,
            graceful_shutdown: true,
            exit_still_active_check: 300,
            kill_grace_period: 5,
            result_max_bytes: 1024 * 1024,
            env_allowlist: ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR"]
                .map(String::from)
                .to_vec(),
            mask_min_length: squall_core::mask::DEFAULT_MIN_LENGTH,
            max_output_bytes: 0,
        }
    }
}

/// `[stream]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stream {
    /// Seconds of silence after which a stream sends a keep-alive `\n`.
    pub heartbeat: u64,
    /// Seconds between an open stream's checks that its token or API key is still valid (not
    /// revoked, disabled or deleted): the longest such a stream outlives its credential.
    pub credential_check: u64,
}

impl Default for Stream {
    fn default() -> Self {
        Stream { heartbeat: 25, credential_check: 5 }
    }
}

/// `[webui]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webui {
    /// Base of execution `web_url`s.
    pub webui_base_url: String,
}

impl Default for Webui {
    fn default() -> Self {
        let host = nix_hostname();
        Webui { webui_base_url: format!("https://{host}") }
    }
}

/// `[system_user]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemUser {
    /// The user requests act as while authentication is off, and the default SSH login of the
    /// remote runners.
    pub user: String,
    /// Private key the remote runners log in with when an action gives neither `password` nor
    /// `private_key`.
    pub ssh_key_file: PathBuf,
}

impl Default for SystemUser {
    fn default() -> Self {
        SystemUser { user: "stanley".into(), ssh_key_file: "/home/stanley/.ssh/stanley_rsa".into() }
    }
}

/// `[ssh_runner]` — the remote runners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshRunner {
    /// Where `remote-shell-script` uploads scripts when the action's `dir` is empty (the
    /// runners declare `/tmp` as `dir`'s default).
    pub remote_dir: String,
    /// `true`: an execution succeeds when any host succeeded; `false`: only when all did.
    pub allow_partial_failure: bool,
    /// Most hosts of one `parallel` execution connected at once.
    pub max_parallel_actions: usize,
    /// Seconds to connect and log in to a host (capped at the action's timeout − 2).
    pub ssh_connect_timeout: u64,
    /// An OpenSSH `known_hosts` file: when set, a host whose key is not in it is refused.
    /// Unset (StackStorm's behaviour): any host key is accepted and its fingerprint logged.
    pub known_hosts_file: Option<PathBuf>,
}

impl Default for SshRunner {
    fn default() -> Self {
        SshRunner {
            remote_dir: "/tmp".into(),
            allow_partial_failure: false,
            max_parallel_actions: 50,
            ssh_connect_timeout: 60,
            known_hosts_file: None,
        }
    }
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

impl Config {
    /// Defaults, then the file (when given; it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SQUALL_").filter(|k| k.as_str().contains("__")).split("__"));
        let config: Config = figment.extract().map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.stream.heartbeat == 0 {
            return Err("[stream] heartbeat must be at least 1 second".into());
        }
        if self.stream.credential_check == 0 {
            return Err("[stream] credential_check must be at least 1 second".into());
        }
        if self.auth.token_ttl == 0 || self.auth.service_token_ttl == 0 {
            return Err("[auth] token_ttl and service_token_ttl must be at least 1 second".into());
        }
        self.garbagecollector.policy().validate().map_err(|e| format!("[garbagecollector] {e}"))?;
        if self.garbagecollector.collection_interval == 0 {
            return Err("[garbagecollector] collection_interval must be at least 1 second".into());
        }
        if self.actionrunner.actions_pool_size == 0 {
            return Err("[actionrunner] actions_pool_size must be at least 1".into());
        }
        match (&self.database.url, &self.messaging.url) {
            (Some(_), None) => {
                return Err(
                    "[database] url is set but [messaging] url is not: with PostgreSQL, nodes need NATS to carry live output and work \
                            between them; set [messaging] url = \"nats://…\", or remove [database] url to run embedded"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err("[messaging] url is set but [database] url is not: NATS carries news, PostgreSQL must hold the facts that \
                            every node reads; set [database] url = \"postgres://…\", or remove [messaging] url to run embedded"
                    .into());
            }
            _ => {}
        }
        if self.cluster.heartbeat_interval == 0 || self.cluster.lease_ttl < 2 * self.cluster.heartbeat_interval {
            return Err("[cluster] heartbeat_interval must be at least 1 second and lease_ttl at least twice it".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("squall.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn reads_stackstorm_names() {
        let c = load_text("[actionrunner]\nstream_output = false\n[stream]\nheartbeat = 5\n").unwrap();
        assert!(!c.actionrunner.stream_output);
        assert_eq!((c.stream.heartbeat, c.stream.credential_check), (5, 5));
        assert!(load_text("[stream]\ncredential_check = 0\n").unwrap_err().contains("credential_check"));
        assert_eq!(load_text("").unwrap().api.max_page_size, 100, "StackStorm's default");
        assert_eq!(load_text("[api]\nmax_page_size = 500\n").unwrap().api.max_page_size, 500);
    }

    #[test]
    fn garbage_collector_ttls() {
        let c = load_text("[garbagecollector]\naction_executions_ttl = 30\naction_ttl = { \"core.local\" = 2 }\n").unwrap();
        assert_eq!(c.garbagecollector.action_executions_ttl, Some(30));
        assert_eq!(c.garbagecollector.action_executions_output_ttl, Some(7), "StackStorm's default");
        let e = load_text("[garbagecollector]\naction_executions_ttl = 0\n").unwrap_err();
        assert!(e.contains("Minimum possible TTL for action_executions_ttl in days is 1"), "{e}");
        let e = load_text("[garbagecollector]\naction_executions_output_ttl = -3\n").unwrap_err();
        assert!(e.contains("action_executions_output_ttl"), "{e}");
    }

    #[test]
    fn unknown_and_ill_typed_options_are_named() {
        let e = load_text("[actionrunner]\nstream_outptu = false\n").unwrap_err();
        assert!(e.contains("stream_outptu"), "{e}");
        let e = load_text("[stream]\nheartbeat = \"soon\"\n").unwrap_err();
        assert!(e.contains("heartbeat"), "{e}");
        let e = load_text("[nosuchsection]\nx = 1\n").unwrap_err();
        assert!(e.contains("nosuchsection"), "{e}");
    }

    #[test]
    fn postgres_and_nats_come_together() {
        let e = load_text("[database]\nurl = \"postgres://db/squall\"\n").unwrap_err();
        assert!(e.contains("[messaging] url"), "{e}");
        let e = load_text("[messaging]\nurl = \"nats://bus:4222\"\n").unwrap_err();
        assert!(e.contains("[database] url"), "{e}");
        let c = load_text("[database]\nurl = \"postgres://db/squall\"\n[messaging]\nurl = \"nats://bus:4222\"\n").unwrap();
        assert_eq!((c.messaging.prefix.as_str(), c.cluster.lease_ttl), ("squall", 6));
        assert!(load_text("[cluster]\nlease_ttl = 3\nheartbeat_interval = 2\n").is_err());
    }
}
