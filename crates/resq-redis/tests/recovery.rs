//! Reliable fetch, claims and recovery: a job leaves the in-flight hash only
//! on ack; a signed job attempt is claimed once, whatever number of copies;
//! the in-flight jobs of a worker whose liveness lapsed go back to the head
//! of their queues, in order, with their claims released; and nobody is
//! judged dead until the fleet has renewed its marks for a full period.

mod common;

use std::time::Duration;

use common::*;
use resq::mark::Mark;
use resq::store::FetchedJob;
use resq::store::{Claim, ClaimOutcome, Fetched, Finished, JobQueues, Outcome, ReapRules, WorkerRegistry};
use resq::WorkerId;

async fn push_echoes(env: &Env, queue: &str, n: usize) {
    for i in 0..n {
        env.push_raw(
            queue,
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}]}}"#).as_bytes(),
        )
        .await;
    }
}

async fn fetch(env: &Env, worker: &WorkerId, queue: &str, max: usize) -> Vec<FetchedJob> {
    match env.store.fetch(worker, &[queue.to_string()], max).await.unwrap() {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("paused"),
    }
}

/// Takes a worker for dead the way time would: its liveness mark goes.
async fn lapse(env: &Env, worker: &WorkerId) {
    let _: () = redis::cmd("DEL")
        .arg(format!("resque:resq:alive:{worker}"))
        .query_async(&mut env.conn())
        .await
        .unwrap();
}

fn claim(job: &FetchedJob, mark: &Mark) -> Claim {
    Claim {
        queue: job.queue.clone(),
        token: job.token.clone(),
        mark: mark.clone(),
        until: resq::UnixMs::now().plus(Duration::from_secs(86_400)),
    }
}

#[tokio::test]
async fn fetched_jobs_wait_in_flight_and_a_dead_workers_jobs_come_back_in_order() {
    let env = Env::start().await;
    push_echoes(&env, "q", 5).await;
    let dead = WorkerId::new("gone", 1, "q");
    env.store.register_worker(&registration(&dead, 60_000)).await.unwrap();
    let jobs = fetch(&env, &dead, "q", 3).await;
    assert_eq!(jobs.len(), 3);
    assert_eq!(env.lrange("resque:queue:q").await.len(), 2);
    assert_eq!(env.in_flight(&dead, "q").await.len(), 3);

    // Alive: the reaper leaves it alone.
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert!(
        report.dead_workers.is_empty() && report.deferred.is_empty(),
        "{report:?}"
    );

    lapse(&env, &dead).await;
    // The fleet has renewed for milliseconds, not a minute: not judged yet.
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(report.deferred, [dead.to_string()]);
    assert_eq!((report.dead_workers.len(), report.requeued), (0, 0));
    assert_eq!(env.in_flight(&dead, "q").await.len(), 3, "nothing moved");

    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.dead_workers, [dead.to_string()]);
    assert_eq!(report.requeued, 3);
    let order: Vec<String> = env
        .lrange("resque:queue:q")
        .await
        .iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p).unwrap()["args"][0]["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        order,
        ["0", "1", "2", "3", "4"],
        "recovered jobs go back to the head in order"
    );
    // The death is counted against the three jobs it interrupted.
    assert_eq!(
        env.keys("resque:resq:*").await,
        [
            "resque:resq:beat",
            "resque:resq:suspects-at:q",
            "resque:resq:suspects:q"
        ]
    );
    let workers: Vec<String> = redis::cmd("SMEMBERS")
        .arg("resque:workers")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(workers.is_empty(), "the dead worker is unregistered too");

    // A second reaper finds nothing to do.
    assert_eq!(
        env.store
            .reap_dead_workers(ReapRules::after(Duration::ZERO))
            .await
            .unwrap(),
        Default::default()
    );
}

