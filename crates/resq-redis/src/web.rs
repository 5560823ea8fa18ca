//! What the dashboard keeps in Redis, so every replica of `resq serve`
//! shares it: users (Argon2id hashes, never passwords), sessions (under the
//! SHA-256 of their ids, expiring when idle), login limits and lockouts,
//! and the samples its charts draw.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use resq::{StoreError, UnixMs};
use serde::{Deserialize, Serialize};

use crate::api::{ApiStore, Limit, RateDecision};
use crate::keys::Keys;
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

/// Failed logins in a row for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lockout {
    pub failures: u64,
    pub last_ms: u64,
}

/// The dashboard's storage.
#[derive(Clone)]
pub struct WebStore {
    conn: ConnectionManager,
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

    pub async fn lockout(&self, name_hash: &str) -> Result<Lockout, StoreError> {
        let (failures, last): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.keys.web_lockout(name_hash))
            .arg("failures")
            .arg("last_ms")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(Lockout {
            failures: failures.unwrap_or(0),
            last_ms: last.unwrap_or(0),
        })
    }

    /// Counts a failed login for a name; the count lasts an hour.
    pub async fn login_failed(&self, name_hash: &str, now: UnixMs) -> Result<(), StoreError> {
        let key = self.keys.web_lockout(name_hash);
        redis::pipe()
            .hincr(&key, "failures", 1)
            .ignore()
            .hset(&key, "last_ms", now.0)
            .ignore()
            .pexpire(&key, 3_600_000)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_err)
    }

    pub async fn login_succeeded(&self, name_hash: &str) -> Result<(), StoreError> {
        self.conn
            .clone()
            .del::<_, i64>(self.keys.web_lockout(name_hash))
            .await
            .map(drop)
            .map_err(store_err)
    }

    /// Adds a sample unless another replica took this interval's turn;
    /// keeps the newest `keep`.
    pub async fn record_sample(&self, sample: &Sample, interval: Duration, keep: usize) -> Result<bool, StoreError> {
        let turn: Option<String> = redis::cmd("SET")
            .arg(self.keys.web_history_turn())
            .arg(sample.at_ms)
            .arg("NX")
            .arg("PX")
            .arg(millis(interval).saturating_sub(50).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        if turn.is_none() {
            return Ok(false);
        }
        let json = serde_json::to_string(sample).map_err(|_| protocol("a sample that does not encode"))?;
        redis::pipe()
            .lpush(self.keys.web_history(), json)
            .ignore()
            .ltrim(self.keys.web_history(), 0, keep.saturating_sub(1) as isize)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(true)
    }

    /// The newest `count` samples, oldest first (unreadable ones skipped).
    pub async fn samples(&self, count: usize) -> Result<Vec<Sample>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<String> = self
            .conn
            .clone()
            .lrange(self.keys.web_history(), 0, count as isize - 1)
            .await
            .map_err(store_err)?;
        let mut samples: Vec<Sample> = raw.iter().filter_map(|s| serde_json::from_str(s).ok()).collect();
        samples.reverse();
        Ok(samples)
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
