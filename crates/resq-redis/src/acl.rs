//! Least-privilege Redis ACL rules for each part of a resq deployment: the
//! commands each role's code (and the Lua scripts it runs, which Redis
//! checks against the caller's ACL) issues, on the namespace's keys and
//! wake-up channel only. Nothing here runs a command: `resq acl` prints
//! the rules for an administrator to apply.

/// Which part of a deployment the user is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclRole {
    /// Enqueues only (a web app, `resq enqueue`): pushes to queues, holds
    /// unique keys, schedules, tracks. Cannot pop, delete, or read a queue's
    /// jobs or the failed list.
    Producer,
    /// `resq worker`: fetches, runs, acks, retries, schedules, sweeps,
    /// reaps dead workers, fires cron ticks.
    Worker,
    /// `resq serve`: the enqueue API and the dashboard with its actions.
    Web,
    /// `resq serve --read-only`: reads everything, writes only its own
    /// sessions, login limits, audit trail and chart samples; cannot push.
    WebReadOnly,
    /// The operator's CLI (`resq failed clear`, `resq user add`, ...):
    /// everything resq does in its namespace, nothing server-wide.
    Admin,
    /// The user every resq process logs in to the sentinels with, in
    /// Sentinel mode (`redis.sentinel_username`): it asks for the master's
    /// address and listens for `+switch-master`, nothing else. A rule for
    /// the sentinels, not for the data servers.
    Sentinel,
}

/// Every role: connect, authenticate, run scripts, read the clock.
const BASE: &[&str] = &[
    "ping",
    "echo",
    "hello",
    "auth",
    "select",
    "client|setname",
    "time",
    "acl|whoami",
    // Sentinel mode asks the master the sentinels name whether it is one.
    "role",
    "eval",
    "evalsha",
    "script|load",
    "script|exists",
    "multi",
    "exec",
    "discard",
];

/// What enqueueing issues (the enqueue scripts, unique keys, schedules,
/// tracking, the wake-up signal).
const PRODUCER: &[&str] = &[
    "get",
    "set",
    "hget",
    "hkeys",
    "hset",
    "llen",
    "rpush",
    "sadd",
    "smembers",
    "zadd",
    "pexpireat",
    "publish",
];

/// Durable acknowledgements (`redis.wait_replicas`): `WAIT` after each
/// enqueue, ack and requeue. Keyless, and it only blocks the caller's own
/// connection, so any role that writes jobs may have it; the read-only web
/// user writes none.
const DURABLE: &[&str] = &["wait"];

/// What reading issues.
const READ: &[&str] = &[
    "get",
    "exists",
    "pttl",
    "hget",
    "hkeys",
    "hgetall",
    "hlen",
    "hmget",
    "hexists",
    "llen",
    "lindex",
    "lrange",
    "smembers",
    "sismember",
    "zrange",
    "zrangebyscore",
    "zscore",
    "zcard",
    "xread",
    "xrevrange",
    "info",
];

/// What the worker's scripts and calls write.
const WRITE: &[&str] = &[
    "set",
    "psetex",
    "del",
    "incrby",
    "pexpire",
    "pexpireat",
    "pexpiretime",
    "setbit",
    "bitfield",
    "hset",
    "hsetnx",
    "hdel",
    "hincrby",
    "lpush",
    "rpush",
    "lpop",
    "lrem",
    "lset",
    "ltrim",
    "sort",
    "sadd",
    "srem",
    "zadd",
    "zrem",
    "publish",
];

/// What `resq serve` writes for itself (sessions, limits, audit, samples).
const WEB_OWN: &[&str] = &[
    "set", "psetex", "del", "pexpire", "hset", "hsetnx", "hdel", "hincrby", "lpush", "ltrim", "xadd",
];

fn plus(commands: &[&str]) -> Vec<String> {
    commands.iter().map(|c| format!("+{c}")).collect()
}

/// What resq sends a sentinel: its login, the master's address, the
/// failover announcements (see `sentinel.rs` and `connection.rs`). Not
/// `SENTINEL FAILOVER`, `SET`, `RESET`, `REMOVE` or `MONITOR`: a leaked
/// login cannot move or reconfigure the master.
const SENTINEL: &[&str] = &[
    "ping",
    "hello",
    "auth",
    "client|setname",
    "sentinel|get-master-addr-by-name",
    "subscribe",
];

