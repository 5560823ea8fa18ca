//! The Lua scripts, each in its own `.lua` file, sent once and then run by SHA
//! (`redis::Script` uses EVALSHA and loads the script again on NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

/// The start of an `EVALSHA` of `script` with `keys` keys, for a caller that
/// writes its keys, then its arguments, straight into the command's one
/// buffer (`Cmd::arg`, `RedisWrite::writer_for_next_arg`). A
/// `ScriptInvocation` allocates a buffer for every argument and copies them
/// all into the command when it is sent: for a call with a few arguments
/// per job, that is most of what building it costs.
pub(crate) fn evalsha(script: &Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Sends `cmd` (from [`evalsha`]); a server that does not hold `script` yet
/// (`NOSCRIPT`: restarted, or a new master) is given it, and `cmd` is sent
/// again, as `ScriptInvocation::invoke_async` does.
pub(crate) async fn run_evalsha<T: redis::FromRedisValue>(
    script: &Script,
    cmd: &redis::Cmd,
    conn: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<T> {
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// The first line of a script that must run at `maxmemory` (noeviction),
/// where Redis refuses a script whose first write may grow memory: putting
/// jobs back and renewing liveness add a few bytes and keep the fleet
/// working, which frees memory (as `claim.lua` does).
macro_rules! allow_oom {
    () => {
        "#!lua flags=allow-oom\n"
    };
}

pub(crate) static FETCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(allow_oom!(), include_str!("lua/fetch.lua"))));
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/failed_list.lua"),
        include_str!("lua/inflight.lua"),
        include_str!("lua/finish.lua")
    ))
});
pub(crate) static LOGIN_ATTEMPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/login_attempt.lua")));
pub(crate) static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("lua/gcra.lua"), "return gcra(KEYS, ARGV)\n")));
pub(crate) static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/gcra.lua"),
        include_str!("lua/surge.lua"),
        include_str!("lua/admit.lua")
    ))
});
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
pub(crate) static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(allow_oom!(), include_str!("lua/renew.lua"))));
pub(crate) static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        allow_oom!(),
        include_str!("lua/release_claim.lua"),
        include_str!("lua/inflight.lua"),
        include_str!("lua/requeue.lua")
    ))
});
pub(crate) static REQUEUE_UNHELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        allow_oom!(),
        include_str!("lua/release_claim.lua"),
        include_str!("lua/inflight.lua"),
        include_str!("lua/requeue_unheld.lua")
    ))
});
pub(crate) static JUDGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/continuity.lua"),
        include_str!("lua/judge.lua")
    ))
});
pub(crate) static RECOVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        allow_oom!(),
        include_str!("lua/release_claim.lua"),
        include_str!("lua/continuity.lua"),
        include_str!("lua/inflight.lua"),
        include_str!("lua/recover.lua")
    ))
});
pub(crate) static POISON: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/failed_list.lua"),
        include_str!("lua/inflight.lua"),
        include_str!("lua/poison.lua")
    ))
});
pub(crate) static FORGET_WORKER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/continuity.lua"),
        include_str!("lua/forget_worker.lua")
    ))
});
pub(crate) static FAILED_REQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/failed_requeue.lua")));
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/enqueue.lua")));
pub(crate) static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/sweep.lua")));
pub(crate) static ENQUEUE_UNIQUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/push_one.lua"),
        include_str!("lua/enqueue_unique.lua")
    ))
});
pub(crate) static SCHEDULE_RUN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/push_one.lua"),
        include_str!("lua/schedule_run.lua")
    ))
});
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/promote.lua")));
pub(crate) static RECORD_FAILURES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/failed_list.lua"),
        include_str!("lua/record_failures.lua")
    ))
});
pub(crate) static FAILED_REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/failed_remove.lua")));
pub(crate) static CRON_FIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/push_one.lua"),
        include_str!("lua/cron_mark.lua"),
        include_str!("lua/cron_fire.lua")
    ))
});
/// Cluster mode's first half of a tick: the mark alone, in the fleet's
/// slot (the push follows in the queue's). Returns as `cron_fire.lua`.
pub(crate) static CRON_MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/cron_mark.lua"),
        "local marked, previous = cron_mark(KEYS[1], ARGV[1], ARGV[2])\n",
        "if marked then return {0, previous} end\n",
        "return {1, previous}\n"
    ))
});