#[tokio::test]
async fn after_an_outage_no_one_is_judged_until_the_fleet_renewed_for_a_full_period() {
    let env = Env::start().await;
    push_echoes(&env, "q", 2).await;
    let quiet = WorkerId::new("h", 1, "q");
    env.store.register_worker(&registration(&quiet, 60_000)).await.unwrap();
    fetch(&env, &quiet, "q", 2).await;
    // An outage: every mark lapsed, the fleet's beat too.
    for key in ["resque:resq:beat".to_string(), format!("resque:resq:alive:{quiet}")] {
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut env.conn()).await.unwrap();
    }
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.deferred, [quiet.to_string()], "no beat: nobody is judged");
    // Another worker renews: the beat starts again now. A lapse proves
    // something only a full period later.
    let other = WorkerId::new("h", 2, "q");
    assert!(
        !env.store.keep_alive(&registration(&other, 60_000)).await.unwrap(),
        "its mark was new"
    );
    assert!(
        env.store.keep_alive(&registration(&other, 60_000)).await.unwrap(),
        "and now it is there"
    );
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(report.deferred, [quiet.to_string()]);
    assert_eq!(env.in_flight(&quiet, "q").await.len(), 2);
    // The quiet worker was only slow: its next renewal saves its jobs.
    env.store.keep_alive(&registration(&quiet, 60_000)).await.unwrap();
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert!(
        report.dead_workers.is_empty() && report.deferred.is_empty(),
        "{report:?}"
    );
    assert_eq!(env.in_flight(&quiet, "q").await.len(), 2);
}

#[tokio::test]
async fn requeue_puts_jobs_back_at_the_head_once_and_releases_their_claims() {
    let env = Env::start().await;
    push_echoes(&env, "q", 4).await;
    let w = WorkerId::new("w", 2, "q");
    env.store.register_worker(&registration(&w, 10_000)).await.unwrap();
    let jobs = fetch(&env, &w, "q", 2).await;
    let mark = Mark::parse("AAAAAAAAAAAAAAAA.5").unwrap();
    let outcomes = env.store.claim(&w, &[claim(&jobs[0], &mark)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Claimed]);
    env.store.requeue(&w, &jobs).await.unwrap();
    env.store.requeue(&w, &jobs).await.unwrap(); // twice: no duplicate
    let queue = env.lrange("resque:queue:q").await;
    assert_eq!(queue.len(), 4);
    assert!(queue[0].contains("\"0\"") && queue[1].contains("\"1\""));
    // The claim went with the requeue: the next copy to run can claim it.
    let again = fetch(&env, &w, "q", 1).await;
    let outcomes = env.store.claim(&w, &[claim(&again[0], &mark)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Claimed]);
}

/// The claim is sent as a raw `EVALSHA` (see `scripts::evalsha`): a server
/// that lost its scripts (restarted, or a replica just promoted) is given
/// the script again, and the claim is made and recorded as usual.
#[tokio::test]
async fn a_claim_on_a_server_that_lost_its_scripts_loads_the_script_and_claims() {
    let env = Env::start().await;
    push_echoes(&env, "q", 2).await;
    let w = WorkerId::new("w", 3, "q");
    env.store.register_worker(&registration(&w, 10_000)).await.unwrap();
    let jobs = fetch(&env, &w, "q", 2).await;
    let _: () = env.query(redis::cmd("SCRIPT").arg("FLUSH")).await;
    let marks = [
        Mark::parse("DDDDDDDDDDDDDDDD.7").unwrap(),
        Mark::parse("DDDDDDDDDDDDDDDD.8").unwrap(),
    ];
    let claims = [claim(&jobs[0], &marks[0]), claim(&jobs[1], &marks[1])];
    let outcomes = env.store.claim(&w, &claims).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
    let flight = format!("resque:resq:inflight:{w}:q");
    let recorded: Option<String> = env
        .query(redis::cmd("HGET").arg(&flight).arg(format!("c{}", jobs[1].token)))
        .await;
    assert_eq!(recorded.as_deref(), Some("8 resque:resq:marks:q:DDDDDDDDDDDDDDDD"));
    // A second copy of either attempt is a replay.
    let outcomes = env.store.claim(&w, &claims[..1]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Replayed]);
}

