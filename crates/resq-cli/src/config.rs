//! Configuration: `resq.toml` (or `--config`/`RESQ_CONFIG`) plus `RESQ_*`
//! environment overrides. Secrets come from a file or the environment, never
//! from the command line, and are never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use resq::worker::ranges::check;
use resq::PayloadLimits;
use resq_redis::{ClusterConfig, RedisConfig, SentinelConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// The file's shape. Unknown keys are refused, so a typo is an error, not a
/// silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Resque's key namespace (default `resque`).
    pub namespace: Option<String>,
    #[serde(default)]
    pub redis: RedisSection,
    #[serde(default)]
    pub worker: WorkerSection,
    #[serde(default)]
    pub limits: Option<PayloadLimits>,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub isolation: IsolationSection,
    /// Recurring jobs (`[[cron]]` tables), fired by every worker, each tick once.
    #[serde(default)]
    pub cron: Vec<CronSection>,
    #[serde(default)]
    pub failures: FailuresSection,
    #[serde(default)]
    pub ruby: RubySection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub dashboard: DashboardSection,
    #[serde(default)]
    pub alerts: AlertsSection,
}

/// `[alerts]`: the rules `resq serve` evaluates (one replica at a time)
/// and where it sends them. Every value is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// URLs that get each notice as a JSON POST.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// A file holding the key webhooks are signed with (HMAC-SHA256).
    pub webhook_secret_file: Option<std::path::PathBuf>,
    pub interval_s: Option<u64>,
    pub repeat_s: Option<u64>,
    pub queue_depth: Option<u64>,
    pub oldest_job_s: Option<u64>,
    pub failure_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
    pub flood_multiple: Option<f64>,
    pub flood_min: Option<u64>,
    /// Pause a flooded queue (audited).
    #[serde(default)]
    pub pause_on_flood: bool,
}

/// `[dashboard]`: the web dashboard `resq serve` serves beside the API.
/// Every value is optional; the defaults are safe (see docs/dashboard.md).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// No forms and no action routes: a dashboard to look at only.
    #[serde(default)]
    pub read_only: bool,
    /// Cookies `__Host-` and Secure. Default: on with HTTPS, or with
    /// api.allow_plain_http (a TLS proxy in front).
    pub secure_cookies: Option<bool>,
    /// Minutes without a request before a session ends (default 30).
    pub idle_timeout_min: Option<u64>,
    /// Hours after login a session ends whatever happens (default 12).
    pub absolute_timeout_h: Option<u64>,
    /// Argument field names (parts of) that are masked; replaces the default list.
    pub masked_fields: Option<Vec<String>>,
    /// Seconds between the charts' samples (default 10).
    pub sample_interval_s: Option<u64>,
}

/// `[api]`: the HTTP enqueue API (`resq serve`). Every value is optional;
/// the defaults are safe (see docs/api.md).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// PEM certificate chain and key: serve HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Plain HTTP on an address other than loopback (behind a TLS proxy).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Proxies whose X-Forwarded-For is believed (IP addresses).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Origins a browser may call the API from (none: no CORS headers).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    pub max_bulk_bytes: Option<usize>,
    pub max_bulk_jobs: Option<usize>,
    /// Failed authentications a client IP may make a minute (a burst of as many).
    pub auth_failures_per_minute: Option<u32>,
    /// Limits shared by every token: class or queue name -> "100/s".
    #[serde(default)]
    pub class_rates: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub queue_rates: std::collections::BTreeMap<String, String>,
    /// Adaptive throttling: a window above `surge_multiple` times a token's
    /// baseline throttles it for `surge_throttle_s`.
    pub surge_multiple: Option<f64>,
    pub surge_window_s: Option<u64>,
    pub surge_min_windows: Option<u32>,
    pub surge_floor: Option<f64>,
    pub surge_throttle_s: Option<u64>,
    /// Refuse (503) above this share of Redis's maxmemory (0.5 to 1).
    pub memory_watermark: Option<f64>,
    pub idempotency_window_s: Option<u64>,
    /// Entries the audit stream keeps (about).
    pub audit_max: Option<usize>,
    /// Connections `resq serve` holds at once (more wait to be accepted).
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_s: Option<u64>,
}

/// `[ruby]`: sharing a Redis with a Ruby Resque fleet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubySection {
    /// Queues Ruby workers serve: `resq enqueue --for-ruby` pushes
    /// unsigned jobs in Resque's form onto these, and no others.
    #[serde(default)]
    pub queues: Vec<String>,
}

/// `[failures]`: the failed list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresSection {
    /// Most records the failed list keeps; the oldest are trimmed (and
    /// counted in `resq:stat:failed-trimmed`). Default 100,000.
    pub max: Option<u64>,
}

/// Every key resq.toml accepts, by table (`""` is the top level). Error
/// messages may quote these words, and nothing else from the file.
pub const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "namespace",
            "redis",
            "worker",
            "limits",
            "security",
            "isolation",
            "cron",
            "failures",
            "ruby",
            "api",
            "dashboard",
            "alerts",
        ],
    ),
    (
        "alerts",
        &[
            "webhooks",
            "webhook_secret_file",
            "interval_s",
            "repeat_s",
            "queue_depth",
            "oldest_job_s",
            "failure_ratio",
            "memory_ratio",
            "flood_multiple",
            "flood_min",
            "pause_on_flood",
        ],
    ),
    (
        "dashboard",
        &[
            "read_only",
            "secure_cookies",
            "idle_timeout_min",
            "absolute_timeout_h",
            "masked_fields",
            "sample_interval_s",
        ],
    ),
    (
        "api",
        &[
            "listen",
            "tls_cert_file",
            "tls_key_file",
            "allow_plain_http",
            "trusted_proxies",
            "cors_origins",
            "max_bulk_bytes",
            "max_bulk_jobs",
            "auth_failures_per_minute",
            "class_rates",
            "queue_rates",
            "surge_multiple",
            "surge_window_s",
            "surge_min_windows",
            "surge_floor",
            "surge_throttle_s",
            "memory_watermark",
            "idempotency_window_s",
            "audit_max",
            "max_connections",
            "header_timeout_s",
        ],
    ),
    (
        "redis",
        &[
            "url",
            "username",
            "password_file",
            "password_env",
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "response_timeout_ms",
            "mode",
            "master_name",
            "sentinels",
            "sentinel_username",
            "sentinel_password_file",
            "sentinel_password_env",
            "nodes",
            "wait_replicas",
            "wait_timeout_ms",
        ],
    ),
    (
        "worker",
        &[
            "queues",
            "concurrency",
            "liveness_ttl_ms",
            "reap_interval_ms",
            "heartbeat_interval_s",
            "poll_max_ms",
            "default_timeout_ms",
            "sweep_interval_ms",
            "max_recoveries",
        ],
    ),
    (
        "limits",
        &["max_bytes", "max_depth", "max_string_bytes", "max_array_len"],
    ),
    (
        "security",
        &["keys_file", "allow_unsigned", "allow_unsigned_everything"],
    ),
    (
        "isolation",
        &["mode", "children", "memory_limit_mb", "cpu_limit_ms", "jobs_per_child"],
    ),
    (
        "cron",
        &[
            "name",
            "schedule",
            "class",
            "args",
            "queue",
            "time_zone",
            "missed_grace_s",
        ],
    ),
    ("failures", &["max"]),
    ("ruby", &["queues"]),
];

/// The values of the config's enums, which messages may quote too.
const ENUM_WORDS: &[&str] = &["none", "process", "standalone", "sentinel", "cluster"];

/// Every word of the config format itself.
fn known_words() -> Vec<&'static str> {
    KEYS.iter()
        .flat_map(|(table, keys)| std::iter::once(*table).chain(keys.iter().copied()))
        .chain(ENUM_WORDS.iter().copied())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Most records the failed list keeps unless `failures.max` says.
pub const DEFAULT_FAILURES_MAX: u64 = 100_000;
const FAILURES_MAX: std::ops::RangeInclusive<u64> = 1..=10_000_000;
const RESPONSE_TIMEOUT: std::ops::RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(600);
/// Replicas an acknowledged write waits for: a master with more than 16
/// replicas to wait for is not a deployment this was tried on.
const WAIT_REPLICAS: std::ops::RangeInclusive<u32> = 0..=16;
/// How long the master waits for them, per write. Never 0 (`WAIT n 0`
/// blocks until they answer, however long), at most a minute.
const WAIT_TIMEOUT: std::ops::RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// `redis.wait_timeout_ms` unless set.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1000;

