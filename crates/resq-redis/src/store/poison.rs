//! Poison jobs: a job whose lone run took its worker down more often than
//! `max_recoveries` allows leaves the dead worker's in-flight hash for the
//! failed list (`poison.lua`) instead of its queue, with every death in its
//! record's backtrace. `recover.lua` decides; this writes the record.

use redis::Value;
use serde::Deserialize;

use resq::clock::UnixMs;
use resq::store::{KeepPayload, NewFailure, PoisonedJob, ReapRules, StoreError};
use resq::{FailureInfo, Reason};

use super::{protocol, store_err, RedisStore};
use crate::{resque, scripts};

/// A job `recover.lua` held back as poison.
pub(super) struct HeldBack {
    token: String,
    payload: Vec<u8>,
    /// Its deaths as recover.lua counted them (JSON).
    history: Vec<u8>,
    /// What they are counted by: the SHA-1 of the payload, in hex.
    sha1: String,
}

/// `recover.lua`'s answer.
pub(super) struct Recovered {
    /// Jobs put back; -1 the worker is alive, -2 not judged yet.
    pub requeued: i64,
    pub poison: Vec<HeldBack>,
}

pub(super) fn parse_recovery(reply: Vec<Value>) -> Result<Recovered, StoreError> {
    let bad = || protocol("a recovery reply it does not know");
    let mut items = reply.into_iter();
    let Some(Value::Int(requeued)) = items.next() else {
        return Err(bad());
    };
    let mut poison = Vec::new();
    while let Some(token) = items.next() {
        let (
            Value::BulkString(token),
            Some(Value::BulkString(payload)),
            Some(Value::BulkString(history)),
            Some(Value::BulkString(sha1)),
        ) = (token, items.next(), items.next(), items.next())
        else {
            return Err(bad());
        };
        poison.push(HeldBack {
            token: String::from_utf8(token).map_err(|_| bad())?,
            payload,
            history,
            sha1: String::from_utf8(sha1).map_err(|_| bad())?,
        });
    }
    Ok(Recovered { requeued, poison })
}

/// What recover.lua keeps per job in `resq:suspects:<q>`.
#[derive(Deserialize, Default)]
struct Deaths {
    #[serde(default)]
    n: u32,
    #[serde(default)]
    deaths: Vec<Death>,
}

#[derive(Deserialize)]
struct Death {
    #[serde(default)]
    worker: String,
    #[serde(default)]
    at: f64,
    #[serde(default)]
    alone: bool,
}

/// The record's message and backtrace: how often and where it killed.
fn describe(history: &[u8], rules: ReapRules) -> (String, Vec<String>) {
    let deaths: Deaths = serde_json::from_slice(history).unwrap_or_default();
    let message = format!(
        "its worker died while running it {} times (put back {} times, max_recoveries {}): a crash, an OOM kill \
         or an abort in the job; it will not run again unless retried by hand",
        deaths.n,
        deaths.n.saturating_sub(1),
        rules.max_recoveries
    );
    let lines = deaths
        .deaths
        .iter()
        .map(|d| {
            let at = resque::time::iso8601(UnixMs(d.at.max(0.0) as u64));
            let how = if d.alone { "running alone" } else { "with other jobs" };
            format!("worker {} died at {at}, {how}", d.worker)
        })
        .collect();
    (message, lines)
}

impl RedisStore {
    /// Records held-back jobs as failed with reason `poison` and logs each
    /// (an operator should look: something in the job kills its process).
    pub(super) async fn record_poison(
        &self,
        worker: &str,
        queue: &str,
        held: &[HeldBack],
        rules: ReapRules,
    ) -> Result<Vec<PoisonedJob>, StoreError> {
        let now = self.server_time().await?;
        let mut inv = scripts::POISON.prepare_invoke();
        let keys = self.keys.for_queue(queue);
        inv.key(keys.inflight(worker, queue))
            .key(keys.failed())
            .key(keys.failure_index())
            .key(keys.stat("processed"))
            .key(keys.stat("failed"))
            .key(keys.failed_trimmed())
            .key(keys.suspects(queue))
            .key(keys.suspects_at(queue))
            .key(keys.solo(worker))
            .key(keys.inflight_batches(worker, queue))
            .arg(self.failed_max);
        let mut jobs = Vec::with_capacity(held.len());
        for job in held {
            let (message, backtrace) = describe(&job.history, rules);
            let failure = NewFailure {
                info: FailureInfo::of(Reason::Poison, message),
                keep: KeepPayload::Whole,
                at: now,
            };
            let id = uuid::Uuid::new_v4().to_string();
            let record = resque::failure::build_with_backtrace(&job.payload, &failure, worker, queue, &id, &backtrace);
            inv.arg(&job.token).arg(record).arg(&id).arg(&job.sha1);
            let deaths: Deaths = serde_json::from_slice(&job.history).unwrap_or_default();
            jobs.push(PoisonedJob {
                queue: queue.to_string(),
                failure_id: id,
                deaths: deaths.n,
            });
        }
        inv.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(jobs)
    }
}
