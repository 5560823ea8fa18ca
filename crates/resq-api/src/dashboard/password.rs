//! Passwords: Argon2id hashes (the PHC string is what Redis keeps), and a
//! verification that takes the same time whether or not the user exists.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (bounds the hashing work a request can ask for).
pub const MAX_LEN: usize = 1_024;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("a password has at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password has at most {MAX_LEN} bytes")]
    TooLong,
    #[error("the password could not be hashed")]
    Hash,
}

/// The Argon2id hash of `password` (default parameters: 19 MiB, 2 passes),
/// with a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// A hash of a password nobody has, verified when the name is unknown so
/// the answer takes as long as for a known user.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"decoy password nobody has")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// True when `password` matches `stored`; with `None` (no such user) it
/// does the same work and answers false.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let password = &password.as_bytes()[..password.len().min(MAX_LEN)];
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (decoy(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        // An unreadable stored hash: still spend the time.
        let _ = PasswordHash::new(decoy()).map(|p| Argon2::default().verify_password(password, &p));
        return false;
    };
    let ok = Argon2::default().verify_password(password, &parsed).is_ok();
    ok && real
}

/// [`verify`] on the blocking pool, at most as many at once as there are
/// cores: a flood of logins queues here instead of taking 19 MiB and a core
/// each.
pub async fn verify_limited(password: String, stored: Option<String>) -> bool {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.clamp(1, 16))
    });
    let Ok(_slot) = slots.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || verify(&password, stored.as_deref()))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&h)));
        assert!(!verify("correct horse batterx", Some(&h)));
        assert!(!verify("correct horse battery", None));
        assert!(!verify("x", Some("not a hash")));
    }

    #[test]
    fn lengths_are_bounded() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
    }
}