/// One `[[cron]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSection {
    pub name: String,
    /// Five fields (minute hour day month weekday), six with seconds first,
    /// or `@hourly`, `@daily`, ...
    pub schedule: String,
    pub class: String,
    /// A JSON-like array (Resque's args) or one table (shorthand for `[table]`).
    pub args: Option<serde_json::Value>,
    pub queue: Option<String>,
    /// IANA zone whose wall clock the schedule follows (default UTC).
    pub time_zone: Option<String>,
    /// How late (seconds) the latest missed tick may still fire (default 300).
    pub missed_grace_s: Option<u64>,
}

impl CronSection {
    pub fn entry(&self) -> Result<resq::cron::CronEntry, resq::cron::CronError> {
        let args = match &self.args {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items.clone(),
            Some(one) => vec![one.clone()],
        };
        let mut entry = resq::cron::CronEntry::new(&self.name, &self.schedule, &self.class, args)?;
        if let Some(zone) = &self.time_zone {
            entry = entry.with_time_zone(zone)?;
        }
        if let Some(queue) = &self.queue {
            entry = entry.with_queue(queue)?;
        }
        if let Some(s) = self.missed_grace_s {
            entry = entry.with_missed_grace(Duration::from_secs(s));
        }
        Ok(entry)
    }
}

/// `[isolation]`: run jobs in child processes (`resq worker --isolation process`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationSection {
    /// `none` (jobs are tasks in the worker, cancelled at their timeout) or
    /// `process` (jobs run in child processes, killed at their timeout).
    #[serde(default)]
    pub mode: IsolationMode,
    /// Child processes running jobs (default one per concurrency slot);
    /// fewer keeps jobs ready for the next free child.
    pub children: Option<usize>,
    /// Address-space limit of each child, MiB (default 1024 in process mode).
    pub memory_limit_mb: Option<u64>,
    /// CPU time one job may use, ms (rounded up to whole seconds).
    pub cpu_limit_ms: Option<u64>,
    /// Replace a child after this many jobs (1 = a fresh process per job).
    pub jobs_per_child: Option<u32>,
}

/// Where jobs run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IsolationMode {
    #[default]
    None,
    Process,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// The keys file (`resq keys generate` writes one).
    pub keys_file: Option<PathBuf>,
    /// Queues (globs) whose jobs may be unsigned, while Ruby producers migrate.
    #[serde(default)]
    pub allow_unsigned: Vec<String>,
    /// Lets `allow_unsigned` name every queue (`*`): anyone who can write
    /// to Redis can then run any registered class. Its own opt-in, and loud.
    #[serde(default)]
    pub allow_unsigned_everything: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    pub url: Option<String>,
    pub username: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub response_timeout_ms: Option<u64>,
    /// `standalone` (default: `url` is the server), `sentinel` (the
    /// sentinels name the master; see docs/operations.md, "Sentinel mode")
    /// or `cluster` (Redis Cluster, from `nodes`; "Cluster mode").
    pub mode: Option<RedisMode>,
    /// Sentinel mode: the name the sentinels monitor the master by.
    pub master_name: Option<String>,
    /// Sentinel mode: each sentinel's `host:port`.
    pub sentinels: Option<Vec<String>>,
    /// Sentinel mode: an ACL user on the sentinels.
    pub sentinel_username: Option<String>,
    /// Sentinel mode: a file holding the sentinels' password.
    pub sentinel_password_file: Option<PathBuf>,
    /// Sentinel mode: the name of an environment variable holding it.
    pub sentinel_password_env: Option<String>,
    /// Cluster mode: some of the cluster's nodes, `host:port` each.
    pub nodes: Option<Vec<String>>,
    /// Durable acknowledgements: enqueues, acks and requeues return once
    /// this many replicas hold the write (`WAIT`); 0 (the default) is off.
    pub wait_replicas: Option<u32>,
    /// How long each of those writes waits for them (default 1000 ms).
    pub wait_timeout_ms: Option<u64>,
}

/// How resq finds its Redis.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One server, at `redis.url`.
    #[default]
    Standalone,
    /// The master that Redis Sentinel names, followed through failovers.
    Sentinel,
    /// Redis Cluster: each queue's keys on the master of its slot.
    Cluster,
}

impl RedisMode {
    fn name(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    pub queues: Option<String>,
    pub concurrency: Option<usize>,
    pub liveness_ttl_ms: Option<u64>,
    pub reap_interval_ms: Option<u64>,
    pub heartbeat_interval_s: Option<u64>,
    pub poll_max_ms: Option<u64>,
    /// Cancel a run after this long when the job and its type set no timeout.
    pub default_timeout_ms: Option<u64>,
    /// How often expired jobs are swept out of the queues (one worker per interval).
    pub sweep_interval_ms: Option<u64>,
    /// How many times a job in flight when its worker died is put back
    /// before the next death records it as `poison`.
    pub max_recoveries: Option<u32>,
}

/// A configuration problem: what, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}\n  fix the path, or unset RESQ_CONFIG / --config")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid resq config: {problem}")]
    Parse {
        path: PathBuf,
        problem: resq::toml_error::TomlProblem,
    },
    #[error("{var} is not {expected}")]
    BadEnv { var: &'static str, expected: &'static str },
    #[error("{var} is set but empty: {instead}")]
    EmptyEnv { var: &'static str, instead: &'static str },
    #[error("{0} (see the configuration section of docs/operations.md)")]
    OutOfRange(#[from] resq::worker::ranges::OutOfRange),
    #[error(
        "cannot read the Redis password file {path}: {source}\n  check redis.password_file / RESQ_REDIS_PASSWORD_FILE"
    )]
    PasswordFile { path: PathBuf, source: std::io::Error },
    #[error("redis.password_env names {var}, but that environment variable is not set")]
    PasswordEnvMissing { var: String },
    #[error(
        "cannot read the sentinel password file {path}: {source}\n  check redis.sentinel_password_file / \
         RESQ_REDIS_SENTINEL_PASSWORD_FILE"
    )]
    SentinelPasswordFile { path: PathBuf, source: std::io::Error },
    #[error("redis.sentinel_password_env names {var}, but that environment variable is not set")]
    SentinelPasswordEnvMissing { var: String },
    #[error(
        "redis.mode is sentinel but no master name is set: set redis.master_name (RESQ_REDIS_MASTER_NAME) to the \
         name the sentinels monitor the master by"
    )]
    SentinelNoMasterName,
    #[error(
        "redis.master_name is not a name the sentinels could know (1 to 128 letters, digits, '_', '-', '.' or ':')"
    )]
    BadMasterName,
    #[error(
        "redis.mode is sentinel but no sentinel is listed: set redis.sentinels (RESQ_REDIS_SENTINELS, \
         comma-separated) to their host:port"
    )]
    SentinelNoSentinels,
    #[error("{key} entry #{n} is not host:port (a host name or IP address, and a port from 1 to 65535)")]
    BadSentinel { key: &'static str, n: usize },
    #[error(
        "in sentinel mode redis.url (RESQ_REDIS_URL) must be a redis:// or rediss:// URL: only its scheme, user \
         and database are used, the sentinels name the host and port"
    )]
    SentinelUrl,
    #[error(
        "{key} is set, but redis.mode is standalone (the default): set redis.mode = \"sentinel\" \
         (RESQ_REDIS_MODE=sentinel) to use the sentinels, or remove it"
    )]
    SentinelSettingInStandalone { key: &'static str },
    #[error(
        "{key} is set, but redis.mode is {mode}: it belongs to {wanted} mode (set redis.mode = \"{wanted}\", \
         RESQ_REDIS_MODE={wanted}), or remove it"
    )]
    SettingOfAnotherMode {
        key: &'static str,
        mode: &'static str,
        wanted: &'static str,
    },
    #[error(
        "redis.mode is cluster but no node is listed: set redis.nodes (RESQ_REDIS_NODES, comma-separated) to \
         the host:port of some of the cluster's nodes"
    )]
    ClusterNoNodes,
    #[error("{key} entry #{n} is not host:port (a host name or IP address, and a port from 1 to 65535)")]
    BadNode { key: &'static str, n: usize },
    #[error(
        "in cluster mode redis.url (RESQ_REDIS_URL) must be a redis:// or rediss:// URL with no database but 0: \
         only its scheme and user are used, each node's host and port replace its own"
    )]
    ClusterUrl,
    #[error(
        "redis.wait_timeout_ms (RESQ_REDIS_WAIT_TIMEOUT_MS) is {wait_ms} ms, not shorter than \
         redis.response_timeout_ms ({response_ms} ms): a write waiting for its replicas would time out on the \
         client first, its outcome unknown. Shorten the wait or lengthen the response timeout"
    )]
    WaitOutlastsResponse { wait_ms: u64, response_ms: u64 },
    #[error(
        "redis.wait_timeout_ms (RESQ_REDIS_WAIT_TIMEOUT_MS) is set, but redis.wait_replicas is not: no write \
         waits for replicas. Set redis.wait_replicas (RESQ_REDIS_WAIT_REPLICAS) to how many replicas must hold \
         each acknowledged write, or remove the timeout"
    )]
    WaitTimeoutWithoutReplicas,
    #[error("no Redis configured: set RESQ_REDIS_URL (e.g. redis://127.0.0.1:6379/0) or redis.url in resq.toml")]
    NoRedis,
    #[error("the namespace is not allowed: use letters, digits, '_', '-' or '.'")]
    BadNamespace,
    #[error(
        "no keys file: every job is signed, so resq needs keys. Make them with\n  \
         resq keys generate --out /etc/resq/keys.toml\n\
         and set RESQ_KEYS_FILE (or security.keys_file in resq.toml)"
    )]
    NoKeys,
    #[error("{0}")]
    Keys(#[from] resq::KeyringError),
    #[error(
        "security.allow_unsigned entry #{0} is not a queue name or a glob of one (letters, digits, '_', '-', \
         '.', with * ? [...] for globs)"
    )]
    BadAllowUnsigned(usize),
    #[error(
        "security.allow_unsigned entry #{0} opens every queue to unsigned jobs: anyone who can write to Redis \
         could then run any registered class. Name the queues Ruby still feeds; if you mean every queue, \
         also set security.allow_unsigned_everything = true (RESQ_ALLOW_UNSIGNED_EVERYTHING=true)"
    )]
    UnsignedEverywhere(usize),
    #[error("ruby.queues entry #{0} is not a queue name (1 to 128 letters, digits, '_', '-' or '.')")]
    BadRubyQueue(usize),
    #[error("{0}")]
    Cron(resq::cron::CronError),
}

