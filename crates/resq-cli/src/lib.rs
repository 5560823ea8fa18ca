//! The `resq` command set as a library: a program with its own job types
//! gets every command (`worker`, `enqueue`, `failed`, `keys`, `jobs`,
//! `config check`, ...) with one call.
//!
//! ```no_run
//! use std::process::ExitCode;
//! # #[derive(serde::Serialize, serde::Deserialize, garde::Validate, schemars::JsonSchema)]
//! # #[serde(deny_unknown_fields)] struct SendEmail { #[garde(email)] to: String }
//! # impl resq::Job for SendEmail { const CLASS: &'static str = "SendEmail";
//! #   async fn perform(self, _: resq::JobContext) -> Result<(), resq::JobError> { Ok(()) } }
//!
//! fn main() -> ExitCode {
//!     // `myapp worker`, `myapp enqueue SendEmail --args '{"to":"a@example.com"}'`,
//!     // `myapp failed list`, ... on this program's own job types.
//!     resq_cli::run(resq::Registry::new().register::<SendEmail>())
//! }
//! ```
//!
//! The shipped `resq` binary is this call with the demo jobs
//! ([`demo_jobs::registry`]).

pub mod commands;
pub mod config;
pub mod demo_jobs;
pub mod doctor;
mod output;
mod proctitle;
mod when;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use resq_redis::RedisStore;

use resq::Registry;

use crate::commands::*;
use crate::config::Settings;

/// The environment, listed under every command's help.
const ENV_HELP: &str =
    "Settings come from resq.toml, overridden by these variables (unknown RESQ_* names are warned about):
  RESQ_CONFIG                  the config file (default ./resq.toml if present)
  RESQ_REDIS_URL               redis://host:port/db, rediss:// for TLS          [redis] url
  RESQ_REDIS_USERNAME          an ACL user                                      [redis] username
  RESQ_REDIS_PASSWORD_FILE     a file holding the password                     [redis] password_file
  RESQ_REDIS_PASSWORD          the password itself                             [redis] password_env names another
  RESQ_REDIS_CA_FILE, RESQ_REDIS_CLIENT_CERT_FILE, RESQ_REDIS_CLIENT_KEY_FILE  [redis] ca_file, client_*_file
  RESQ_NAMESPACE               Resque's key namespace (default resque)          namespace
  RESQ_KEYS_FILE               signing, verification and encryption keys        [security] keys_file
  RESQ_ALLOW_UNSIGNED          queues open to unsigned jobs, comma-separated    [security] allow_unsigned
  RESQ_QUEUES                  the worker's queues (critical,default,* or a:6,b:3,c:1)  [worker] queues
  RESQ_CONCURRENCY             jobs at once per worker                          [worker] concurrency
  RESQ_ISOLATION               none or process                                  [isolation] mode
  RESQ_FAILURES_MAX            records the failed list keeps                    [failures] max
  RESQ_RUBY_QUEUES             queues Ruby workers serve (enqueue --for-ruby)   [ruby] queues
  RESQ_LOG                     log filter, e.g. info or resq=debug";

#[derive(Parser)]
#[command(
    name = "resq",
    version,
    about = "Background jobs on Resque's Redis protocol, secure by default",
    after_help = ENV_HELP
)]
struct Cli {
    /// Config file (default: RESQ_CONFIG, else ./resq.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a worker (TERM/INT: stop now and requeue, QUIT: finish then exit,
    /// USR2: pause, CONT: resume).
    Worker(worker::WorkerArgs),
    /// Enqueue one job through the same policy checks as the library.
    Enqueue(enqueue::EnqueueArgs),
    /// List queues and their lengths.
    Queues(JsonFlag),
    /// List registered workers (Ruby's and resq's).
    Workers(JsonFlag),
    /// Processed and failed totals.
    Stats(JsonFlag),
    /// Inspect and act on the failed list.
    Failed {
        #[command(subcommand)]
        action: failed::FailedAction,
    },
    /// Run a worker on a private Redis with good and hostile jobs, and show
    /// what happened to each.
    Demo,
    /// Jobs the sweeper removed because they expired.
    Expired {
        #[command(subcommand)]
        action: expired::ExpiredAction,
    },
    /// Pause, resume or cap one queue.
    Queue {
        #[command(subcommand)]
        action: queue::QueueAction,
    },
    /// Jobs enqueued to run later (`enqueue_at` / `enqueue_in`).
    Scheduled {
        #[command(subcommand)]
        action: schedule::ScheduleAction,
    },
    /// Failed jobs waiting for their next attempt.
    #[command(name = "retry-set")]
    RetrySet {
        #[command(subcommand)]
        action: schedule::ScheduleAction,
    },
    /// Recurring jobs from `[[cron]]` in resq.toml.
    Cron {
        #[command(subcommand)]
        action: cron::CronAction,
    },
    /// Make signing and encryption keys.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Check the configuration as `resq worker` would, without starting.
    Config {
        #[command(subcommand)]
        action: config_check::ConfigAction,
    },
    /// The job classes this binary runs, and their argument schemas.
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// Serve the HTTP enqueue API (bearer tokens from `resq token`).
    Serve(serve::ServeArgs),
    /// The HTTP API's bearer tokens: create, list, revoke, rotate.
    Token {
        #[command(subcommand)]
        action: token::TokenAction,
    },
    /// The HTTP API's audit trail.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Print the least-privilege Redis ACL rule for one part of a
    /// deployment (producer, worker, web, web-read-only, admin).
    Acl(commands::acl::AclArgs),
    /// Audit the Redis server and resq's configuration: each finding with
    /// its severity, what it means and the fix (exit 0, 3 or 4).
    Doctor(commands::doctor::DoctorArgs),
    /// The dashboard's users: add, list, remove, passwd, role.
    User {
        #[command(subcommand)]
        action: user::UserAction,
    },
}

