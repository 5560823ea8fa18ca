//! The HTTP enqueue API under load, on loopback: `scripts/bench --api`.
//!
//! On a private redis-server, one `resq serve`:
//! - single jobs: signed and validated, one a request, over keep-alive
//!   connections (`wrk`, Debian's), requests/s and latency;
//! - bulk: 1,000 jobs a request, jobs/s;
//! - a flood: one token driven at 10 times its limit (paced clients) while
//!   another token sends one request at a time; the other token's success
//!   rate and p99, against the same client run with no flood.
//!
//! Prints each figure and writes `bench/results/api.md`. Asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq_bench::{write_keys, BenchError, TempDirGuard};

struct Args {
    resq: PathBuf,
    seconds: u64,
    connections: usize,
    flood_connections: usize,
    flood_times: f64,
}

fn args() -> Result<Args, BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| resq_bench::flag_value(&argv, flag);
    Ok(Args {
        // Absolute: commands run in the scratch folder.
        resq: std::fs::canonicalize(value("--resq").ok_or("--resq PATH is required")?)?,
        seconds: value("--seconds").and_then(|v| v.parse().ok()).unwrap_or(10),
        connections: value("--connections").and_then(|v| v.parse().ok()).unwrap_or(64),
        flood_connections: value("--flood-connections").and_then(|v| v.parse().ok()).unwrap_or(4),
        flood_times: value("--flood-times").and_then(|v| v.parse().ok()).unwrap_or(10.0),
    })
}

struct Setup {
    redis: LocalRedis,
    dir: PathBuf,
    keys: PathBuf,
    resq: PathBuf,
}

impl Setup {
    fn resq(&self) -> Command {
        let mut cmd = Command::new(&self.resq);
        cmd.current_dir(&self.dir)
            .env("RESQ_REDIS_URL", self.redis.url())
            .env("RESQ_KEYS_FILE", &self.keys)
            .env("RESQ_LOG", "warn");
        cmd
    }

