//! What `resq doctor` finds: pure checks over what was read from Redis
//! ([`RedisFacts`]) and over resq's own configuration ([`ConfigFacts`]),
//! each finding with its severity, what it means for resq's jobs, and the
//! exact fix. Kept apart from the reading so every rule has a table test.

use resq_redis::facts::{ClusterFacts, RedisFacts, CLUSTER_SLOTS};
use serde::Serialize;

/// How bad a finding is; the exit code follows the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// `resq doctor`'s exit code for this worst finding: 0 nothing above
    /// info, 3 low or medium, 4 high or critical.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Low | Severity::Medium => 3,
            Severity::High | Severity::Critical => 4,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A stable name (for scripts and docs).
    pub code: &'static str,
    pub severity: Severity,
    /// What was found.
    pub title: String,
    /// What it means for resq's jobs.
    pub meaning: String,
    /// The exact change that removes it.
    pub fix: String,
}

fn finding(code: &'static str, severity: Severity, title: String, meaning: &str, fix: &str) -> Finding {
    Finding {
        code,
        severity,
        title,
        meaning: meaning.to_string(),
        fix: fix.to_string(),
    }
}

/// The oldest Redis resq runs on (its scripts use `PEXPIRETIME`).
pub const MIN_REDIS: (u32, u32, u32) = (7, 0, 0);

/// What resq's own configuration says, as the doctor needs it.
#[derive(Debug, Clone, Default)]
pub struct ConfigFacts {
    /// resq connects with neither a user name nor a password.
    pub redis_anonymous: bool,
    /// The host in resq's Redis URL is a loopback address (or a socket).
    pub redis_loopback: bool,
    pub redis_tls: bool,
    pub allow_unsigned: Vec<String>,
    /// The keys file's mode (permission bits), when there is one.
    pub keys_file_mode: Option<u32>,
    pub keys_file_missing: bool,
    /// Signing keys that may sign any class on any queue.
    pub unscoped_keys: Vec<String>,
    /// `resq serve`'s address is not loopback.
    pub serve_public: bool,
    pub serve_tls: bool,
    pub serve_plain_allowed: bool,
    /// API tokens (active) that never expire, by id.
    pub tokens_without_expiry: Vec<String>,
    /// API tokens (active) allowed more than 10,000 jobs a second.
    pub tokens_unlimited: Vec<String>,
    /// Process isolation is off.
    pub isolation_off: bool,
    /// Registered job types with no timeout of their own.
    pub classes_without_timeout: Vec<String>,
    /// `redis.wait_replicas` (0: off).
    pub wait_replicas: u32,
}

fn is_loopback_bind(addr: &str) -> bool {
    let a = addr.trim_start_matches('-');
    a == "127.0.0.1" || a == "::1" || a == "localhost" || a.starts_with("127.")
}

