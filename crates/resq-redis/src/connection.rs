//! [`Connection`]: the store's multiplexed connection to the Redis master,
//! which in sentinel mode follows the master through a failover; in cluster
//! mode, redis-rs's cluster connection (each command to its slot's master).
//!
//! In standalone mode it is redis-rs's `ConnectionManager` and nothing more:
//! each command goes straight to it. In sentinel mode it holds a manager for
//! the master the sentinels named, and watches each reply: a connection
//! error (refused, dropped, timed out), `READONLY` (the server was demoted to
//! a replica) or `MASTERDOWN` starts one background search, which asks the
//! sentinels again (at most once every [`ROUND_GAP`]) until a master answers
//! `ROLE` as one, then swaps in a manager for it. A master demoted while
//! alive (`SENTINEL FAILOVER`, a partition that heals) fails no command: it
//! keeps taking writes until the sentinels turn it into a replica, seconds
//! after they switched to the new master. So a search also starts at each
//! `+switch-master` the sentinels publish for this master (one subscription,
//! to one sentinel at a time). The command that failed
//! returns its error unchanged: the store calls it Unavailable and the
//! worker's own retry and backoff take it from there, on the new master.
//! Dedicated connections (the wake-up listener's pub/sub) ask
//! [`Connection::master_client`] for the current master and reconnect when
//! [`Connection::master_moves`] says it changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::connect::{connect_direct, RedisConfig};
use crate::sentinel::{self, address};

/// The shortest time between two searches for the master.
pub(crate) const ROUND_GAP: Duration = Duration::from_millis(250);

/// A connection to the master. Cheap to clone: clones share one multiplexed
/// connection (and, in sentinel mode, one search for the master).
#[derive(Clone)]
pub struct Connection(Route);

#[derive(Clone)]
enum Route {
    /// Standalone: the manager reconnects to the one address by itself.
    Direct(ConnectionManager),
    /// Sentinel mode.
    Followed(Arc<Follower>),
    /// Cluster mode: redis-rs routes each command to its slot's master and
    /// follows the cluster's changes by itself.
    Cluster(redis::cluster_async::ClusterConnection, Arc<Seeds>),
}

/// Cluster mode: a client for each seed node, handed out in turn to
/// dedicated connections (the wake-up listener's pub/sub: Redis Cluster
/// carries a `PUBLISH` to every node, so any node will do, and the next
/// one when it goes away).
pub(crate) struct Seeds {
    clients: Vec<redis::Client>,
    next: std::sync::atomic::AtomicUsize,
}

/// The master in sentinel mode, and the search for a new one.
struct Follower {
    /// The data connection's settings, with the sentinels.
    config: RedisConfig,
    master: RwLock<Master>,
    /// A search runs (one at a time).
    searching: AtomicBool,
    /// When the last search round started.
    last_round: Mutex<Option<Instant>>,
    /// Bumped at each move to another master.
    moves: tokio::sync::watch::Sender<u64>,
}

/// The master in use.
#[derive(Clone)]
struct Master {
    host: String,
    port: u16,
    manager: ConnectionManager,
    client: redis::Client,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    pub(crate) fn direct(manager: ConnectionManager) -> Self {
        Connection(Route::Direct(manager))
    }

    pub(crate) fn clustered(connection: redis::cluster_async::ClusterConnection, seeds: Vec<redis::Client>) -> Self {
        let seeds = Seeds {
            clients: seeds,
            next: Default::default(),
        };
        Connection(Route::Cluster(connection, Arc::new(seeds)))
    }

