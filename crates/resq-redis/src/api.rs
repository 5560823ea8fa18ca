//! What the HTTP enqueue API keeps in Redis, so every replica of `resq
//! serve` sees the same tokens, limits and trail: token records (hashes of
//! the secrets, never the secrets), rate limits (GCRA, several in one
//! script), surge baselines, idempotency keys and the audit stream.

use std::time::Duration;

use redis::Value;
use resq::{StoreError, UnixMs};
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::scripts;
use crate::store::{protocol, store_err};
use crate::RedisStore;

/// A token as stored: who it is, what it may do, and a hash of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the whole secret, hex.
    pub hash: String,
    /// Classes it may enqueue: names or globs.
    pub classes: Vec<String>,
    /// Queues it may enqueue to: names or globs.
    pub queues: Vec<String>,
    /// Jobs a second, sustained.
    pub rate_per_s: f64,
    /// Jobs at once above the sustained rate.
    pub burst: u32,
    /// Largest request body, bytes.
    pub max_bytes: usize,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
    /// The secret a rotation replaced, valid until its grace period ends.
    pub previous: Option<PreviousSecret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousSecret {
    pub hash: String,
    pub valid_until_ms: u64,
}

/// One rate limit to apply: its key, and how much this request costs.
#[derive(Debug, Clone)]
pub struct Limit {
    pub key: String,
    /// Units a second, sustained.
    pub per_s: f64,
    /// Units allowed at once.
    pub burst: u32,
    /// Units this request takes; 0 only looks.
    pub cost: u32,
}

/// What the limits said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed {
        remaining: u64,
        reset: Duration,
    },
    /// Refused by the limit at `index` (in the order given).
    Refused {
        retry_after: Duration,
        index: usize,
    },
}

/// What one request's admission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every limit let it through, and its jobs were counted.
    Allowed {
        remaining: u64,
        reset: Duration,
        /// This request began a surge throttle (raise the alert).
        surge_began: bool,
    },
    /// Refused by the limit at `index` (in the order given).
    Limited { retry_after: Duration, index: usize },
    /// The token is throttled after a surge, for this long.
    Throttled(Duration),
    /// The client is over its failed-authentication budget.
    TooManyFailures(Duration),
}

/// Adaptive throttling: how a token's surge is told from its baseline.
#[derive(Debug, Clone, Copy)]
pub struct SurgeSettings {
    pub window: Duration,
    /// A window above this many times the baseline is a surge.
    pub multiple: f64,
    /// Windows the baseline must have seen before it judges.
    pub min_windows: u32,
    /// Jobs a window below which the baseline counts as this (a quiet
    /// token may grow to `multiple` times this without a throttle).
    pub floor: f64,
    /// How long a surging token is throttled.
    pub throttle: Duration,
}

impl Default for SurgeSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            multiple: 10.0,
            min_windows: 5,
            floor: 60.0,
            throttle: Duration::from_secs(300),
        }
    }
}

/// What a first request with an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// The key is new: this request goes on, and owns it.
    Fresh,
    /// The same body was accepted before: its answer.
    Replay(String),
    /// The same key came with another body.
    Conflict,
    /// A request with this key is still being handled.
    InProgress,
}

/// How long an idempotency key is held by a request still in flight.
const PENDING_FOR: Duration = Duration::from_secs(60);

/// The API's state in Redis.
#[derive(Clone)]
pub struct ApiStore {
    conn: crate::Connection,
    keys: Keys,
    audit_max: usize,
}

impl ApiStore {
    /// Over the same connection and namespace as `store`; the audit stream
    /// keeps about `audit_max` entries.
    pub fn new(store: &RedisStore, audit_max: usize) -> Self {
        Self {
            conn: store.connection(),
            keys: store.keys().clone(),
            audit_max: audit_max.max(1),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Stores a new token; false when its id is taken.
    pub async fn create_token(&self, record: &TokenRecord) -> Result<bool, StoreError> {
        self.write_token("HSETNX", record).await
    }

    /// Replaces a token's record (rotation; revocations are kept apart).
    pub async fn save_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.write_token::<i64>("HSET", record).await.map(drop)
    }

    async fn write_token<T: redis::FromRedisValue>(
        &self,
        command: &str,
        record: &TokenRecord,
    ) -> Result<T, StoreError> {
        redis::cmd(command)
            .arg(self.keys.api_tokens())
            .arg(&record.id)
            .arg(to_json(record)?)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)
    }

