//! Shared helpers for resq's benchmarks: timing runs and printing median and
//! spread. Benchmarks print figures; they assert nothing and are not run in CI.

use std::time::{Duration, Instant};

/// The shipped no-op job (`resq worker` runs it), typed on the producer
/// side: `pad` makes a payload of a given size.
#[derive(serde::Serialize, serde::Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    #[serde(default)]
    #[garde(length(max = 1_048_576))]
    pub pad: String,
}

impl resq::Job for Noop {
    const CLASS: &'static str = "Noop";
    async fn perform(self, _: resq::JobContext) -> Result<(), resq::JobError> {
        Ok(())
    }
}

/// What stops a benchmark: it prints the error and exits non-zero.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `f` `runs` times and returns each run's duration.
pub fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

/// Median, min and max of `samples`, in the unit `per` divides into.
pub fn summary(samples: &[Duration], per: u64) -> (f64, f64, f64) {
    let mut ns: Vec<f64> = samples.iter().map(|d| d.as_nanos() as f64 / per as f64).collect();
    ns.sort_by(|a, b| a.total_cmp(b));
    let median = ns.get(ns.len() / 2).copied().unwrap_or(0.0);
    (
        median,
        ns.first().copied().unwrap_or(0.0),
        ns.last().copied().unwrap_or(0.0),
    )
}

/// Median and spread of per-run figures.
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Figure {
    pub fn of(mut xs: Vec<f64>) -> Figure {
        xs.sort_by(|a, b| a.total_cmp(b));
        Figure {
            median: xs.get(xs.len() / 2).copied().unwrap_or(0.0),
            min: xs.first().copied().unwrap_or(0.0),
            max: xs.last().copied().unwrap_or(0.0),
        }
    }
    pub fn rate(&self) -> String {
        format!("{:.0} [{:.0}..{:.0}]", self.median, self.min, self.max)
    }
    pub fn plain(&self, unit: &str) -> String {
        format!("{:.2}{unit} [{:.2}..{:.2}]", self.median, self.min, self.max)
    }
}

/// Removes a benchmark's scratch folder when dropped.
pub struct TempDirGuard(pub std::path::PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a fresh HS256 keys file (mode 0600) into `dir`; returns its path.
pub fn write_keys(dir: &std::path::Path) -> Result<std::path::PathBuf, BenchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let keys = dir.join("keys.toml");
    let (text, _) = resq::Keyring::generate(resq::SigAlg::Hs256, "bench");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&keys)?;
    f.write_all(text.as_bytes())?;
    Ok(keys)
}

/// The peak resident set of a process (VmHWM), in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Waits for `child` to exit, or for `done` to say the work is over (then
/// the child is sent SIGTERM and reaped), reading its peak resident set
/// meanwhile. Returns the peak in KiB.
pub fn watch(child: &mut std::process::Child, mut done: impl FnMut() -> bool) -> Result<u64, BenchError> {
    let mut peak = 0u64;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(peak);
        }
        peak = peak.max(vm_hwm_kib(child.id()));
        if done() {
            let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
            child.wait()?;
            return Ok(peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What `redis-server --version` prints (empty if it cannot be run), for
/// a report's header.
pub fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A benchmark's `main`: runs `bench` on a Tokio runtime and turns its
/// error into a message and a failing exit status.
pub fn run_main<F>(bench: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), BenchError>>,
{
    let result = tokio::runtime::Runtime::new()
        .map_err(BenchError::from)
        .and_then(|runtime| runtime.block_on(bench));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The value after `flag` on the command line (`--jobs 1000`).
pub fn flag_value(argv: &[String], flag: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

/// The positive number after `flag` in `argv`, or `default` (when absent,
/// not a number, or 0).
pub fn flag_count(argv: &[String], flag: &str, default: usize) -> usize {
    flag_value(argv, flag)
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(default)
}

/// What a benchmark prints, kept to be written to `bench/results/`.
#[derive(Default)]
pub struct Report {
    text: String,
}

impl Report {
    /// Prints a line and keeps it.
    pub fn line(&mut self, line: String) {
        println!("{line}");
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Writes what was printed to `bench/results/<file>` (best effort: the
    /// figures were printed anyway).
    pub fn write(&self, file: &str) {
        let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        if std::fs::create_dir_all(&results).is_ok() && std::fs::write(results.join(file), &self.text).is_ok() {
            println!("\nwrote bench/results/{file}");
        }
    }
}

/// Every key of the server, grouped by `family` (which folds ids, queue
/// names and blocks out of a key's name): per family, how many keys and
/// their bytes by an exact `MEMORY USAGE` (SAMPLES 0). For a few thousand
/// keys at most: it reads them one by one.
pub async fn key_families(
    conn: &mut resq_redis::Connection,
    family: impl Fn(&str) -> String,
) -> Result<std::collections::BTreeMap<String, (u64, u64)>, BenchError> {
    let mut families: std::collections::BTreeMap<String, (u64, u64)> = std::collections::BTreeMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        for key in keys {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(conn)
                .await?;
            let entry = families.entry(family(&key)).or_default();
            entry.0 += 1;
            entry.1 += bytes.unwrap_or(0);
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(families)
}
