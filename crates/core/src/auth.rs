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

/// `url` with any password (in the user part, or a `password=` option) replaced by `***`, for
/// messages and logs. Several URLs may be comma-separated (a NATS cluster).
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = match (one.find("://"), one.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => format!("{}***@{}", &one[..scheme + 3], &one[at + 1..]),
                _ => one.to_string(),
            };
            match one.find("password=") {
                Some(at) => {
                    let end = one[at..].find('&').map_or(one.len(), |e| at + e);
                    format!("{}password=***{}", &one[..at], &one[end..])
                }
                None => one,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(redact_url("nats://user:s3cret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact_url("nats://a:1@h1:4222,nats://h2:4222"), "nats://***@h1:4222,nats://h2:4222");
        assert_eq!(redact_url("postgres://squall:pw@db:5432/squall?sslmode=require"), "postgres://***@db:5432/squall?sslmode=require");
        assert_eq!(redact_url("postgres://db/squall?password=pw&sslmode=require"), "postgres://db/squall?password=***&sslmode=require");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
    }
}
