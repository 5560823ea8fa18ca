//! What `resq doctor` reads from a Redis server, with resq's own
//! connection and user: its version, the settings that decide whether jobs
//! survive (eviction, persistence) and who can reach it (password, ACL
//! users, bind, protected mode, TLS), and which dangerous commands resq's
//! user may run. Every read may be refused to a least-privilege user: a
//! refused read is `None`, and the doctor says it could not check.

use std::collections::BTreeMap;

use redis::Value;
use resq::StoreError;

use crate::store::store_err;
use crate::RedisStore;

/// Commands no job system needs, that wipe, reconfigure, block or load
/// code into a server.
pub const DANGEROUS: &[&str] = &["FLUSHALL", "FLUSHDB", "CONFIG", "KEYS", "DEBUG", "MODULE", "SHUTDOWN"];

/// One ACL user, as `ACL LIST` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    pub enabled: bool,
    /// Any password logs in.
    pub nopass: bool,
}

/// What was read.
#[derive(Debug, Clone, Default)]
pub struct RedisFacts {
    /// `INFO server`'s `redis_version`, parsed (`None` also when resq's
    /// user may not run INFO).
    pub version: Option<(u32, u32, u32)>,
    /// Who resq is (`ACL WHOAMI`).
    pub user: Option<String>,
    /// `INFO memory`: `maxmemory` (0: none) and `maxmemory_policy`.
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    /// `INFO persistence`: AOF on.
    pub aof_enabled: Option<bool>,
    /// `CONFIG GET` of a few keys; `None` when resq's user may not run it.
    pub config: Option<BTreeMap<String, String>>,
    /// `ACL LIST`; `None` when resq's user may not run it.
    pub users: Option<Vec<AclUser>>,
    /// For each dangerous command: may resq's user run it? (`ACL DRYRUN`;
    /// `None` when that could not be asked.)
    pub dangerous: Vec<(&'static str, Option<bool>)>,
    /// `INFO replication`: the replicas connected and in sync (`state=online`),
    /// the ones a `WAIT` can count.
    pub replicas_online: Option<u32>,
    /// May resq's user run `WAIT` (`redis.wait_replicas`)? (`ACL DRYRUN`;
    /// `None` when that could not be asked.)
    pub may_wait: Option<bool>,
}

const CONFIG_KEYS: &[&str] = &[
    "bind",
    "protected-mode",
    "port",
    "tls-port",
    "requirepass",
    "save",
    "appendonly",
    "maxmemory",
    "maxmemory-policy",
];

impl RedisFacts {
    /// Reads what it may (a refused read leaves its field `None`).
    pub async fn read(store: &RedisStore) -> Result<RedisFacts, StoreError> {
        let mut conn = store.connection();
        // The connection works (or this fails the doctor plainly).
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(store_err)?;
        let info: Option<String> = redis::cmd("INFO").query_async(&mut conn).await.ok();
        let info = info.unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        let mut facts = RedisFacts {
            version: field("redis_version").and_then(|v| parse_version(&v)),
            maxmemory: field("maxmemory").and_then(|v| v.parse().ok()),
            maxmemory_policy: field("maxmemory_policy"),
            aof_enabled: field("aof_enabled").map(|v| v == "1"),
            replicas_online: field("connected_slaves").map(|_| online_replicas(&info)),
            ..RedisFacts::default()
        };
        facts.user = redis::cmd("ACL").arg("WHOAMI").query_async(&mut conn).await.ok();
        let mut config = BTreeMap::new();
        let mut readable = true;
        for key in CONFIG_KEYS {
            match redis::cmd("CONFIG")
                .arg("GET")
                .arg(*key)
                .query_async::<Vec<String>>(&mut conn)
                .await
            {
                Ok(pair) => {
                    if let [k, v] = pair.as_slice() {
                        config.insert(k.clone(), v.clone());
                    }
                }
                Err(_) => {
                    readable = false;
                    break;
                }
            }
        }
        facts.config = readable.then_some(config);
        facts.users = redis::cmd("ACL")
            .arg("LIST")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .ok()
            .map(|lines| lines.iter().filter_map(|l| parse_acl_line(l)).collect());
        for command in DANGEROUS {
            // Arguments that make each a complete command.
            let args: &[&str] = match *command {
                "CONFIG" => &["SET", "save", ""],
                "KEYS" => &["*"],
                "DEBUG" => &["SLEEP", "0"],
                "MODULE" => &["LOAD", "/x.so"],
                _ => &[],
            };
            let allowed = match &facts.user {
                Some(user) => dry_run(&mut conn, user, &[&[*command], args].concat()).await,
                None => None,
            };
            facts.dangerous.push((command, allowed));
        }
        if let Some(user) = &facts.user {
            facts.may_wait = dry_run(&mut conn, user, &["WAIT", "0", "0"]).await;
        }
        Ok(facts)
    }
}

/// What `resq doctor` reads of a Redis Cluster: its state, the slots its
/// masters serve, and each master's own facts (its settings decide whether
/// the jobs of its queues survive).
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// `CLUSTER INFO`'s `cluster_state` is `ok` (`None`: not readable).
    pub state_ok: Option<bool>,
    /// How many of the 16,384 slots a master serves.
    pub slots_served: u32,
    pub masters: Vec<ClusterMaster>,
}

/// One master of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterMaster {
    /// `host:port`, as the cluster names it.
    pub address: String,
    /// What it says of itself with resq's user, read over a connection of
    /// its own; `None` when that failed (the reason).
    pub facts: Result<RedisFacts, String>,
}

/// Every slot of a cluster.
pub const CLUSTER_SLOTS: u32 = 16_384;

