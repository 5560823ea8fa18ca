//! Tokens: minted, checked and scoped. Only a hash of each secret is
//! stored (in Redis, so every replica sees the same tokens). A replica
//! uses a record it read within the last second (`token_cache`), so a
//! revocation holds within a second on every replica. A revocation is its
//! own write (`resq:api:revoked`), so a rotation running at the same time
//! cannot undo it.

use std::time::Duration;

use resq::UnixMs;
use resq_redis::api::{ApiStore, PreviousSecret, TokenRecord};

use crate::secret;

/// What `resq token create` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub classes: Vec<String>,
    pub queues: Vec<String>,
    pub rate_per_s: f64,
    pub burst: u32,
    pub max_bytes: usize,
    pub expires_in: Option<Duration>,
}

/// Why a token could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token has id {0}")]
    NotFound(String),
    #[error(transparent)]
    Random(#[from] secret::NoRandom),
    #[error(transparent)]
    Store(#[from] resq::StoreError),
}

/// Creates a token; returns its record and its secret (shown once).
pub async fn create(store: &ApiStore, new: NewToken) -> Result<(TokenRecord, String), TokenError> {
    check_scope_patterns("classes", &new.classes)?;
    check_scope_patterns("queues", &new.queues)?;
    if new.name.trim().is_empty() || new.name.len() > 64 || new.name.chars().any(char::is_control) {
        return Err(TokenError::Invalid(
            "--name must be 1 to 64 characters, no control characters".into(),
        ));
    }
    if new.burst == 0 || new.max_bytes < 64 {
        return Err(TokenError::Invalid(
            "--burst must be at least 1 and --max-bytes at least 64".into(),
        ));
    }
    let now = UnixMs::now();
    for _ in 0..4 {
        let minted = secret::mint()?;
        let record = TokenRecord {
            id: minted.id,
            name: new.name.clone(),
            hash: minted.hash,
            classes: new.classes.clone(),
            queues: new.queues.clone(),
            rate_per_s: new.rate_per_s,
            burst: new.burst,
            max_bytes: new.max_bytes,
            created_at_ms: now.0,
            expires_at_ms: new.expires_in.map(|d| now.plus(d).0),
            revoked_at_ms: None,
            previous: None,
        };
        if store.create_token(&record).await? {
            return Ok((record, minted.secret));
        }
    }
    Err(TokenError::Invalid("could not draw a free token id".into()))
}

/// Revokes a token: it stops working at the next request, everywhere.
pub async fn revoke(store: &ApiStore, id: &str) -> Result<TokenRecord, TokenError> {
    let mut record = find(store, id).await?;
    let now = UnixMs::now();
    store.revoke(&record.id, now).await?;
    record.revoked_at_ms.get_or_insert(now.0);
    Ok(record)
}

/// Gives a token a new secret; the old one keeps working for `grace`.
pub async fn rotate(store: &ApiStore, id: &str, grace: Duration) -> Result<(TokenRecord, String), TokenError> {
    let mut record = find(store, id).await?;
    if record.revoked_at_ms.is_some() {
        return Err(TokenError::Invalid("a revoked token cannot be rotated".into()));
    }
    let minted = secret::mint()?;
    // The new secret keeps the token's id (its limits and trail go on).
    let new_secret = reissue(&record.id, &minted.secret);
    record.previous = Some(PreviousSecret {
        hash: std::mem::replace(&mut record.hash, secret::hash(&new_secret)),
        valid_until_ms: UnixMs::now().plus(grace).0,
    });
    // The revocation lives beside the record: never write it into it.
    let mut saved = record.clone();
    saved.revoked_at_ms = None;
    store.save_token(&saved).await?;
    Ok((record, new_secret))
}

/// A freshly minted secret rewritten to carry `id` (and a checksum to match).
fn reissue(id: &str, minted: &str) -> String {
    secret::with_id(minted, id)
}

async fn find(store: &ApiStore, id: &str) -> Result<TokenRecord, TokenError> {
    match store.token(id).await?.0 {
        Some(record) => Ok(record),
        None => Err(TokenError::NotFound(crate::problem::clip(id, 24))),
    }
}

/// Scope entries are class or queue names, or globs of them (`mail*`).
fn check_scope_patterns(what: &str, patterns: &[String]) -> Result<(), TokenError> {
    if patterns.is_empty() {
        return Err(TokenError::Invalid(format!(
            "--{what} is required: name what the token may enqueue (a glob such as `mail*` is allowed)"
        )));
    }
    for p in patterns {
        glob::Pattern::new(p).map_err(|_| TokenError::Invalid(format!("--{what}: an entry is not a valid glob")))?;
    }
    Ok(())
}

/// Whether `name` is in a scope list.
pub fn in_scope(patterns: &[String], name: &str) -> bool {
    patterns
        .iter()
        .any(|p| p == name || glob::Pattern::new(p).is_ok_and(|g| g.matches(name)))
}

/// Whether a presented secret opens `record` now: its hash (or, in its
/// grace period, the one a rotation replaced), not revoked, not expired.
pub fn opens(record: &TokenRecord, presented: &str, now: UnixMs) -> bool {
    let current = secret::matches(presented, &record.hash);
    let previous = record
        .previous
        .as_ref()
        .is_some_and(|p| now.0 < p.valid_until_ms && secret::matches(presented, &p.hash));
    (current || previous) && record.revoked_at_ms.is_none() && record.expires_at_ms.is_none_or(|at| now.0 < at)
}