    /// True in cluster mode, where one script or transaction reaches one
    /// slot only.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Route::Cluster(..))
    }

    pub(crate) fn followed(
        config: RedisConfig,
        (host, port): (String, u16),
        manager: ConnectionManager,
        client: redis::Client,
    ) -> Self {
        let (moves, _) = tokio::sync::watch::channel(0);
        let follower = Arc::new(Follower {
            config,
            master: RwLock::new(Master {
                host,
                port,
                manager,
                client,
            }),
            searching: AtomicBool::new(false),
            last_round: Mutex::new(None),
            moves,
        });
        tokio::spawn(watch_switches(Arc::downgrade(&follower), follower.moves.subscribe()));
        Connection(Route::Followed(follower))
    }

    /// The master's `host:port` in sentinel mode; `None` in standalone mode.
    pub fn master_address(&self) -> Option<String> {
        match &self.0 {
            Route::Direct(_) | Route::Cluster(..) => None,
            Route::Followed(f) => {
                let m = f.current();
                Some(address(&m.host, m.port))
            }
        }
    }

    /// A client for the current master, for dedicated connections, in
    /// sentinel mode; in cluster mode the next seed node's, in turn; `None`
    /// in standalone mode (the store's own client reaches the one server).
    pub fn master_client(&self) -> Option<redis::Client> {
        match &self.0 {
            Route::Direct(_) => None,
            Route::Cluster(_, seeds) => {
                let turn = seeds.next.fetch_add(1, Ordering::Relaxed);
                seeds.clients.get(turn % seeds.clients.len().max(1)).cloned()
            }
            Route::Followed(f) => Some(f.current().client),
        }
    }

    /// A receiver that changes each time the connection moves to another
    /// master; `None` in standalone mode.
    pub fn master_moves(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.0 {
            Route::Direct(_) | Route::Cluster(..) => None,
            Route::Followed(f) => Some(f.moves.subscribe()),
        }
    }

    /// Says the master may have moved (a dedicated connection to it
    /// failed): in sentinel mode a search starts unless one runs.
    pub fn suspect(&self) {
        if let Route::Followed(f) = &self.0 {
            f.suspect();
        }
    }
}

impl Follower {
    fn current(&self) -> Master {
        self.master.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current master's manager (a handle: cloning it is cheap).
    fn manager(&self) -> ConnectionManager {
        self.master.read().unwrap_or_else(|p| p.into_inner()).manager.clone()
    }

    /// Starts the search, unless one runs.
    fn suspect(self: &Arc<Self>) {
        if self.searching.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(search(Arc::downgrade(self)));
    }

    /// Looks at a reply and starts the search when it says the master is
    /// gone or is not the master any more.
    fn watch<T>(self: &Arc<Self>, reply: &RedisResult<T>, values: impl Fn(&T) -> bool) {
        let lost = match reply {
            Err(e) => lost_master(e),
            Ok(v) => values(v),
        };
        if lost {
            self.suspect();
        }
    }

    /// One round: ask the sentinels; follow a new master, or keep the one
    /// in use when they name it (its manager reconnects by itself). When no
    /// sentinel answers, the master in use is kept if it still is one.
    async fn round(&self) -> Result<(), String> {
        let current = self.current();
        let Some(sentinels) = self.config.sentinel.as_ref() else {
            return Ok(());
        };
        let (host, port) = match sentinel::find_master(&self.config, sentinels).await {
            Ok(found) => found,
            Err(no) => {
                return match sentinel::check_master(&self.config, &current.host, current.port).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(no.to_string()),
                }
            }
        };
        if (host.as_str(), port) == (current.host.as_str(), current.port) {
            return Ok(());
        }
        let at = sentinel::master_config(&self.config, &host, port).ok_or("the Redis URL's scheme is not usable")?;
        let (manager, client) = connect_direct(&at).await.map_err(|e| e.to_string())?;
        tracing::warn!(
            master = %sentinels.master_name,
            from = %address(&current.host, current.port),
            to = %address(&host, port),
            "the Redis master moved: following it"
        );
        *self.master.write().unwrap_or_else(|p| p.into_inner()) = Master {
            host,
            port,
            manager,
            client,
        };
        self.moves.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// Searches until a round succeeds, rounds at least [`ROUND_GAP`] apart;
/// ends early when every connection is gone.
async fn search(follower: Weak<Follower>) {
    let mut failed = 0u32;
    loop {
        let Some(f) = follower.upgrade() else { return };
        let wait = lock(&f.last_round).map_or(Duration::ZERO, |at| ROUND_GAP.saturating_sub(at.elapsed()));
        if !wait.is_zero() {
            drop(f);
            tokio::time::sleep(wait).await;
            continue;
        }
        *lock(&f.last_round) = Some(Instant::now());
        match f.round().await {
            Ok(()) => {
                if failed > 0 {
                    tracing::info!(rounds = failed + 1, "the Redis master is known again");
                }
                f.searching.store(false, Ordering::Release);
                return;
            }
            Err(why) => {
                failed += 1;
                if failed == 1 {
                    tracing::warn!(reason = %why, "no Redis master yet; asking the sentinels again");
                } else {
                    tracing::debug!(reason = %why, round = failed, "no Redis master yet");
                }
            }
        }
    }
}

/// Subscribes to `+switch-master` on one sentinel at a time (the next one
/// when it goes away, with backoff) and starts a search when the sentinels
/// switch this master. Ends with the last connection (`alive` closes).
async fn watch_switches(follower: Weak<Follower>, mut alive: tokio::sync::watch::Receiver<u64>) {
    use futures::StreamExt;
    let Some((config, sentinels)) = follower
        .upgrade()
        .and_then(|f| Some((f.config.clone(), f.config.sentinel.clone()?)))
    else {
        return;
    };
    let mut delay = Duration::from_millis(100);
    for (host, port) in sentinels.sentinels.iter().cycle() {
        let subscribed = async {
            let at = sentinel::sentinel_config(&config, &sentinels, host, *port)?;
            let client = crate::connect::client(&at).ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe("+switch-master").await.ok()?;
            Some(pubsub)
        };
        let timeout = config.connect_timeout + Duration::from_secs(1);
        if let Ok(Some(mut pubsub)) = tokio::time::timeout(timeout, subscribed).await {
            delay = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        // "<name> <old ip> <old port> <new ip> <new port>"
                        let payload: String = message.get_payload().unwrap_or_default();
                        if payload.split(' ').next() == Some(sentinels.master_name.as_str()) {
                            let Some(f) = follower.upgrade() else { return };
                            tracing::debug!(switch = %payload, "the sentinels switched the master");
                            f.suspect();
                        }
                    }
                    gone = alive.changed() => if gone.is_err() { return },
                }
            }
        }
        if follower.strong_count() == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            gone = alive.changed() => if gone.is_err() { return },
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// An error that means the master is away, or is not the master any more.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
}

