//! Stored credentials: users, tokens and API keys (hashes only).

use serde_json::Value;
use squall_core::Timestamp;

/// A local user. `password_hash` is an argon2id PHC string; `None` for users that exist only
/// through tokens or keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: Option<String>,
    pub created: Timestamp,
}

/// A token, known by the hash of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub token_hash: String,
    pub user: String,
    pub expiry: Timestamp,
    /// A token squall issued for an execution (`ST2_ACTION_AUTH_TOKEN`).
    pub service: bool,
    pub created: Timestamp,
}

impl TokenRecord {
    /// A new token for `user` valid for `ttl_seconds`: the plaintext (to hand out once) and the
    /// record to store.
    pub fn issue(user: &str, ttl_seconds: u64, service: bool) -> (String, TokenRecord) {
        let secret = squall_core::auth::new_secret();
        let now = Timestamp::now();
        let record = TokenRecord {
            id: squall_core::id::new_id(),
            token_hash: squall_core::auth::hash_secret(&secret),
            user: user.to_string(),
            expiry: Timestamp(now.micros() + ttl_seconds as i64 * 1_000_000),
            service,
            created: now,
        };
        (secret, record)
    }
}

/// An API key, known by the hash of its value.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub key_hash: String,
    pub user: String,
    pub enabled: bool,
    pub metadata: Value,
    pub created: Timestamp,
}