#[tokio::test]
async fn one_copy_claims_an_attempt_the_others_are_replays_and_a_taken_job_is_gone() {
    let env = Env::start().await;
    push_echoes(&env, "q", 6).await;
    let (a, b) = (WorkerId::new("a", 1, "q"), WorkerId::new("b", 2, "q"));
    for w in [&a, &b] {
        env.store.register_worker(&registration(w, 60_000)).await.unwrap();
    }
    let on_a = fetch(&env, &a, "q", 3).await;
    let on_b = fetch(&env, &b, "q", 3).await;
    let mark = Mark::parse("BBBBBBBBBBBBBBBB.4095").unwrap();
    let other = Mark::parse("BBBBBBBBBBBBBBBB.0").unwrap();
    // Three copies of one attempt on a, in one call; one on b.
    let outcomes = env
        .store
        .claim(
            &a,
            &[claim(&on_a[0], &mark), claim(&on_a[1], &mark), claim(&on_a[2], &other)],
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [ClaimOutcome::Claimed, ClaimOutcome::Replayed, ClaimOutcome::Claimed]
    );
    let outcomes = env.store.claim(&b, &[claim(&on_b[0], &mark)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Replayed]);
    // The mark lives until the job's expiry: the bitmap has a TTL.
    let ttl: i64 = redis::cmd("PTTL")
        .arg("resque:resq:marks:q:BBBBBBBBBBBBBBBB")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(ttl > 0, "{ttl}");

    // a dies holding the claim; the reaper releases it with its jobs.
    lapse(&env, &a).await;
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((report.dead_workers.len(), report.requeued), (1, 3));
    let outcomes = env.store.claim(&b, &[claim(&on_b[1], &mark)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Claimed], "released by the recovery");
    // a's jobs are no longer a's: a late claim or ack by a finds them gone.
    let outcomes = env.store.claim(&a, &[claim(&on_a[2], &other)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Gone]);
    let done: Vec<Finished> = on_a
        .iter()
        .map(|job| Finished {
            job: job.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect();
    let report = env.store.finish(&a, &done, &resq::Working::Keep).await.unwrap();
    assert_eq!(report.acked, 0);
    assert_eq!(report.taken.len(), 3);
    assert_eq!(env.get("resque:stat:processed").await, None, "nothing acked twice");
    // b acks its own: counted once; the marks it claimed stay set.
    let done: Vec<Finished> = on_b[..2]
        .iter()
        .map(|job| Finished {
            job: job.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect();
    let report = env.store.finish(&b, &done, &resq::Working::Keep).await.unwrap();
    assert_eq!((report.acked, report.taken.len()), (2, 0));
    let outcomes = env.store.claim(&b, &[claim(&on_b[2], &mark)]).await.unwrap();
    assert_eq!(outcomes, [ClaimOutcome::Replayed], "an acked attempt stays spent");
}

#[tokio::test]
async fn a_new_worker_recovers_a_dead_workers_jobs_and_runs_each_once() {
    let env = Env::start().await;
    let client = env.client();
    let jobs: Vec<Echo> = (0..20)
        .map(|i| Echo {
            message: format!("recovered-{i}"),
        })
        .collect();
    let ids = client.enqueue_bulk(&jobs).await.unwrap();
    let dead = WorkerId::new("gone", 3, "default");
    env.store.register_worker(&registration(&dead, 60_000)).await.unwrap();
    assert_eq!(fetch(&env, &dead, "default", 20).await.len(), 20);
    lapse(&env, &dead).await;
    // The burst worker waits for the reaper's verdict before it calls the
    // queue empty, then runs what it recovered.
    let report = env.burst("default", registry()).await;
    assert_eq!(report.recovered, 20);
    assert_eq!((report.processed, report.failed), (20, 0));
    for job in &jobs {
        assert!(ran(&job.message), "{} did not run", job.message);
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("20"));
}

/// The jobs a worker holds, by token, as their messages.
fn messages(jobs: &[FetchedJob]) -> Vec<String> {
    jobs.iter()
        .map(|j| {
            serde_json::from_slice::<serde_json::Value>(&j.payload).unwrap()["args"][0]["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn die(env: &Env, worker: &WorkerId) -> resq::store::ReapReport {
    lapse(env, worker).await;
    let rules = ReapRules {
        min_continuity: Duration::ZERO,
        max_recoveries: 3,
    };
    env.store.reap_dead_workers(rules).await.unwrap()
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_runs_alone_then_goes_to_the_failed_list_as_poison() {
    let env = Env::start().await;
    push_echoes(&env, "q", 4).await;
    let mut n = 0;
    let mut worker = || {
        n += 1;
        WorkerId::new("w", n, "q")
    };

    // Job "1" kills its worker. First death: four jobs in flight, all counted.
    let w = worker();
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    assert_eq!(messages(&fetch(&env, &w, "q", 10).await), ["0", "1", "2", "3"]);
    let report = die(&env, &w).await;
    assert_eq!((report.requeued, report.poisoned.len()), (4, 0));

    // Suspects run alone: an idle worker takes one, and nothing else while it
    // holds it; a busy worker meets a suspect at the head and takes nothing.
    push_echoes(&env, "other", 1).await;
    let (a, b) = (worker(), worker());
    for x in [&a, &b] {
        env.store.register_worker(&registration(x, 60_000)).await.unwrap();
    }
    let on_b = match env.store.fetch(&b, &["other".to_string()], 10).await.unwrap() {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("paused"),
    };
    assert_eq!(on_b.len(), 1);
    let both = ["q".to_string(), "other".to_string()];
    match env.store.fetch(&b, &both, 10).await.unwrap() {
        Fetched::Jobs(jobs) => assert!(jobs.is_empty(), "a busy worker leaves a suspect"),
        Fetched::Paused => panic!("paused"),
    }
    let alone = fetch(&env, &a, "q", 10).await;
    assert_eq!(messages(&alone), ["0"], "an idle worker takes one suspect, alone");
    assert!(
        fetch(&env, &a, "q", 10).await.is_empty(),
        "and nothing more while it runs"
    );
    assert_eq!(env.lrange("resque:queue:q").await.len(), 3, "nothing lost on the way");
    // "0" comes back: it is a suspect no more, and a can fetch again.
    succeed(&env.store, &a, &alone).await;
    let suspects: i64 = redis::cmd("HLEN")
        .arg("resque:resq:suspects:q")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(suspects, 3);

    // "1" runs alone and kills its worker, twice more: put back each time.
    for deaths in 2..=3 {
        let w = worker();
        env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
        assert_eq!(messages(&fetch(&env, &w, "q", 10).await), ["1"]);
        let report = die(&env, &w).await;
        assert_eq!((report.requeued, report.poisoned.len()), (1, 0), "death {deaths}");
    }
    // Put back three times (max_recoveries): the next lone death is poison.
    let w = worker();
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    assert_eq!(messages(&fetch(&env, &w, "q", 10).await), ["1"]);
    let report = die(&env, &w).await;
    assert_eq!(report.requeued, 0);
    assert_eq!(report.poisoned.len(), 1);
    assert_eq!(report.poisoned[0].deaths, 4);
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&failed[0]).unwrap();
    assert_eq!(record["reason"], "poison");
    assert_eq!(
        record["payload"]["args"][0]["message"], "1",
        "the job, whole, to retry by hand"
    );
    assert_eq!(record["failure_id"], report.poisoned[0].failure_id.as_str());
    let backtrace = record["backtrace"].as_array().unwrap();
    assert_eq!(backtrace.len(), 4, "every death: {backtrace:?}");
    assert!(backtrace[0].as_str().unwrap().contains("with other jobs"));
    assert!(backtrace[3].as_str().unwrap().contains(&format!("worker {w} died at")));
    assert!(backtrace[3].as_str().unwrap().contains("running alone"));
    assert!(record["error"].as_str().unwrap().contains("4 times"));
    assert_eq!(env.get("resque:stat:failed").await.as_deref(), Some("1"));
    assert!(env.in_flight(&w, "q").await.is_empty());

    // The innocent suspects "2" and "3" each run alone and succeed.
    for expected in ["2", "3"] {
        let w = worker();
        env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
        let jobs = fetch(&env, &w, "q", 10).await;
        assert_eq!(messages(&jobs), [expected]);
        succeed(&env.store, &w, &jobs).await;
    }
    assert!(env.lrange("resque:queue:q").await.is_empty());
    assert!(
        env.keys("resque:resq:suspects*").await.is_empty(),
        "no suspect left: the counts are gone with them"
    );
}

#[tokio::test]
async fn a_suspect_put_back_by_its_worker_stays_a_suspect_and_frees_the_worker() {
    let env = Env::start().await;
    push_echoes(&env, "q", 2).await;
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    fetch(&env, &w, "q", 10).await;
    die(&env, &w).await;
    let a = WorkerId::new("a", 2, "q");
    env.store.register_worker(&registration(&a, 60_000)).await.unwrap();
    let alone = fetch(&env, &a, "q", 10).await;
    assert_eq!(messages(&alone), ["0"]);
    env.store.requeue(&a, &alone).await.unwrap();
    let again = fetch(&env, &a, "q", 10).await;
    assert_eq!(messages(&again), ["0"], "still alone: still a suspect");
    // A worker leaving on its own (stop) crashed nothing: nothing counted.
    env.store.unregister_worker(&a).await.unwrap();
    let history: String = redis::cmd("HGET")
        .arg("resque:resq:suspects:q")
        .arg(
            redis::cmd("EVAL")
                .arg("return redis.sha1hex(ARGV[1])")
                .arg(0)
                .arg(&again[0].payload[..])
                .query_async::<String>(&mut env.conn())
                .await
                .unwrap(),
        )
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(history.contains("\"n\":1"), "{history}");
}

/// Calls of `command` Redis counted since the last CONFIG RESETSTAT
/// (scripts' inner calls included).
/// Each command of `counted` ran as many times as it says, since the last
/// `reset_stats`, for `what`.
async fn expect_calls(env: &Env, counted: &[(&str, u64)], what: &str) {
    for &(command, n) in counted {
        assert_eq!(calls(env, command).await, n, "{command} for {what}");
    }
}

async fn calls(env: &Env, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn reset_stats(env: &Env) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut env.conn())
        .await
        .unwrap();
}

fn succeeded(jobs: &[&FetchedJob]) -> Vec<Finished> {
    jobs.iter()
        .map(|job| Finished {
            job: (*job).clone(),
            outcome: Outcome::Succeeded,
        })
        .collect()
}

async fn bit(env: &Env, key: &str, index: u16) -> i64 {
    redis::cmd("GETBIT")
        .arg(key)
        .arg(index)
        .query_async(&mut env.conn())
        .await
        .unwrap()
}

fn token(job: &FetchedJob) -> u64 {
    job.token.parse().unwrap()
}

#[tokio::test]
async fn a_burst_of_claims_and_its_ack_cost_a_few_commands_not_a_few_per_job() {
    let env = Env::start().await;
    push_echoes(&env, "q", 100).await;
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let jobs = fetch(&env, &w, "q", 100).await;
    // A listpack (Redis's compact hash of short values, up to 512 fields)
    // is scanned on each lookup: a burst would cost O(n^2).
    let flight = format!("resque:resq:inflight:{w}:q");
    let encoding: String = env.query(redis::cmd("OBJECT").arg("ENCODING").arg(&flight)).await;
    assert_eq!(encoding, "hashtable", "the in-flight hash is kept a hashtable");
    let claims: Vec<Claim> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| claim(job, &Mark::parse(&format!("CCCCCCCCCCCCCCCC.{i}")).unwrap()))
        .collect();
    reset_stats(&env).await;
    let outcomes = env.store.claim(&w, &claims).await.unwrap();
    assert_eq!(outcomes, vec![ClaimOutcome::Claimed; 100]);
    let counted = [
        ("hexists", 1),
        ("bitfield", 1),
        ("setbit", 0),
        ("hset", 1),
        ("pexpiretime", 1),
        ("pexpireat", 1),
    ];
    expect_calls(&env, &counted, "a burst of 100 claims").await;
    for i in [0, 57, 99] {
        assert_eq!(bit(&env, "resque:resq:marks:q:CCCCCCCCCCCCCCCC", i).await, 1);
    }
    let fields: i64 = env.query(redis::cmd("HLEN").arg(&flight)).await;
    assert_eq!(
        fields, 202,
        "100 jobs, their 100 claims, their batch's count and the marker"
    );

    reset_stats(&env).await;
    let report = env
        .store
        .finish(&w, &succeeded(&jobs.iter().collect::<Vec<_>>()), &resq::Working::Keep)
        .await
        .unwrap();
    assert_eq!((report.acked, report.taken.len()), (100, 0));
    // One HMGET tells which are still here; one HDEL removes them and their
    // claims; the batch's count goes once, its list with it, and the hash
    // with its last batch.
    let counted = [
        ("hmget", 1),
        ("hdel", 2),
        ("hincrby", 1),
        ("hlen", 1),
        ("del", 2),
        ("lindex", 0),
        ("lrange", 0),
    ];
    expect_calls(&env, &counted, "the ack of a burst of 100").await;
    assert!(env.in_flight(&w, "q").await.is_empty());
    let batches = env.keys("resque:resq:inflight-batch:*").await;
    assert!(
        batches.is_empty(),
        "the batch's list went with its last job: {batches:?}"
    );
    let hash: bool = env.query(redis::cmd("EXISTS").arg(&flight)).await;
    assert!(!hash, "the in-flight hash went with its last batch");
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("100"));
}

#[tokio::test]
async fn claims_and_acks_that_mix_jobs_a_reaper_took_with_later_ones_tell_them_apart() {
    let env = Env::start().await;
    push_echoes(&env, "q", 3).await;
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let old = fetch(&env, &w, "q", 3).await;
    // Judged dead while it still runs: its jobs go back, its counter goes.
    lapse(&env, &w).await;
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.requeued, 3);
    // The death made them suspects, which run one at a time: not what this
    // test is about.
    let _: () = redis::cmd("DEL")
        .arg("resque:resq:suspects:q")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let new = fetch(&env, &w, "q", 3).await;
    assert_eq!(messages(&new), messages(&old), "the same jobs, fetched again");
    assert!(
        token(&new[0]) > token(&old[2]),
        "{} after {}",
        new[0].token,
        old[2].token
    );

    let block = "resque:resq:marks:q:DDDDDDDDDDDDDDDD";
    let mark = |i: u16| Mark::parse(&format!("DDDDDDDDDDDDDDDD.{i}")).unwrap();
    let claims = [
        claim(&old[0], &mark(0)),
        claim(&new[0], &mark(1)),
        claim(&old[1], &mark(2)),
        claim(&new[1], &mark(3)),
    ];
    let outcomes = env.store.claim(&w, &claims).await.unwrap();
    assert_eq!(
        outcomes,
        [
            ClaimOutcome::Gone,
            ClaimOutcome::Claimed,
            ClaimOutcome::Gone,
            ClaimOutcome::Claimed
        ]
    );
    let bits = [
        bit(&env, block, 0).await,
        bit(&env, block, 1).await,
        bit(&env, block, 2).await,
        bit(&env, block, 3).await,
    ];
    assert_eq!(bits, [0, 1, 0, 1], "a job that was taken sets no bit");

    let report = env
        .store
        .finish(&w, &succeeded(&[&old[2], &new[2], &new[0]]), &resq::Working::Keep)
        .await
        .unwrap();
    assert_eq!(report.acked, 2);
    assert_eq!(report.taken, [old[2].token.clone()]);
    assert_eq!(env.in_flight(&w, "q").await, [new[1].token.clone()]);
}

#[tokio::test]
async fn a_workers_tokens_keep_growing_after_its_counter_was_deleted() {
    let env = Env::start().await;
    push_echoes(&env, "q", 4).await;
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let first = fetch(&env, &w, "q", 2).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("resque:resq:inflight-seq:{w}"))
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let second = fetch(&env, &w, "q", 2).await;
    let highest = first.iter().map(token).max().unwrap();
    assert!(
        second.iter().all(|job| token(job) > highest),
        "{:?} after {highest}",
        second.iter().map(token).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_lone_death_counts_as_alone_whatever_other_queues_the_worker_touched() {
    let env = Env::start().await;
    push_echoes(&env, "q", 1).await;
    // A first death makes the job a suspect.
    let first = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&first, 60_000)).await.unwrap();
    fetch(&env, &first, "q", 10).await;
    die(&env, &first).await;
    // The next worker runs jobs of several queues (each leaves its mark in the
    // worker's set of queues), then takes the suspect alone and dies.
    let w = WorkerId::new("w", 2, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    for queue in ["a", "b", "c", "d", "e"] {
        push_echoes(&env, queue, 1).await;
        let jobs = fetch(&env, &w, queue, 10).await;
        succeed(&env.store, &w, &jobs).await;
    }
    assert_eq!(fetch(&env, &w, "q", 10).await.len(), 1);
    die(&env, &w).await;
    let history: String = redis::cmd("HVALS")
        .arg("resque:resq:suspects:q")
        .query_async::<Vec<String>>(&mut env.conn())
        .await
        .unwrap()
        .remove(0);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history["n"], 2);
    assert_eq!(history["deaths"][1]["alone"], true, "{history}");
}

#[tokio::test]
async fn a_busy_worker_that_meets_a_suspect_drains_then_takes_it_alone() {
    let env = Env::start().await;
    push_echoes(&env, "q", 2).await;
    let dead = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&dead, 60_000)).await.unwrap();
    fetch(&env, &dead, "q", 10).await;
    die(&env, &dead).await;

    let b = WorkerId::new("b", 2, "q");
    env.store.register_worker(&registration(&b, 60_000)).await.unwrap();
    push_echoes(&env, "other", 2).await;
    let busy = fetch(&env, &b, "other", 1).await;
    assert_eq!(busy.len(), 1);
    let both = ["q".to_string(), "other".to_string()];
    let fetch_both = || async {
        match env.store.fetch(&b, &both, 10).await.unwrap() {
            Fetched::Jobs(jobs) => jobs,
            Fetched::Paused => panic!("paused"),
        }
    };
    assert!(fetch_both().await.is_empty(), "busy: the suspect waits, and b drains");
    assert!(
        fetch(&env, &b, "other", 10).await.is_empty(),
        "draining: nothing from any queue while its job runs"
    );
    succeed(&env.store, &b, &busy).await;
    let alone = fetch_both().await;
    assert_eq!(messages(&alone), ["0"], "idle now: the suspect, alone");
    assert!(fetch_both().await.is_empty(), "and nothing beside it");
    succeed(&env.store, &b, &alone).await;
    assert_eq!(messages(&fetch_both().await), ["1"], "the next suspect, alone");
    assert_eq!(env.lrange("resque:queue:other").await.len(), 1, "nothing lost");
}

