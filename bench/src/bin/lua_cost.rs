//! What the per-job steps of resq's scripts cost Redis, each alone, for one
//! batch of `--batch` jobs (default 131: the average fetch of a
//! `resq worker --concurrency 256` draining a full queue of no-op jobs).
//!
//! `cargo run --release -p resq-bench --bin lua_cost -- [--batch N] [--runs N]`
//!
//! On a private redis-server with `SLOWLOG` at 0 µs, each step runs a script
//! that does only that step (and, for the fetch that moves jobs inside
//! Redis, the worker's `LRANGE` after it), from a fresh start: a new
//! in-flight hash, one shaped as the fetch leaves it (a hashtable, see
//! `fetch.lua`), or a queue of jobs of the size `fill` makes. The time is
//! the commands' own (`SLOWLOG`): neither the client's side nor Redis's
//! read, parse and reply of each command count, so a step of two commands
//! (the `LRANGE` one) pays more than it shows. It prints the median
//! and 10th percentile per batch and the median per job. The steps are those
//! a signed no-op job goes through in `fetch.lua`, `claim.lua` and
//! `finish.lua`, with their arguments as the worker sends them (a script's
//! call makes each argument a Lua string). Run on purpose, never in the
//! suite.

use local_redis::LocalRedis;
use redis::aio::MultiplexedConnection;
use resq_bench::{flag_count, BenchError};

/// What a step starts from.
#[derive(Clone, Copy)]
enum Before {
    /// A new in-flight hash: only the marker the fetch writes first.
    Fresh,
    /// The in-flight hash as a fetch leaves it, with the batch's claims or not.
    Hash { claims: bool },
    /// A queue of `batch` signed no-op jobs, each the size `fill` makes.
    Queue,
}

/// One step: what it is, where it starts, and its commands (a script, or a
/// script and the worker's read after it); their times are added.
struct Step {
    name: &'static str,
    before: Before,
    commands: Vec<redis::Cmd>,
}

/// `EVAL script` over keys `h` (the in-flight hash) and `b` (a bitmap, or
/// the batch's list) with `args`.
fn eval(script: &str, args: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(2).arg("h").arg("b").arg(args);
    cmd
}

/// A signed no-op job's shape and size as `fill` enqueues it (338 bytes).
fn job() -> String {
    let job = format!(
        r#"{{"class":"Noop","args":[{{}}],"id":"0193a5b2-7c3e-7d1a-9f00-123456789abc","queue":"default","enqueued_at":1733600000.123,"expires_at":1734204800.123,"attempt":0,"mark":"AAECAwQFBgcICQoL.17","sig":{{"kid":"bench-20261207","alg":"HS256","v":"{}"}}}}"#,
        "x".repeat(43)
    );
    format!("{job:<338}")
}

fn steps(batch: usize) -> Vec<Step> {
    let tokens: Vec<String> = (1..=batch).map(|i| (1000 + i).to_string()).collect();
    let mark = "resq:marks:default:AAAAAAAAAAAAAAAA";
    let empty = Before::Hash { claims: false };
    let claimed = Before::Hash { claims: true };
    let take = vec![batch.to_string()];
    let ack_args: Vec<String> = tokens
        .iter()
        .flat_map(|t| ["1", t.as_str(), "", "", "", "1733600000000"].map(String::from))
        .collect();
    let bits: Vec<String> = (0..batch)
        .flat_map(|i| ["SET".to_string(), "u1".into(), i.to_string(), "1".into()])
        .collect();
    let claims: Vec<String> = tokens
        .iter()
        .enumerate()
        .flat_map(|(i, t)| [format!("c{t}"), format!("{i} {mark}")])
        .collect();
    vec![
        Step {
            name: "a call with one argument a job, nothing done",
            before: empty,
            commands: vec![eval("return 1", &tokens)],
        },
        Step {
            name: "a call with the ack's six arguments a job, read",
            before: empty,
            commands: vec![eval(
                "local n = 0 for i = 1, #ARGV, 6 do if ARGV[i + 2] ~= '' then n = n + 1 end end return n",
                &ack_args,
            )],
        },
        Step {
            name: "fetch, jobs through Lua: LPOP, RPUSH, the reply",
            before: Before::Queue,
            commands: vec![eval(
                "local jobs = redis.call('LPOP', 'q', tonumber(ARGV[1])) redis.call('RPUSH', KEYS[2], unpack(jobs)) \
                 local out = {0, 1, 1001, #jobs, 1} for i = 1, #jobs do out[#out + 1] = jobs[i] end return out",
                &take,
            )],
        },
        Step {
            name: "fetch, jobs inside Redis: SORT STORE, LTRIM, LRANGE",
            before: Before::Queue,
            commands: vec![
                eval(
                    "local n = tonumber(ARGV[1]) redis.call('SORT', 'q', 'BY', 'nosort', 'LIMIT', 0, n, 'STORE', KEYS[2]) \
                     redis.call('LTRIM', 'q', n, -1) return {0, 1, 1001, n, 0}",
                    &take,
                ),
                redis::cmd("LRANGE").arg("b").arg(0).arg(-1).clone(),
            ],
        },
        Step {
            name: "fetch: HSET token -> batch, made in Lua",
            before: Before::Fresh,
            commands: vec![eval(
                &format!(
                    "local f = {{}} for i = 1, {batch} do f[#f + 1] = 1000 + i f[#f + 1] = '1001' end \
                     redis.call('HSET', KEYS[1], unpack(f)) return 1"
                ),
                &tokens,
            )],
        },
        Step {
            name: "claim: BITFIELD SET u1 <bit> 1, one a job",
            before: empty,
            commands: vec![eval("redis.call('BITFIELD', KEYS[2], unpack(ARGV)) return 1", &bits)],
        },
        Step {
            name: "claim: HSET c<token> -> claim",
            before: empty,
            commands: vec![eval("redis.call('HSET', KEYS[1], unpack(ARGV)) return 1", &claims)],
        },
        Step {
            name: "ack: HMGET the tokens",
            before: claimed,
            commands: vec![eval("return #redis.call('HMGET', KEYS[1], unpack(ARGV))", &tokens)],
        },
        Step {
            name: "ack: HDEL token and c<token>",
            before: claimed,
            commands: vec![eval(
                "local f = {} for i = 1, #ARGV do f[#f + 1] = ARGV[i] f[#f + 1] = 'c' .. ARGV[i] end \
                 redis.call('HDEL', KEYS[1], unpack(f)) return 1",
                &tokens,
            )],
        },
    ]
}

