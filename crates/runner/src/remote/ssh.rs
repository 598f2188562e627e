//! SSH sessions for the remote runners (russh): connecting and logging in (directly or through
//! a bastion), uploading over SFTP, and running short helper commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::io::AsyncWriteExt;

/// A host to connect to: `host` is also the key of its result and the tag of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `host`, `host:port` or `[v6addr]:port`; `default_port` when none is given.
    pub fn parse(entry: &str, default_port: u16) -> Result<Target, String> {
        let bad_port = |p: &str| format!("Invalid port \"{p}\" in host \"{entry}\"");
        if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| format!("Invalid host \"{entry}\""))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad_port(p))?,
                None => default_port,
            };
            return Ok(Target { host: host.to_string(), port });
        }
        match entry.rsplit_once(':') {
            Some((host, p)) if !host.contains(':') => Ok(Target { host: host.to_string(), port: p.parse().map_err(|_| bad_port(p))? }),
            _ => Ok(Target { host: entry.to_string(), port: default_port }),
        }
    }
}

/// How to log in.
#[derive(Clone)]
pub enum Credentials {
    Password(String),
    Key(Arc<PrivateKey>),
}

impl Credentials {
    /// StackStorm's order: `password`; else `private_key` (key material, recognised by
    /// `PRIVATE KEY-----`, or a path) with `passphrase`; else the system user's key file.
    pub fn choose(
        password: Option<&str>,
        private_key: Option<&str>,
        passphrase: Option<&str>,
        default_key: &Path,
    ) -> Result<Credentials, String> {
        if let Some(password) = password {
            return Ok(Credentials::Password(password.to_string()));
        }
        let key = match private_key {
            Some(material) if material.to_ascii_uppercase().contains("PRIVATE KEY-----") => {
                russh::keys::decode_secret_key(material, passphrase).map_err(|e| format!("The private key could not be read: {e}"))?
            }
            Some(path) => load_key(Path::new(path), passphrase)?,
            None => load_key(default_key, passphrase)?,
        };
        Ok(Credentials::Key(Arc::new(key)))
    }
}

fn load_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKey, String> {
    russh::keys::load_secret_key(path, passphrase).map_err(|e| format!("The private key file {} could not be read: {e}", path.display()))
}

/// Everything needed to open a session to a host.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub credentials: Credentials,
    /// Jump host, logged in to with the same user and credentials.
    pub bastion: Option<Target>,
    /// When set, host keys must be listed in this `known_hosts` file.
    pub known_hosts: Option<PathBuf>,
}

/// Checks (or, without a `known_hosts` file, accepts and logs) the server's host key.
struct HostKeyCheck {
    target: Target,
    known_hosts: Option<PathBuf>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else { return Ok(self.known_hosts.is_none()) };
        let Some(path) = &self.known_hosts else {
            tracing::debug!(host = %self.target.host, fingerprint = %key.fingerprint(HashAlg::Sha256), "accepting host key");
            return Ok(true);
        };
        match russh::keys::check_known_hosts_path(&self.target.host, self.target.port, key, path) {
            Ok(known) => Ok(known),
            Err(e) => {
                tracing::warn!(host = %self.target.host, error = %e, "host key check failed");
                Ok(false)
            }
        }
    }
}

/// A file to upload: its path relative to the run directory, content and mode.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// A logged-in SSH session.
pub struct Session {
    handle: Handle<HostKeyCheck>,
    /// The bastion's session, kept open while this one uses its tunnel.
    _bastion: Option<Box<Session>>,
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config { keepalive_interval: Some(Duration::from_secs(15)), keepalive_max: 4, nodelay: true, ..Default::default() })
}

impl Session {
    /// Connects and logs in (through the bastion when there is one).
    pub async fn open(target: &Target, login: &Login) -> Result<Session, String> {
        let handler = |t: &Target| HostKeyCheck { target: t.clone(), known_hosts: login.known_hosts.clone() };
        let (mut handle, bastion) = match &login.bastion {
            None => {
                let handle = client::connect(config(), (target.host.as_str(), target.port), handler(target))
                    .await
                    .map_err(|e| describe(e, target))?;
                (handle, None)
            }
            Some(jump) => {
                let bastion = Box::pin(Session::open(jump, &Login { bastion: None, ..login.clone() }))
                    .await
                    .map_err(|e| format!("Bastion host {}: {e}", jump.host))?;
                let tunnel = bastion
                    .handle
                    .channel_open_direct_tcpip(target.host.clone(), target.port.into(), "127.0.0.1", 0)
                    .await
                    .map_err(|e| format!("The bastion host could not reach {}:{}: {e}", target.host, target.port))?;
                let handle =
                    client::connect_stream(config(), tunnel.into_stream(), handler(target)).await.map_err(|e| describe(e, target))?;
                (handle, Some(Box::new(bastion)))
            }
        };
        authenticate(&mut handle, login).await?;
        Ok(Session { handle, _bastion: bastion })
    }

