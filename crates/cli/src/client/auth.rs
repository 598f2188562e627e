//! `squall login`, `whoami`, `apikey …` (over the API) and `user …` (on the server's data
//! directory: user management needs access to the database, like StackStorm's admin tools).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::action::str_of;
use super::{Api, CliError, CliResult, render};

/// Where `squall login` keeps its tokens: `<config dir>/squall/token.json`, mode 0600, one per
/// server: `{"servers": {"http://host:9101": {"user": …, "token": …, "expiry": …}}}`. A token is
/// only ever sent to the server that issued it. (Files from before tokens were kept per server
/// hold one token of unknown origin; it is never sent anywhere.)
pub fn token_cache_path() -> Option<PathBuf> {
    super::user_config_dir().map(|d| d.join("token.json"))
}

/// What identifies a server in the token cache: scheme, host and port (the default one when the
/// URL has none), and the path without a trailing `/v1` (servers behind one proxy differ by path).
pub fn server_key(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
            let path = u.path().trim_end_matches('/');
            let path = path.strip_suffix("/v1").unwrap_or(path);
            format!("{}://{}{port}{path}", u.scheme(), u.host_str().unwrap_or_default().to_ascii_lowercase())
        }
        Err(_) => url.trim_end_matches('/').to_string(),
    }
}

/// The login cached for one server.
pub enum CachedLogin {
    /// A token valid for at least 15 more seconds.
    Valid(String),
    /// The login expired (or is about to): who it was and when.
    Expired { user: String, expiry: String },
}

/// The cached login for `server` (a [`server_key`]), if any.
pub fn cached_login(server: &str) -> Option<CachedLogin> {
    let entry = read_cache().get("servers")?.get(server)?.clone();
    let expiry_text = entry["expiry"].as_str()?.to_string();
    let expiry = squall_core::Timestamp::parse_query(&expiry_text)?;
    if expiry.micros() - squall_core::Timestamp::now().micros() > 15_000_000 {
        return entry["token"].as_str().map(|t| CachedLogin::Valid(t.to_string()));
    }
    Some(CachedLogin::Expired { user: entry["user"].as_str().unwrap_or("USER").to_string(), expiry: expiry_text })
}

fn read_cache() -> Value {
    let text = token_cache_path().and_then(|p| std::fs::read_to_string(p).ok());
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

/// Writes the cache with `server`'s entry replaced (`Some`) or removed (`None`); other servers'
/// entries are kept.
fn update_cache(server: &str, entry: Option<Value>) -> CliResult<()> {
    let mut cache = read_cache();
    if !cache.get("servers").is_some_and(Value::is_object) {
        cache = json!({"servers": {}});
    }
    let servers = cache["servers"].as_object_mut().expect("made an object above");
    match entry {
        Some(e) => {
            servers.insert(server.to_string(), e);
        }
        None => {
            servers.remove(server);
        }
    }
    let path = token_cache_path().ok_or_else(|| CliError::new("cannot find a config directory (set HOME or XDG_CONFIG_HOME)"))?;
    write_private(&path, &cache.to_string())
}

/// Reads a password: from stdin when it is not a terminal, else prompted without echo.
pub fn read_password(prompt: &str) -> CliResult<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn login(api: &Api, user: &str, ttl: Option<u64>, json: bool) -> CliResult<u8> {
    use base64::Engine;
    let password = read_password(&format!("Password for {user}: "))?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let body = match ttl {
        Some(t) => json!({"ttl": t}),
        None => json!({}),
    };
    let resp = api
        .http()
        .post(api.url("/tokens"))
        .header("authorization", format!("Basic {basic}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| api.unreachable(e))?;
    let status = resp.status();
    let token: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(CliError::new(format!("login failed: {}", token["faultstring"].as_str().unwrap_or("error"))));
    }
    update_cache(api.server(), Some(json!({"user": token["user"], "token": token["token"], "expiry": token["expiry"]})))?;
    let expiry = str_of(&token, "expiry");
    // The token itself stays in the cache: it is a credential, not output.
    render::done(
        json,
        json!({"server": api.server(), "user": user, "expiry": expiry}),
        format!("Logged in to {} as {user} until {expiry}", api.server()),
    );
    Ok(0)
}

/// Forgets the token cached for this server (every server's with `all`).
pub fn logout(api: &Api, all: bool, json: bool) -> CliResult<u8> {
    if all {
        if let Some(path) = token_cache_path().filter(|p| p.exists()) {
            std::fs::remove_file(&path).map_err(|e| CliError::new(format!("cannot remove {}: {e}", path.display())))?;
        }
        render::done(json, json!({"logged_out": "all"}), "Logged out of every server");
        return Ok(0);
    }
    if cached_login(api.server()).is_none() {
        render::done(json, json!({"logged_out": null, "server": api.server()}), format!("Not logged in to {}", api.server()));
        return Ok(0);
    }
    update_cache(api.server(), None)?;
    render::done(json, json!({"logged_out": api.server()}), format!("Logged out of {}", api.server()));
    Ok(0)
}

fn write_private(path: &Path, text: &str) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(text.as_bytes()).map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))
}