/// In cluster mode, what redis-rs's cluster client sends besides: the
/// layout (`CLUSTER SLOTS`), and `ASKING` before a command a slot being
/// moved redirects; and the cluster's state, for `resq doctor`.
const CLUSTER: &[&str] = &["cluster|slots", "cluster|info", "asking"];

/// Which keyspace the rule is for (see [`crate::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Standalone and sentinel modes: `<ns>:...`.
    Standalone,
    /// Cluster mode: the fleet's keys `{<ns>}:...`, each queue's
    /// `{<ns>:<queue>}:...`, tracked jobs' `{<ns>:track:<id>}`.
    Cluster,
}

/// The rule's words after `ACL SETUSER <name> reset on <password>`: the
/// channel, the commands and the keys of `role` in `namespace`, laid out as
/// `layout` says (for [`AclRole::Sentinel`], the sentinels' one channel and
/// commands; no key). In cluster mode the same rule goes to every node
/// (each keeps its own users).
pub fn rule(role: AclRole, namespace: &str, layout: Layout) -> Vec<String> {
    let ns = namespace;
    if role == AclRole::Sentinel {
        let mut words = vec!["resetchannels".to_string(), "&+switch-master".into(), "-@all".into()];
        words.extend(plus(SENTINEL));
        return words;
    }
    let cluster = layout == Layout::Cluster;
    // The fleet's keys, and every queue's (with the tracked jobs' records).
    let (fleet, queues) = if cluster {
        (format!("{{{ns}}}:"), format!("{{{ns}:*"))
    } else {
        (format!("{ns}:"), format!("{ns}:"))
    };
    // In cluster mode each queue has its wake channel; the worker listens
    // to them all with PSUBSCRIBE, whose pattern an ACL compares literally.
    let channel = if cluster {
        format!("&{{{ns}:*}}:resq:wake")
    } else {
        format!("&{ns}:resq:wake")
    };
    let mut words = vec!["resetchannels".to_string(), channel, "-@all".to_string()];
    words.extend(plus(BASE));
    if cluster {
        words.extend(plus(CLUSTER));
    }
    match role {
        AclRole::Producer => {
            words.extend(plus(PRODUCER));
            words.extend(plus(DURABLE));
            // Queues (push and their length for caps), the queue set, caps
            // (read), unique keys, the schedule and tracking records: not
            // the failed list, not in-flight records, not workers.
            if cluster {
                words.extend([
                    format!("~{queues}}}:queue:*"),
                    format!("~{queues}}}:queues"),
                    format!("~{fleet}queues"),
                    format!("%R~{queues}}}:resq:queue-caps"),
                    format!("%R~{fleet}resq:queue-caps"),
                    format!("~{queues}}}:resq:unique:*"),
                    format!("%W~{queues}}}:resq:schedule"),
                    format!("%W~{{{ns}:track:*}}"),
                ]);
            } else {
                words.extend([
                    format!("~{ns}:queue:*"),
                    format!("~{ns}:queues"),
                    format!("%R~{ns}:resq:queue-caps"),
                    format!("~{ns}:resq:unique:*"),
                    format!("%W~{ns}:resq:schedule"),
                    format!("%W~{ns}:resq:track:*"),
                ]);
            }
        }
        AclRole::Worker => {
            words.extend(plus(READ));
            words.extend(plus(WRITE));
            words.extend(plus(DURABLE));
            words.push(if cluster { "+psubscribe" } else { "+subscribe" }.into());
            words.push(format!("~{fleet}*"));
            words.push(format!("~{queues}*"));
        }
        AclRole::Web | AclRole::Admin => {
            words.extend(plus(READ));
            words.extend(plus(WRITE));
            words.extend(plus(WEB_OWN));
            words.extend(plus(DURABLE));
            words.push(format!("~{fleet}*"));
            words.push(format!("~{queues}*"));
        }
        AclRole::WebReadOnly => {
            words.extend(plus(READ));
            words.extend(plus(WEB_OWN));
            // Read everything; write only what the server keeps for itself.
            words.push(format!("%R~{fleet}*"));
            words.push(format!("%R~{queues}*"));
            words.push(format!("~{fleet}resq:web:*"));
            words.push(format!("~{fleet}resq:api:*"));
        }
        AclRole::Sentinel => {}
    }
    dedup(words)
}

fn dedup(words: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    words.into_iter().filter(|w| seen.insert(w.clone())).collect()
}

impl AclRole {
    pub const ALL: [AclRole; 5] = [
        AclRole::Producer,
        AclRole::Worker,
        AclRole::Web,
        AclRole::WebReadOnly,
        AclRole::Admin,
    ];

