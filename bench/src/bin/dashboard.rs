//! What a dashboard page costs on a big Redis: `scripts/bench --dashboard`.
//!
//! On a private redis-server holding 1,000,000 signed jobs in one queue and
//! 100,000 failure records, one `resq serve`: each page is fetched `--runs`
//! times over loopback (a new connection each, as a browser's first
//! request), and the time from connecting to the last byte is kept; the
//! Redis commands one fetch costs are counted from `INFO commandstats`.
//!
//! Prints a table and writes `bench/results/dashboard.md`. Asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq_bench::{write_keys, BenchError, Figure, Report, TempDirGuard};

const PASSWORD: &str = "benchmark password only";

struct Bench {
    redis: LocalRedis,
    dir: PathBuf,
    keys: PathBuf,
    resq: PathBuf,
}

impl Bench {
    fn resq(&self) -> Command {
        let mut cmd = Command::new(&self.resq);
        cmd.current_dir(&self.dir)
            .env("RESQ_REDIS_URL", self.redis.url())
            .env("RESQ_KEYS_FILE", &self.keys)
            .env("RESQ_LOG", "warn");
        cmd
    }

    fn redis_cli(&self, args: &[&str]) -> Result<String, BenchError> {
        let o = Command::new("redis-cli")
            .args(["-p", &self.redis.port().to_string()])
            .args(args)
            .output()?;
        if !o.status.success() {
            return Err(format!("redis-cli {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Every command Redis has run.
    fn commands(&self) -> Result<u64, BenchError> {
        let info = self.redis_cli(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }
}

/// `LUA`: pushes ARGV[1] ARGV[2] times onto KEYS[1], 5,000 a call.
const FILL: &str = r#"
local batch = {}
for i = 1, tonumber(ARGV[2]) do
    batch[#batch + 1] = ARGV[1]
    if #batch == 5000 then redis.call('RPUSH', KEYS[1], unpack(batch)); batch = {} end
end
if #batch > 0 then redis.call('RPUSH', KEYS[1], unpack(batch)) end
return redis.call('LLEN', KEYS[1])"#;

fn http(addr: &str, request: &str) -> Result<(u16, String, String), BenchError> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, head.to_string(), body.to_string()))
}

fn cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| resq_bench::flag_value(&argv, flag);
    let resq = std::fs::canonicalize(value("--resq").ok_or("--resq PATH is required")?)?;
    let runs: usize = value("--runs").and_then(|v| v.parse().ok()).unwrap_or(200);
    let jobs: u64 = value("--jobs").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let failures: u64 = value("--failures").and_then(|v| v.parse().ok()).unwrap_or(100_000);

    let dir = std::env::temp_dir().join(format!("resq-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _guard = TempDirGuard(dir.clone());
    let keys = write_keys(&dir)?;
    let bench = Bench {
        redis: LocalRedis::start()?,
        dir,
        keys,
        resq,
    };
    std::fs::write(bench.dir.join("resq.toml"), "[dashboard]\nsample_interval_s = 3600\n")?;

    // One signed job, copied a million times; Ruby-shaped failure records.
    let o = bench
        .resq()
        .args(["enqueue", "Noop", "--args", r#"{"pad":""}"#, "--queue", "big"])
        .output()?;
    if !o.status.success() {
        return Err(format!("enqueue: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let job = bench.redis_cli(&["LPOP", "resque:queue:big"])?;
    bench.redis_cli(&["EVAL", FILL, "1", "resque:queue:big", &job, &jobs.to_string()])?;
    let failure =
        serde_json::json!({"failed_at": "2026/12/02 06:01:00 UTC", "payload": {"class": "Mailer", "args": [7]},
        "exception": "Net::ReadTimeout", "error": "execution expired", "backtrace": ["app/mailer.rb:3"],
        "worker": "host:1:mail", "queue": "mail"})
        .to_string();
    bench.redis_cli(&["EVAL", FILL, "1", "resque:failed", &failure, &failures.to_string()])?;
    for q in ["mail", "default", "reports"] {
        bench.redis_cli(&["EVAL", FILL, "1", &format!("resque:queue:{q}"), &job, "1000"])?;
        bench.redis_cli(&["SADD", "resque:queues", q])?;
    }

    let mut add = bench
        .resq()
        .args(["user", "add", "bench", "--role", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    writeln!(add.stdin.take().ok_or("no stdin")?, "{PASSWORD}")?;
    if !add.wait()?.success() {
        return Err("resq user add failed".into());
    }
    let mut serve = bench
        .resq()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(serve.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or("resq serve did not start")?
        .to_string();

    // Log in as a browser would.
    let (_, head, body) = http(
        &addr,
        &format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )?;
    let login_cookie = cookie(&head, "resq-login").ok_or("no login cookie")?;
    let token = body
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("no login token")?;
    let form = format!("name=bench&password={}&token={token}", PASSWORD.replace(' ', "+"));
    let (status, head, _) = http(
        &addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nCookie: resq-login={login_cookie}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )?;
    let session = cookie(&head, "resq-session").ok_or(format!("login answered {status}"))?;

    let mut report = Report::default();
    report.line(format!(
        "# Dashboard pages on {jobs} jobs in one queue and {failures} failure records ({runs} fetches each)\n"
    ));
    report.line("| page | p50 (ms) | p99 (ms) | Redis commands | bytes |".into());
    report.line("|---|---|---|---|---|".into());
    let pages = [
        "/",
        "/queues",
        "/queues/big?offset=0",
        "/queues/big?offset=500000",
        "/queues/big?offset=999900",
        "/failed?offset=0",
        "/failed?offset=99900",
        "/failed?class=NoSuchClass",
        "/workers",
        "/working",
        "/stats",
        "/audit",
    ];
    for page in pages {
        let request = format!(
            "GET {page} HTTP/1.1\r\nHost: {addr}\r\nCookie: resq-session={session}\r\nConnection: close\r\n\r\n"
        );
        let before = bench.commands()?;
        let (status, _, body) = http(&addr, &request)?;
        let commands = bench.commands()? - before - 1;
        if status != 200 {
            return Err(format!("{page} answered {status}").into());
        }
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            http(&addr, &request)?;
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let figure = Figure::of(ms.clone());
        ms.sort_by(|a, b| a.total_cmp(b));
        let p99 = ms[(ms.len() * 99 / 100).min(ms.len() - 1)];
        report.line(format!(
            "| `{page}` | {:.2} | {p99:.2} | {commands} | {} |",
            figure.median,
            body.len()
        ));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    report.write("dashboard.md");
    Ok(())
}
