//! Support for end-to-end tests of the real `resq` binary.
#![allow(dead_code)]

pub mod browser;
pub mod failover;
pub mod http;
pub mod web;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use local_redis::LocalRedis;
use resq::{Client, Job, JobContext, JobError, Keyring};
use resq_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};

pub struct Env {
    pub redis: LocalRedis,
    pub store: RedisStore,
    pub dir: tempfile::TempDir,
}

/// The demo `Sleep` job, typed on the producer side.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    #[garde(skip)]
    pub ms: u64,
}
impl Job for Sleep {
    const CLASS: &'static str = "Sleep";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// The shipped no-op job, typed on the producer side.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    #[serde(default)]
    #[garde(length(max = 1_048_576))]
    pub pad: String,
}
impl Job for Noop {
    const CLASS: &'static str = "Noop";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(local_redis::Options::default(), None).await
    }

    /// A server configured with `options`, reached with `password` (the
    /// default user's, when the server has one).
    pub async fn start_with(options: local_redis::Options, password: Option<&str>) -> Env {
        let redis = LocalRedis::start_with(options).expect("redis-server");
        let mut config = RedisConfig::new(redis.url());
        config.password = password.map(|p| p.to_string().into());
        let store = RedisStore::connect(&config, "resque").await.expect("connect");
        let dir = tempfile::tempdir().unwrap();
        // Fast liveness so recovery takes about a second in tests.
        std::fs::write(
            dir.path().join("resq.toml"),
            "[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 50\n",
        )
        .unwrap();
        // Keys made the way a user makes them.
        let keys = dir.path().join("keys.toml");
        let made = Command::new(env!("CARGO_BIN_EXE_resq"))
            .args(["keys", "generate", "--out"])
            .arg(&keys)
            .output()
            .expect("resq keys generate");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        Env { redis, store, dir }
    }

    /// Adds `text` to this environment's `resq.toml`.
    pub fn append_config(&self, text: &str) {
        let path = self.dir.path().join("resq.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(text);
        std::fs::write(path, config).unwrap();
    }

    /// `resq token create --json ARGS...`: (id, secret).
    pub fn token(&self, args: &[&str]) -> (String, String) {
        let o = self.run(&[&["token", "create", "--json"], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    pub fn keys_path(&self) -> PathBuf {
        self.dir.path().join("keys.toml")
    }

    /// A client signing with the same keys as the workers.
    pub fn client(&self) -> Client {
        let keyring = Arc::new(Keyring::load(&self.keys_path()).expect("keys"));
        Client::new(Arc::new(self.store.clone()), keyring).expect("client")
    }

    pub fn conn(&self) -> resq_redis::Connection {
        self.store.connection()
    }

    /// `resq` with this environment's Redis and config, run in a temp dir.
    pub fn resq(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_resq"));
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RESQ_REDIS_URL", self.redis.url())
            .env("RESQ_KEYS_FILE", self.keys_path())
            .env("RESQ_LOG", "resq=debug,info")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.resq().args(args).output().expect("run resq")
    }

    pub fn spawn_worker(&self, args: &[&str]) -> Child {
        let log = self.dir.path().join(format!("worker-{}.log", rand_suffix()));
        let mut cmd = self.resq();
        cmd.arg("--log-format").arg("json").arg("worker").args(args);
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
        cmd.spawn().expect("spawn worker")
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query_async(&mut self.conn()).await.unwrap()
    }

    pub async fn llen(&self, key: &str) -> u64 {
        redis::cmd("LLEN").arg(key).query_async(&mut self.conn()).await.unwrap()
    }

    /// Every element of a list, head first.
    pub async fn lrange(&self, key: &str) -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .unwrap()
    }

    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.conn())
            .await
            .unwrap()
    }

    /// Jobs in flight in every worker's in-flight hashes (their claims,
    /// kept beside them, not counted).
    pub async fn in_flight(&self) -> u64 {
        let mut n = 0;
        for key in self.keys("resque:resq:inflight:*").await {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .unwrap();
            n += fields.iter().filter(|f| f.parse::<u64>().is_ok()).count() as u64;
        }
        n
    }

    pub async fn processed(&self) -> u64 {
        self.get("resque:stat:processed")
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded) until `check` holds.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1500 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn signal(child: &Child, sig: i32) {
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for a child with a bound, killing it if the bound passes.
pub fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..1500 {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("worker did not exit");
}

pub fn log_paths(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect()
}