#[tokio::test]
async fn jobs_a_lost_fetch_reply_left_in_flight_go_back_and_the_held_ones_stay() {
    let env = Env::start().await;
    push_echoes(&env, "q", 4).await;
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    // The worker received the first fetch; the second's reply was lost.
    let held = fetch(&env, &w, "q", 1).await;
    let lost = fetch(&env, &w, "q", 2).await;
    let mark = Mark::parse("EEEEEEEEEEEEEEEE.7").unwrap();
    assert_eq!(
        env.store.claim(&w, &[claim(&lost[0], &mark)]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    let tokens: Vec<String> = held.iter().map(|j| j.token.clone()).collect();
    assert_eq!(env.store.requeue_unheld(&w, &tokens).await.unwrap(), 2);
    assert_eq!(
        messages(&fetch(&env, &w, "q", 10).await),
        ["1", "2", "3"],
        "back at the head, in order"
    );
    assert_eq!(
        env.in_flight(&w, "q").await.len(),
        4,
        "the held job and the three fetched again"
    );
    // Their claims were released with them.
    let other = WorkerId::new("o", 2, "q");
    env.store.register_worker(&registration(&other, 60_000)).await.unwrap();
    assert_eq!(env.store.requeue_unheld(&w, &tokens).await.unwrap(), 3);
    let again = fetch(&env, &other, "q", 10).await;
    assert_eq!(
        env.store.claim(&other, &[claim(&again[0], &mark)]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    assert_eq!(
        env.store.requeue_unheld(&w, &tokens).await.unwrap(),
        0,
        "the held job stays"
    );
    assert_eq!(env.in_flight(&w, "q").await.len(), 1);
}

/// Large jobs move inside Redis (SORT ... STORE into the batch's list,
/// LTRIM off the queue) and the worker reads them once (LRANGE): no large
/// payload becomes a Lua string, which Redis 7 hashes byte by byte. Up to 16
/// small jobs come back with the script's reply (one round trip); more move
/// inside Redis as large ones do. The first fetch of a queue takes the small
/// path and learns the size. Each job arrives whole and in order, under its
/// own token.
#[tokio::test]
async fn large_jobs_move_inside_redis_and_small_ones_come_with_the_reply() {
    let env = Env::start().await;
    let big = "x".repeat(64 * 1024);
    let large = |i: usize| format!(r#"{{"class":"Echo","args":[{{"message":"{i}{big}"}}]}}"#);
    for i in 0..24 {
        env.push_raw("q", large(i).as_bytes()).await;
    }
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let counts = |sort, lpop, lrange| {
        [
            ("sort", sort),
            ("ltrim", sort),
            ("lpop", lpop),
            ("lrange", lrange),
            ("hset", 1),
        ]
    };
    reset_stats(&env).await;
    let mut jobs = fetch(&env, &w, "q", 4).await;
    expect_calls(&env, &counts(0, 1, 0), "a first fetch of 4").await;
    reset_stats(&env).await;
    jobs.extend(fetch(&env, &w, "q", 16).await);
    expect_calls(&env, &counts(1, 0, 1), "a fetch of 16 large jobs").await;
    assert_eq!(jobs.len(), 20);
    for (i, job) in jobs.iter().enumerate() {
        assert!(job.payload[..] == *large(i).as_bytes(), "job {i} whole and in order");
    }
    let tokens: Vec<u64> = jobs.iter().map(token).collect();
    assert!(tokens.windows(2).all(|t| t[1] == t[0] + 1), "{tokens:?}");
    assert_eq!(env.lrange("resque:queue:q").await.len(), 4);
    assert_eq!(env.in_flight(&w, "q").await.len(), 20);

    // Small jobs again: the next fetch sees the large ones, the one after
    // it the small ones, which come with the reply.
    let _: () = redis::cmd("DEL")
        .arg("resque:queue:q")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    push_echoes(&env, "q", 40).await;
    let _ = fetch(&env, &w, "q", 4).await;
    reset_stats(&env).await;
    let small = fetch(&env, &w, "q", 16).await;
    expect_calls(&env, &counts(0, 1, 0), "a fetch of 16 small jobs").await;
    assert_eq!(small.len(), 16);
    assert!(small[0].payload.starts_with(br#"{"class":"Echo""#));

    // More small jobs than come with a reply move inside Redis too: in Lua
    // each would cost Redis twice as much (see fetch.lua's INLINE_MOST).
    push_echoes(&env, "q", 40).await;
    reset_stats(&env).await;
    let many = fetch(&env, &w, "q", 50).await;
    expect_calls(&env, &counts(1, 0, 1), "a fetch of 50 small jobs").await;
    assert_eq!(many.len(), 50);
    let tokens: Vec<u64> = small.iter().chain(&many).map(token).collect();
    assert!(tokens.windows(2).all(|t| t[1] == t[0] + 1), "{tokens:?}");
    // The 20 left of the first 40 (20..39), then the first 30 of the new 40.
    let expected: Vec<String> = (20..40).chain(0..30).map(|i| i.to_string()).collect();
    assert_eq!(messages(&many), expected, "whole and in order");
}

/// A batch stays while any of its jobs runs; the places of the large jobs
/// that left it are emptied, so a slow job does not keep its batch's
/// payloads in Redis. A job listed twice in one ack is acked once, and its
/// batch's other jobs still come back when their worker dies.
#[tokio::test]
async fn a_batch_keeps_only_the_large_jobs_still_in_flight() {
    let env = Env::start().await;
    let big = "x".repeat(16 * 1024);
    for i in 0..4 {
        env.push_raw(
            "q",
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}{big}"}}]}}"#).as_bytes(),
        )
        .await;
    }
    let w = WorkerId::new("w", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let jobs = fetch(&env, &w, "q", 4).await;
    let first = token(&jobs[0]);
    let batch = format!("resque:resq:inflight-batch:{w}:q:{first}");
    succeed(&env.store, &w, &jobs[1..2]).await;
    let places = env.lrange(&batch).await;
    assert_eq!(places.len(), 4);
    assert_eq!(places[1], "", "the acked job's place is emptied");
    assert!(!places[0].is_empty() && !places[2].is_empty() && !places[3].is_empty());
    let report = env
        .store
        .finish(&w, &succeeded(&[&jobs[0], &jobs[0]]), &resq::Working::Keep)
        .await
        .unwrap();
    assert_eq!(report.acked, 1, "a job listed twice is acked once");

    lapse(&env, &w).await;
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.requeued, 2, "the two jobs still in flight come back");
    assert_eq!(env.lrange("resque:queue:q").await.len(), 2);
    assert!(env.keys("resque:resq:inflight*").await.is_empty());
}

/// A worker that died holding jobs in the record written before batches
/// (token -> the job itself) still has them put back after an upgrade.
#[tokio::test]
async fn jobs_in_flight_in_the_record_before_batches_come_back() {
    let env = Env::start().await;
    let w = WorkerId::new("old", 1, "q");
    env.store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let job = r#"{"class":"Echo","args":[{"message":"from before"}]}"#;
    let _: () = redis::pipe()
        .hset(format!("resque:resq:inflight:{w}:q"), "7", job)
        .sadd(format!("resque:resq:inflight-queues:{w}"), "q")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    lapse(&env, &w).await;
    let report = env
        .store
        .reap_dead_workers(ReapRules::after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.requeued, 1);
    assert_eq!(env.lrange("resque:queue:q").await, [job.to_string()]);
}
