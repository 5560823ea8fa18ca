//! A failure is retried or removed by its id in a constant number of Redis
//! commands, however long the failed list: with 100,000 failures, `resq
//! failed retry <id>` and `resq failed remove <id>` read one index entry and
//! run one script (counted with `INFO commandstats`, not timed). A Ruby
//! record (no id) is still found, by the handle of its bytes.

mod common;

use std::collections::BTreeMap;

use common::*;
use resq::store::{KeepPayload, NewFailure};
use resq::{FailureInfo, Reason, UnixMs};

const FAILURES: usize = 100_000;

/// Calls per command since the last `CONFIG RESETSTAT`.
async fn command_calls(env: &Env) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

async fn reset_stats(env: &Env) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut env.conn())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_retried_by_id_in_constant_commands_among_100000() {
    let env = Env::start().await;
    // 100,000 records as a worker writes them (with their index entries),
    // each a job on its own queue slot of "bulk".
    let failure = NewFailure {
        info: FailureInfo::of(Reason::JobFailed, "boom"),
        keep: KeepPayload::Whole,
        at: UnixMs::now(),
    };
    let mut ids = Vec::with_capacity(FAILURES);
    for chunk in 0..FAILURES / 10_000 {
        let mut pipe = redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            let id = format!("f-{i}");
            let payload = format!(r#"{{"class":"Noop","args":[{{"n":{i}}}],"queue":"bulk"}}"#);
            let record = resq_redis::resque::failure::build(payload.as_bytes(), &failure, "w", "bulk", &id);
            pipe.rpush("resque:failed", &record)
                .ignore()
                .hset("resque:resq:failure-index", &id, &record)
                .ignore();
            ids.push(id);
        }
        pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    }
    // And one Ruby wrote (no id), at the end.
    let ruby = r#"{"failed_at":"2026/11/24 09:58:58 UTC","payload":{"class":"Noop","args":[{"n":-1}]},"exception":"Resque::DirtyExit","error":"gone","backtrace":[],"worker":"h:1:bulk","queue":"bulk"}"#;
    let _: () = redis::cmd("RPUSH")
        .arg("resque:failed")
        .arg(ruby)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(env.llen("resque:failed").await, FAILURES as u64 + 1);

    for (action, id) in [("retry", &ids[50_000]), ("remove", &ids[70_000])] {
        reset_stats(&env).await;
        let o = env.run(&["failed", action, id]);
        assert!(o.status.success(), "{action}: {}", stderr(&o));
        let calls = command_calls(&env).await;
        let scans: u64 = ["lrange", "lindex", "lpos"].iter().filter_map(|c| calls.get(*c)).sum();
        assert_eq!(scans, 0, "{action} read no part of the list: {calls:?}");
        // Commands run inside scripts count too: the connection's probe, one
        // HGET of the index, the script (loaded once) and what it runs.
        let total: u64 = calls
            .iter()
            .filter(|(c, _)| !c.starts_with("config"))
            .map(|(_, n)| n)
            .sum();
        assert!(total <= 16, "{action} took {total} commands: {calls:?}");
    }
    assert_eq!(env.llen("resque:failed").await, FAILURES as u64 - 1);
    let queued = env.lrange("resque:queue:bulk").await;
    assert_eq!(
        queued,
        [r#"{"class":"Noop","args":[{"n":50000}],"queue":"bulk"}"#],
        "byte for byte"
    );
    let index_len: u64 = redis::cmd("HLEN")
        .arg("resque:resq:failure-index")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(index_len, FAILURES as u64 - 2, "their index entries went with them");

    // Ruby's record has no id: found by the handle of its bytes (a scan).
    let handle = resq::admin::bytes_handle(ruby.as_bytes());
    let o = env.run(&["failed", "retry", &handle]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(env.llen("resque:queue:bulk").await, 2);
    assert_eq!(env.llen("resque:failed").await, FAILURES as u64 - 2);
}
