//! The keyspace: Resque's keys under its namespace, plus resq's own under
//! `<ns>resq:`. Every key name is built here and nowhere else.
//!
//! In cluster mode one script may touch one slot only, so the keyspace is
//! split in slots by hash tag (the part of a key between its first `{` and
//! the next `}` picks the slot):
//!
//! - **a queue's own keyspace**, `{<ns>:<queue>}:...`: the queue, the
//!   in-flight hashes of its jobs, its replay marks, suspects, schedule and
//!   retries, failures, stats, cap and pause flag. It has the shape of the
//!   standalone keyspace (the same scripts run in it unchanged), holding
//!   that one queue's part of each key: every job's path, from enqueue to
//!   ack, stays in its queue's slot, so the work divides over the masters
//!   as the queues do.
//! - **the fleet's keyspace**, `{<ns>}:...`: what no queue owns (the
//!   workers' registry and liveness, the list of queues, the fleet-wide
//!   pause, the HTTP API's and the dashboard's keys): per worker or per
//!   request, not per job.
//!
//! A fleet key named in a queue's keyspace (its pause-all flag, its
//! liveness marks) is never written there: the store reads the fleet's own
//! before it runs the queue's script. Resque's key names carry no hash tag,
//! so Ruby Resque cannot share a cluster with resq; standalone mode keeps
//! Resque's names byte for byte.

use std::borrow::Cow;

/// Key names under one namespace prefix (`resque:` by default).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// In cluster mode, the namespace (the fleet's keyspace has `prefix`
    /// `{<ns>}:`, a queue's `{<ns>:<queue>}:`).
    cluster: Option<String>,
    /// A queue's own keyspace (cluster mode): that queue.
    queue: Option<String>,
}