    /// A token's record (with its revocation), and how long it stays
    /// throttled after a surge.
    pub async fn token(&self, id: &str) -> Result<(Option<TokenRecord>, Option<Duration>), StoreError> {
        let mut pipe = redis::pipe();
        self.read_token(&mut pipe, id);
        let (json, revoked, pttl): (Option<String>, Option<u64>, i64) =
            pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        token_parts(json, revoked, pttl)
    }

    /// Adds the reads of a token: its record, its revocation, its throttle.
    fn read_token(&self, pipe: &mut redis::Pipeline, id: &str) {
        pipe.cmd("HGET").arg(self.keys.api_tokens()).arg(id);
        pipe.cmd("HGET").arg(self.keys.api_revoked()).arg(id);
        pipe.cmd("PTTL").arg(self.keys.api_throttle(id));
    }

    /// Revokes token `id` at `at` (the first revocation stands).
    pub async fn revoke(&self, id: &str, at: UnixMs) -> Result<(), StoreError> {
        redis::cmd("HSETNX")
            .arg(self.keys.api_revoked())
            .arg(id)
            .arg(at.0)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    /// Every token, by id.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let (all, revoked): (Vec<(String, String)>, std::collections::HashMap<String, u64>) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.keys.api_tokens())
            .cmd("HGETALL")
            .arg(self.keys.api_revoked())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let mut records = all
            .iter()
            .map(|(id, json)| with_revocation(json, revoked.get(id).copied()))
            .collect::<Result<Vec<TokenRecord>, _>>()?;
        records.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// Applies `limits` together: all pass and all count, or none counts.
    pub async fn rate(&self, limits: &[Limit]) -> Result<RateDecision, StoreError> {
        if limits.is_empty() {
            return Ok(RateDecision::Allowed {
                remaining: u64::MAX,
                reset: Duration::ZERO,
            });
        }
        let mut inv = scripts::GCRA.prepare_invoke();
        for limit in limits {
            // The emission interval in µs, at least 1 (a limit faster than a
            // million a second is no limit).
            let interval = (1_000_000.0 / limit.per_s.max(1e-6)).max(1.0);
            inv.key(&limit.key)
                .arg(interval)
                .arg(limit.burst.max(1))
                .arg(limit.cost);
        }
        let reply: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        match reply.as_slice() {
            [1, remaining, reset] => Ok(RateDecision::Allowed {
                remaining: u64::try_from(*remaining).unwrap_or(0),
                reset: ms(*reset),
            }),
            [0, retry, index] => Ok(RateDecision::Refused {
                retry_after: ms(*retry).max(Duration::from_millis(1)),
                index: usize::try_from(*index).unwrap_or(1).saturating_sub(1),
            }),
            _ => Err(protocol("a rate limit reply it does not know")),
        }
    }

    /// Admits one request, in one round trip: the client's
    /// failed-authentication budget (`failures`, looked at), the token's
    /// surge throttle, its rate limits (as [`Self::rate`]) and, when they
    /// let it pass, `cost` jobs counted against its baseline.
    pub async fn admit(
        &self,
        limits: &[Limit],
        failures: &Limit,
        token: &str,
        cost: u32,
        s: &SurgeSettings,
    ) -> Result<Admission, StoreError> {
        let interval = |per_s: f64| (1_000_000.0 / per_s.max(1e-6)).max(1.0);
        let mut inv = scripts::ADMIT.prepare_invoke();
        inv.arg(limits.len());
        for limit in limits {
            inv.key(&limit.key)
                .arg(interval(limit.per_s))
                .arg(limit.burst.max(1))
                .arg(limit.cost);
        }
        inv.key(self.keys.api_baseline(token))
            .key(self.keys.api_throttle(token))
            .key(&failures.key)
            .arg(cost)
            .arg(s.window.as_millis().max(1) as u64)
            .arg(s.multiple)
            .arg(s.min_windows)
            .arg(s.floor)
            .arg(s.throttle.as_millis().max(1) as u64)
            .arg(0.3)
            .arg(interval(failures.per_s))
            .arg(failures.burst.max(1));
        let reply: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0)).max(Duration::from_millis(1));
        match reply.as_slice() {
            [1, remaining, reset, surge] => Ok(Admission::Allowed {
                remaining: u64::try_from(*remaining).unwrap_or(0),
                reset: Duration::from_millis(u64::try_from(*reset).unwrap_or(0)),
                surge_began: *surge == 1,
            }),
            [0, retry, index, _] => Ok(Admission::Limited {
                retry_after: ms(*retry),
                index: usize::try_from(*index).unwrap_or(1).saturating_sub(1),
            }),
            [2, left, _, _] => Ok(Admission::Throttled(ms(*left))),
            [3, retry, _, _] => Ok(Admission::TooManyFailures(ms(*retry))),
            _ => Err(protocol("an admission reply it does not know")),
        }
    }

    /// The failed-authentication limit of one client (looked at, not
    /// counted), a token's record and its throttle, in one round trip of
    /// plain reads (no script: this runs for every request).
    pub async fn authenticate(
        &self,
        failures: &Limit,
        token_id: Option<&str>,
    ) -> Result<(RateDecision, Option<TokenRecord>, Option<Duration>), StoreError> {
        let id = token_id.unwrap_or("");
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&failures.key);
        self.read_token(&mut pipe, id);
        let (tat, json, revoked, pttl): (Option<u64>, Option<String>, Option<u64>, i64) =
            pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        // The limit's state is its theoretical arrival time (µs, Redis's
        // clock); this machine's clock judges a look, which is close enough
        // for a limit counted in failures a minute. Counting a failure goes
        // through the script, on Redis's clock.
        let now_us = UnixMs::now().0.saturating_mul(1000);
        let interval = (1_000_000.0 / failures.per_s.max(1e-6)).max(1.0);
        let tolerance = interval * f64::from(failures.burst.max(1));
        let decision = match tat {
            Some(tat) if (tat as f64 + interval) - tolerance > now_us as f64 => RateDecision::Refused {
                retry_after: Duration::from_micros(((tat as f64 + interval) - tolerance - now_us as f64) as u64)
                    .max(Duration::from_millis(1)),
                index: 0,
            },
            _ => RateDecision::Allowed {
                remaining: 0,
                reset: Duration::ZERO,
            },
        };
        let (record, throttled) = token_parts(json.filter(|_| token_id.is_some()), revoked, pttl)?;
        Ok((decision, record, throttled))
    }

    /// Takes an idempotency key for a request whose body hashes to
    /// `body_hash`, or says what the key already holds.
    pub async fn idempotency_begin(
        &self,
        token: &str,
        key: &str,
        body_hash: &str,
        window: Duration,
    ) -> Result<Idempotency, StoreError> {
        let k = self.keys.api_idempotency(token, key);
        let pending = format!("{body_hash} pending");
        // A request that never finishes (a crash) holds the key a minute,
        // not the whole window; its answer, once written, keeps it the window.
        let pending_for = window.min(PENDING_FOR);
        let taken: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(&pending)
            .arg("NX")
            .arg("PX")
            .arg(pending_for.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        if taken.is_some() {
            return Ok(Idempotency::Fresh);
        }
        let held: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let Some(held) = held else {
            // It expired between the two calls: take it again.
            return Box::pin(self.idempotency_begin(token, key, body_hash, window)).await;
        };
        let (hash, answer) = held.split_once(' ').unwrap_or((held.as_str(), ""));
        Ok(if hash != body_hash {
            Idempotency::Conflict
        } else if answer == "pending" {
            Idempotency::InProgress
        } else {
            Idempotency::Replay(answer.to_string())
        })
    }

    /// Records the answer of the request that took the key.
    pub async fn idempotency_finish(
        &self,
        token: &str,
        key: &str,
        body_hash: &str,
        answer: &str,
        window: Duration,
    ) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(self.keys.api_idempotency(token, key))
            .arg(format!("{body_hash} {answer}"))
            .arg("PX")
            .arg(window.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)
    }

    /// Gives the key back when the request stored nothing.
    pub async fn idempotency_abort(&self, token: &str, key: &str) -> Result<(), StoreError> {
        redis::cmd("DEL")
            .arg(self.keys.api_idempotency(token, key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)
    }

    /// Appends entries to the audit stream (capped near `audit_max`), in
    /// one pipeline.
    pub async fn audit_many(&self, entries: &[Vec<(&str, String)>]) -> Result<(), StoreError> {
        let key = self.keys.api_audit();
        let mut pipe = redis::pipe();
        for fields in entries {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&key).arg("MAXLEN").arg("~").arg(self.audit_max).arg("*");
            for (name, value) in fields {
                cmd.arg(*name).arg(value);
            }
            pipe.add_command(cmd).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(store_err)
    }

    /// Audit entries after stream id `after` (`0`: from the oldest kept),
    /// at most `count`, waiting up to `block` for new ones when given.
    pub async fn audit_read(
        &self,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(String, Vec<(String, String)>)>, StoreError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys.api_audit()).arg(after);
        let reply: Value = cmd.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        parse_xread(reply)
    }

    /// The newest `count` audit entries, oldest first.
    pub async fn audit_last(&self, count: usize) -> Result<Vec<(String, Vec<(String, String)>)>, StoreError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.keys.api_audit())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let mut entries = parse_entries(reply)?;
        entries.reverse();
        Ok(entries)
    }

    /// Redis's `used_memory` and `maxmemory` (0: no limit), for backpressure.
    pub async fn memory(&self) -> Result<(u64, u64), StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((field("used_memory"), field("maxmemory")))
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    /// Now, by this machine's clock (token times).
    pub fn now() -> UnixMs {
        UnixMs::now()
    }
}