/// A reply (or an element of a transaction's reply) that is `READONLY` or
/// `MASTERDOWN`.
fn says_not_master(v: &Value) -> bool {
    let direct = |v: &Value| matches!(v, Value::ServerError(e) if matches!(e.code(), "READONLY" | "MASTERDOWN"));
    match v {
        Value::Array(items) => items.iter().any(direct),
        other => direct(other),
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Route::Direct(manager) => manager.req_packed_command(cmd),
            Route::Cluster(cluster, _) => cluster.req_packed_command(cmd),
            Route::Followed(f) => {
                let f = Arc::clone(f);
                Box::pin(async move {
                    let mut manager = f.manager();
                    let reply = manager.req_packed_command(cmd).await;
                    f.watch(&reply, says_not_master);
                    reply
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Route::Direct(manager) => manager.req_packed_commands(pipeline, offset, count),
            Route::Cluster(cluster, _) => cluster.req_packed_commands(pipeline, offset, count),
            Route::Followed(f) => {
                let f = Arc::clone(f);
                Box::pin(async move {
                    let mut manager = f.manager();
                    let reply = manager.req_packed_commands(pipeline, offset, count).await;
                    f.watch(&reply, |values| values.iter().any(says_not_master));
                    reply
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Route::Direct(manager) => manager.get_db(),
            Route::Cluster(cluster, _) => cluster.get_db(),
            Route::Followed(f) => f.manager().get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &[u8]) -> Value {
        redis::parse_redis_value(line).unwrap()
    }

    #[test]
    fn replies_that_mean_the_master_moved() {
        let cases: [(&[u8], bool); 7] = [
            (b"-READONLY You can't write against a read only replica.\r\n", true),
            (
                b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
                true,
            ),
            (b"-OOM command not allowed when used memory > 'maxmemory'.\r\n", false),
            (b"-NOSCRIPT No matching script.\r\n", false),
            (b"+OK\r\n", false),
            (
                b"*2\r\n+OK\r\n-READONLY You can't write against a read only replica.\r\n",
                true,
            ),
            (b"*1\r\n$5\r\nhello\r\n", false),
        ];
        for (line, moved) in cases {
            assert_eq!(
                says_not_master(&reply(line)),
                moved,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn errors_that_mean_the_master_is_away() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert!(lost_master(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(lost_master(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(lost_master(&io(std::io::ErrorKind::TimedOut)));
        let server = |line: &[u8]| match reply(line) {
            Value::ServerError(e) => RedisError::from(e),
            other => panic!("{other:?}"),
        };
        assert!(lost_master(&server(b"-READONLY no\r\n")));
        assert!(lost_master(&server(b"-MASTERDOWN no\r\n")));
        assert!(!lost_master(&server(b"-NOPERM no\r\n")));
        assert!(!lost_master(&server(b"-ERR wrong\r\n")));
    }
}