    pub fn parse(name: &str) -> Option<AclRole> {
        match name {
            "producer" => Some(AclRole::Producer),
            "worker" => Some(AclRole::Worker),
            "web" => Some(AclRole::Web),
            "web-read-only" => Some(AclRole::WebReadOnly),
            "admin" => Some(AclRole::Admin),
            "sentinel" => Some(AclRole::Sentinel),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AclRole::Producer => "producer",
            AclRole::Worker => "worker",
            AclRole::Web => "web",
            AclRole::WebReadOnly => "web-read-only",
            AclRole::Admin => "admin",
            AclRole::Sentinel => "sentinel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentinel_role_asks_for_the_master_and_listens_nothing_more() {
        let words = rule(AclRole::Sentinel, "app", Layout::Standalone);
        assert!(words.iter().any(|w| w == "+sentinel|get-master-addr-by-name"));
        assert!(words.iter().any(|w| w == "&+switch-master"));
        assert!(!words.iter().any(|w| w.contains('~')), "no key: {words:?}");
        for bad in [
            "+sentinel",
            "+sentinel|failover",
            "+sentinel|set",
            "+@all",
            "+acl",
            "+publish",
        ] {
            assert!(!words.iter().any(|w| w == bad), "{bad}");
        }
        assert_eq!(AclRole::parse("sentinel"), Some(AclRole::Sentinel));
    }

    #[test]
    fn no_role_gets_a_server_wide_command_or_another_namespace() {
        for role in [
            AclRole::Producer,
            AclRole::Worker,
            AclRole::Web,
            AclRole::WebReadOnly,
            AclRole::Admin,
        ] {
            let words = rule(role, "app", Layout::Standalone);
            for bad in [
                "+flushall",
                "+flushdb",
                "+config",
                "+keys",
                "+debug",
                "+module",
                "+shutdown",
                "+@all",
                "+acl",
            ] {
                assert!(!words.iter().any(|w| w == bad), "{role:?} has {bad}");
            }
            for w in words.iter().filter(|w| w.contains('~')) {
                assert!(w.contains("~app:"), "{role:?}: {w}");
            }
            assert!(words.iter().any(|w| w == "&app:resq:wake"));
        }
    }

    /// Every role that writes jobs may wait for replicas
    /// (`redis.wait_replicas`); the read-only web user writes none.
    #[test]
    fn the_roles_that_write_jobs_may_wait_for_replicas() {
        for role in AclRole::ALL {
            let words = rule(role, "resque", Layout::Standalone);
            let may_wait = words.iter().any(|w| w == "+wait");
            assert_eq!(may_wait, role != AclRole::WebReadOnly, "{role:?}");
        }
    }

    #[test]
    fn a_producer_cannot_pop_delete_or_read_jobs() {
        for layout in [Layout::Standalone, Layout::Cluster] {
            let words = rule(AclRole::Producer, "resque", layout);
            for bad in [
                "+lpop",
                "+del",
                "+lrange",
                "+lrem",
                "~resque:*",
                "~resque:failed",
                "~{resque}:*",
                "~{resque:*",
            ] {
                assert!(!words.iter().any(|w| w == bad), "{layout:?}: {bad}");
            }
        }
    }

    /// In cluster mode each role's keys are the fleet's and the queues' of
    /// its namespace, and nothing else: not another namespace's (a glob
    /// over `{app` alone would take `{apple}`'s).
    #[test]
    fn cluster_rules_keep_to_the_namespace_and_may_ask_for_the_layout() {
        for role in AclRole::ALL {
            let words = rule(role, "app", Layout::Cluster);
            assert!(words.iter().any(|w| w == "+cluster|slots"), "{role:?}");
            assert!(words.iter().any(|w| w == "&{app:*}:resq:wake"), "{role:?}");
            for w in words.iter().filter(|w| w.contains('~')) {
                let pattern = w.split_once('~').map_or("", |(_, p)| p);
                assert!(
                    pattern.starts_with("{app}:") || pattern.starts_with("{app:"),
                    "{role:?}: {w}"
                );
            }
            assert!(
                !words.iter().any(|w| w == "+cluster" || w.starts_with("+cluster|set")),
                "{role:?}"
            );
        }
        let worker = rule(AclRole::Worker, "app", Layout::Cluster);
        assert!(worker.iter().any(|w| w == "+psubscribe"));
    }
}
