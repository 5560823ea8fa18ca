//! What the dashboard keeps in Redis, so every replica of `resq serve`
//! shares it: users (Argon2id hashes, never passwords), sessions (under the
//! SHA-256 of their ids, expiring when idle), login limits and lockouts,
//! and the samples its charts draw.

use std::time::Duration;

use redis::AsyncCommands;
use resq::{StoreError, UnixMs};
use serde::{Deserialize, Serialize};

use crate::api::{ApiStore, Limit, RateDecision};
use crate::keys::Keys;
use crate::scripts;
use crate::store::{protocol, store_err};
use crate::RedisStore;

/// What a dashboard user may do. Each role can do what the one before it
/// can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Also retries, removes, pauses, caps and fires.
    Operator,
    /// Also manages users and API tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err("a role is viewer, operator or admin".to_string()),
        }
    }
}

/// A user name: 1 to 64 of letters, digits, `.`, `_`, `-`, `@` (so it is
/// safe in a URL path, a log line and a Redis hash field).
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// What a bad user name gets told.
pub const USER_NAME_RULE: &str = "a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'";

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// The password's Argon2id hash (PHC string).
    pub hash: String,
    pub created_at_ms: u64,
    /// When the password or the role last changed: sessions begun before
    /// it end.
    pub changed_at_ms: u64,
}

/// A session as stored (under the hash of its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub created_at_ms: u64,
    /// The user record's `changed_at_ms` at login: any change since (a
    /// password, a role) ends the session, whatever the clocks say.
    pub user_changed_at_ms: u64,
}

/// One sample of the fleet, for the charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: u64,
    pub processed: u64,
    pub failed: u64,
    /// Jobs waiting in every queue.
    pub waiting: u64,
    /// The deepest queues then (a few), with their lengths.
    pub queues: Vec<(String, u64)>,
}

/// Samples the fine list keeps (2 hours at the default 10 s interval).
pub const FINE_KEPT: usize = 720;
/// One sample in this period also goes to the coarse list...
pub const COARSE_EVERY: Duration = Duration::from_secs(120);
/// ...which keeps a day of them.
pub const COARSE_KEPT: usize = 720;

/// The dashboard's storage.
#[derive(Clone)]
pub struct WebStore {
    conn: crate::Connection,
    keys: Keys,
    api: ApiStore,
}

impl WebStore {
    pub fn new(store: &RedisStore) -> Self {
        Self {
            conn: store.connection(),
            keys: store.keys().clone(),
            // Only its rate limits are used (the login limits): it writes no audit.
            api: ApiStore::new(store, 1),
        }
    }

