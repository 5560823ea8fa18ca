//! API token secrets: `resq_<id>_<random><checksum>`.
//!
//! - the prefix `resq_` and a fixed shape let secret scanners find a leaked
//!   one (the pattern is `resq_[0-9a-f]{12}_[0-9a-f]{48}`);
//! - the last 8 hex digits are a checksum (the first 32 bits of SHA-256 of
//!   the rest), so a scanner, or this server, tells a real secret from a
//!   random string without asking Redis;
//! - the random part is 160 bits from the operating system, so the secret
//!   cannot be guessed and a plain SHA-256 of it is a safe thing to store
//!   (a slow password hash protects low-entropy secrets, not these).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "resq_";
const ID_HEX: usize = 12;
const RANDOM_HEX: usize = 40;
const CHECK_HEX: usize = 8;

/// A secret as given to its owner (once) and its parts.
pub struct Minted {
    pub id: String,
    pub secret: String,
    pub hash: String,
}

/// Why new random bytes could not be had.
#[derive(Debug, thiserror::Error)]
#[error("the operating system gave no random bytes: {0}")]
pub struct NoRandom(String);

/// A new token id and secret.
pub fn mint() -> Result<Minted, NoRandom> {
    let mut bytes = [0u8; ID_HEX / 2 + RANDOM_HEX / 2];
    getrandom::fill(&mut bytes).map_err(|e| NoRandom(e.to_string()))?;
    let id = hex(&bytes[..ID_HEX / 2]);
    let body = format!("{PREFIX}{id}_{}", hex(&bytes[ID_HEX / 2..]));
    let secret = format!("{body}{}", checksum(&body));
    let hash = hash(&secret);
    Ok(Minted { id, secret, hash })
}

/// The token id a well-formed secret names (its checksum is right), else
/// `None`: a malformed one is refused without a look in Redis.
pub fn id_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(PREFIX)?;
    if rest.len() != ID_HEX + 1 + RANDOM_HEX + CHECK_HEX || !secret.is_ascii() {
        return None;
    }
    let (id, tail) = rest.split_at(ID_HEX);
    let random = tail.strip_prefix('_')?;
    let all_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !all_hex(id) || !all_hex(random) {
        return None;
    }
    let (body, check) = secret.split_at(secret.len() - CHECK_HEX);
    (checksum(body) == check).then_some(id)
}

/// `secret` (well formed) rewritten to name token `id`, with its checksum
/// made again: a rotation keeps the token's id and draws new random bits.
pub fn with_id(secret: &str, id: &str) -> String {
    let random_start = PREFIX.len() + ID_HEX + 1;
    let random = secret.get(random_start..random_start + RANDOM_HEX).unwrap_or_default();
    let body = format!("{PREFIX}{id}_{random}");
    format!("{body}{}", checksum(&body))
}

/// What is stored: SHA-256 of the whole secret, hex.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn matches(secret: &str, stored: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Whether two tokens are equal, in constant time (for tokens of one length).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn checksum(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes())[..CHECK_HEX / 2])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_minted_secret_names_its_id_and_matches_its_hash() {
        let m = mint().unwrap();
        assert_eq!(m.secret.len(), PREFIX.len() + ID_HEX + 1 + RANDOM_HEX + CHECK_HEX);
        assert_eq!(id_of(&m.secret), Some(m.id.as_str()));
        assert!(matches(&m.secret, &m.hash));
        assert!(!matches(&m.secret, &hash("another")));
        assert_ne!(mint().unwrap().secret, m.secret);
        let other = mint().unwrap();
        let moved = with_id(&other.secret, &m.id);
        assert_eq!(id_of(&moved), Some(m.id.as_str()));
        assert_ne!(moved, m.secret);
    }

    #[test]
    fn any_changed_character_breaks_the_checksum() {
        let m = mint().unwrap();
        for i in PREFIX.len()..m.secret.len() {
            let mut bytes = m.secret.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != m.secret && i != PREFIX.len() + ID_HEX {
                assert_eq!(id_of(&changed), None, "position {i}");
            }
        }
    }

    proptest! {
        /// Whatever a client sends, parsing answers and never panics.
        #[test]
        fn arbitrary_text_is_refused_or_well_formed(text in ".{0,80}") {
            if let Some(id) = id_of(&text) {
                prop_assert_eq!(id.len(), ID_HEX);
            }
        }
    }
}
