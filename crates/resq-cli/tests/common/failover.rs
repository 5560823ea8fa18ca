//! What the failover tests (Sentinel and Cluster) share: a work directory
//! with keys, the binary with only the environment given, a worker process
//! that records each job's start and end, and the count of those records.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use resq::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

use super::stderr;

/// The shipped `Record` job, typed on the producer side.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    #[garde(skip)]
    pub ms: u64,
}
impl Job for Record {
    const CLASS: &'static str = "Record";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// A directory with a keys file made the way a user makes one, and a
/// resq.toml holding `config`.
pub fn workdir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resq.toml"), config).unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_resq"))
        .args(["keys", "generate", "--out"])
        .arg(dir.path().join("keys.toml"))
        .output()
        .expect("resq keys generate");
    assert!(made.status.success(), "{}", stderr(&made));
    dir
}

/// `resq` in `dir`, with only the environment given.
pub fn resq(dir: &Path, vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resq"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RESQ_KEYS_FILE", dir.join("keys.toml"))
        .env("RESQ_LOG", "resq=debug,resq_redis=debug,info")
        .stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

pub fn run(dir: &Path, vars: &[(&str, String)], args: &[&str]) -> Output {
    resq(dir, vars).args(args).output().expect("run resq")
}

/// A worker process, killed if the test ends before it stopped it (a
/// failed assertion must not leave it running against dead servers).
pub struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for WorkerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A worker of `queues` (comma-separated) that records each job's start
/// and end in `record`, its log (JSON) in `worker.log` in `dir`.
pub fn spawn_worker(
    dir: &Path,
    vars: &[(&str, String)],
    record: &Path,
    queues: &str,
    concurrency: u32,
) -> WorkerProcess {
    resq(dir, vars)
        .env("DEMO_RECORD_FILE", record)
        .args([
            "--log-format",
            "json",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("worker.log")).unwrap())
        .spawn()
        .map(WorkerProcess)
        .expect("spawn the worker")
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default()
}

/// Every job's `start` and `done` lines, by id.
pub fn runs(record: &Path) -> HashMap<String, (u32, u32)> {
    let mut by_id: HashMap<String, (u32, u32)> = HashMap::new();
    for line in std::fs::read_to_string(record).unwrap_or_default().lines() {
        let mut parts = line.split_whitespace();
        let (Some(what), Some(id)) = (parts.next(), parts.next()) else {
            panic!("garbled record line {line:?}");
        };
        let entry = by_id.entry(id.to_string()).or_default();
        match what {
            "start" => entry.0 += 1,
            "done" => entry.1 += 1,
            _ => panic!("garbled record line {line:?}"),
        }
    }
    by_id
}

/// Waits (bounded) until `check` holds.
pub async fn wait_for<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Producer tasks enqueueing `Record` jobs through the library, in turn over
/// `queues`, until `jobs` are acknowledged: the acknowledged ids, and the
/// refusals counted by kind (a refused enqueue is tried again 20 ms later).
pub struct Load {
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refused: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    jobs: usize,
}

impl Load {
    pub fn start(client: &resq::Client, jobs: usize, producers: usize, queues: &'static [&'static str]) -> Load {
        let acked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let refused: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> = Default::default();
        let tasks = (0..producers)
            .map(|t| {
                let (client, acked, refused) = (client.clone(), acked.clone(), refused.clone());
                tokio::spawn(async move {
                    let mut n = t;
                    while acked.lock().unwrap().len() < jobs {
                        n += 1;
                        match client.enqueue_to(queues[n % queues.len()], &Record { ms: 0 }).await {
                            Ok(id) => acked.lock().unwrap().push(id),
                            Err(e) => {
                                let kind = match &e {
                                    resq::EnqueueError::Store(resq::StoreError::Unavailable(_)) => "Unavailable".into(),
                                    resq::EnqueueError::Store(resq::StoreError::NotReplicated { .. }) => {
                                        "NotReplicated".into()
                                    }
                                    other => other.to_string(),
                                };
                                *refused.lock().unwrap().entry(kind).or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            acked,
            refused,
            tasks,
            jobs,
        }
    }

    /// How many are acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (up to `bound`) for every producer to finish, then gives the
    /// acknowledged ids and the refusals.
    pub async fn finish(self, bound: Duration) -> (Vec<String>, std::collections::BTreeMap<String, u64>) {
        for task in self.tasks {
            match tokio::time::timeout(bound, task).await {
                Ok(joined) => joined.expect("a producer task"),
                Err(_) => panic!(
                    "the producers did not get {} jobs acknowledged: {} were, {:?} refused",
                    self.jobs,
                    self.acked.lock().unwrap().len(),
                    self.refused.lock().unwrap()
                ),
            }
        }
        let acked = self.acked.lock().unwrap().clone();
        let refused = self.refused.lock().unwrap().clone();
        (acked, refused)
    }
}

/// Of the `acked` ids, by the record `done`: how many never finished (lost)
/// and how many started more than once.
pub fn lost_and_twice(acked: &[String], done: &HashMap<String, (u32, u32)>) -> (usize, usize) {
    let lost = acked.iter().filter(|id| done.get(*id).is_none_or(|r| r.1 == 0)).count();
    let twice = acked.iter().filter(|id| done.get(*id).is_some_and(|r| r.0 > 1)).count();
    (lost, twice)
}