/// Everything a command needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub namespace: String,
    /// `None` when neither the file nor the environment names a Redis.
    pub redis: Option<RedisConfig>,
    pub worker: WorkerSection,
    pub limits: PayloadLimits,
    pub keys_file: Option<PathBuf>,
    pub allow_unsigned: Vec<glob::Pattern>,
    pub isolation: IsolationSection,
    /// Recurring jobs, checked (expression, zone, names) when loaded.
    pub cron: Vec<resq::cron::CronEntry>,
    /// Most records the failed list keeps.
    pub failures_max: u64,
    /// Queues Ruby workers serve (`resq enqueue --for-ruby`).
    pub ruby_queues: Vec<String>,
    /// `[api]`, checked when `resq serve` starts.
    pub api: ApiSection,
    /// `[dashboard]`, checked when `resq serve` starts.
    pub dashboard: DashboardSection,
    /// `[alerts]`, checked when `resq serve` starts.
    pub alerts: AlertsSection,
    /// Environment variables that hold secrets resq reads (beyond `RESQ_*`),
    /// kept from job child processes.
    pub secret_env: Vec<String>,
    /// Where the file came from, for messages.
    pub source: Option<PathBuf>,
    /// Things worth a warning that do not stop anything (a `RESQ_*`
    /// variable resq does not know: a typo must not be silent).
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn redis(&self) -> Result<&RedisConfig, ConfigError> {
        self.redis.as_ref().ok_or(ConfigError::NoRedis)
    }

    /// Loads the keys file (refusing one that others can read).
    pub fn keyring(&self) -> Result<std::sync::Arc<resq::Keyring>, ConfigError> {
        let path = self.keys_file.as_ref().ok_or(ConfigError::NoKeys)?;
        Ok(std::sync::Arc::new(resq::Keyring::load(path)?))
    }
}

/// Reads the environment through a function, so tests can give their own.
pub trait Env {
    /// The variable's value; an empty one counts as unset.
    fn var(&self, name: &str) -> Option<String>;
    /// True when the variable is set, even to nothing.
    fn is_set(&self, name: &str) -> bool {
        self.var(name).is_some()
    }
    /// The names of every `RESQ_*` variable set.
    fn resq_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn is_set(&self, name: &str) -> bool {
        std::env::var_os(name).is_some()
    }
    fn resq_names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| name.starts_with("RESQ_"))
            .collect()
    }
}

/// Every `RESQ_*` variable resq reads (and the ones it sets for itself).
pub const ENV_VARS: &[&str] = &[
    "RESQ_CONFIG",
    "RESQ_NAMESPACE",
    "RESQ_REDIS_URL",
    "RESQ_REDIS_USERNAME",
    "RESQ_REDIS_PASSWORD",
    "RESQ_REDIS_PASSWORD_FILE",
    "RESQ_REDIS_CA_FILE",
    "RESQ_REDIS_CLIENT_CERT_FILE",
    "RESQ_REDIS_CLIENT_KEY_FILE",
    "RESQ_REDIS_MODE",
    "RESQ_REDIS_MASTER_NAME",
    "RESQ_REDIS_SENTINELS",
    "RESQ_REDIS_SENTINEL_USERNAME",
    "RESQ_REDIS_SENTINEL_PASSWORD",
    "RESQ_REDIS_SENTINEL_PASSWORD_FILE",
    "RESQ_REDIS_WAIT_REPLICAS",
    "RESQ_REDIS_WAIT_TIMEOUT_MS",
    "RESQ_QUEUES",
    "RESQ_CONCURRENCY",
    "RESQ_ISOLATION",
    "RESQ_CHILDREN",
    "RESQ_MAX_RECOVERIES",
    "RESQ_METRICS_BIND",
    "RESQ_KEYS_FILE",
    "RESQ_ALLOW_UNSIGNED",
    "RESQ_ALLOW_UNSIGNED_EVERYTHING",
    "RESQ_FAILURES_MAX",
    "RESQ_RUBY_QUEUES",
    "RESQ_LOG",
    // Set by resq for its own processes.
    "RESQ_TITLED",
    "RESQ_CHILD",
    "RESQ_CHILD_PARENT",
    "RESQ_CHILD_MEMORY_BYTES",
];

/// Loads the file (`explicit`, else `RESQ_CONFIG`, else `./resq.toml` if it
/// exists) and applies the environment on top.
pub fn load(explicit: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| env.var("RESQ_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("resq.toml")).filter(|p| p.exists()));
    let file = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: p.clone(),
                problem: resq::toml_error::describe(&text, &e, &known_words()),
            })?
        }
        None => FileConfig::default(),
    };
    resolve(file, path, env)
}

fn parse_env<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    match env.var(var) {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::BadEnv { var, expected }),
    }
}