/// The findings about the server.
pub fn redis_findings(r: &RedisFacts, c: &ConfigFacts) -> Vec<Finding> {
    use Severity::*;
    let mut out = Vec::new();
    match r.version {
        Some(v) if v < MIN_REDIS => out.push(finding(
            "redis-too-old",
            High,
            format!(
                "Redis {}.{}.{} is older than resq supports ({}.{})",
                v.0, v.1, v.2, MIN_REDIS.0, MIN_REDIS.1
            ),
            "resq's scripts use commands this server does not have: fetches and acks fail",
            "upgrade Redis to 7.0 or later",
        )),
        Some(v) => out.push(finding(
            "redis-version",
            Info,
            format!("Redis {}.{}.{}", v.0, v.1, v.2),
            "supported",
            "nothing to do",
        )),
        None => out.push(finding(
            "redis-info-unreadable",
            Info,
            "INFO refused or unreadable".into(),
            "the doctor could not read the version, eviction policy, maxmemory or persistence",
            "allow +info for resq's user (resq acl does), or run the doctor with an administrator",
        )),
    }
    let me = r.user.clone().unwrap_or_else(|| "default".into());
    // Who can log in without a password.
    let open_users: Vec<String> = match &r.users {
        Some(users) => users
            .iter()
            .filter(|u| u.enabled && u.nopass)
            .map(|u| u.name.clone())
            .collect(),
        // resq itself got in with no credentials: its user has no password.
        None if c.redis_anonymous => vec![me.clone()],
        None => Vec::new(),
    };
    if !open_users.is_empty() {
        out.push(finding(
            "redis-no-password",
            Critical,
            format!("users that log in without a password: {}", open_users.join(", ")),
            "anyone who reaches the port can read every job, push forged ones (resq refuses them, Ruby \
             workers run them), delete queues and the failed list",
            "give resq its own ACL user with a password (resq acl --role worker prints it) and run \
             ACL SETUSER default off (or set requirepass)",
        ));
    }
    if let Some(users) = &r.users {
        if users.iter().any(|u| u.name == "default" && u.enabled && !u.nopass) && me != "default" {
            out.push(finding(
                "redis-default-user-on",
                Low,
                "the default user is on".into(),
                "a client that sends only a password is the default user, with its permissions",
                "ACL SETUSER default off, once every client logs in as its own user",
            ));
        }
    } else {
        out.push(finding(
            "redis-acl-unreadable",
            Info,
            format!("user {me} may not list ACL users (as it should be)"),
            "the doctor could not check other users for missing passwords",
            "run `RESQ_REDIS_USERNAME=<admin> resq doctor` with an administrator to check them",
        ));
    }
    match &r.config {
        Some(config) => {
            let get = |k: &str| config.get(k).map(String::as_str).unwrap_or("");
            let binds: Vec<&str> = get("bind").split_whitespace().collect();
            let public = binds.is_empty() || binds.iter().any(|b| !is_loopback_bind(b));
            if public && get("protected-mode") == "no" {
                out.push(finding(
                    "redis-exposed",
                    High,
                    format!(
                        "bound to {} with protected-mode off",
                        if binds.is_empty() { "every address" } else { get("bind") }
                    ),
                    "the server answers on non-loopback addresses whatever its users' passwords",
                    "bind 127.0.0.1 -::1 (or the one private address clients use) and protected-mode yes",
                ));
            }
            let tls = !get("tls-port").is_empty() && get("tls-port") != "0";
            if public && !tls {
                out.push(finding(
                    "redis-no-tls",
                    High,
                    format!(
                        "listens on {} without TLS",
                        if binds.is_empty() { "every address" } else { get("bind") }
                    ),
                    "passwords and jobs (arguments included, unless encrypted) cross the network in clear",
                    "tls-port with tls-cert-file/tls-key-file, port 0, and rediss:// in redis.url",
                ));
            }
        }
        None => out.push(finding(
            "redis-config-unreadable",
            Info,
            format!("user {me} may not run CONFIG (as it should be)"),
            "the doctor could not check bind, protected mode, TLS and persistence settings",
            "run `RESQ_REDIS_USERNAME=<admin> resq doctor` with an administrator to check them",
        )),
    }
    if !c.redis_loopback && !c.redis_tls {
        out.push(finding(
            "redis-url-plain",
            High,
            "resq reaches Redis over the network without TLS".into(),
            "resq's password and every job cross the network in clear",
            "serve TLS on Redis and use a rediss:// URL (redis.url, RESQ_REDIS_URL)",
        ));
    }
    if let Some(policy) = &r.maxmemory_policy {
        if policy != "noeviction" {
            out.push(finding(
                "redis-evicts",
                Critical,
                format!("maxmemory-policy is {policy}"),
                "when memory fills, Redis deletes keys: whole queues, in-flight records and the failed \
                 list vanish with no error anywhere",
                "CONFIG SET maxmemory-policy noeviction (and in redis.conf): writes then fail loudly and \
                 `resq serve` refuses with 503 above api.memory_watermark",
            ));
        }
    }
    if r.maxmemory == Some(0) {
        out.push(finding(
            "redis-no-maxmemory",
            Medium,
            "no maxmemory".into(),
            "Redis grows until the kernel kills it (every job in memory lost since the last save); \
             resq serve's memory watermark has no limit to compare with",
            "CONFIG SET maxmemory <bytes> below the machine's memory, with maxmemory-policy noeviction",
        ));
    }
    let save_off = r
        .config
        .as_ref()
        .map(|c| c.get("save").map(|s| s.trim().is_empty()).unwrap_or(false));
    match (r.aof_enabled, save_off) {
        (Some(false), Some(true)) => out.push(finding(
            "redis-no-persistence",
            High,
            "persistence off (no AOF, no RDB snapshots)".into(),
            "a Redis restart loses every queued, scheduled, in-flight and failed job",
            "CONFIG SET appendonly yes (appendfsync everysec loses at most a second) and in redis.conf",
        )),
        (Some(false), Some(false)) => out.push(finding(
            "redis-snapshots-only",
            Low,
            "persistence by RDB snapshots only".into(),
            "a crash loses the jobs enqueued since the last snapshot",
            "CONFIG SET appendonly yes (appendfsync everysec)",
        )),
        _ => {}
    }
    let allowed: Vec<&str> = r
        .dangerous
        .iter()
        .filter(|(_, ok)| *ok == Some(true))
        .map(|(c, _)| *c)
        .collect();
    if !allowed.is_empty() {
        out.push(finding(
            "redis-dangerous-commands",
            High,
            format!("user {me} may run {}", allowed.join(", ")),
            "a bug, a stolen resq config or a confused operator can wipe or reconfigure the server with \
             resq's credentials",
            "give resq a least-privilege user: `resq acl --role worker` (and producer, web, admin) prints it",
        ));
    } else if r.dangerous.iter().all(|(_, ok)| ok.is_none()) {
        out.push(finding(
            "redis-permissions-unchecked",
            Info,
            format!("user {me} may not run ACL DRYRUN (as it should be)"),
            "the doctor could not ask which dangerous commands this user may run",
            "compare the user's rules with `resq acl --role worker`",
        ));
    }
    out.extend(replica_findings(r, c));
    out
}

