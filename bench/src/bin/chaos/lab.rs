//! The chaos harness's laboratory: a private redis-server (optionally with
//! AOF or a memory limit), the real `resq worker` binary in as many
//! processes as a fault needs (optionally behind the fault proxy, or under
//! libfaketime), a steady producer of signed `Record` jobs, and the count
//! at the end: every job's evidence (the lines `Record` appends), the
//! failed list by reason, the expired list, against what the producer was
//! told at enqueue.
//!
//! Shared by `scripts/chaos` (bench/src/bin/chaos.rs) and its short mode in
//! the test suite (crates/resq-cli/tests/chaos.rs), which includes this file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq::store::StoreError;
use resq::{JobQueues, Keyring, Policy, SealOptions};
use resq_redis::{RedisConfig, RedisStore};

use crate::proxy::Proxy;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The environment variable the shipped `Record` job appends to.
pub const RECORD_FILE_ENV: &str = "DEMO_RECORD_FILE";

/// A small, seeded random source (splitmix64): no dependency, and a run
/// can be repeated with `--seed`.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock and the pid.
    pub fn seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A duration between `lo` and `hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// How the lab's Redis and workers are set up.
#[derive(Clone)]
pub struct LabOptions {
    /// The `resq` binary.
    pub resq: PathBuf,
    /// `worker.liveness_ttl_ms`: a worker silent this long is dead to the reaper.
    pub liveness_ttl_ms: u64,
    pub reap_interval_ms: u64,
    /// `appendonly yes`, `appendfsync always`.
    pub aof: bool,
    /// `maxmemory` in bytes, with `maxmemory-policy noeviction`.
    pub maxmemory: Option<u64>,
    /// Put the fault proxy between every resq process (and the producer) and Redis.
    pub proxy: bool,
    /// More of `resq.toml` (e.g. `[[cron]]` tables).
    pub extra_config: String,
}

impl LabOptions {
    pub fn new(resq: &Path) -> LabOptions {
        LabOptions {
            resq: resq.to_path_buf(),
            liveness_ttl_ms: 1000,
            reap_interval_ms: 200,
            aof: false,
            maxmemory: None,
            proxy: false,
            extra_config: String::new(),
        }
    }
}

/// One `resq worker` process of the lab.
pub struct WorkerProc {
    pub child: Child,
    pub args: Vec<String>,
    pub skew: Option<String>,
    pub log: PathBuf,
}

/// A scratch folder, removed when dropped (kept when `CHAOS_KEEP` is set).
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CHAOS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct Lab {
    pub options: LabOptions,
    pub redis: LocalRedis,
    /// A direct connection (never through the proxy): the harness's own view.
    pub store: Arc<RedisStore>,
    pub proxy: Option<Proxy>,
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub config: PathBuf,
    pub record: PathBuf,
    pub keyring: Arc<Keyring>,
    pub workers: Vec<WorkerProc>,
    /// Pids of processes the harness killed (workers and their children).
    pub killed: HashSet<u32>,
    /// Workers that exited without being asked to (each is replaced).
    pub unexpected_exits: Vec<String>,
    /// Every worker log, by worker pid.
    pub logs: Vec<(u32, PathBuf)>,
    spawned: u64,
    _scratch: Scratch,
}

impl Lab {
    pub async fn start(options: LabOptions) -> Result<Lab, Error> {
        let mut extra = Vec::new();
        if options.aof {
            extra.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        }
        if let Some(bytes) = options.maxmemory {
            extra.extend([
                "--maxmemory".to_string(),
                bytes.to_string(),
                "--maxmemory-policy".to_string(),
                "noeviction".to_string(),
            ]);
        }
        let redis = LocalRedis::start_with(local_redis::Options {
            extra_args: extra,
            ..Default::default()
        })?;
        let store = Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?);
        let dir = std::env::temp_dir().join(format!("resq-chaos-{}-{}", std::process::id(), Rng::seed() % 1_000_000));
        std::fs::create_dir_all(&dir)?;
        let scratch = Scratch(dir.clone());
        let keys = write_keys(&dir)?;
        let keyring = Arc::new(Keyring::load(&keys)?);
        let config = dir.join("resq.toml");
        std::fs::write(
            &config,
            format!(
                "[worker]\nliveness_ttl_ms = {}\nreap_interval_ms = {}\npoll_max_ms = 100\n{}",
                options.liveness_ttl_ms, options.reap_interval_ms, options.extra_config
            ),
        )?;
        let record = dir.join("record.log");
        let proxy = if options.proxy {
            Some(Proxy::start(redis.port()).await?)
        } else {
            None
        };
        Ok(Lab {
            options,
            redis,
            store,
            proxy,
            dir,
            keys,
            config,
            record,
            keyring,
            workers: Vec::new(),
            killed: HashSet::new(),
            unexpected_exits: Vec::new(),
            logs: Vec::new(),
            spawned: 0,
            _scratch: scratch,
        })
    }

    /// The URL resq processes and the producer use: the proxy's when there is one.
    pub fn url(&self) -> String {
        match &self.proxy {
            Some(p) => format!("redis://127.0.0.1:{}/0", p.port()),
            None => self.redis.url(),
        }
    }

    /// `resq` with the lab's settings, its wall clock moved by `skew`
    /// (`+5m`, `-5m`: libfaketime preloaded into the process itself, so a
    /// signal or a kill reaches resq, not a wrapper).
    pub fn resq(&self, skew: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.options.resq);
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RESQ_REDIS_URL", self.url())
            .env("RESQ_KEYS_FILE", &self.keys)
            .env("RESQ_CONFIG", &self.config)
            .env("RESQ_LOG", "warn")
            .env(RECORD_FILE_ENV, &self.record)
            .stdin(Stdio::null());
        if let Some(offset) = skew {
            cmd.env("LD_PRELOAD", faketime_library().unwrap_or_default())
                .env("FAKETIME", offset)
                // Tokio's timers run on the monotonic clock: only the wall clock moves.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        cmd
    }

    /// Starts a `resq worker ARGS...` process; its log goes to its own file.
    pub fn spawn_worker(&mut self, args: &[&str], skew: Option<&str>) -> Result<usize, Error> {
        self.spawned += 1;
        let log = self.dir.join(format!("worker-{}.log", self.spawned));
        let mut cmd = self.resq(skew);
        cmd.arg("worker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn()?;
        self.logs.push((child.id(), log.clone()));
        self.workers.push(WorkerProc {
            child,
            args: args.iter().map(|s| s.to_string()).collect(),
            skew: skew.map(str::to_string),
            log,
        });
        Ok(self.workers.len() - 1)
    }

    /// `kill -9` worker `i` (and, first, notes its children's pids, so their
    /// runs count as killed too), then starts another like it in its place.
    pub fn kill_and_replace(&mut self, i: usize) -> Result<(), Error> {
        let pid = self.workers[i].child.id();
        self.killed.insert(pid);
        self.killed.extend(children_of(pid));
        let _ = self.workers[i].child.kill();
        let _ = self.workers[i].child.wait();
        // The children exit by themselves when their worker dies; a child
        // started between the look above and the kill is seen here.
        self.killed.extend(children_of(pid));
        let old = self.workers.remove(i);
        let args: Vec<&str> = old.args.iter().map(String::as_str).collect();
        self.spawn_worker(&args, old.skew.as_deref())?;
        Ok(())
    }

    /// Replaces workers that exited without being asked, and notes them.
    pub fn check_workers(&mut self) -> Result<(), Error> {
        let mut i = 0;
        while i < self.workers.len() {
            if let Ok(Some(status)) = self.workers[i].child.try_wait() {
                let tail = tail(&self.workers[i].log, 600);
                self.unexpected_exits.push(format!(
                    "worker {} exited by itself ({status}): {tail}",
                    self.workers[i].child.id()
                ));
                let old = self.workers.remove(i);
                let args: Vec<&str> = old.args.iter().map(String::as_str).collect();
                self.spawn_worker(&args, old.skew.as_deref())?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Sends `signal` (a name: USR2 pauses fetching, CONT resumes) to every worker.
    pub fn signal_workers(&self, signal: &str) {
        for w in &self.workers {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &w.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Sends `signal` (a name: QUIT, TERM, KILL) to every worker and waits
    /// (bounded) for each to exit; a worker still there is killed.
    pub fn stop_workers(&mut self, signal: &str) -> Vec<String> {
        let mut notes = Vec::new();
        self.signal_workers(signal);
        for mut w in self.workers.drain(..) {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match w.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() && signal != "KILL" {
                            notes.push(format!("worker {} ended with {status} after {signal}", w.child.id()));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        notes.push(format!(
                            "worker {} did not exit within 60 s of {signal}: killed",
                            w.child.id()
                        ));
                        let _ = w.child.kill();
                        let _ = w.child.wait();
                        break;
                    }
                }
            }
        }
        notes
    }

    /// Runs `resq enqueue ARGS...` (under libfaketime at `skew`); returns the job id.
    pub fn enqueue_cli(&self, args: &[&str], skew: Option<&str>) -> Result<String, Error> {
        let out = self.resq(skew).arg("enqueue").args(args).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "resq enqueue {args:?} failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        // "enqueued Record on q as <id>", or "scheduled Record on q as <id>, due <time>"
        let mut words = text.split_whitespace();
        words
            .find(|w| *w == "as")
            .and_then(|_| words.next())
            .map(|id| id.trim_end_matches(',').to_string())
            .ok_or_else(|| format!("resq enqueue printed no id: {text}").into())
    }

    /// One command on the harness's direct connection; retried for a while
    /// when the connection broke (Redis was restarted under it).
    pub async fn redis_cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cmd.query_async(&mut self.store.connection()).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if Instant::now() < deadline
                        && (e.is_io_error()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()
                            || e.code() == Some("LOADING")) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `SHUTDOWN` on a connection of its own (its reply never comes), then
    /// waits (bounded) for the server process to exit.
    pub async fn shutdown_redis(&self) -> Result<(), Error> {
        let client = redis::Client::open(self.redis.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _ = redis::cmd("SHUTDOWN").query_async::<redis::Value>(&mut conn).await;
        let Some(pid) = self.redis.pid() else { return Ok(()) };
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) S ...": the state follows the command's closing parenthesis.
            let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
            if stat.is_empty() || state == Some("Z") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("redis-server did not exit within 10 s of SHUTDOWN".into())
    }

    pub async fn llen(&self, key: &str) -> Result<u64, Error> {
        self.redis_cmd(redis::cmd("LLEN").arg(key)).await
    }

    /// Jobs waiting, scheduled, retrying and in flight (claims not counted).
    pub async fn backlog(&self, queue: &str) -> Result<Backlog, Error> {
        let queued = self.llen(&format!("resque:queue:{queue}")).await?;
        let scheduled: u64 = self.redis_cmd(redis::cmd("ZCARD").arg("resque:resq:schedule")).await?;
        let retrying: u64 = self.redis_cmd(redis::cmd("ZCARD").arg("resque:resq:retry")).await?;
        let mut in_flight = 0;
        let mut holders = BTreeMap::new();
        let keys: Vec<String> = self.redis_cmd(redis::cmd("KEYS").arg("resque:resq:inflight:*")).await?;
        for key in keys {
            let fields: Vec<String> = self.redis_cmd(redis::cmd("HKEYS").arg(&key)).await?;
            let n = fields.iter().filter(|f| f.parse::<u64>().is_ok()).count() as u64;
            if n > 0 {
                in_flight += n;
                holders.insert(key, n);
            }
        }
        Ok(Backlog {
            queued,
            scheduled,
            retrying,
            in_flight,
            holders,
        })
    }

    /// Waits until nothing is queued, scheduled, retrying or in flight, or
    /// until `bound` passes without any change (then says what is left).
    pub async fn drain(&mut self, queue: &str, bound: Duration) -> Result<Option<Backlog>, Error> {
        let mut last = None;
        let mut since = Instant::now();
        loop {
            self.check_workers()?;
            let now = self.backlog(queue).await?;
            if now.is_empty() {
                return Ok(None);
            }
            let key = (
                now.queued,
                now.scheduled,
                now.retrying,
                now.in_flight,
                self.record_len(),
            );
            if last != Some(key) {
                last = Some(key);
                since = Instant::now();
            } else if since.elapsed() > bound {
                return Ok(Some(now));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn record_len(&self) -> u64 {
        std::fs::metadata(&self.record).map(|m| m.len()).unwrap_or(0)
    }

    /// The end of a run: drain (jobs of killed workers wait for the reaper),
    /// QUIT every worker; if something was stuck, TERM, then a burst worker
    /// runs what is left. Returns notes for the report.
    pub async fn finish(&mut self, queue: &str, bound: Duration) -> Result<Finish, Error> {
        let mut finish = Finish::default();
        if let Some(left) = self.drain(queue, bound).await? {
            finish.stuck = left.queued + left.in_flight + left.scheduled + left.retrying;
            let live: Vec<String> = self.workers.iter().map(|w| format!(":{}:", w.child.id())).collect();
            let held_by_live: u64 = left
                .holders
                .iter()
                .filter(|(key, _)| live.iter().any(|pid| key.contains(pid.as_str())))
                .map(|(_, n)| *n)
                .sum();
            finish.notes.push(format!(
                "STUCK after {} s without progress: {} queued, {} in flight ({:?}; {} of them in the hashes of \
                 workers alive and idle, which do not know they hold them), {} scheduled, {} retrying; the workers \
                 were stopped (TERM: each puts back what its hashes hold) and a burst worker ran what was left",
                bound.as_secs(),
                left.queued,
                left.in_flight,
                left.holders,
                held_by_live,
                left.scheduled,
                left.retrying
            ));
            // What the holders said last (a fetch whose reply never came?).
            for w in &self.workers {
                let pid = format!(":{}:", w.child.id());
                if left.holders.keys().any(|key| key.contains(pid.as_str())) {
                    finish
                        .notes
                        .push(format!("worker {} log ends: {}", w.child.id(), tail(&w.log, 700)));
                }
            }
            finish.notes.extend(self.stop_workers("TERM"));
            self.spawn_worker(&["--queues", queue, "--concurrency", "8", "--burst"], None)?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.workers[0].child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let after = self.backlog(queue).await?;
            if !after.is_empty() {
                finish
                    .notes
                    .push(format!("still left after the burst worker: {after:?}"));
            }
        }
        finish.notes.extend(self.stop_workers("QUIT"));
        Ok(finish)
    }

    /// Every job's runs, from the lines `Record` appended.
    pub fn runs(&self) -> Runs {
        let mut runs = Runs::default();
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(what), Some(id), Some(_attempt), Some(pid)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                runs.garbled += 1;
                continue;
            };
            let pid: u32 = pid.parse().unwrap_or(0);
            let entry = runs.by_id.entry(id.to_string()).or_default();
            match what {
                "start" => entry.starts.push(pid),
                "done" => entry.dones.push(pid),
                _ => runs.garbled += 1,
            }
        }
        runs
    }

    /// The failed list: (job id, reason) per record.
    pub async fn failed(&self) -> Result<Vec<(String, String)>, Error> {
        let list: Vec<String> = self
            .redis_cmd(redis::cmd("LRANGE").arg("resque:failed").arg(0).arg(-1))
            .await?;
        Ok(list
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).unwrap_or_default();
                (
                    v["payload"]["id"].as_str().unwrap_or("-").to_string(),
                    v["reason"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect())
    }

    /// Ids of the jobs the sweeper removed because they expired.
    pub async fn expired(&self) -> Result<Vec<String>, Error> {
        let list: Vec<String> = self
            .redis_cmd(redis::cmd("LRANGE").arg("resque:resq:expired").arg(0).arg(-1))
            .await?;
        Ok(list
            .iter()
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).ok()?;
                let payload: serde_json::Value = serde_json::from_str(v["payload"].as_str()?).ok()?;
                payload["id"].as_str().map(str::to_string)
            })
            .collect())
    }

    /// Pids of workers whose log says a reaper took their jobs back while
    /// they lived (they looked dead: a stall longer than the liveness period).
    pub fn judged_dead(&self) -> HashSet<u32> {
        let mut pids = HashSet::new();
        for (pid, log) in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("taken back by a reaper")
                || text.contains("liveness mark had lapsed")
                || text.contains("a reaper took this job back")
            {
                pids.insert(*pid);
            }
        }
        pids
    }

    /// How many lines of the workers' logs contain `needle`.
    pub fn log_lines(&self, needle: &str) -> usize {
        self.logs
            .iter()
            .map(|(_, log)| {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    /// Counts what happened to every job the producer tried to enqueue.
    pub async fn tally(&self, fault: &str, produced: &ProducerLog, finish: &Finish) -> Result<Tally, Error> {
        let runs = self.runs();
        let failed = self.failed().await?;
        let expired: HashSet<String> = self.expired().await?.into_iter().collect();
        let mut failed_ids: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, reason) in &failed {
            failed_ids.entry(id.as_str()).or_default().push(reason.as_str());
        }
        let mut t = Tally {
            fault: fault.to_string(),
            stuck: finish.stuck,
            unexpected_exits: self.unexpected_exits.len() as u64,
            enqueue_retried: produced.retried,
            ..Default::default()
        };
        t.notes.extend(finish.notes.iter().cloned());
        t.notes.extend(self.unexpected_exits.iter().cloned());
        let judged = self.judged_dead();
        let ours: HashSet<&str> = produced
            .stored
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(produced.refused.iter().map(|(id, _)| id.as_str()))
            .chain(produced.ambiguous.iter().map(|(id, _)| id.as_str()))
            .collect();
        for (id, _) in &produced.stored {
            t.enqueued += 1;
            let run = runs.by_id.get(id);
            let dones = run.map_or(0, |r| r.dones.len());
            let starts = run.map_or(0, |r| r.starts.len());
            if dones > 0 {
                t.succeeded += 1;
            } else if failed_ids.contains_key(id.as_str()) {
                t.failed_not_run += 1;
            } else if expired.contains(id) {
                t.expired += 1;
            } else {
                t.lost += 1;
                if t.lost_ids.len() < 20 {
                    t.lost_ids.push(id.clone());
                }
            }
            if starts > 1 {
                t.started_twice += 1;
            }
            if dones > 1 {
                t.ran_twice += 1;
                // Every run but the last: was its process killed, or its
                // worker judged dead while it ran?
                let earlier = &run.map(|r| r.dones.clone()).unwrap_or_default();
                let earlier = &earlier[..earlier.len() - 1];
                if earlier.iter().all(|pid| self.killed.contains(pid)) {
                    t.twice_killed += 1;
                } else if earlier
                    .iter()
                    .all(|pid| self.killed.contains(pid) || judged.contains(pid))
                {
                    t.twice_judged_dead += 1;
                } else if t.twice_unexplained.len() < 20 {
                    t.twice_unexplained
                        .push(format!("{id} (done by pids {:?})", run.map(|r| &r.dones)));
                } else {
                    t.twice_unexplained.push(String::new());
                }
            }
        }
        for (id, why) in &produced.refused {
            t.refused += 1;
            *t.refused_kinds.entry(why.clone()).or_default() += 1;
            if runs.by_id.get(id).is_some_and(|r| !r.starts.is_empty()) {
                t.refused_but_ran += 1;
            }
        }
        for (id, _) in &produced.ambiguous {
            t.ambiguous += 1;
            if runs.by_id.get(id).is_some_and(|r| !r.dones.is_empty()) {
                t.ambiguous_ran += 1;
            }
        }
        for (id, reason) in &failed {
            if ours.contains(id.as_str()) {
                *t.failed_by_reason.entry(reason.clone()).or_default() += 1;
            } else {
                *t.failed_by_reason.entry(format!("{reason} (not ours)")).or_default() += 1;
            }
        }
        t.other_runs = runs.by_id.keys().filter(|id| !ours.contains(id.as_str())).count() as u64;
        t.garbled = runs.garbled;
        Ok(t)
    }
}

/// What is left to do in the store.
#[derive(Debug, Default, Clone)]
pub struct Backlog {
    pub queued: u64,
    pub scheduled: u64,
    pub retrying: u64,
    pub in_flight: u64,
    pub holders: BTreeMap<String, u64>,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.queued == 0 && self.scheduled == 0 && self.retrying == 0 && self.in_flight == 0
    }
}

#[derive(Debug, Default)]
pub struct Finish {
    /// Jobs that sat still (queued or in flight) while workers lived.
    pub stuck: u64,
    pub notes: Vec<String>,
}

/// One job's runs: the pid of each start and each completion.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub starts: Vec<u32>,
    pub dones: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Runs {
    pub by_id: HashMap<String, Run>,
    pub garbled: u64,
}

/// One fault class's outcome.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub fault: String,
    /// What the run did (cycles, restarts, faults injected).
    pub detail: String,
    /// Stored: the store said yes (perhaps after retrying the same bytes).
    pub enqueued: u64,
    /// Ran to the end at least once.
    pub succeeded: u64,
    /// Stored, never ran to the end, in no failed or expired list.
    pub lost: u64,
    pub lost_ids: Vec<String>,
    /// Ran to the end more than once.
    pub ran_twice: u64,
    /// ... of which every earlier run was in a process the harness killed.
    pub twice_killed: u64,
    /// ... or in a worker that a reaper had judged dead while it ran.
    pub twice_judged_dead: u64,
    pub twice_unexplained: Vec<String>,
    /// Started more than once (a run cut short, then run again).
    pub started_twice: u64,
    /// The producer got a typed refusal: nothing was stored.
    pub refused: u64,
    pub refused_kinds: BTreeMap<String, u64>,
    /// Refused at enqueue, and yet ran (never expected).
    pub refused_but_ran: u64,
    /// The producer gave up retrying an unavailable store: stored or not, it cannot know.
    pub ambiguous: u64,
    pub ambiguous_ran: u64,
    /// Enqueues that succeeded only after retrying the same signed bytes.
    pub enqueue_retried: u64,
    /// Stored jobs that never ran and sit in the failed list.
    pub failed_not_run: u64,
    /// Records in the failed list, by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Stored jobs the sweeper removed as expired.
    pub expired: u64,
    /// Jobs that sat still while their worker lived (see notes).
    pub stuck: u64,
    /// Workers that exited by themselves.
    pub unexpected_exits: u64,
    /// Runs of jobs this producer did not enqueue (cron's).
    pub other_runs: u64,
    pub garbled: u64,
    /// Outcomes the run checks, each with whether it held.
    pub checks: Vec<(String, bool)>,
    pub notes: Vec<String>,
}

impl Tally {
    pub fn check(&mut self, what: impl Into<String>, held: bool) {
        self.checks.push((what.into(), held));
    }

    /// Duplicates nothing explains.
    pub fn unexplained(&self) -> u64 {
        self.twice_unexplained.len() as u64
    }

    pub fn failed_cell(&self) -> String {
        if self.failed_by_reason.is_empty() {
            "0".into()
        } else {
            self.failed_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Every check held, nothing lost, nothing unexplained.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.refused_but_ran == 0
            && self.twice_unexplained.is_empty()
            && self.unexpected_exits == 0
            && self.garbled == 0
            && self.checks.iter().all(|(_, held)| *held)
    }
}

/// What the producer was told about each job it tried to store.
#[derive(Debug, Default, Clone)]
pub struct ProducerLog {
    /// Stored, with the number of tries it took.
    pub stored: Vec<(String, u32)>,
    /// Refused with a typed error (kind: its words).
    pub refused: Vec<(String, String)>,
    /// Unavailable store, retries exhausted.
    pub ambiguous: Vec<(String, String)>,
    /// Stored after more than one try.
    pub retried: u64,
    /// When the first typed refusal came.
    pub first_refusal: Option<Instant>,
}

/// A steady producer of signed `Record` jobs, in this process, through
/// the library (sealed by the policy, stored by the Redis store).
pub struct Producer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    pub log: Arc<Mutex<ProducerLog>>,
}

impl Producer {
    /// `rate` jobs a second onto `queue`, each `Record { ms }` with `ms`
    /// drawn up to `max_ms`. A store that is away gets the same signed
    /// bytes again (a real producer retries; a copy that did land is then
    /// refused `replayed`, never run twice) for up to `retry_for`.
    pub async fn start(
        lab: &Lab,
        queue: &str,
        rate: u64,
        max_ms: u64,
        retry_for: Duration,
        seed: u64,
    ) -> Result<Producer, Error> {
        let store = RedisStore::connect(&RedisConfig::new(lab.url()), "resque").await?;
        let policy = Policy::new(Arc::clone(&lab.keyring))?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(ProducerLog::default()));
        let queue = queue.to_string();
        let (stop2, log2) = (Arc::clone(&stop), Arc::clone(&log));
        let task = tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let every = Duration::from_micros(1_000_000 / rate.max(1));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let ms = rng.below(max_ms + 1);
                let sealed = match policy.seal(
                    "Record",
                    &queue,
                    vec![serde_json::json!({ "ms": ms })],
                    SealOptions::default(),
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("cannot seal: {e}");
                        return;
                    }
                };
                let id = sealed.id().to_string();
                let started = Instant::now();
                let mut tries = 0u32;
                let mut delay = Duration::from_millis(50);
                loop {
                    tries += 1;
                    match store.enqueue(std::slice::from_ref(&sealed)).await {
                        Ok(()) => {
                            let mut l = lock(&log2);
                            l.stored.push((id, tries));
                            if tries > 1 {
                                l.retried += 1;
                            }
                            break;
                        }
                        Err(StoreError::Unavailable(e)) => {
                            if started.elapsed() > retry_for {
                                lock(&log2).ambiguous.push((id, e.to_string()));
                                break;
                            }
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(1));
                        }
                        Err(e) => {
                            let kind = refusal_kind(&e);
                            {
                                let mut l = lock(&log2);
                                l.refused.push((id, kind));
                                l.first_refusal.get_or_insert_with(Instant::now);
                            }
                            // Back off a little, as a producer told "full" would.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            break;
                        }
                    }
                }
            }
        });
        Ok(Producer { stop, task, log })
    }

    /// How many jobs were stored so far.
    pub fn stored(&self) -> usize {
        lock(&self.log).stored.len()
    }

    pub fn refused(&self) -> usize {
        lock(&self.log).refused.len()
    }

    pub async fn stop(self) -> ProducerLog {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let log = lock(&self.log).clone();
        log
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A typed enqueue error, named: `oom` (Redis at maxmemory with
/// noeviction), `queue_full`, else the variant.
pub fn refusal_kind(e: &StoreError) -> String {
    match e {
        StoreError::Refused(source) if source.to_string().contains("OOM") => "Refused(OOM)".into(),
        StoreError::Refused(source) => format!("Refused({source})"),
        StoreError::QueueFull { .. } => "QueueFull".into(),
        StoreError::Protocol { what } => format!("Protocol({what})"),
        StoreError::Unavailable(_) => "Unavailable".into(),
        StoreError::NotReplicated { wanted, got } => format!("NotReplicated({got} of {wanted})"),
    }
}

/// Debian's libfaketime (the multi-threaded one), if installed.
pub fn faketime_library() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime"))
        .collect();
    dirs.extend(["/usr/lib/faketime", "/usr/lib64/faketime", "/usr/local/lib/faketime"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("libfaketimeMT.so.1"))
        .find(|p| p.is_file())
}

/// The child processes of `pid` (all its threads'), from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// The last `n` bytes of a file, on one line.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(n);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].replace('\n', " | ")
}

/// A fresh HS256 keys file (mode 0600) in `dir`.
pub fn write_keys(dir: &Path) -> Result<PathBuf, Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let keys = dir.join("keys.toml");
    let (text, _) = Keyring::generate(resq::SigAlg::Hs256, "chaos");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&keys)?;
    f.write_all(text.as_bytes())?;
    Ok(keys)
}

/// `used_memory` of the lab's server.
pub async fn used_memory(lab: &Lab) -> Result<u64, Error> {
    let info: String = lab.redis_cmd(redis::cmd("INFO").arg("memory")).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// `total_commands_processed` of the lab's server.
pub async fn commands_processed(lab: &Lab) -> Result<u64, Error> {
    let info: String = lab.redis_cmd(redis::cmd("INFO").arg("stats")).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Ids that ran to the end, among `ids`.
pub fn done_among(runs: &Runs, ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| runs.by_id.get(*id).is_some_and(|r| !r.dones.is_empty()))
        .count()
}