fn resolve(file: FileConfig, source: Option<PathBuf>, env: &dyn Env) -> Result<Settings, ConfigError> {
    let FileConfig {
        namespace,
        redis,
        mut worker,
        limits,
        security,
        mut isolation,
        cron,
        failures,
        ruby,
        api,
        dashboard,
        alerts,
    } = file;
    let cron = cron
        .iter()
        .map(CronSection::entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConfigError::Cron)?;
    // Names key each entry's mark in Redis: two entries may not share one.
    resq::cron::check_unique_names(&cron).map_err(ConfigError::Cron)?;
    let namespace = env
        .var("RESQ_NAMESPACE")
        .or(namespace)
        .unwrap_or_else(|| "resque".to_string());
    let ns_ok = !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ns_ok {
        return Err(ConfigError::BadNamespace);
    }

    let redis_password_env = redis.password_env.clone();
    let sentinel_password_env = redis.sentinel_password_env.clone();
    let sentinel = sentinel(&redis, env)?;
    let cluster = cluster(&redis, env)?;
    let wait = wait_replicas(&redis, env)?;
    let url = match (env.var("RESQ_REDIS_URL").or(redis.url), &sentinel, &cluster) {
        (Some(url), Some(_), _) if !resq_redis::sentinel::url_is_usable(&url) => return Err(ConfigError::SentinelUrl),
        // Only the scheme and database of a URL are used in sentinel mode.
        (None, Some(s), _) => Some(format!("redis://{}/0", s.master_name)),
        (Some(url), _, Some(_)) if !resq_redis::cluster::url_is_usable(&url) => return Err(ConfigError::ClusterUrl),
        // Only the scheme and user of a URL are used in cluster mode.
        (None, _, Some(c)) => c
            .nodes
            .first()
            .map(|(host, port)| format!("redis://{}", resq_redis::sentinel::address(host, *port))),
        (url, _, _) => url,
    };
    let redis = match url {
        None => None,
        Some(url) => {
            let mut c = RedisConfig::new(url);
            c.username = env.var("RESQ_REDIS_USERNAME").or(redis.username);
            c.password = password(&redis.password_file, &redis.password_env, env)?;
            c.ca_file = env.var("RESQ_REDIS_CA_FILE").map(PathBuf::from).or(redis.ca_file);
            c.client_cert_file = env
                .var("RESQ_REDIS_CLIENT_CERT_FILE")
                .map(PathBuf::from)
                .or(redis.client_cert_file);
            c.client_key_file = env
                .var("RESQ_REDIS_CLIENT_KEY_FILE")
                .map(PathBuf::from)
                .or(redis.client_key_file);
            if let Some(ms) = redis.response_timeout_ms {
                c.response_timeout = Duration::from_millis(ms);
                check("redis.response_timeout_ms", c.response_timeout, &RESPONSE_TIMEOUT)?;
            }
            c.sentinel = sentinel;
            c.cluster = cluster;
            if let Some(w) = wait {
                if w.timeout >= c.response_timeout {
                    return Err(ConfigError::WaitOutlastsResponse {
                        wait_ms: w.timeout.as_millis() as u64,
                        response_ms: c.response_timeout.as_millis() as u64,
                    });
                }
            }
            c.wait = wait;
            Some(c)
        }
    };

    if let Some(q) = env.var("RESQ_QUEUES") {
        worker.queues = Some(q);
    } else if env.is_set("RESQ_QUEUES") {
        return Err(ConfigError::EmptyEnv {
            var: "RESQ_QUEUES",
            instead: "unset it to work every queue (*), or name the queues",
        });
    }
    if let Some(n) = parse_env(env, "RESQ_CONCURRENCY", "a whole number such as 16")? {
        worker.concurrency = Some(n);
    }
    if let Some(n) = parse_env(env, "RESQ_CHILDREN", "a whole number such as 8")? {
        isolation.children = Some(n);
    }
    if let Some(n) = parse_env(env, "RESQ_MAX_RECOVERIES", "a whole number such as 3")? {
        worker.max_recoveries = Some(n);
    }
    match env.var("RESQ_ISOLATION").as_deref() {
        None => {}
        Some("none") => isolation.mode = IsolationMode::None,
        Some("process") => isolation.mode = IsolationMode::Process,
        Some(_) => {
            return Err(ConfigError::BadEnv {
                var: "RESQ_ISOLATION",
                expected: "none or process",
            })
        }
    }
    let secret_env = redis_password_env.into_iter().chain(sentinel_password_env).collect();
    let keys_file = env.var("RESQ_KEYS_FILE").map(PathBuf::from).or(security.keys_file);
    let unsigned: Vec<String> = match env.var("RESQ_ALLOW_UNSIGNED") {
        Some(list) => list
            .split(',')
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect(),
        None => security.allow_unsigned,
    };
    let everything_ok = security.allow_unsigned_everything
        || matches!(
            env.var("RESQ_ALLOW_UNSIGNED_EVERYTHING").as_deref(),
            Some("true" | "1" | "yes")
        );
    let allow_unsigned = unsigned
        .iter()
        .enumerate()
        .map(|(i, q)| unsigned_pattern(i + 1, q, everything_ok))
        .collect::<Result<Vec<_>, _>>()?;
    let ruby_queues: Vec<String> = match env.var("RESQ_RUBY_QUEUES") {
        Some(list) => list
            .split(',')
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect(),
        None => ruby.queues,
    };
    for (i, q) in ruby_queues.iter().enumerate() {
        resq::names::check_queue(q).map_err(|_| ConfigError::BadRubyQueue(i + 1))?;
    }
    let failures_max = match parse_env(env, "RESQ_FAILURES_MAX", "a whole number such as 100000")? {
        Some(n) => Some(n),
        None => failures.max,
    }
    .unwrap_or(DEFAULT_FAILURES_MAX);
    check("failures.max", failures_max, &FAILURES_MAX)?;
    check_worker(&worker, &isolation)?;
    let limits = limits.unwrap_or_default();
    resq::worker::ranges::check_limits(&limits)?;
    Ok(Settings {
        namespace,
        redis,
        worker,
        limits,
        keys_file,
        allow_unsigned,
        isolation,
        cron,
        failures_max,
        ruby_queues,
        api,
        dashboard,
        alerts,
        secret_env,
        source,
        warnings: unknown_variables(env),
    })
}

/// A warning for each `RESQ_*` variable resq does not read, with the
/// closest one it does when there is one.
fn unknown_variables(env: &dyn Env) -> Vec<String> {
    let mut names = env.resq_names();
    names.sort();
    names
        .into_iter()
        .filter(|name| !ENV_VARS.contains(&name.as_str()))
        .map(|name| {
            let near = ENV_VARS
                .iter()
                .min_by_key(|known| edit_distance(known, &name))
                .filter(|known| edit_distance(known, &name) <= 3);
            match near {
                Some(known) => format!("{name} is not a resq setting (did you mean {known}?); it is ignored"),
                None => format!("{name} is not a resq setting; it is ignored"),
            }
        })
        .collect()
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Every `[worker]` and `[isolation]` value against its range, named by its key.
fn check_worker(worker: &WorkerSection, isolation: &IsolationSection) -> Result<(), ConfigError> {
    use resq::worker::ranges as r;
    let ms = Duration::from_millis;
    if let Some(n) = worker.concurrency {
        let slots = if isolation.mode == IsolationMode::Process && isolation.children.is_none() {
            r::ISOLATED_CONCURRENCY
        } else {
            r::CONCURRENCY
        };
        check("worker.concurrency (RESQ_CONCURRENCY)", n, &slots)?;
    }
    let durations = [
        ("worker.liveness_ttl_ms", worker.liveness_ttl_ms, r::LIVENESS_TTL),
        ("worker.reap_interval_ms", worker.reap_interval_ms, r::REAP_INTERVAL),
        ("worker.poll_max_ms", worker.poll_max_ms, r::POLL),
        (
            "worker.default_timeout_ms",
            worker.default_timeout_ms,
            r::DEFAULT_TIMEOUT,
        ),
        ("worker.sweep_interval_ms", worker.sweep_interval_ms, r::SWEEP_INTERVAL),
        ("isolation.cpu_limit_ms", isolation.cpu_limit_ms, r::CHILD_CPU),
    ];
    for (key, value, range) in durations {
        if let Some(value) = value {
            check(key, ms(value), &range)?;
        }
    }
    if let Some(n) = worker.max_recoveries {
        check("worker.max_recoveries (RESQ_MAX_RECOVERIES)", n, &r::MAX_RECOVERIES)?;
    }
    if let Some(s) = worker.heartbeat_interval_s {
        check(
            "worker.heartbeat_interval_s",
            Duration::from_secs(s),
            &r::HEARTBEAT_INTERVAL,
        )?;
    }
    if let Some(mb) = isolation.memory_limit_mb {
        check("isolation.memory_limit_mb", mb, &r::CHILD_MEMORY_MB)?;
    }
    if let Some(n) = isolation.jobs_per_child {
        check("isolation.jobs_per_child", n, &r::JOBS_PER_CHILD)?;
    }
    if let Some(n) = isolation.children {
        // Against the concurrency when the file sets one; the worker checks
        // it again against the one it runs with.
        let range = worker.concurrency.map_or(r::CHILDREN, r::children_range);
        check("isolation.children (RESQ_CHILDREN)", n, &range)?;
    }
    Ok(())
}

/// An `allow_unsigned` entry: a queue name, or a glob of one. One that
/// names every queue (nothing but `*` and `?`) needs its own opt-in.
fn unsigned_pattern(n: usize, entry: &str, everything_ok: bool) -> Result<glob::Pattern, ConfigError> {
    let chars_ok = !entry.is_empty()
        && entry.len() <= resq::names::MAX_NAME_BYTES
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*' | b'?' | b'[' | b']' | b'!'));
    if !chars_ok {
        return Err(ConfigError::BadAllowUnsigned(n));
    }
    let pattern = glob::Pattern::new(entry).map_err(|_| ConfigError::BadAllowUnsigned(n))?;
    let everything = entry.bytes().all(|b| matches!(b, b'*' | b'?'));
    if everything && !everything_ok {
        return Err(ConfigError::UnsignedEverywhere(n));
    }
    Ok(pattern)
}

/// The password, from (in order) `RESQ_REDIS_PASSWORD`, `RESQ_REDIS_PASSWORD_FILE`,
/// the file's `password_file`, or the variable named by `password_env`.
fn password(
    file: &Option<PathBuf>,
    var_name: &Option<String>,
    env: &dyn Env,
) -> Result<Option<SecretString>, ConfigError> {
    secret(file, var_name, env, ["RESQ_REDIS_PASSWORD", "RESQ_REDIS_PASSWORD_FILE"]).map_err(|e| match e {
        SecretError::File { path, source } => ConfigError::PasswordFile { path, source },
        SecretError::EnvMissing { var } => ConfigError::PasswordEnvMissing { var },
    })
}

/// Where a secret could not be read from.
enum SecretError {
    File { path: PathBuf, source: std::io::Error },
    EnvMissing { var: String },
}

/// A secret from (in order) the variable `vars[0]`, the file the variable
/// `vars[1]` names, `file`, or the variable named by `var_name`.
fn secret(
    file: &Option<PathBuf>,
    var_name: &Option<String>,
    env: &dyn Env,
    vars: [&str; 2],
) -> Result<Option<SecretString>, SecretError> {
    if let Some(p) = env.var(vars[0]) {
        return Ok(Some(SecretString::from(p)));
    }
    let path = env.var(vars[1]).map(PathBuf::from).or_else(|| file.clone());
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path).map_err(|source| SecretError::File { path, source })?;
        return Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_string(),
        )));
    }
    if let Some(var) = var_name {
        return env
            .var(var)
            .map(|p| Some(SecretString::from(p)))
            .ok_or_else(|| SecretError::EnvMissing { var: var.clone() });
    }
    Ok(None)
}