/// Replicas against `redis.wait_replicas`: too few makes every acknowledged
/// write fail after its wait; replicas without it are worth knowing of.
/// The findings about a Redis Cluster: its state, its slots, a replica for
/// each master, then each master's own findings (its address first in
/// their titles).
pub fn cluster_findings(cluster: &ClusterFacts, c: &ConfigFacts) -> Vec<Finding> {
    use Severity::*;
    let mut out = Vec::new();
    if cluster.state_ok == Some(false) {
        out.push(finding(
            "redis-cluster-down",
            Critical,
            "CLUSTER INFO says cluster_state:fail".into(),
            "the cluster refuses commands while some slots have no master: the queues there neither take nor \
             give jobs, and every worker's fetch of them fails",
            "bring the failed masters back or let their replicas take over (CLUSTER NODES shows which); \
             cluster-require-full-coverage no keeps the other slots serving meanwhile",
        ));
    }
    if cluster.slots_served < CLUSTER_SLOTS {
        out.push(finding(
            "redis-cluster-slots-unserved",
            High,
            format!("{} of {CLUSTER_SLOTS} slots have a master", cluster.slots_served),
            "a queue whose slot has no master cannot be written or read",
            "assign the missing slots (redis-cli --cluster fix)",
        ));
    }
    out.push(finding(
        "redis-cluster",
        Info,
        format!(
            "Redis Cluster: {} master(s) serving {} slots; each queue's keys are on one master",
            cluster.masters.len(),
            cluster.slots_served
        ),
        "the queues spread over the masters by their names' slots",
        "nothing to do",
    ));
    for master in &cluster.masters {
        let replicas = master.facts.as_ref().ok().and_then(|f| f.replicas_online);
        if replicas == Some(0) {
            out.push(finding(
                "redis-cluster-master-without-replica",
                Medium,
                format!("master {} has no replica", master.address),
                "no replica can take over when it dies: its queues are down until it is back, and what it \
                 held since its last save is lost",
                "give it a replica (redis-cli --cluster add-node <new> <any node> --cluster-slave \
                 --cluster-master-id <its id>)",
            ));
        }
        match &master.facts {
            Ok(facts) => out.extend(redis_findings(facts, c).into_iter().map(|mut f| {
                f.title = format!("master {}: {}", master.address, f.title);
                f
            })),
            Err(why) => out.push(finding(
                "redis-cluster-master-unreadable",
                High,
                format!("master {} could not be read: {why}", master.address),
                "its settings (eviction, persistence, replicas) cannot be checked, and resq may not reach it",
                "check that resq's host reaches every node's address as the cluster announces it, with the same \
                 login and TLS files",
            )),
        }
    }
    out
}

