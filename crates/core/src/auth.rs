//! Credentials as data: generating tokens and API keys, and the one-way hashes they are stored
//! under (the plaintext is shown once and never stored).

use sha2::{Digest, Sha256};

/// A fresh random credential: 32 lower-case hex characters (like StackStorm's `uuid4().hex`).
pub fn new_secret() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a token or API key: SHA-256, hex. Credentials are 128-bit random values,
/// so a fast hash is enough; passwords use argon2id instead.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex_and_hash_stably() {
        let a = new_secret();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_secret());
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_eq!(hash_secret(&a).len(), 64);
    }
}