/// `redis.wait_replicas` and `redis.wait_timeout_ms`, the environment's over
/// the file's, checked: `None` when no write waits (0 replicas, the default).
fn wait_replicas(redis: &RedisSection, env: &dyn Env) -> Result<Option<resq_redis::WaitReplicas>, ConfigError> {
    let replicas = match parse_env(env, "RESQ_REDIS_WAIT_REPLICAS", "a whole number from 0 to 16")? {
        Some(n) => Some(n),
        None => redis.wait_replicas,
    };
    let timeout_ms = match parse_env(
        env,
        "RESQ_REDIS_WAIT_TIMEOUT_MS",
        "a whole number of milliseconds such as 1000",
    )? {
        Some(ms) => Some(ms),
        None => redis.wait_timeout_ms,
    };
    // A timeout with no replicas named is a forgotten setting; an explicit
    // 0 is a choice (turning waiting off for a while).
    let Some(replicas) = replicas else {
        return match timeout_ms {
            Some(_) => Err(ConfigError::WaitTimeoutWithoutReplicas),
            None => Ok(None),
        };
    };
    check(
        "redis.wait_replicas (RESQ_REDIS_WAIT_REPLICAS)",
        replicas,
        &WAIT_REPLICAS,
    )?;
    let timeout = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_WAIT_TIMEOUT_MS));
    check(
        "redis.wait_timeout_ms (RESQ_REDIS_WAIT_TIMEOUT_MS)",
        timeout,
        &WAIT_TIMEOUT,
    )?;
    Ok((replicas > 0).then_some(resq_redis::WaitReplicas { replicas, timeout }))
}

/// `redis.mode`, or `RESQ_REDIS_MODE` over it.
fn redis_mode(redis: &RedisSection, env: &dyn Env) -> Result<RedisMode, ConfigError> {
    match env.var("RESQ_REDIS_MODE").as_deref().map(str::trim) {
        None => Ok(redis.mode.unwrap_or_default()),
        Some("standalone") => Ok(RedisMode::Standalone),
        Some("sentinel") => Ok(RedisMode::Sentinel),
        Some("cluster") => Ok(RedisMode::Cluster),
        Some(_) => Err(ConfigError::BadEnv {
            var: "RESQ_REDIS_MODE",
            expected: "standalone, sentinel or cluster",
        }),
    }
}

/// Cluster mode's seed nodes, checked: `None` in another mode, where
/// `redis.nodes` is an error.
fn cluster(redis: &RedisSection, env: &dyn Env) -> Result<Option<ClusterConfig>, ConfigError> {
    let mode = redis_mode(redis, env)?;
    let (nodes, key) = match env.var("RESQ_REDIS_NODES") {
        Some(list) => (
            Some(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            ),
            "RESQ_REDIS_NODES",
        ),
        None => (redis.nodes.clone(), "redis.nodes"),
    };
    if mode != RedisMode::Cluster {
        return match nodes {
            Some(_) => Err(ConfigError::SettingOfAnotherMode {
                key: "redis.nodes (RESQ_REDIS_NODES)",
                mode: mode.name(),
                wanted: "cluster",
            }),
            None => Ok(None),
        };
    }
    let nodes = nodes.unwrap_or_default();
    if nodes.is_empty() {
        return Err(ConfigError::ClusterNoNodes);
    }
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, s)| resq_redis::sentinel::parse_address(s).ok_or(ConfigError::BadNode { key, n: i + 1 }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ClusterConfig { nodes }))
}