fn replica_findings(r: &RedisFacts, c: &ConfigFacts) -> Vec<Finding> {
    use Severity::*;
    let mut out = Vec::new();
    let want = c.wait_replicas;
    if want > 0 && r.may_wait == Some(false) {
        let me = r.user.clone().unwrap_or_else(|| "default".into());
        out.push(finding(
            "redis-wait-refused",
            High,
            format!("redis.wait_replicas is {want} but user {me} may not run WAIT"),
            "no write is confirmed on any replica: every enqueue, ack and requeue is made on the master and \
             then reported NotReplicated (the API answers 503 not_replicated)",
            "add +wait to the user's ACL rule (`resq acl` prints rules that have it)",
        ));
    }
    match r.replicas_online {
        Some(online) if want > 0 && online < want => out.push(finding(
            "redis-too-few-replicas",
            High,
            format!("redis.wait_replicas is {want} but the master has {online} replica(s) in sync"),
            "every enqueue, ack and requeue waits redis.wait_timeout_ms for replicas that are not there, then \
             is reported NotReplicated: made on the master, not confirmed (producers get errors, the API 503 \
             not_replicated, workers slow down)",
            "attach replicas (replicaof <master> <port>) until enough are online, or lower redis.wait_replicas \
             (RESQ_REDIS_WAIT_REPLICAS)",
        )),
        Some(online) if want > 0 => out.push(finding(
            "redis-replicas",
            Info,
            format!("{online} replica(s) in sync; each enqueue, ack and requeue waits for {want}"),
            "a job acknowledged to its producer is on a replica before the answer",
            "nothing to do",
        )),
        Some(online) if online > 0 => out.push(finding(
            "redis-replicated-without-wait",
            Info,
            format!("{online} replica(s) in sync, and redis.wait_replicas is 0"),
            "Redis replicates asynchronously: a failover can lose jobs acknowledged just before it, and run \
             again jobs acked just before it",
            "set redis.wait_replicas = 1 (RESQ_REDIS_WAIT_REPLICAS=1) for acknowledgements that survive a \
             failover, at the cost in docs/operations.md",
        )),
        _ => {}
    }
    out
}

/// Redis memory a replay mark takes (measured over 1,003,520 marks, see
/// docs/keys.md), bytes.
pub const MARK_BYTES: f64 = 0.4;
/// The default lifetime of a job, and so of its mark.
pub const DEFAULT_LIFETIME_S: f64 = 7.0 * 86_400.0;