impl Keys {
    /// `namespace` is Resque's (`resque`); the `:` separator is added.
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{namespace}:"),
            cluster: None,
            queue: None,
        }
    }

    /// The fleet's keyspace in cluster mode (see the module's doc).
    pub fn cluster(namespace: &str) -> Self {
        Self {
            prefix: format!("{{{namespace}}}:"),
            cluster: Some(namespace.to_string()),
            queue: None,
        }
    }

    /// True in cluster mode.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The keyspace that holds `queue`'s keys: this one in standalone mode,
    /// the queue's own in cluster mode (all in one slot).
    pub fn for_queue(&self, queue: &str) -> Cow<'_, Keys> {
        match &self.cluster {
            None => Cow::Borrowed(self),
            Some(namespace) => Cow::Owned(Keys {
                prefix: format!("{{{namespace}:{queue}}}:"),
                cluster: Some(namespace.clone()),
                queue: Some(queue.to_string()),
            }),
        }
    }

    /// The queue whose own keyspace this is (cluster mode); `None` for the
    /// fleet's and in standalone mode.
    pub fn own_queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    fn k(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn queues(&self) -> String {
        self.k("queues")
    }
    pub fn queue(&self, q: &str) -> String {
        self.k(&format!("queue:{q}"))
    }
    pub fn failed(&self) -> String {
        self.k("failed")
    }
    pub fn stat(&self, name: &str) -> String {
        self.k(&format!("stat:{name}"))
    }
    pub fn worker_stat(&self, name: &str, worker: &str) -> String {
        self.k(&format!("stat:{name}:{worker}"))
    }
    pub fn workers(&self) -> String {
        self.k("workers")
    }
    pub fn worker(&self, worker: &str) -> String {
        self.k(&format!("worker:{worker}"))
    }
    pub fn worker_started(&self, worker: &str) -> String {
        self.k(&format!("worker:{worker}:started"))
    }
    pub fn heartbeats(&self) -> String {
        self.k("workers:heartbeat")
    }
    pub fn pause_all(&self) -> String {
        self.k("pause-all-workers")
    }
    /// resq workers, whose in-flight lists the reaper watches.
    pub fn resq_workers(&self) -> String {
        self.k("resq:workers")
    }
    /// resq's liveness mark: a key with a TTL renewed by the worker.
    pub fn alive(&self, worker: &str) -> String {
        self.k(&format!("resq:alive:{worker}"))
    }
    /// The suspect a worker runs alone, if any: "<token> <sha1>".
    pub fn solo(&self, worker: &str) -> String {
        self.k(&format!("resq:solo:{worker}"))
    }
    /// A queue's suspects: jobs that were in flight when a worker died (sha1
    /// of the payload -> its deaths), and when each was last counted (to
    /// forget old ones). Per queue, so only a queue that holds suspects pays
    /// for looking at its jobs when they are fetched.
    pub fn suspects(&self, queue: &str) -> String {
        self.k(&format!("resq:suspects:{queue}"))
    }
    pub fn suspects_at(&self, queue: &str) -> String {
        self.k(&format!("resq:suspects-at:{queue}"))
    }
    pub fn inflight_queues(&self, worker: &str) -> String {
        self.k(&format!("resq:inflight-queues:{worker}"))
    }
    /// Pub/sub channel producers publish to after a push, to wake idle workers.
    pub fn wake_channel(&self) -> String {
        self.k("resq:wake")
    }
    /// The pattern of every queue's wake channel in cluster mode (a push
    /// publishes on its queue's, in the queue's slot); `None` in
    /// standalone mode, where there is one channel.
    pub fn wake_pattern(&self) -> Option<String> {
        self.cluster
            .as_ref()
            .map(|namespace| format!("{{{namespace}:*}}:resq:wake"))
    }
    /// One block of replay marks on one queue: a bitmap, one bit per
    /// signed job attempt, kept until the latest expiry of those jobs.
    pub fn marks(&self, queue: &str, block: &str) -> String {
        self.k(&format!("resq:marks:{queue}:{block}"))
    }
    /// The fleet's beat: since when (Unix ms, Redis TIME) workers have
    /// renewed their liveness without a gap; lapses when none did for a while.
    pub fn beat(&self) -> String {
        self.k("resq:beat")
    }
    /// How many failure records were dropped to keep the failed list at its cap.
    pub fn failed_trimmed(&self) -> String {
        self.k("resq:stat:failed-trimmed")
    }
    /// Failure records by id (hash failure_id -> the record's bytes), so one
    /// is found without scanning the failed list.
    pub fn failure_index(&self) -> String {
        self.k("resq:failure-index")
    }
    /// Jobs enqueued to run later, scored by when (unix ms).
    pub fn schedule(&self) -> String {
        self.k("resq:schedule")
    }
    /// Failed jobs waiting for their next attempt, scored by when (unix ms).
    pub fn retry(&self) -> String {
        self.k("resq:retry")
    }
    /// The prefix of queue keys, for scripts that build them.
    pub fn queue_prefix(&self) -> String {
        self.k("queue:")
    }
    /// A uniqueness key of one class, held for its window by the job id.
    pub fn unique(&self, class: &str, key: &str) -> String {
        self.k(&format!("resq:unique:{class}:{key}"))
    }
    /// Held by the worker that sweeps expired jobs this interval.
    pub fn sweep_lock(&self) -> String {
        self.k("resq:sweep-lock")
    }
    /// The newest expired jobs the sweeper removed (capped).
    pub fn expired(&self) -> String {
        self.k("resq:expired")
    }
    /// How many expired jobs the sweeper removed, ever.
    pub fn expired_count(&self) -> String {
        self.k("resq:stat:expired")
    }
    /// resq workers that are paused (USR2 or pause-all-workers).
    pub fn paused_workers(&self) -> String {
        self.k("resq:paused-workers")
    }
    /// Queues an operator paused: workers fetch nothing from them.
    pub fn paused_queues(&self) -> String {
        self.k("resq:paused-queues")
    }
    /// Caps on queue length (hash queue -> max jobs waiting).
    pub fn queue_caps(&self) -> String {
        self.k("resq:queue-caps")
    }
    /// Recurring jobs: each entry's last fired tick (hash name -> Unix ms).
    pub fn cron_last(&self) -> String {
        self.k("resq:cron:last")
    }
    /// The counter that hands out in-flight tokens to one worker.
    pub fn inflight_seq(&self, worker: &str) -> String {
        self.k(&format!("resq:inflight-seq:{worker}"))
    }
    /// One worker's in-flight jobs from one queue: a hash, token -> the
    /// first token of the job's batch (the job itself is in that batch's
    /// list, see [`Keys::inflight_batches`]), `c<token>` -> the job's
    /// replay claim, `b<first>` -> how many of the batch are still in
    /// flight, `x` -> a marker longer than `hash-max-listpack-value`, so
    /// Redis keeps the hash a hashtable (see `fetch.lua`).
    pub fn inflight(&self, worker: &str, queue: &str) -> String {
        self.k(&format!("resq:inflight:{worker}:{queue}"))
    }
    /// The prefix of one worker's in-flight batches from one queue: each
    /// fetch moves its jobs, in order, into the list `<prefix>:<first
    /// token>` inside Redis (`SORT ... STORE`), so a payload never passes
    /// through a script; the list goes with the batch's last job.
    pub fn inflight_batches(&self, worker: &str, queue: &str) -> String {
        self.k(&format!("resq:inflight-batch:{worker}:{queue}"))
    }
    /// A tracked job's record (opt-in per job): a hash kept until a day
    /// after the job's expiry.
    /// In cluster mode in a slot of its own (by the job's id), so tracked
    /// jobs spread over the masters instead of all reaching the fleet's.
    pub fn track(&self, id: &str) -> String {
        match &self.cluster {
            Some(namespace) => format!("{{{namespace}:track:{id}}}"),
            None => self.k(&format!("resq:track:{id}")),
        }
    }
    /// The HTTP API's tokens: a hash, token id -> record (hashes of the
    /// secrets, never the secrets).
    pub fn api_tokens(&self) -> String {
        self.k("resq:api:tokens")
    }
    /// Revoked API tokens: a hash, token id -> when (Unix ms). Apart from
    /// the records, so a revocation is one write no rotation can undo.
    pub fn api_revoked(&self) -> String {
        self.k("resq:api:revoked")
    }
    /// One rate limit's state (GCRA: its theoretical arrival time, µs);
    /// `kind` is `token`, `class`, `queue` or `authfail` (per client IP).
    pub fn api_rate(&self, kind: &str, name: &str) -> String {
        self.k(&format!("resq:api:rate:{kind}:{name}"))
    }
    /// A token's enqueue-rate baseline (adaptive throttling): a hash.
    pub fn api_baseline(&self, token: &str) -> String {
        self.k(&format!("resq:api:baseline:{token}"))
    }
    /// A token throttled for a period after a surge (expires with it).
    pub fn api_throttle(&self, token: &str) -> String {
        self.k(&format!("resq:api:throttle:{token}"))
    }
    /// An idempotency key of one token: what the first request was.
    pub fn api_idempotency(&self, token: &str, key: &str) -> String {
        self.k(&format!("resq:api:idem:{token}:{key}"))
    }
    /// The audit trail of the HTTP API: a capped stream.
    pub fn api_audit(&self) -> String {
        self.k("resq:api:audit")
    }
    /// The dashboard's users: a hash, name -> record (an Argon2id hash of
    /// the password, never the password).
    pub fn web_users(&self) -> String {
        self.k("resq:web:users")
    }
    /// One dashboard session, under the SHA-256 of its id (the cookie's
    /// value is never a key): expires after the idle timeout.
    pub fn web_session(&self, id_hash: &str) -> String {
        self.k(&format!("resq:web:session:{id_hash}"))
    }
    /// A login rate limit (GCRA); `kind` is `ip` or `user` (the SHA-256 of
    /// the name typed, so any name makes a bounded key).
    pub fn web_rate(&self, kind: &str, name: &str) -> String {
        self.k(&format!("resq:web:rate:{kind}:{name}"))
    }
    /// Failed logins in a row for one name typed (its SHA-256): the
    /// lockout's count, expiring an hour after the last failure.
    pub fn web_lockout(&self, name_hash: &str) -> String {
        self.k(&format!("resq:web:lockout:{name_hash}"))
    }
    /// The dashboard's samples for its charts: lists, newest first; `fine`
    /// holds every sample (the newest 720), `coarse` one every 2 minutes
    /// (a day of them).
    pub fn web_history(&self, which: &str) -> String {
        self.k(&format!("resq:web:history:{which}"))
    }
    /// Which replica takes the next sample (expires with the interval).
    pub fn web_history_turn(&self) -> String {
        self.k("resq:web:history-turn")
    }
    /// A lock one replica of `resq serve` holds while it does `name`
    /// (`alerts`: the fleet's alert evaluator); expires unless renewed.
    pub fn web_lock(&self, name: &str) -> String {
        self.k(&format!("resq:web:lock:{name}"))
    }
    /// Which sample goes to the coarse list (expires after 2 minutes).
    pub fn web_history_turn_coarse(&self) -> String {
        self.k("resq:web:history-turn:coarse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resque_keys_byte_for_byte() {
        let k = Keys::new("resque");
        let w = "host:42:a,b";
        let table = [
            (k.queues(), "resque:queues"),
            (k.queue("mail"), "resque:queue:mail"),
            (k.failed(), "resque:failed"),
            (k.stat("processed"), "resque:stat:processed"),
            (k.stat("failed"), "resque:stat:failed"),
            (k.worker_stat("processed", w), "resque:stat:processed:host:42:a,b"),
            (k.worker_stat("failed", w), "resque:stat:failed:host:42:a,b"),
            (k.workers(), "resque:workers"),
            (k.worker(w), "resque:worker:host:42:a,b"),
            (k.worker_started(w), "resque:worker:host:42:a,b:started"),
            (k.heartbeats(), "resque:workers:heartbeat"),
            (k.pause_all(), "resque:pause-all-workers"),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    /// The slot Redis Cluster gives a key (redis-rs's own reckoning).
    fn slot(key: &str) -> redis::cluster_routing::Slot {
        redis::cluster_routing::Slot::for_key(key)
    }

    #[test]
    fn in_cluster_mode_a_queues_keys_share_one_slot_and_queues_spread() {
        let fleet = Keys::cluster("resque");
        let w = "host:42:a,b";
        for queue in ["mail", "a.b-c_d", "x"] {
            let k = fleet.for_queue(queue);
            let keys = [
                k.queue(queue),
                k.queues(),
                k.queue_caps(),
                k.paused_queues(),
                k.pause_all(),
                k.inflight(w, queue),
                k.inflight_batches(w, queue) + ":17",
                k.inflight_seq(w),
                k.inflight_queues(w),
                k.solo(w),
                k.suspects(queue),
                k.suspects_at(queue),
                k.marks(queue, "block"),
                k.failed(),
                k.failure_index(),
                k.failed_trimmed(),
                k.stat("processed"),
                k.worker_stat("failed", w),
                k.worker(w),
                k.retry(),
                k.schedule(),
                k.unique("Class", "key"),
                k.cron_last(),
                k.sweep_lock(),
                k.expired(),
                k.expired_count(),
            ];
            let first = slot(&keys[0]);
            for key in &keys {
                assert_eq!(slot(key), first, "{key} is not in {}'s slot", keys[0]);
                assert!(key.starts_with(&format!("{{resque:{queue}}}:")), "{key}");
            }
        }
        let fleet_keys = [
            fleet.workers(),
            fleet.resq_workers(),
            fleet.alive(w),
            fleet.beat(),
            fleet.heartbeats(),
            fleet.worker(w),
            fleet.worker_started(w),
            fleet.inflight_queues(w),
            fleet.paused_workers(),
            fleet.pause_all(),
            fleet.queues(),
        ];
        for key in &fleet_keys {
            assert_eq!(slot(key), slot(&fleet_keys[0]), "{key}");
        }
        // Queues land on different slots (a few names, not all on one).
        let slots: std::collections::HashSet<_> = (0..20)
            .map(|i| slot(&fleet.for_queue(&format!("q{i}")).queue("x")))
            .collect();
        assert!(slots.len() > 15, "{slots:?}");
        // Tracked jobs spread too.
        let slots: std::collections::HashSet<_> = (0..20).map(|i| slot(&fleet.track(&format!("id-{i}")))).collect();
        assert!(slots.len() > 15, "{slots:?}");
        // Standalone: for_queue changes nothing.
        let plain = Keys::new("resque");
        assert_eq!(plain.for_queue("mail").queue("mail"), "resque:queue:mail");
    }
}
