//! Token records this replica read in the last second. The issue of a
//! revocation is bounded by it: a revoked or changed token is seen by
//! every replica within [`FRESH_FOR`]. A secret that does not open the
//! remembered record is checked against Redis again (a rotation's new
//! secret works at once), so the cache only ever saves a read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use resq_redis::api::TokenRecord;

/// How long a record read from Redis is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// At most this many tokens are remembered.
const MAX_TOKENS: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    records: Mutex<HashMap<String, (Instant, TokenRecord)>>,
}

impl TokenCache {
    /// The record of token `id` if read within [`FRESH_FOR`].
    pub fn get(&self, id: &str) -> Option<TokenRecord> {
        let map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, record)| record.clone())
    }

    pub fn put(&self, record: &TokenRecord) {
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TOKENS {
            map.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        }
        if map.len() < MAX_TOKENS {
            map.insert(record.id.clone(), (Instant::now(), record.clone()));
        }
    }
}