    /// Stores a new user; false when the name is taken.
    pub async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        self.conn
            .clone()
            .hset_nx(self.keys.web_users(), &user.name, to_json(user)?)
            .await
            .map_err(store_err)
    }

    /// Replaces a user's record.
    pub async fn save_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.conn
            .clone()
            .hset::<_, _, _, i64>(self.keys.web_users(), &user.name, to_json(user)?)
            .await
            .map(drop)
            .map_err(store_err)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let json: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.web_users(), name)
            .await
            .map_err(store_err)?;
        json.as_deref().map(from_json).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let all: Vec<(String, String)> = self
            .conn
            .clone()
            .hgetall(self.keys.web_users())
            .await
            .map_err(store_err)?;
        let mut users = all
            .iter()
            .map(|(_, json)| from_json(json))
            .collect::<Result<Vec<UserRecord>, _>>()?;
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// How many users there are (none: the dashboard says how to add one).
    pub async fn user_count(&self) -> Result<u64, StoreError> {
        self.conn.clone().hlen(self.keys.web_users()).await.map_err(store_err)
    }

    /// Removes a user (their sessions end at their next request); false
    /// when there was none.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .hdel(self.keys.web_users(), name)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    /// Stores a session for `idle`.
    pub async fn create_session(
        &self,
        id_hash: &str,
        session: &SessionRecord,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).map_err(|_| protocol("a session that does not encode"))?;
        self.conn
            .clone()
            .pset_ex::<_, _, ()>(self.keys.web_session(id_hash), json, millis(idle))
            .await
            .map_err(store_err)
    }

    /// A session, its idle timeout restarted (one round trip).
    pub async fn touch_session(&self, id_hash: &str, idle: Duration) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.keys.web_session(id_hash);
        let (json, _): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pexpire(&key, millis(idle) as i64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        match json {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|_| protocol("a session it cannot read")),
        }
    }

    pub async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn
            .clone()
            .del::<_, i64>(self.keys.web_session(id_hash))
            .await
            .map(drop)
            .map_err(store_err)
    }

    /// Applies login limits together (see [`ApiStore::rate`]).
    pub async fn login_rate(&self, limits: &[Limit]) -> Result<RateDecision, StoreError> {
        self.api.rate(limits).await
    }

    /// Counts a login attempt against a name typed (its hash) unless the
    /// name is locked: `failures` in a row lock it for `first`, doubling
    /// with each further one up to `longest`. False: locked, nothing
    /// counted. Check and count are one step, so parallel attempts cannot
    /// slip past a lock together; a success clears the count.
    pub async fn login_attempt(
        &self,
        name_hash: &str,
        now: UnixMs,
        failures: u64,
        first: Duration,
        longest: Duration,
    ) -> Result<bool, StoreError> {
        let allowed: i64 = scripts::LOGIN_ATTEMPT
            .key(self.keys.web_lockout(name_hash))
            .arg(now.0)
            .arg(failures)
            .arg(millis(first))
            .arg(millis(longest))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(allowed == 1)
    }

    pub async fn login_succeeded(&self, name_hash: &str) -> Result<(), StoreError> {
        self.conn
            .clone()
            .del::<_, i64>(self.keys.web_lockout(name_hash))
            .await
            .map(drop)
            .map_err(store_err)
    }

    /// Adds a sample unless another replica took this interval's turn: to
    /// the fine list (the newest [`FINE_KEPT`]) and, once every
    /// [`COARSE_EVERY`], to the coarse one (a day of them).
    pub async fn record_sample(&self, sample: &Sample, interval: Duration) -> Result<bool, StoreError> {
        if !self
            .take_turn(self.keys.web_history_turn(), sample.at_ms, interval)
            .await?
        {
            return Ok(false);
        }
        let json = serde_json::to_string(sample).map_err(|_| protocol("a sample that does not encode"))?;
        let mut pipe = redis::pipe();
        pipe.lpush(self.keys.web_history("fine"), &json)
            .ignore()
            .ltrim(self.keys.web_history("fine"), 0, FINE_KEPT as isize - 1)
            .ignore();
        if self
            .take_turn(self.keys.web_history_turn_coarse(), sample.at_ms, COARSE_EVERY)
            .await?
        {
            pipe.lpush(self.keys.web_history("coarse"), &json)
                .ignore()
                .ltrim(self.keys.web_history("coarse"), 0, COARSE_KEPT as isize - 1)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(true)
    }

    /// True for the one caller that takes `key` for `period`.
    async fn take_turn(&self, key: String, at_ms: u64, period: Duration) -> Result<bool, StoreError> {
        let turn: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(at_ms)
            .arg("NX")
            .arg("PX")
            .arg(millis(period).saturating_sub(50).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(turn.is_some())
    }

    /// The newest samples that cover `span`, oldest first (unreadable ones
    /// skipped): from the fine list for an hour or less (or as far as it
    /// reaches: with samples more often than every 5 s, less than an hour),
    /// else from the coarse one. At most [`FINE_KEPT`] are read.
    pub async fn samples(&self, span: Duration, interval: Duration) -> Result<Vec<Sample>, StoreError> {
        let fine_span = interval.saturating_mul(FINE_KEPT as u32);
        let (list, count) = if span <= fine_span.max(Duration::from_secs(3600)) {
            ("fine", (span.as_secs() / interval.as_secs().max(1)) as usize + 1)
        } else {
            ("coarse", (span.as_secs() / COARSE_EVERY.as_secs()) as usize + 1)
        };
        let count = count.clamp(1, FINE_KEPT.max(COARSE_KEPT));
        let raw: Vec<String> = self
            .conn
            .clone()
            .lrange(self.keys.web_history(list), 0, count as isize - 1)
            .await
            .map_err(store_err)?;
        let mut samples: Vec<Sample> = raw.iter().filter_map(|s| serde_json::from_str(s).ok()).collect();
        samples.reverse();
        Ok(samples)
    }

    /// Takes or keeps the lock `name` for `holder` for `period` (one of
    /// many replicas does a job at a time); false when another holds it.
    pub async fn hold_lock(&self, name: &str, holder: &str, period: Duration) -> Result<bool, StoreError> {
        let key = self.keys.web_lock(name);
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(millis(period))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        if taken.is_some() {
            return Ok(true);
        }
        // Keep it when it is ours (check and renew in one step).
        let kept: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
        )
        .key(&key)
        .arg(holder)
        .arg(millis(period))
        .invoke_async(&mut self.conn.clone())
        .await
        .map_err(store_err)?;
        Ok(kept == 1)
    }

    /// `INFO` of the server, as text (the dashboard shows an allow-list of
    /// its fields).
    pub async fn info(&self) -> Result<String, StoreError> {
        redis::cmd("INFO")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn to_json(user: &UserRecord) -> Result<String, StoreError> {
    serde_json::to_string(user).map_err(|_| protocol("a user record that does not encode"))
}

fn from_json(json: &str) -> Result<UserRecord, StoreError> {
    serde_json::from_str(json).map_err(|_| protocol("a user record it cannot read"))
}