/// A command's failure: the message, and the exit code (2 = fix your input).
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            code: 2,
        }
    }
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            code: 1,
        }
    }
}

fn init_logs(format: LogFormat, default_level: &str) {
    // redis-rs's cluster client logs a warning for each node it fails to
    // reach, hundreds a second while a cluster is down: by default only its
    // errors show (resq logs the outage itself, once, and its end).
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default_level},redis=error")));
    // Colour only for a person at a terminal (and never with NO_COLOR).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Connects to the configured Redis.
pub async fn connect(settings: &Settings) -> Result<Arc<RedisStore>, Failure> {
    let redis = settings.redis().map_err(Failure::usage)?;
    RedisStore::connect(redis, &settings.namespace)
        .await
        .map(|store| Arc::new(store.with_failed_max(settings.failures_max)))
        .map_err(|e| Failure::runtime(format!("{e}{}", connect_hint(&e))))
}

/// What to change, in the settings' own names, for each way a connection fails.
fn connect_hint(e: &resq_redis::ConnectError) -> &'static str {
    use resq_redis::ConnectError as E;
    match e {
        E::Auth { .. } => {
            "; set the password with RESQ_REDIS_PASSWORD_FILE or redis.password_file (or RESQ_REDIS_PASSWORD, \
             redis.password_env) and the ACL user with RESQ_REDIS_USERNAME or redis.username"
        }
        E::Refused { .. } | E::Timeout { .. } | E::Connect { .. } => "; check RESQ_REDIS_URL or redis.url",
        E::TlsRefused { .. } | E::ClosedInHandshake { .. } => "; the scheme is set by RESQ_REDIS_URL or redis.url",
        E::UntrustedServer { .. } => {
            "; give the CA that signed the server's certificate with RESQ_REDIS_CA_FILE or redis.ca_file"
        }
        E::ClientCertRefused { .. } => {
            "; check RESQ_REDIS_CLIENT_CERT_FILE / redis.client_cert_file and its key (client_key_file)"
        }
        E::NoMaster { .. } => {
            "; check redis.sentinels (RESQ_REDIS_SENTINELS), redis.master_name (RESQ_REDIS_MASTER_NAME) and the \
             sentinels' login (redis.sentinel_username, redis.sentinel_password_file, RESQ_REDIS_SENTINEL_PASSWORD)"
        }
        _ => "",
    }
}

/// Runs the command line of this process with `registry`'s job types, and
/// returns the exit code for `main` (0 ok, 1 a runtime failure, 2 bad input).
/// In a process started as a job child (process isolation), it runs jobs
/// for its worker instead: call it first thing in `main`.
pub fn run(registry: Registry) -> ExitCode {
    if resq::worker::isolation::is_child() {
        init_logs(LogFormat::Text, "info");
        if let Some(code) = resq::worker::isolation::serve_if_child(&registry) {
            return code;
        }
    }
    let cli = Cli::parse();
    // The demo prints its own table; its per-job warnings would repeat it.
    let default_level = if matches!(cli.command, Command::Demo) {
        "error"
    } else {
        "info"
    };
    init_logs(cli.log_format, default_level);
    if matches!(cli.command, Command::Worker(_)) {
        proctitle::ensure_resque_title();
    }
    let settings = match config::load(cli.config.as_deref(), &config::ProcessEnv) {
        Ok(s) => s,
        Err(e) => return fail(Failure::usage(e)),
    };
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(Failure::runtime(format!("cannot start the async runtime: {e}"))),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Worker(args) => worker::run(&settings, &registry, args).await,
            Command::Enqueue(args) => enqueue::enqueue(&settings, &registry, args).await,
            Command::Queues(f) => queues::queues(&settings, f).await,
            Command::Workers(f) => workers::workers(&settings, f).await,
            Command::Stats(f) => stats::stats(&settings, f).await,
            Command::Failed { action } => failed::failed(&settings, action).await,
            Command::Demo => demo::run(&settings, &registry).await,
            Command::Queue { action } => queue::queue(&settings, action).await,
            Command::Expired { action } => expired::expired(&settings, &registry, action).await,
            Command::Scheduled { action } => schedule::schedule(&settings, resq::Schedule::Scheduled, action).await,
            Command::RetrySet { action } => schedule::schedule(&settings, resq::Schedule::Retry, action).await,
            Command::Cron { action } => cron::cron(&settings, &registry, action).await,
            Command::Keys { action } => keys::keys(action),
            Command::Jobs { action } => jobs::jobs(&registry, action),
            Command::Config { action } => config_check::run(&settings, &registry, action).await,
            Command::Serve(args) => serve::serve(&settings, &registry, args).await,
            Command::Token { action } => token::token(&settings, action).await,
            Command::Audit { action } => audit::audit(&settings, action).await,
            Command::User { action } => user::user(&settings, action).await,
            Command::Acl(args) => commands::acl::acl(&settings, args),
            Command::Doctor(args) => commands::doctor::doctor(&settings, &registry, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(f),
    }
}

fn fail(f: Failure) -> ExitCode {
    eprintln!("error: {}", output::safe(f.message.trim_end()).replace("\\n", "\n"));
    ExitCode::from(f.code)
}

/// The README's and the docs' examples compile (and stay true) as doctests.
#[cfg(doctest)]
mod doc_examples {
    #[doc = include_str!("../../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../../docs/jobs.md")]
    pub struct Jobs;
    #[doc = include_str!("../../../docs/store.md")]
    pub struct Store;
}
