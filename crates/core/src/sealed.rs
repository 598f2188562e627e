//! Secret parameter values at rest. An execution's secret values (parameters marked
//! `secret: true`, and `env` entries whose names look secret) are sealed with AES-256-GCM before
//! the execution is stored or published, and opened only where they are needed: to run the
//! action, to re-run it, and for an admin who asks `?show_secrets=true`. A copy of the database
//! (a backup, a PostgreSQL dump, a stolen file) therefore holds no secret in clear.
//!
//! A sealed value is a JSON string `$squall$sealed$v1$<base64 of nonce ‖ ciphertext ‖ tag>`. The
//! execution id and the value's path are the associated data, so a sealed value cannot be moved
//! to another execution or parameter and still open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde_json::{Map, Value};

use crate::action::{Action, RunnerType};
use crate::params::for_each_secret;

const PREFIX: &str = "$squall$sealed$v1$";
const NONCE_LEN: usize = 12;
/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a sealed value could not be opened: the key is not the one it was sealed with, or the
/// stored value was altered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret value {path} of execution {execution} cannot be decrypted (wrong encryption key, or the stored value was altered)")]
pub struct SealError {
    pub execution: String,
    pub path: String,
}

/// The key that seals and opens secret values (from `[keyvalue] encryption_key_path`).
#[derive(Clone)]
pub struct SealingKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

impl SealingKey {
    pub fn from_bytes(key: &[u8; KEY_LEN]) -> SealingKey {
        SealingKey { cipher: Aes256Gcm::new(key.into()) }
    }

    /// A new random key.
    pub fn generate() -> [u8; KEY_LEN] {
        rand::random()
    }

    fn seal_value(&self, aad: &str, value: &Value) -> Value {
        let plain = serde_json::to_vec(value).expect("a JSON value serialises");
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: aad.as_bytes() })
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Value::String(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)))
    }

    fn open_value(&self, aad: &str, value: &Value) -> Option<Value> {
        let text = value.as_str()?.strip_prefix(PREFIX)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(text).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: aad.as_bytes() }).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Seals every secret value of `parameters`, which belong to execution `execution_id`.
    pub fn seal(&self, execution_id: &str, runner: &RunnerType, action: &Action, parameters: &mut Map<String, Value>) {
        for_each_secret(runner, action, parameters, |path, value| {
            *value = self.seal_value(&format!("{execution_id}/{path}"), value);
        });
    }

    /// `parameters` with every sealed secret value opened. Values stored before sealing existed
    /// (plain values) come back as they are.
    pub fn open(
        &self,
        execution_id: &str,
        runner: &RunnerType,
        action: &Action,
        parameters: &Map<String, Value>,
    ) -> Result<Map<String, Value>, SealError> {
        let mut opened = parameters.clone();
        let mut failed = None;
        for_each_secret(runner, action, &mut opened, |path, value| {
            if !is_sealed(value) {
                return;
            }
            match self.open_value(&format!("{execution_id}/{path}"), value) {
                Some(plain) => *value = plain,
                None => failed = failed.take().or_else(|| Some(path.to_string())),
            }
        });
        match failed {
            Some(path) => Err(SealError { execution: execution_id.to_string(), path }),
            None => Ok(opened),
        }
    }
}

/// Whether `value` is a sealed secret.
pub fn is_sealed(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(PREFIX))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Catalog;

    fn fixture() -> (RunnerType, Action) {
        let catalog = Catalog::builtin();
        let mut action = catalog.action("core.local").unwrap().clone();
        action.parameters.insert("password".into(), json!({"type": "string", "secret": true}));
        (catalog.runner("local-shell-cmd").unwrap().clone(), action)
    }

    #[test]
    fn secrets_round_trip_and_nothing_else_changes() {
        let (runner, action) = fixture();
        let key = SealingKey::from_bytes(&SealingKey::generate());
        let plain: Map<String, Value> =
            json!({"cmd": "echo hi", "password": "hunter22", "env": {"DB_PASSWORD": "s3cr3t!", "COLOR": "blue"}})
                .as_object()
                .unwrap()
                .clone();
        let mut sealed = plain.clone();
        key.seal("e1", &runner, &action, &mut sealed);
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("hunter22") && !text.contains("s3cr3t!"), "{text}");
        assert_eq!(sealed["cmd"], "echo hi");
        assert_eq!(sealed["env"]["COLOR"], "blue");
        assert!(is_sealed(&sealed["password"]) && is_sealed(&sealed["env"]["DB_PASSWORD"]));
        assert_eq!(key.open("e1", &runner, &action, &sealed).unwrap(), plain);
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_execution_and_path() {
        let (runner, action) = fixture();
        let key = SealingKey::from_bytes(&SealingKey::generate());
        let mut sealed: Map<String, Value> = json!({"password": "hunter22"}).as_object().unwrap().clone();
        key.seal("e1", &runner, &action, &mut sealed);
        let other = SealingKey::from_bytes(&SealingKey::generate());
        assert_eq!(other.open("e1", &runner, &action, &sealed).unwrap_err().path, "password");
        assert!(key.open("e2", &runner, &action, &sealed).is_err(), "moved to another execution");
        let mut moved = Map::new();
        moved.insert("env".into(), json!({"API_TOKEN": sealed["password"].clone()}));
        assert!(key.open("e1", &runner, &action, &moved).is_err(), "moved to another parameter");
    }

    #[test]
    fn plain_values_from_before_sealing_are_read_as_they_are() {
        let (runner, action) = fixture();
        let key = SealingKey::from_bytes(&SealingKey::generate());
        let old: Map<String, Value> = json!({"password": "hunter22"}).as_object().unwrap().clone();
        assert_eq!(key.open("e1", &runner, &action, &old).unwrap(), old);
        // A user value that looks sealed is sealed again, so it still comes back exactly.
        let mut tricky: Map<String, Value> = json!({"password": format!("{PREFIX}AAAA")}).as_object().unwrap().clone();
        let original = tricky.clone();
        key.seal("e1", &runner, &action, &mut tricky);
        assert_eq!(key.open("e1", &runner, &action, &tricky).unwrap(), original);
    }
}