fn to_json(record: &TokenRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|_| protocol("a token record that does not encode"))
}

fn from_json(json: &str) -> Result<TokenRecord, StoreError> {
    serde_json::from_str(json).map_err(|_| protocol("a token record it cannot read"))
}

/// What `read_token` read: the record (with its revocation) and how long
/// the token stays throttled.
fn token_parts(
    json: Option<String>,
    revoked: Option<u64>,
    pttl: i64,
) -> Result<(Option<TokenRecord>, Option<Duration>), StoreError> {
    let record = json.map(|j| with_revocation(&j, revoked)).transpose()?;
    let throttled = u64::try_from(pttl).ok().filter(|&ms| ms > 0).map(Duration::from_millis);
    Ok((record, throttled))
}

/// A stored record with the revocation kept beside it.
fn with_revocation(json: &str, revoked: Option<u64>) -> Result<TokenRecord, StoreError> {
    let mut record = from_json(json)?;
    if let Some(at) = revoked {
        record.revoked_at_ms.get_or_insert(at);
    }
    Ok(record)
}

type Entries = Vec<(String, Vec<(String, String)>)>;

fn parse_xread(reply: Value) -> Result<Entries, StoreError> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for stream in streams {
                let Value::Array(mut parts) = stream else {
                    return Err(protocol("an XREAD reply it does not know"));
                };
                if parts.len() != 2 {
                    return Err(protocol("an XREAD reply it does not know"));
                }
                out.extend(parse_entries(parts.remove(1))?);
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        _ => Err(protocol("an XREAD reply it does not know")),
    }
}

fn parse_entries(reply: Value) -> Result<Entries, StoreError> {
    let Value::Array(entries) = reply else {
        return Err(protocol("stream entries it does not know"));
    };
    entries
        .into_iter()
        .map(|entry| {
            let (id, fields): (String, Vec<(String, String)>) =
                redis::from_redis_value(entry).map_err(|_| protocol("a stream entry it does not know"))?;
            Ok((id, fields))
        })
        .collect()
}