    fn token(&self, name: &str, rate: &str, burst: u32) -> Result<String, BenchError> {
        let o = self
            .resq()
            .args([
                "token",
                "create",
                "--json",
                "--name",
                name,
                "--classes",
                "Noop",
                "--queues",
                "default",
            ])
            .args(["--rate", rate, "--burst", &burst.to_string(), "--max-bytes", "16777216"])
            .output()?;
        if !o.status.success() {
            return Err(format!("token create: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        Ok(v["secret"].as_str().ok_or("no secret")?.to_string())
    }

    fn clear_queue(&self) -> Result<(), BenchError> {
        let status = Command::new("redis-cli")
            .args([
                "-p",
                &self.redis.port().to_string(),
                "DEL",
                "resque:queue:default",
                "resque:resq:api:audit",
            ])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err("redis-cli DEL failed".into());
        }
        Ok(())
    }
}

/// What `wrk` measured.
#[derive(Debug, Default, Clone)]
struct WrkRun {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
}

fn wrk(url: &str, script: &Path, connections: usize, seconds: u64, token: &str) -> Result<WrkRun, BenchError> {
    let o = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .env("RESQ_TOKEN", token)
        .output()?;
    if !o.status.success() {
        return Err(format!("wrk: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut run = WrkRun::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.requests_per_s = n.parse().unwrap_or(0.0),
            ["50%", t] => run.p50_ms = ms(t),
            ["99%", t] => run.p99_ms = ms(t),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().unwrap_or(0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(run)
}

/// wrk's `1.23ms`, `456.00us`, `1.2s` in milliseconds.
fn ms(text: &str) -> f64 {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(0.0) * scale
}

/// One client on one keep-alive connection, one request at a time,
/// starting one every `every` (or as soon as the last answered, when it
/// is late): `(accepted, sent, p50 ms, p99 ms)`.
fn paced_client(
    addr: &str,
    token: &str,
    requests: usize,
    every: Duration,
) -> Result<(usize, usize, f64, f64), BenchError> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let body = r#"{"class":"Noop","args":{}}"#;
    let request = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut latencies = Vec::with_capacity(requests);
    let mut accepted = 0;
    let begin = Instant::now();
    for n in 0..requests {
        let due = begin + every * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let start = Instant::now();
        writer.write_all(request.as_bytes())?;
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut sink = vec![0u8; length];
        reader.read_exact(&mut sink)?;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        if status_line.split_whitespace().nth(1) == Some("201") {
            accepted += 1;
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok((accepted, requests, at(0.50), at(0.99)))
}

/// `connections` paced clients together at `rate` requests/s for
/// `seconds`: `(accepted, sent, achieved requests/s)`.
fn flood(
    addr: &str,
    token: &str,
    rate: f64,
    connections: usize,
    seconds: u64,
) -> Result<(usize, usize, f64), BenchError> {
    let per = rate / connections as f64;
    let requests = (per * seconds as f64) as usize;
    let every = Duration::from_secs_f64(1.0 / per);
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, token) = (addr.to_string(), token.to_string());
            std::thread::spawn(move || paced_client(&addr, &token, requests, every).map_err(|e| e.to_string()))
        })
        .collect();
    let (mut accepted, mut sent) = (0, 0);
    for client in clients {
        let (a, s, _, _) = client.join().map_err(|_| "a flood client panicked")??;
        accepted += a;
        sent += s;
    }
    Ok((accepted, sent, sent as f64 / start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), BenchError> {
    let args = args()?;
    let dir = std::env::temp_dir().join(format!("resq-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _guard = TempDirGuard(dir.clone());
    let setup = Setup {
        redis: LocalRedis::start()?,
        keys: write_keys(&dir)?,
        dir: dir.clone(),
        resq: args.resq.clone(),
    };
    let fast = setup.token("fast", "1000000/s", 1_000_000)?;
    let flooder = setup.token("flooder", "1000/s", 1000)?;
    let victim = setup.token("victim", "1000/s", 1000)?;
    let mut server = setup
        .resq()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| format!("resq serve said {first:?}"))?
        .to_string();
    let single = dir.join("single.lua");
    std::fs::write(
        &single,
        "wrk.method = \"POST\"\nwrk.body = '{\"class\":\"Noop\",\"args\":{}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"RESQ_TOKEN\")\n",
    )?;
    let jobs: Vec<String> = (0..1000).map(|_| r#"{"class":"Noop","args":{}}"#.to_string()).collect();
    let bulk = dir.join("bulk.lua");
    std::fs::write(
        &bulk,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"jobs\":[{}]}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"RESQ_TOKEN\")\n",
            jobs.join(",")
        ),
    )?;
    let url = format!("http://{addr}/api/v1/jobs");
    let mut report = resq_bench::Report::default();
    report.line(format!(
        "# resq HTTP API on loopback ({}s a run, {} connections, wrk -t2)\n",
        args.seconds, args.connections
    ));

    setup.clear_queue()?;
    let one = wrk(&url, &single, args.connections, args.seconds, &fast)?;
    report.line(format!(
        "single job (signed, validated, audited): {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} not 2xx of {}",
        one.requests_per_s, one.p50_ms, one.p99_ms, one.non_2xx, one.requests
    ));
    setup.clear_queue()?;
    let many = wrk(&format!("{url}/bulk"), &bulk, 8, args.seconds, &fast)?;
    report.line(format!(
        "bulk (1,000 jobs a request, 8 connections): {:.0} jobs/s, p50 {:.1} ms, p99 {:.1} ms, {} not 2xx of {}",
        many.requests_per_s * 1000.0,
        many.p50_ms,
        many.p99_ms,
        many.non_2xx,
        many.requests
    ));

    setup.clear_queue()?;
    // The other token: one request a millisecond at most, one connection.
    let victim_every = Duration::from_millis(1);
    let calm = paced_client(&addr, &victim, 5000, victim_every)?;
    let flood_addr = addr.clone();
    let flood_seconds = args.seconds.max(5);
    let flood_connections = args.flood_connections;
    let flood_rate = args.flood_times * 1000.0;
    let flooding = std::thread::spawn(move || {
        flood(&flood_addr, &flooder, flood_rate, flood_connections, flood_seconds).map_err(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    let under = paced_client(&addr, &victim, 5000, victim_every)?;
    let (flood_accepted, flood_sent, flood_achieved) = flooding.join().map_err(|_| "the flood thread panicked")??;
    report.line(format!(
        "flood ({} connections): token at 1,000/s driven at {:.0} requests/s ({:.1}x its limit), {} of {} refused 429",
        args.flood_connections,
        flood_achieved,
        flood_achieved / 1000.0,
        flood_sent - flood_accepted,
        flood_sent
    ));
    report.line(format!(
        "  another token, one request a millisecond: alone {}/{} accepted, p50 {:.2} ms, p99 {:.2} ms; during the flood {}/{} accepted, p50 {:.2} ms, p99 {:.2} ms ({:.2}x)",
        calm.0,
        calm.1,
        calm.2,
        calm.3,
        under.0,
        under.1,
        under.2,
        under.3,
        under.3 / calm.3.max(0.001)
    ));
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    report.write("api.md");
    Ok(())
}