/// Sentinel mode's settings, checked: `None` in standalone and cluster
/// modes, where each of them is an error (a forgotten `mode` must not be
/// silent).
fn sentinel(redis: &RedisSection, env: &dyn Env) -> Result<Option<SentinelConfig>, ConfigError> {
    let mode = redis_mode(redis, env)?;
    let master_name = env.var("RESQ_REDIS_MASTER_NAME").or_else(|| redis.master_name.clone());
    let (sentinels, sentinels_key) = match env.var("RESQ_REDIS_SENTINELS") {
        Some(list) => (
            Some(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            "RESQ_REDIS_SENTINELS",
        ),
        None => (redis.sentinels.clone(), "redis.sentinels"),
    };
    let username = env
        .var("RESQ_REDIS_SENTINEL_USERNAME")
        .or_else(|| redis.sentinel_username.clone());
    if mode == RedisMode::Standalone {
        let given = [
            (master_name.is_some(), "redis.master_name (RESQ_REDIS_MASTER_NAME)"),
            (sentinels.is_some(), "redis.sentinels (RESQ_REDIS_SENTINELS)"),
            (
                username.is_some(),
                "redis.sentinel_username (RESQ_REDIS_SENTINEL_USERNAME)",
            ),
            (
                redis.sentinel_password_file.is_some() || env.var("RESQ_REDIS_SENTINEL_PASSWORD_FILE").is_some(),
                "redis.sentinel_password_file (RESQ_REDIS_SENTINEL_PASSWORD_FILE)",
            ),
            (
                env.var("RESQ_REDIS_SENTINEL_PASSWORD").is_some(),
                "RESQ_REDIS_SENTINEL_PASSWORD",
            ),
            (redis.sentinel_password_env.is_some(), "redis.sentinel_password_env"),
        ];
        return match given.iter().find(|(set, _)| *set) {
            Some((_, key)) => Err(ConfigError::SentinelSettingInStandalone { key }),
            None => Ok(None),
        };
    }
    if mode == RedisMode::Cluster {
        let given = [
            (master_name.is_some(), "redis.master_name (RESQ_REDIS_MASTER_NAME)"),
            (sentinels.is_some(), "redis.sentinels (RESQ_REDIS_SENTINELS)"),
            (
                username.is_some(),
                "redis.sentinel_username (RESQ_REDIS_SENTINEL_USERNAME)",
            ),
            (
                redis.sentinel_password_file.is_some()
                    || redis.sentinel_password_env.is_some()
                    || env.var("RESQ_REDIS_SENTINEL_PASSWORD_FILE").is_some()
                    || env.var("RESQ_REDIS_SENTINEL_PASSWORD").is_some(),
                "the sentinels' password",
            ),
        ];
        return match given.iter().find(|(set, _)| *set) {
            Some((_, key)) => Err(ConfigError::SettingOfAnotherMode {
                key,
                mode: "cluster",
                wanted: "sentinel",
            }),
            None => Ok(None),
        };
    }
    let master_name = master_name.ok_or(ConfigError::SentinelNoMasterName)?;
    let name_ok = !master_name.is_empty()
        && master_name.len() <= 128
        && master_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !name_ok {
        return Err(ConfigError::BadMasterName);
    }
    let sentinels = sentinels.unwrap_or_default();
    if sentinels.is_empty() {
        return Err(ConfigError::SentinelNoSentinels);
    }
    let sentinels = sentinels
        .iter()
        .enumerate()
        .map(|(i, s)| {
            resq_redis::sentinel::parse_address(s).ok_or(ConfigError::BadSentinel {
                key: sentinels_key,
                n: i + 1,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let password = secret(
        &redis.sentinel_password_file,
        &redis.sentinel_password_env,
        env,
        ["RESQ_REDIS_SENTINEL_PASSWORD", "RESQ_REDIS_SENTINEL_PASSWORD_FILE"],
    )
    .map_err(|e| match e {
        SecretError::File { path, source } => ConfigError::SentinelPasswordFile { path, source },
        SecretError::EnvMissing { var } => ConfigError::SentinelPasswordEnvMissing { var },
    })?;
    Ok(Some(SentinelConfig {
        master_name,
        sentinels,
        username,
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, String>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    fn parse(text: &str, e: &MapEnv) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "t".into(),
            problem: resq::toml_error::describe(text, &e, &known_words()),
        })?;
        resolve(file, None, e)
    }

    #[test]
    fn env_overrides_the_file() {
        let s = parse(
            "namespace = \"app\"\n[redis]\nurl = \"redis://a:1\"\n[worker]\nconcurrency = 4\n",
            &env(&[("RESQ_REDIS_URL", "redis://b:2"), ("RESQ_CONCURRENCY", "9")]),
        )
        .unwrap();
        assert_eq!(s.namespace, "app");
        assert_eq!(s.redis.unwrap().url, "redis://b:2");
        assert_eq!(s.worker.concurrency, Some(9));
    }

    #[test]
    fn typos_and_bad_values_are_clear_errors() {
        let err = parse("[redis]\nurll = \"x\"\n", &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("line 2, column 1: unknown field `(…)`, expected one of `url`, `username`"),
            "{err}"
        );
        let err = parse("", &env(&[("RESQ_CONCURRENCY", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RESQ_CONCURRENCY") && err.contains("whole number"),
            "{err}"
        );
        let err = parse("namespace = \"a b\"", &env(&[])).unwrap_err().to_string();
        assert!(err.contains("namespace"), "{err}");
    }

    #[test]
    fn password_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            "[redis]\nurl = \"redis://h\"\npassword_file = {:?}\n",
            file.display().to_string()
        );
        let s = parse(&text, &env(&[])).unwrap();
        assert_eq!(s.redis.unwrap().password.unwrap().expose_secret(), "from-file");
        let s = parse(&text, &env(&[("RESQ_REDIS_PASSWORD", "from-env")])).unwrap();
        assert_eq!(s.redis.unwrap().password.unwrap().expose_secret(), "from-env");
        let s = parse(
            "[redis]\nurl = \"redis://h\"\npassword_env = \"MY_PW\"\n",
            &env(&[("MY_PW", "named")]),
        )
        .unwrap();
        assert_eq!(s.redis.unwrap().password.unwrap().expose_secret(), "named");
        let err = parse("[redis]\nurl = \"redis://h\"\npassword_env = \"MY_PW\"\n", &env(&[])).unwrap_err();
        assert!(err.to_string().contains("MY_PW"));
    }

    #[test]
    fn cron_tables_become_checked_entries() {
        let s = parse(
            "[[cron]]\nname = \"report\"\nschedule = \"0 3 * * *\"\nclass = \"Echo\"\n\
             args = { message = \"nightly\" }\ntime_zone = \"Europe/Berlin\"\nmissed_grace_s = 60\n\
             [[cron]]\nname = \"tick\"\nschedule = \"*/10 * * * * *\"\nclass = \"Sleep\"\nargs = [{ ms = 1 }]\nqueue = \"low\"\n",
            &env(&[]),
        )
        .unwrap();
        let report = &s.cron[0];
        assert_eq!((report.name.as_str(), report.time_zone()), ("report", "Europe/Berlin"));
        assert_eq!(report.args, vec![serde_json::json!({"message": "nightly"})]);
        assert_eq!(report.missed_grace, Duration::from_secs(60));
        assert_eq!(s.cron[1].queue.as_deref(), Some("low"));
        let cases = [
            ("schedule = \"61 * * * *\"", "not a cron expression"),
            (
                "schedule = \"@daily\"\ntime_zone = \"Nowhere/Land\"",
                "unknown time zone",
            ),
            ("schedule = \"@daily\"\nevery = 3", "unknown field"),
            (
                "schedule = \"@daily\"\n[[cron]]\nname = \"x\"\nclass = \"Echo\"\nschedule = \"@hourly\"",
                "cron entry x is listed twice",
            ),
        ];
        for (extra, phrase) in cases {
            let text = format!("[[cron]]\nname = \"x\"\nclass = \"Echo\"\n{extra}\n");
            let err = parse(&text, &env(&[])).unwrap_err().to_string();
            assert!(err.contains(phrase), "{err}");
        }
    }

    /// Every key the config accepts is in the documented configuration
    /// block (docs/operations.md), and it shows none the config does not
    /// accept; the list of keys is the parser's own (an unknown key's error
    /// lists them all).
    #[test]
    fn the_docs_show_every_config_key() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md")).unwrap();
        let section = &readme[readme.find("### Configuration").unwrap()..];
        let block = &section[section.find("```toml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let mut shown = std::collections::BTreeSet::new();
        let mut table = String::new();
        for line in block.lines() {
            let line = line.trim_start_matches("# ").trim();
            if let Some(rest) = line.strip_prefix('[') {
                table = rest.trim_start_matches('[').split(']').next().unwrap().to_string();
                shown.insert(("".to_string(), table.clone()));
            } else if let Some((key, _)) = line.split_once(" = ") {
                shown.insert((table.clone(), key.trim().to_string()));
            }
        }
        let accepted: std::collections::BTreeSet<(String, String)> = KEYS
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (t.to_string(), k.to_string())))
            .collect();
        assert_eq!(shown, accepted);
        // KEYS is complete: each table's unknown-key error lists exactly its keys.
        for (table, keys) in KEYS {
            let text = match *table {
                "" => "zz_unknown = 1\n".to_string(),
                "cron" => "[[cron]]\nzz_unknown = 1\n".to_string(),
                t => format!("[{t}]\nzz_unknown = 1\n"),
            };
            let message = toml::from_str::<FileConfig>(&text).unwrap_err().message().to_string();
            let mut listed: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
            listed.sort();
            let mut want: Vec<&str> = keys.to_vec();
            want.sort();
            assert_eq!(listed, want, "{table}: {message}");
        }
    }

    #[test]
    fn sentinel_mode_is_read_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sentinel-pw");
        std::fs::write(&file, "s3ntinel\n").unwrap();
        let text = format!(
            "[redis]\nmode = \"sentinel\"\nmaster_name = \"mymaster\"\n\
             sentinels = [\"10.0.0.1:26379\", \" [::1]:26380\"]\nsentinel_username = \"watcher\"\n\
             sentinel_password_file = {:?}\npassword_env = \"DATA_PW\"\n",
            file.display().to_string()
        );
        let s = parse(&text, &env(&[("DATA_PW", "data")])).unwrap();
        let redis = s.redis.unwrap();
        // No URL: the master's address comes from the sentinels, db 0.
        assert_eq!(redis.url, "redis://mymaster/0");
        assert_eq!(redis.password.unwrap().expose_secret(), "data");
        let sentinel = redis.sentinel.unwrap();
        assert_eq!(sentinel.master_name, "mymaster");
        assert_eq!(
            sentinel.sentinels,
            vec![("10.0.0.1".to_string(), 26379), ("::1".to_string(), 26380)]
        );
        assert_eq!(sentinel.username.as_deref(), Some("watcher"));
        assert_eq!(sentinel.password.unwrap().expose_secret(), "s3ntinel");

        let s = parse(
            "[redis]\nurl = \"rediss://app@ignored:1/3\"\nsentinel_password_env = \"S_PW\"\n",
            &env(&[
                ("RESQ_REDIS_MODE", "sentinel"),
                ("RESQ_REDIS_MASTER_NAME", "other"),
                ("RESQ_REDIS_SENTINELS", "a:1, b:2,,"),
                ("S_PW", "from-var"),
            ]),
        )
        .unwrap();
        assert_eq!(s.secret_env, vec!["S_PW".to_string()]);
        let redis = s.redis.unwrap();
        assert_eq!(redis.url, "rediss://app@ignored:1/3");
        let sentinel = redis.sentinel.unwrap();
        assert_eq!(sentinel.master_name, "other");
        assert_eq!(sentinel.sentinels, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(sentinel.password.unwrap().expose_secret(), "from-var");
        let s = parse(
            "",
            &env(&[
                ("RESQ_REDIS_MODE", "sentinel"),
                ("RESQ_REDIS_MASTER_NAME", "m"),
                ("RESQ_REDIS_SENTINELS", "a:1"),
                ("RESQ_REDIS_SENTINEL_PASSWORD", "direct"),
            ]),
        )
        .unwrap();
        let sentinel = s.redis.unwrap().sentinel.unwrap();
        assert_eq!(sentinel.password.unwrap().expose_secret(), "direct");

        // Standalone stays the default, and behaves as before.
        let s = parse("[redis]\nurl = \"redis://h:1/0\"\nmode = \"standalone\"\n", &env(&[])).unwrap();
        assert!(s.redis.unwrap().sentinel.is_none());
        let s = parse("[redis]\nurl = \"redis://h:1/0\"\n", &env(&[])).unwrap();
        assert!(s.redis.unwrap().sentinel.is_none());
    }

    #[test]
    fn cluster_mode_is_read_from_the_file_and_the_environment() {
        let s = parse(
            "[redis]\nmode = \"cluster\"\nnodes = [\"10.0.0.1:7000\", \" [::1]:7001\"]\nusername = \"w\"\n",
            &env(&[]),
        )
        .unwrap();
        let redis = s.redis.unwrap();
        // No URL: the first node's address stands in, plain TCP, db 0.
        assert_eq!(redis.url, "redis://10.0.0.1:7000");
        assert_eq!(redis.username.as_deref(), Some("w"));
        assert_eq!(
            redis.cluster.unwrap().nodes,
            vec![("10.0.0.1".to_string(), 7000), ("::1".to_string(), 7001)]
        );
        assert!(redis.sentinel.is_none());
        let s = parse(
            "[redis]\nurl = \"rediss://app@ignored:1\"\n",
            &env(&[("RESQ_REDIS_MODE", "cluster"), ("RESQ_REDIS_NODES", "a:1, b:2,,")]),
        )
        .unwrap();
        let redis = s.redis.unwrap();
        assert_eq!(redis.url, "rediss://app@ignored:1");
        assert_eq!(
            redis.cluster.unwrap().nodes,
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
    }

    /// Every way cluster settings can be wrong: each a typed error that does
    /// not quote the value.
    #[test]
    fn table_of_bad_cluster_settings() {
        const M: &str = "MARKER-s3cr3t-value";
        type Case = (
            &'static str,
            String,
            Vec<(&'static str, String)>,
            fn(&ConfigError) -> bool,
        );
        let cluster = "[redis]\nmode = \"cluster\"\n";
        let cases: Vec<Case> = vec![
            ("no node", cluster.to_string(), vec![], |e| {
                matches!(e, ConfigError::ClusterNoNodes)
            }),
            (
                "an empty node list in the environment",
                cluster.to_string(),
                vec![("RESQ_REDIS_NODES", " , ".to_string())],
                |e| matches!(e, ConfigError::ClusterNoNodes),
            ),
            (
                "a node that is not host:port",
                format!("{cluster}nodes = [\"h:1\", \"{M}\"]\n"),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::BadNode {
                            key: "redis.nodes",
                            n: 2
                        }
                    )
                },
            ),
            (
                "a URL with user-info in place of a node",
                "[redis]\nmode = \"cluster\"\n".to_string(),
                vec![("RESQ_REDIS_NODES", format!("redis://u:{M}@h:1"))],
                |e| {
                    matches!(
                        e,
                        ConfigError::BadNode {
                            key: "RESQ_REDIS_NODES",
                            n: 1
                        }
                    )
                },
            ),
            (
                "a database but 0",
                format!("{cluster}nodes = [\"h:1\"]\nurl = \"redis://u:{M}@h:1/2\"\n"),
                vec![],
                |e| matches!(e, ConfigError::ClusterUrl),
            ),
            (
                "a unix socket URL",
                format!("{cluster}nodes = [\"h:1\"]\nurl = \"redis+unix:///run/{M}.sock\"\n"),
                vec![],
                |e| matches!(e, ConfigError::ClusterUrl),
            ),
            (
                "nodes in standalone mode",
                format!("[redis]\nurl = \"redis://h:1\"\nnodes = [\"{M}:1\"]\n"),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::SettingOfAnotherMode {
                            wanted: "cluster",
                            mode: "standalone",
                            ..
                        }
                    )
                },
            ),
            (
                "nodes in sentinel mode",
                "[redis]\nmode = \"sentinel\"\nmaster_name = \"m\"\nsentinels = [\"h:1\"]\nnodes = [\"h:2\"]\n"
                    .to_string(),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::SettingOfAnotherMode {
                            wanted: "cluster",
                            mode: "sentinel",
                            ..
                        }
                    )
                },
            ),
            (
                "sentinels in cluster mode",
                format!("{cluster}nodes = [\"h:1\"]\nsentinels = [\"{M}:1\"]\n"),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::SettingOfAnotherMode {
                            wanted: "sentinel",
                            mode: "cluster",
                            ..
                        }
                    )
                },
            ),
            (
                "a sentinel password in cluster mode",
                format!("{cluster}nodes = [\"h:1\"]\n"),
                vec![("RESQ_REDIS_SENTINEL_PASSWORD", M.to_string())],
                |e| matches!(e, ConfigError::SettingOfAnotherMode { wanted: "sentinel", .. }),
            ),
        ];
        for (what, text, vars, check) in cases {
            let err = parse(&text, &MapEnv(vars.into_iter().collect())).unwrap_err();
            let message = err.to_string();
            assert!(check(&err), "{what}: {err:?}");
            assert!(
                !message.contains(&M[..10]),
                "{what}: the message quotes the value: {message}"
            );
        }
    }

    /// Every way sentinel settings can be wrong: each a typed error, and
    /// none quotes the value (a marker secret stands where one may be pasted).
    #[test]
    fn table_of_bad_sentinel_settings() {
        const M: &str = "Zk9xQ3Rm7bW2pL0vS8nHjT4yE1cA6dUq";
        let sentinel = "[redis]\nmode = \"sentinel\"\n";
        let named = "[redis]\nmode = \"sentinel\"\nmaster_name = \"mymaster\"\n";
        let sentinel_env = || {
            vec![
                ("RESQ_REDIS_MODE", "sentinel".to_string()),
                ("RESQ_REDIS_MASTER_NAME", "mymaster".to_string()),
            ]
        };
        type Check = fn(&ConfigError) -> bool;
        type Vars = Vec<(&'static str, String)>;
        let cases: Vec<(&str, String, Vars, Check)> = vec![
            (
                "no master name",
                format!("{sentinel}sentinels = [\"h:1\"]\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelNoMasterName),
            ),
            ("no sentinels", named.to_string(), vec![], |e| {
                matches!(e, ConfigError::SentinelNoSentinels)
            }),
            (
                "an empty list of sentinels",
                format!("{named}sentinels = []\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelNoSentinels),
            ),
            (
                "only commas in RESQ_REDIS_SENTINELS",
                String::new(),
                [sentinel_env(), vec![("RESQ_REDIS_SENTINELS", " , ".to_string())]].concat(),
                |e| matches!(e, ConfigError::SentinelNoSentinels),
            ),
            (
                "a sentinel without a port",
                format!("{named}sentinels = [\"h:1\", \"{M}\"]\n"),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::BadSentinel {
                            key: "redis.sentinels",
                            n: 2
                        }
                    )
                },
            ),
            (
                "a sentinel with a bad port, from the environment",
                String::new(),
                [sentinel_env(), vec![("RESQ_REDIS_SENTINELS", format!("h:1,{M}:99999"))]].concat(),
                |e| {
                    matches!(
                        e,
                        ConfigError::BadSentinel {
                            key: "RESQ_REDIS_SENTINELS",
                            n: 2
                        }
                    )
                },
            ),
            (
                "a URL with user-info in place of a sentinel",
                format!("{named}sentinels = [\"redis://u:{M}@h:1\"]\n"),
                vec![],
                |e| matches!(e, ConfigError::BadSentinel { n: 1, .. }),
            ),
            (
                "a master name no sentinel could know",
                format!("{sentinel}master_name = \"{M} x\"\nsentinels = [\"h:1\"]\n"),
                vec![],
                |e| matches!(e, ConfigError::BadMasterName),
            ),
            (
                "an unknown mode in the file",
                format!("[redis]\nmode = \"{M}\"\n"),
                vec![],
                |e| {
                    matches!(e, ConfigError::Parse { .. })
                        && e.to_string()
                            .contains("expected one of `standalone`, `sentinel`, `cluster`")
                },
            ),
            (
                "an unknown mode in the environment",
                String::new(),
                vec![("RESQ_REDIS_MODE", M.to_string())],
                |e| {
                    matches!(
                        e,
                        ConfigError::BadEnv {
                            var: "RESQ_REDIS_MODE",
                            ..
                        }
                    )
                },
            ),
            (
                "a unix socket URL in sentinel mode",
                format!("{named}sentinels = [\"h:1\"]\nurl = \"redis+unix:///run/{M}.sock\"\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelUrl),
            ),
            (
                "a sentinel password variable that is not set",
                format!("{named}sentinels = [\"h:1\"]\nsentinel_password_env = \"NOT_SET\"\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelPasswordEnvMissing { .. }),
            ),
            (
                "a sentinel password file that is not there",
                format!("{named}sentinels = [\"h:1\"]\nsentinel_password_file = \"/nonexistent/pw\"\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelPasswordFile { .. }),
            ),
            (
                "sentinels in standalone mode",
                format!("[redis]\nurl = \"redis://h:1\"\nsentinels = [\"{M}:1\"]\n"),
                vec![],
                |e| matches!(e, ConfigError::SentinelSettingInStandalone { key } if key.starts_with("redis.sentinels")),
            ),
            (
                "a master name in explicit standalone mode",
                "[redis]\nurl = \"redis://h:1\"\nmode = \"standalone\"\nmaster_name = \"m\"\n".to_string(),
                vec![],
                |e| matches!(e, ConfigError::SentinelSettingInStandalone { key } if key.starts_with("redis.master_name")),
            ),
            (
                "a sentinel password in standalone mode",
                "[redis]\nurl = \"redis://h:1\"\n".to_string(),
                vec![("RESQ_REDIS_SENTINEL_PASSWORD", M.to_string())],
                |e| {
                    matches!(
                        e,
                        ConfigError::SentinelSettingInStandalone {
                            key: "RESQ_REDIS_SENTINEL_PASSWORD"
                        }
                    )
                },
            ),
            (
                "a sentinel password file in standalone mode",
                "[redis]\nurl = \"redis://h:1\"\nsentinel_password_file = \"/run/pw\"\n".to_string(),
                vec![],
                |e| matches!(e, ConfigError::SentinelSettingInStandalone { .. }),
            ),
            (
                "the environment switching a sentinel file back to standalone",
                format!("{named}sentinels = [\"h:1\"]\nurl = \"redis://h:1\"\n"),
                vec![("RESQ_REDIS_MODE", "standalone".to_string())],
                |e| matches!(e, ConfigError::SentinelSettingInStandalone { .. }),
            ),
        ];
        for (what, text, vars, check) in cases {
            let err = parse(&text, &MapEnv(vars.into_iter().collect())).unwrap_err();
            let message = err.to_string();
            assert!(check(&err), "{what}: {err:?}");
            assert!(
                !message.contains(&M[..10]),
                "{what}: the message quotes the value: {message}"
            );
        }
    }

    /// `redis.wait_replicas` and its timeout, from the file and the
    /// environment, in both modes; off unless set.
    #[test]
    fn wait_replicas_is_read_from_the_file_and_the_environment() {
        // A parse error stays an error here, so it cannot pass for "off".
        let wait = |text: &str, vars: &[(&'static str, &'static str)]| {
            parse(text, &env(vars))
                .map(|s| s.redis.and_then(|r| r.wait))
                .map_err(|e| e.to_string())
        };
        let waits = |replicas: u32, ms: u64| {
            Ok(Some(resq_redis::WaitReplicas {
                replicas,
                timeout: Duration::from_millis(ms),
            }))
        };
        let url = "[redis]\nurl = \"redis://h:1/0\"\n";
        assert_eq!(wait(url, &[]), Ok(None));
        assert_eq!(
            wait(&format!("{url}wait_replicas = 1\n"), &[]),
            waits(1, DEFAULT_WAIT_TIMEOUT_MS)
        );
        assert_eq!(
            wait(&format!("{url}wait_replicas = 2\nwait_timeout_ms = 250\n"), &[]),
            waits(2, 250)
        );
        assert_eq!(
            wait(
                &format!("{url}wait_replicas = 2\n"),
                &[("RESQ_REDIS_WAIT_REPLICAS", "3"), ("RESQ_REDIS_WAIT_TIMEOUT_MS", "40")],
            ),
            waits(3, 40)
        );
        // An explicit 0 turns it off, a file's timeout included.
        assert_eq!(
            wait(
                &format!("{url}wait_replicas = 2\nwait_timeout_ms = 250\n"),
                &[("RESQ_REDIS_WAIT_REPLICAS", "0")]
            ),
            Ok(None)
        );
        // Sentinel mode too.
        assert_eq!(
            wait(
                "",
                &[
                    ("RESQ_REDIS_MODE", "sentinel"),
                    ("RESQ_REDIS_MASTER_NAME", "m"),
                    ("RESQ_REDIS_SENTINELS", "a:1"),
                    ("RESQ_REDIS_WAIT_REPLICAS", "1"),
                ],
            ),
            waits(1, DEFAULT_WAIT_TIMEOUT_MS)
        );
        // A longer response timeout makes room for a longer wait.
        assert_eq!(
            wait(
                &format!("{url}response_timeout_ms = 60000\nwait_replicas = 1\nwait_timeout_ms = 30000\n"),
                &[],
            ),
            waits(1, 30_000)
        );
    }

    /// Every way the wait settings can be wrong: each a typed error that
    /// names the setting, none quoting a line of the file.
    #[test]
    fn table_of_bad_wait_settings() {
        type Check = fn(&ConfigError) -> bool;
        type Vars = Vec<(&'static str, &'static str)>;
        let url = "[redis]\nurl = \"redis://h:1/0\"\n";
        let cases: Vec<(&str, String, Vars, Check)> = vec![
            (
                "17 replicas",
                format!("{url}wait_replicas = 17\n"),
                vec![],
                |e| matches!(e, ConfigError::OutOfRange(r) if r.setting.starts_with("redis.wait_replicas")),
            ),
            (
                "a negative count in the file",
                format!("{url}wait_replicas = -1\n"),
                vec![],
                // Where, and not the value: "line 3, column 17: invalid value: integer `(…)`".
                |e| matches!(e, ConfigError::Parse { problem, .. } if problem.line == 3 && !problem.message.contains("-1")),
            ),
            (
                "a count that is not a number in the environment",
                url.to_string(),
                vec![("RESQ_REDIS_WAIT_REPLICAS", "all")],
                |e| {
                    matches!(
                        e,
                        ConfigError::BadEnv {
                            var: "RESQ_REDIS_WAIT_REPLICAS",
                            ..
                        }
                    )
                },
            ),
            (
                "a timeout of 0 (WAIT would block for ever)",
                format!("{url}wait_replicas = 1\nwait_timeout_ms = 0\n"),
                vec![],
                |e| matches!(e, ConfigError::OutOfRange(r) if r.setting.starts_with("redis.wait_timeout_ms")),
            ),
            (
                "a timeout over a minute",
                format!("{url}wait_replicas = 1\nwait_timeout_ms = 60001\nresponse_timeout_ms = 600000\n"),
                vec![],
                |e| matches!(e, ConfigError::OutOfRange(r) if r.setting.starts_with("redis.wait_timeout_ms")),
            ),
            (
                "a timeout not shorter than the response timeout",
                format!("{url}wait_replicas = 1\nwait_timeout_ms = 2000\nresponse_timeout_ms = 2000\n"),
                vec![],
                |e| {
                    matches!(
                        e,
                        ConfigError::WaitOutlastsResponse {
                            wait_ms: 2000,
                            response_ms: 2000
                        }
                    )
                },
            ),
            (
                "a timeout from the environment with no replicas",
                url.to_string(),
                vec![("RESQ_REDIS_WAIT_TIMEOUT_MS", "500")],
                |e| matches!(e, ConfigError::WaitTimeoutWithoutReplicas),
            ),
            (
                "a timeout in the file with no replicas",
                format!("{url}wait_timeout_ms = 500\n"),
                vec![],
                |e| matches!(e, ConfigError::WaitTimeoutWithoutReplicas),
            ),
        ];
        for (what, text, vars, check) in cases {
            let err = parse(&text, &env(&vars)).unwrap_err();
            assert!(check(&err), "{what}: {err:?}");
            let message = err.to_string();
            assert!(!message.contains("redis://h:1/0"), "{what}: quotes the file: {message}");
        }
    }

    #[test]
    fn no_redis_is_none_until_asked() {
        let s = parse("", &env(&[])).unwrap();
        assert!(s.redis.is_none());
        assert!(s.redis().unwrap_err().to_string().contains("RESQ_REDIS_URL"));
    }
}