    /// Opens a session channel.
    pub async fn channel(&self) -> Result<russh::Channel<client::Msg>, String> {
        self.handle.channel_open_session().await.map_err(|e| format!("Could not open an SSH channel: {e}"))
    }

    /// Runs a short helper command (no secrets in it) and returns its exit code.
    pub async fn run_quiet(&self, command: &str) -> Result<u32, String> {
        let mut channel = self.channel().await?;
        channel.exec(true, command).await.map_err(|e| format!("Could not run \"{command}\": {e}"))?;
        let mut code = None;
        while let Some(msg) = channel.wait().await {
            if let ChannelMsg::ExitStatus { exit_status } = msg {
                code = Some(exit_status);
            }
        }
        code.ok_or_else(|| format!("\"{command}\" ended without an exit status"))
    }

    /// Uploads files over SFTP into a new directory `dir` (mode 0700), creating their parent
    /// directories.
    pub async fn upload(&self, dir: &str, files: &[Upload]) -> Result<(), String> {
        use russh_sftp::protocol::{FileAttributes, OpenFlags};
        let channel = self.channel().await?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| format!("The SFTP subsystem is not available: {e}"))?;
        let sftp = russh_sftp::client::SftpSession::new(channel.into_stream()).await.map_err(|e| format!("SFTP failed to start: {e}"))?;
        let mode = |m: u32| FileAttributes { permissions: Some(m), ..FileAttributes::empty() };
        sftp.create_dir(dir).await.map_err(|e| format!("Could not create {dir}: {e}"))?;
        sftp.set_metadata(dir, mode(0o700)).await.map_err(|e| format!("Could not set the mode of {dir}: {e}"))?;
        let mut made: Vec<String> = Vec::new();
        for Upload { path: relative, content, mode: file_mode } in files {
            let path = format!("{dir}/{relative}");
            let mut parent = dir.to_string();
            for part in relative.split('/').rev().skip(1).collect::<Vec<_>>().into_iter().rev() {
                parent = format!("{parent}/{part}");
                if !made.contains(&parent) {
                    sftp.create_dir(parent.clone()).await.map_err(|e| format!("Could not create {parent}: {e}"))?;
                    made.push(parent.clone());
                }
            }
            let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
            let mut file = sftp
                .open_with_flags_and_attributes(path.clone(), flags, mode(*file_mode))
                .await
                .map_err(|e| format!("Could not create {path}: {e}"))?;
            file.write_all(content).await.map_err(|e| format!("Could not write {path}: {e}"))?;
            file.shutdown().await.map_err(|e| format!("Could not close {path}: {e}"))?;
            sftp.set_metadata(path.clone(), mode(*file_mode)).await.map_err(|e| format!("Could not set the mode of {path}: {e}"))?;
        }
        let _ = sftp.close().await;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

async fn authenticate(handle: &mut Handle<HostKeyCheck>, login: &Login) -> Result<(), String> {
    let result = match &login.credentials {
        Credentials::Password(password) => handle.authenticate_password(login.user.clone(), password.clone()).await,
        Credentials::Key(key) => {
            let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
            handle.authenticate_publickey(login.user.clone(), PrivateKeyWithHashAlg::new(Arc::clone(key), hash)).await
        }
    };
    match result {
        Ok(r) if r.success() => Ok(()),
        Ok(_) => Err(format!("Authentication failed for user {}", login.user)),
        Err(e) => Err(format!("Authentication failed: {e}")),
    }
}

fn describe(e: russh::Error, target: &Target) -> String {
    match e {
        russh::Error::UnknownKey => format!("The host key of {}:{} is not in the known_hosts file", target.host, target.port),
        other => other.to_string(),
    }
}