/// Sets up what `before` says, and nothing else (no batch list, no bitmap).
async fn prepare(conn: &mut MultiplexedConnection, batch: usize, before: Before) -> Result<(), BenchError> {
    redis::cmd("DEL").arg("h").arg("b").arg("q").exec_async(conn).await?;
    match before {
        Before::Queue => {
            redis::cmd("RPUSH")
                .arg("q")
                .arg(vec![job(); batch])
                .exec_async(conn)
                .await?;
        }
        Before::Fresh => {
            redis::cmd("HSET")
                .arg("h")
                .arg("x")
                .arg("m".repeat(80))
                .exec_async(conn)
                .await?;
        }
        Before::Hash { claims } => {
            let script = format!(
                "redis.call('HSET', KEYS[1], 'x', string.rep('m', 80)) \
                 for i = 1, {batch} do redis.call('HSET', KEYS[1], tostring(1000 + i), '1001') \
                 if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'c' .. (1000 + i), i .. ' resq:marks:default:AAAAAAAAAAAAAAAA') end end"
            );
            redis::cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg("h")
                .arg(if claims { "1" } else { "0" })
                .exec_async(conn)
                .await?;
        }
    }
    Ok(())
}

/// Redis's own time for the commands since the slow log was reset (µs):
/// each entry is `[id, when, µs, [command, args...], client, name]`.
async fn logged_us(conn: &mut MultiplexedConnection) -> Result<u64, BenchError> {
    let log: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG").arg("GET").arg(16).query_async(conn).await?;
    Ok(log
        .into_iter()
        .filter_map(|entry| {
            let command: Vec<String> = redis::from_redis_value(entry.get(3)?.clone()).ok()?;
            let us: u64 = redis::from_redis_value(entry.get(2)?.clone()).ok()?;
            (command.first()? != "SLOWLOG").then_some(us)
        })
        .sum())
}

fn main() -> std::process::ExitCode {
    resq_bench::run_main(measure())
}

async fn measure() -> Result<(), BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let batch = flag_count(&argv, "--batch", 131);
    // The steps `unpack` their arguments whole (the scripts slice theirs):
    // Lua's stack takes about 8,000 values.
    if batch > 1_000 {
        return Err("--batch is at most 1000".into());
    }
    let runs = flag_count(&argv, "--runs", 200);
    let server = LocalRedis::start()?;
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .exec_async(&mut conn)
        .await?;
    println!(
        "{}\none batch of {batch} jobs, {runs} runs: Redis's µs (median, p10), and the median a job",
        resq_bench::redis_version()
    );
    for step in steps(batch) {
        let mut us = Vec::with_capacity(runs);
        for _ in 0..runs {
            prepare(&mut conn, batch, step.before).await?;
            redis::cmd("SLOWLOG").arg("RESET").exec_async(&mut conn).await?;
            for command in &step.commands {
                command.exec_async(&mut conn).await?;
            }
            us.push(logged_us(&mut conn).await?);
        }
        us.sort_unstable();
        let median = us.get(runs / 2).copied().unwrap_or(0);
        let p10 = us.get(runs / 10).copied().unwrap_or(0);
        println!(
            "  {:<52} {median:>5} {p10:>5}   {:.2}",
            step.name,
            median as f64 / batch as f64
        );
    }
    Ok(())
}