/// What replay marks will hold at `jobs_per_s` (observed), against
/// `maxmemory`: info, or medium above a quarter of it.
pub fn marks_projection(jobs_per_s: f64, window_s: f64, maxmemory: Option<u64>) -> Finding {
    let bytes = jobs_per_s * DEFAULT_LIFETIME_S * MARK_BYTES;
    let mb = bytes / 1_000_000.0;
    let heavy = maxmemory.is_some_and(|max| max > 0 && bytes > max as f64 / 4.0);
    finding(
        "replay-marks-projection",
        if heavy { Severity::Medium } else { Severity::Info },
        format!(
            "replay marks: {jobs_per_s:.1} jobs/s (observed over {window_s:.0} s) x 7 days x 0.4 bytes = about {mb:.1} MB"
        ),
        "each signed job's mark lives until its expiry; this is what the marks hold at this rate",
        "shorten job lifetimes (a type's TTL, EnqueueOptions::ttl, resq enqueue --ttl) or raise maxmemory",
    )
}

/// The findings about resq's own configuration.
pub fn config_findings(c: &ConfigFacts) -> Vec<Finding> {
    use Severity::*;
    let mut out = Vec::new();
    if !c.allow_unsigned.is_empty() {
        let everything = c.allow_unsigned.iter().any(|p| p == "*");
        out.push(finding(
            "unsigned-queues",
            if everything { Critical } else { High },
            format!("queues open to unsigned jobs: {}", c.allow_unsigned.join(", ")),
            "whoever can write to Redis can make workers run any registered class with any valid \
             arguments on these queues",
            "sign every producer (Ruby too: resq enqueue --for-ruby, or the envelope vectors), then \
             remove security.allow_unsigned (RESQ_ALLOW_UNSIGNED)",
        ));
    }
    if c.keys_file_missing {
        out.push(finding(
            "no-keys-file",
            High,
            "no keys file".into(),
            "workers refuse every signed job and producers cannot sign",
            "resq keys generate --out /etc/resq/keys.toml and set security.keys_file (RESQ_KEYS_FILE)",
        ));
    }
    if let Some(mode) = c.keys_file_mode {
        if mode & 0o077 != 0 {
            out.push(finding(
                "keys-file-readable",
                Critical,
                format!("the keys file's mode is {mode:o}: others can read it"),
                "whoever reads it can sign jobs as resq (and resq refuses to load it)",
                "chmod 600 the keys file, owned by the user resq runs as",
            ));
        }
    }
    if !c.unscoped_keys.is_empty() {
        out.push(finding(
            "unscoped-signing-keys",
            Medium,
            format!(
                "signing keys for any class on any queue: {}",
                c.unscoped_keys.join(", ")
            ),
            "a producer holding one can sign every job type, not only its own",
            "give each producer its own key scoped to its classes and queues (classes = [...], \
             queues = [...] in the keys file)",
        ));
    }
    if c.serve_public && !c.serve_tls {
        out.push(if c.serve_plain_allowed {
            finding(
                "serve-plain-behind-proxy",
                Medium,
                "resq serve listens off loopback in plain HTTP (api.allow_plain_http)".into(),
                "safe only if a TLS proxy is the sole way in: otherwise bearer tokens, passwords and \
                 session cookies cross the network in clear",
                "api.tls_cert_file and api.tls_key_file, or bind it to loopback behind the proxy",
            )
        } else {
            finding(
                "serve-public-plain",
                High,
                "resq serve is configured off loopback without TLS".into(),
                "bearer tokens, passwords and session cookies would cross the network in clear (resq \
                 serve refuses to start so)",
                "api.tls_cert_file and api.tls_key_file",
            )
        });
    }
    if !c.tokens_without_expiry.is_empty() {
        out.push(finding(
            "tokens-never-expire",
            Low,
            format!("API tokens that never expire: {}", c.tokens_without_expiry.join(", ")),
            "a leaked token works until someone notices",
            "resq token rotate ID (and create tokens with --expires 90d)",
        ));
    }
    if !c.tokens_unlimited.is_empty() {
        out.push(finding(
            "tokens-unlimited",
            Medium,
            format!(
                "API tokens allowed more than 10,000 jobs a second: {}",
                c.tokens_unlimited.join(", ")
            ),
            "a leaked token can flood the queues",
            "create tokens with the rate their producer needs (--rate, --burst)",
        ));
    }
    if c.isolation_off && !c.classes_without_timeout.is_empty() {
        out.push(finding(
            "no-isolation-no-timeout",
            Medium,
            format!(
                "job types with no timeout of their own, run in the worker's process: {}",
                c.classes_without_timeout.join(", ")
            ),
            "a job that blocks a thread (a C library, a busy loop) cannot be stopped by the worker's \
             default timeout, and holds its slot until the worker restarts",
            "give each type a TIMEOUT, or run them with [isolation] mode = \"process\"",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use resq_redis::facts::AclUser;
    use std::collections::BTreeMap;

    fn well_configured() -> (RedisFacts, ConfigFacts) {
        let config: BTreeMap<String, String> = [
            ("bind", "127.0.0.1 -::1"),
            ("protected-mode", "yes"),
            ("tls-port", "0"),
            ("save", "3600 1"),
            ("appendonly", "yes"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let redis = RedisFacts {
            version: Some((7, 0, 15)),
            user: Some("resq".into()),
            maxmemory: Some(1 << 30),
            maxmemory_policy: Some("noeviction".into()),
            aof_enabled: Some(true),
            config: Some(config),
            users: Some(vec![
                AclUser {
                    name: "default".into(),
                    enabled: false,
                    nopass: true,
                },
                AclUser {
                    name: "resq".into(),
                    enabled: true,
                    nopass: false,
                },
            ]),
            dangerous: resq_redis::facts::DANGEROUS.iter().map(|c| (*c, Some(false))).collect(),
            replicas_online: Some(0),
            may_wait: Some(true),
        };
        let config = ConfigFacts {
            redis_loopback: true,
            keys_file_mode: Some(0o600),
            ..ConfigFacts::default()
        };
        (redis, config)
    }

    /// A healthy cluster of well-configured masters has nothing above
    /// info; each fault of the cluster is one finding of its own, and a
    /// master's own fault is named with its address.
    #[test]
    fn cluster_findings_judge_the_cluster_and_each_master() {
        use resq_redis::facts::ClusterMaster;
        let (redis, config) = well_configured();
        let master = |port: u16, replicas: u32| ClusterMaster {
            address: format!("127.0.0.1:{port}"),
            facts: Ok(RedisFacts {
                replicas_online: Some(replicas),
                ..redis.clone()
            }),
        };
        let healthy = ClusterFacts {
            state_ok: Some(true),
            slots_served: CLUSTER_SLOTS,
            masters: vec![master(7000, 1), master(7001, 1), master(7002, 1)],
        };
        let above = |f: &[Finding]| -> Vec<&'static str> {
            f.iter()
                .filter(|f| f.severity > Severity::Info)
                .map(|f| f.code)
                .collect()
        };
        let found = cluster_findings(&healthy, &config);
        assert!(above(&found).is_empty(), "{found:?}");
        assert!(found.iter().any(|f| f.code == "redis-cluster"));

        let mut evicting = redis.clone();
        evicting.maxmemory_policy = Some("allkeys-lru".into());
        let cases: Vec<(&str, ClusterFacts, Vec<&str>)> = vec![
            (
                "down",
                ClusterFacts {
                    state_ok: Some(false),
                    ..healthy.clone()
                },
                vec!["redis-cluster-down"],
            ),
            (
                "slots unserved",
                ClusterFacts {
                    slots_served: 10_000,
                    ..healthy.clone()
                },
                vec!["redis-cluster-slots-unserved"],
            ),
            (
                "a master without a replica",
                ClusterFacts {
                    masters: vec![master(7000, 1), master(7001, 0)],
                    ..healthy.clone()
                },
                vec!["redis-cluster-master-without-replica"],
            ),
            (
                "a master that cannot be read",
                ClusterFacts {
                    masters: vec![ClusterMaster {
                        facts: Err("refused".into()),
                        ..master(7000, 1)
                    }],
                    ..healthy.clone()
                },
                vec!["redis-cluster-master-unreadable"],
            ),
        ];
        for (what, cluster, want) in cases {
            assert_eq!(above(&cluster_findings(&cluster, &config)), want, "{what}");
        }
        let one_evicts = ClusterFacts {
            masters: vec![
                master(7000, 1),
                ClusterMaster {
                    facts: Ok(RedisFacts {
                        replicas_online: Some(1),
                        ..evicting
                    }),
                    ..master(7001, 1)
                },
            ],
            ..healthy
        };
        let found = cluster_findings(&one_evicts, &config);
        let named: Vec<&Finding> = found.iter().filter(|f| f.severity > Severity::Info).collect();
        assert!(
            !named.is_empty() && named.iter().all(|f| f.title.starts_with("master 127.0.0.1:7001: ")),
            "{found:?}"
        );
    }

    fn codes(r: &RedisFacts, c: &ConfigFacts) -> Vec<(&'static str, Severity)> {
        redis_findings(r, c)
            .into_iter()
            .chain(config_findings(c))
            .filter(|f| f.severity > Severity::Info)
            .map(|f| (f.code, f.severity))
            .collect()
    }

    #[test]
    fn a_well_configured_setup_has_nothing_above_info() {
        let (r, c) = well_configured();
        assert_eq!(codes(&r, &c), vec![]);
    }

    #[test]
    fn each_unsafe_setting_is_one_finding() {
        type Change = fn(&mut RedisFacts, &mut ConfigFacts);
        let table: Vec<(Change, &str, Severity)> = vec![
            (|r, _| r.version = Some((6, 2, 14)), "redis-too-old", Severity::High),
            (
                |r, _| r.users.as_mut().unwrap()[1].nopass = true,
                "redis-no-password",
                Severity::Critical,
            ),
            (
                |r, c| {
                    r.users = None;
                    c.redis_anonymous = true;
                },
                "redis-no-password",
                Severity::Critical,
            ),
            (
                |r, _| r.users.as_mut().unwrap()[0].enabled = false,
                "none",
                Severity::Info,
            ),
            (
                |r, _| {
                    r.users.as_mut().unwrap()[0] = AclUser {
                        name: "default".into(),
                        enabled: true,
                        nopass: false,
                    }
                },
                "redis-default-user-on",
                Severity::Low,
            ),
            (
                |r, _| {
                    let c = r.config.as_mut().unwrap();
                    c.insert("bind".into(), "0.0.0.0".into());
                    c.insert("protected-mode".into(), "no".into());
                },
                "redis-exposed",
                Severity::High,
            ),
            (
                |r, _| {
                    r.config.as_mut().unwrap().insert("bind".into(), "10.0.0.5".into());
                },
                "redis-no-tls",
                Severity::High,
            ),
            (|_, c| c.redis_loopback = false, "redis-url-plain", Severity::High),
            (
                |r, _| r.maxmemory_policy = Some("allkeys-lru".into()),
                "redis-evicts",
                Severity::Critical,
            ),
            (|r, _| r.maxmemory = Some(0), "redis-no-maxmemory", Severity::Medium),
            (
                |r, _| {
                    r.aof_enabled = Some(false);
                    r.config.as_mut().unwrap().insert("save".into(), "".into());
                },
                "redis-no-persistence",
                Severity::High,
            ),
            (
                |r, _| r.aof_enabled = Some(false),
                "redis-snapshots-only",
                Severity::Low,
            ),
            (
                |r, _| r.dangerous[0].1 = Some(true),
                "redis-dangerous-commands",
                Severity::High,
            ),
            (
                |_, c| c.allow_unsigned = vec!["legacy".into()],
                "unsigned-queues",
                Severity::High,
            ),
            (
                |_, c| c.allow_unsigned = vec!["*".into()],
                "unsigned-queues",
                Severity::Critical,
            ),
            (
                |_, c| c.keys_file_mode = Some(0o644),
                "keys-file-readable",
                Severity::Critical,
            ),
            (
                |_, c| {
                    c.keys_file_mode = None;
                    c.keys_file_missing = true;
                },
                "no-keys-file",
                Severity::High,
            ),
            (
                |_, c| c.unscoped_keys = vec!["k1".into()],
                "unscoped-signing-keys",
                Severity::Medium,
            ),
            (|_, c| c.serve_public = true, "serve-public-plain", Severity::High),
            (
                |_, c| {
                    c.serve_public = true;
                    c.serve_plain_allowed = true;
                },
                "serve-plain-behind-proxy",
                Severity::Medium,
            ),
            (
                |_, c| {
                    c.serve_public = true;
                    c.serve_tls = true;
                },
                "none",
                Severity::Info,
            ),
            (
                |_, c| c.tokens_without_expiry = vec!["t1".into()],
                "tokens-never-expire",
                Severity::Low,
            ),
            (
                |_, c| c.tokens_unlimited = vec!["t1".into()],
                "tokens-unlimited",
                Severity::Medium,
            ),
            (
                |_, c| {
                    c.isolation_off = true;
                    c.classes_without_timeout = vec!["Spin".into()];
                },
                "no-isolation-no-timeout",
                Severity::Medium,
            ),
            (|_, c| c.wait_replicas = 1, "redis-too-few-replicas", Severity::High),
            (
                |r, c| {
                    c.wait_replicas = 2;
                    r.replicas_online = Some(1);
                },
                "redis-too-few-replicas",
                Severity::High,
            ),
            (
                |r, c| {
                    c.wait_replicas = 1;
                    r.replicas_online = Some(1);
                },
                "none",
                Severity::Info,
            ),
            (
                |r, c| {
                    c.wait_replicas = 1;
                    r.replicas_online = Some(1);
                    r.may_wait = Some(false);
                },
                "redis-wait-refused",
                Severity::High,
            ),
            // Replicas and no wait: worth knowing, not above info.
            (|r, _| r.replicas_online = Some(2), "none", Severity::Info),
            // Unknown (INFO or DRYRUN refused): not judged.
            (
                |r, c| {
                    c.wait_replicas = 1;
                    r.replicas_online = None;
                    r.may_wait = None;
                },
                "none",
                Severity::Info,
            ),
        ];
        for (change, code, severity) in table {
            let (mut r, mut c) = well_configured();
            change(&mut r, &mut c);
            let mut got = codes(&r, &c);
            // Bound to every address, it is also reachable without TLS.
            got.retain(|(c, _)| code != "redis-exposed" || *c != "redis-no-tls");
            if code == "none" {
                assert_eq!(got, vec![], "{code}");
            } else {
                assert_eq!(got, vec![(code, severity)], "{code}");
            }
        }
    }

    #[test]
    fn the_marks_projection_follows_the_formula() {
        let f = marks_projection(100.0, 60.0, None);
        // 100 jobs/s x 604,800 s x 0.4 B = 24.2 MB (docs/keys.md: about 24 MB).
        assert!(f.title.contains("about 24.2 MB"), "{}", f.title);
        assert_eq!(f.severity, Severity::Info);
        assert_eq!(
            marks_projection(1_000.0, 60.0, Some(512 << 20)).severity,
            Severity::Medium
        );
    }

    #[test]
    fn the_exit_code_follows_the_worst() {
        assert_eq!(Severity::Info.exit_code(), 0);
        assert_eq!(Severity::Medium.exit_code(), 3);
        assert_eq!(Severity::Critical.exit_code(), 4);
    }
}