impl ClusterFacts {
    /// Reads the layout through the store's cluster connection, then each
    /// master's facts over a connection of its own made from `config` (its
    /// login and TLS files).
    pub async fn read(store: &RedisStore, config: &crate::RedisConfig) -> Result<ClusterFacts, StoreError> {
        let mut conn = store.connection();
        let info: Option<String> = redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await.ok();
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        let (slots_served, layout) = parse_cluster_slots(&slots);
        let mut masters = Vec::with_capacity(layout.len());
        for (host, port) in layout {
            let address = crate::sentinel::address(&host, port);
            let facts = match crate::sentinel::master_config(config, &host, port) {
                None => Err("the Redis URL's scheme is not usable".to_string()),
                Some(mut at) => {
                    at.cluster = None;
                    at.wait = None;
                    match RedisStore::connect(&at, "resque").await {
                        Ok(direct) => RedisFacts::read(&direct).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            masters.push(ClusterMaster { address, facts });
        }
        Ok(ClusterFacts {
            state_ok: info.map(|i| i.lines().any(|l| l.trim() == "cluster_state:ok")),
            slots_served,
            masters,
        })
    }
}

/// `CLUSTER SLOTS`' answer: how many slots are served, and each master
/// (host, port). Its replicas are not read here: Redis 7 leaves out of it a
/// replica whose replication offset is still 0 (a master nobody wrote to
/// yet); each master's `INFO replication` says ([`RedisFacts`]). Entries
/// that are not `[start, end, [host, port, ...], ...]` are left out.
pub fn parse_cluster_slots(reply: &Value) -> (u32, std::collections::BTreeSet<(String, u16)>) {
    let mut served = 0u32;
    let mut masters = std::collections::BTreeSet::new();
    let Value::Array(ranges) = reply else {
        return (0, masters);
    };
    let node = |v: &Value| -> Option<(String, u16)> {
        let Value::Array(fields) = v else { return None };
        let host = match fields.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = match fields.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            _ => return None,
        };
        Some((host, port))
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(master)) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let Some(master) = node(master) else { continue };
        if end >= start {
            served = served.saturating_add(u32::try_from(end - start + 1).unwrap_or(0));
        }
        masters.insert(master);
    }
    (served, masters)
}

/// `ACL DRYRUN user <command...>`: may the user run it? `None` when the
/// question itself is refused.
async fn dry_run(conn: &mut crate::Connection, user: &str, command: &[&str]) -> Option<bool> {
    let mut dry = redis::cmd("ACL");
    dry.arg("DRYRUN").arg(user).arg(command);
    match dry.query_async::<Value>(conn).await {
        Ok(Value::Okay) => Some(true),
        Ok(Value::SimpleString(s)) if s == "OK" => Some(true),
        // DRYRUN answers a refusal as a string, not an error.
        Ok(_) => Some(false),
        Err(_) => None,
    }
}

/// The replicas `INFO replication` lists as in sync: its `slave<n>:` lines
/// with `state=online` (one still loading the master's snapshot is listed,
/// but acknowledges nothing yet).
pub fn online_replicas(info: &str) -> u32 {
    let online = info.lines().filter(|line| {
        let Some((name, fields)) = line.split_once(':') else {
            return false;
        };
        let numbered = name
            .strip_prefix("slave")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        numbered && fields.trim().split(',').any(|f| f == "state=online")
    });
    u32::try_from(online.count()).unwrap_or(u32::MAX)
}

/// `7.0.15` as (7, 0, 15).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// One `ACL LIST` line: `user <name> on|off [nopass] ...`.
pub fn parse_acl_line(line: &str) -> Option<AclUser> {
    let mut words = line.split_whitespace();
    if words.next()? != "user" {
        return None;
    }
    let name = words.next()?.to_string();
    let rest: Vec<&str> = words.collect();
    Some(AclUser {
        name,
        enabled: rest.contains(&"on"),
        nopass: rest.contains(&"nopass"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_acl_lines_are_read() {
        assert_eq!(parse_version("7.0.15"), Some((7, 0, 15)));
        assert_eq!(parse_version("6.2"), Some((6, 2, 0)));
        assert_eq!(parse_version("x"), None);
        assert_eq!(
            parse_acl_line("user default on nopass sanitize-payload ~* &* +@all"),
            Some(AclUser {
                name: "default".into(),
                enabled: true,
                nopass: true
            })
        );
        assert_eq!(
            parse_acl_line("user w off #abc ~resque:* +@read").map(|u| (u.enabled, u.nopass)),
            Some((false, false))
        );
        assert_eq!(parse_acl_line("garbage"), None);
    }

    #[test]
    fn a_cluster_layout_is_read_and_garbage_left_out() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node(7000), node(7003)]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(7001)]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node(7002),
                node(7004),
                node(7005),
            ]),
            Value::Array(vec![Value::Int(1), Value::Int(0), node(7000)]),
            Value::Array(vec![Value::Int(0)]),
            Value::Int(3),
        ]);
        let (served, masters) = parse_cluster_slots(&reply);
        assert_eq!(served, CLUSTER_SLOTS);
        let got: Vec<u16> = masters.iter().map(|(_, p)| *p).collect();
        assert_eq!(got, vec![7000, 7001, 7002]);
        assert_eq!(parse_cluster_slots(&Value::Nil).0, 0);
    }

    #[test]
    fn replicas_in_sync_are_counted() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
                    slave2:ip=127.0.0.1,port=7003,state=online,offset=10,lag=1\r\n\
                    slaveof:nothing\r\nmaster_repl_offset:10\r\n";
        assert_eq!(online_replicas(info), 2);
        assert_eq!(online_replicas("role:master\r\nconnected_slaves:0\r\n"), 0);
    }
}
