//! `resq`: workers, enqueue, admin commands and the demo, over the library.

mod admin_cmds;
mod config;
mod config_cmd;
mod demo;
mod demo_jobs;
mod keys_cmd;
mod output;
mod proctitle;
mod when;
mod worker_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use resq_redis::RedisStore;

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
    Worker(worker_cmd::WorkerArgs),
    /// Enqueue one job through the same policy checks as the library.
    Enqueue(admin_cmds::EnqueueArgs),
    /// List queues and their lengths.
    Queues(admin_cmds::JsonFlag),
    /// List registered workers (Ruby's and resq's).
    Workers(admin_cmds::JsonFlag),
    /// Processed and failed totals.
    Stats(admin_cmds::JsonFlag),
    /// Inspect and act on the failed list.
    Failed {
        #[command(subcommand)]
        action: admin_cmds::FailedAction,
    },
    /// Run a worker on a private Redis with good and hostile jobs, and show
    /// what happened to each.
    Demo,
    /// Jobs the sweeper removed because they expired.
    Expired {
        #[command(subcommand)]
        action: admin_cmds::ExpiredAction,
    },
    /// Pause, resume or cap one queue.
    Queue {
        #[command(subcommand)]
        action: admin_cmds::QueueAction,
    },
    /// Jobs enqueued to run later (`enqueue_at` / `enqueue_in`).
    Scheduled {
        #[command(subcommand)]
        action: admin_cmds::ScheduleAction,
    },
    /// Failed jobs waiting for their next attempt.
    #[command(name = "retry-set")]
    RetrySet {
        #[command(subcommand)]
        action: admin_cmds::ScheduleAction,
    },
    /// Recurring jobs from `[[cron]]` in resq.toml.
    Cron {
        #[command(subcommand)]
        action: admin_cmds::CronAction,
    },
    /// Make signing and encryption keys.
    Keys {
        #[command(subcommand)]
        action: keys_cmd::KeysAction,
    },
    /// Check the configuration as `resq worker` would, without starting.
    Config {
        #[command(subcommand)]
        action: config_cmd::ConfigAction,
    },
    /// The job classes this binary runs, and their argument schemas.
    Jobs {
        #[command(subcommand)]
        action: keys_cmd::JobsAction,
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
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
        _ => "",
    }
}

fn main() -> ExitCode {
    if resq::worker::isolation::is_child() {
        init_logs(LogFormat::Text, "info");
        if let Some(code) = resq::worker::isolation::serve_if_child(&demo_jobs::registry()) {
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
            Command::Worker(args) => worker_cmd::run(&settings, args).await,
            Command::Enqueue(args) => admin_cmds::enqueue(&settings, args).await,
            Command::Queues(f) => admin_cmds::queues(&settings, f).await,
            Command::Workers(f) => admin_cmds::workers(&settings, f).await,
            Command::Stats(f) => admin_cmds::stats(&settings, f).await,
            Command::Failed { action } => admin_cmds::failed(&settings, action).await,
            Command::Demo => demo::run(&settings).await,
            Command::Queue { action } => admin_cmds::queue(&settings, action).await,
            Command::Expired { action } => admin_cmds::expired(&settings, action).await,
            Command::Scheduled { action } => admin_cmds::schedule(&settings, resq::Schedule::Scheduled, action).await,
            Command::RetrySet { action } => admin_cmds::schedule(&settings, resq::Schedule::Retry, action).await,
            Command::Cron { action } => admin_cmds::cron(&settings, action).await,
            Command::Keys { action } => keys_cmd::keys(action),
            Command::Jobs { action } => keys_cmd::jobs(action),
            Command::Config { action } => config_cmd::run(&settings, action).await,
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
