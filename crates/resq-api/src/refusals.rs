//! Tokens over their rate limit, remembered by this replica until the
//! limit lets them through again: a flood from one token is refused here,
//! without a round trip to Redis, so it costs the other tokens as little
//! as possible. Only a refusal is ever answered from here (a request it
//! lets pass goes through every check against Redis), and the presented
//! secret is checked against the remembered record's hash first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use resq_redis::api::TokenRecord;

/// At most this many tokens are remembered (the oldest refusals go first).
const MAX_TOKENS: usize = 10_000;

#[derive(Default)]
pub struct Refusals {
    until: Mutex<HashMap<String, (Instant, TokenRecord)>>,
}

impl Refusals {
    /// Remembers that `token` is refused for `retry_after`.
    pub fn remember(&self, token: &TokenRecord, retry_after: Duration) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_TOKENS {
            map.retain(|_, (until, _)| *until > now);
        }
        if map.len() < MAX_TOKENS {
            map.insert(token.id.clone(), (now + retry_after, token.clone()));
        }
    }

    /// The token and how long it stays refused, when `secret` opens a token
    /// this replica remembers as over its limit now.
    pub fn refused(&self, id: &str, secret: &str) -> Option<(TokenRecord, Duration)> {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get(id) {
            Some((until, record)) if *until > now => {
                crate::secret::matches(secret, &record.hash).then(|| (record.clone(), *until - now))
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }
}