pub async fn whoami(api: &Api, json: bool) -> CliResult<u8> {
    let me = api.get("/user").await?;
    if json {
        render::json(&me);
    } else {
        println!(
            "{} ({}; admin: {})",
            str_of(&me, "username"),
            me["authentication"]["method"].as_str().unwrap_or_default(),
            me["rbac"]["is_admin"]
        );
    }
    Ok(0)
}

pub async fn apikey_create(api: &Api, user: Option<String>, json: bool) -> CliResult<u8> {
    let mut body = json!({});
    if let Some(u) = user {
        body["user"] = json!(u);
    }
    let key = api.post("/apikeys", &body).await?;
    if json {
        render::json(&key);
    } else {
        println!("{}", str_of(&key, "key"));
        eprintln!("API key {} for {} (shown only now; use it as SQUALL_API_KEY)", str_of(&key, "id"), str_of(&key, "user"));
    }
    Ok(0)
}

pub async fn apikey_list(api: &Api, json: bool) -> CliResult<u8> {
    let keys = api.get("/apikeys").await?;
    if json {
        render::json(&keys);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = keys
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| vec![str_of(k, "id"), str_of(k, "user"), k["enabled"].to_string(), render::when(&str_of(k, "created_at"))])
        .collect();
    render::table(&["id", "user", "enabled", "created"], &rows);
    Ok(0)
}

pub async fn apikey_enable(api: &Api, id: &str, enabled: bool, json: bool) -> CliResult<u8> {
    let key = api.send_json(api.http().put(api.url(&format!("/apikeys/{id}"))).json(&json!({"enabled": enabled}))).await?;
    render::done(json, key, format!("API key {id} {}", if enabled { "enabled" } else { "disabled" }));
    Ok(0)
}

pub async fn apikey_delete(api: &Api, id: &str, json: bool) -> CliResult<u8> {
    api.send_json(api.http().delete(api.url(&format!("/apikeys/{id}")))).await?;
    render::done(json, json!({"id": id, "deleted": true}), format!("API key {id} deleted"));
    Ok(0)
}

/// `squall user add|passwd|remove`, directly on the data directory.
pub async fn user_admin(data_dir: &Path, action: &str, name: &str, json: bool) -> CliResult<u8> {
    use squall_store::Store;
    let store = crate::purge::open_existing(data_dir).await.map_err(CliError::new)?;
    let exists = store.user(name).await.map_err(|e| CliError::new(e.to_string()))?.is_some();
    match action {
        "add" | "passwd" => {
            if action == "add" && exists {
                return Err(CliError::new(format!("user {name} already exists (use `squall user passwd {name}`)")));
            }
            if action == "passwd" && !exists {
                return Err(CliError::new(format!("no user named {name}")));
            }
            let password = read_password(&format!("New password for {name}: "))?;
            if password.len() < 8 {
                return Err(CliError::new("the password must be at least 8 characters long"));
            }
            let hash = squall_server::credentials::hash_password(&password);
            store.put_user(name, Some(&hash)).await.map_err(|e| CliError::new(e.to_string()))?;
            let did = if action == "add" { "added" } else { "updated" };
            render::done(json, json!({"user": name, did: true}), format!("user {name} {did}"));
        }
        _ => {
            if !store.delete_user(name).await.map_err(|e| CliError::new(e.to_string()))? {
                return Err(CliError::new(format!("no user named {name}")));
            }
            render::done(json, json!({"user": name, "removed": true}), format!("user {name} removed, with their tokens and API keys"));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::server_key;

    #[test]
    fn one_server_one_key() {
        for same in ["http://Host:9101", "http://host:9101/", "http://host:9101/v1", "http://host:9101/v1/"] {
            assert_eq!(server_key(same), "http://host:9101");
        }
        assert_eq!(server_key("https://host"), "https://host:443");
        assert_eq!(server_key("https://host/squall-a/v1"), "https://host:443/squall-a");
        assert_ne!(server_key("http://host:9101"), server_key("http://host:9102"));
        assert_ne!(server_key("http://host"), server_key("https://host"));
    }
}
