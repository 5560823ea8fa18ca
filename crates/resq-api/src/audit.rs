//! The audit trail: every accepted and refused request, as one line in the
//! JSON log (target `resq::audit`, for a SIEM) at once, and as an entry in
//! a capped Redis stream (`resq audit tail`), written by one task that
//! sends what has gathered in one pipeline: under load, one round trip
//! for many requests. A store error is logged and retried with the next
//! batch; it never changes an answer. At shutdown the queue is written out
//! before the server exits.

use std::time::Duration;

use resq_redis::api::ApiStore;
use tokio::sync::{mpsc, oneshot};

use crate::server::AuditView;

/// Entries that may wait for the writer; past it, requests wait for room
/// (a slow Redis slows the API rather than losing entries).
const QUEUE: usize = 65_536;
/// Entries in one pipeline at most.
const BATCH: usize = 512;

type Fields = Vec<(&'static str, String)>;

enum Message {
    Entry(Fields),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Message>,
}

impl Audit {
    /// Starts the writer task.
    pub fn new(store: ApiStore) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, rx));
        Self { tx }
    }

    /// Records one outcome: `accepted`, `refused`, `replayed` or `alert`.
    pub(crate) async fn record<'a>(
        &self,
        attempt: &'a impl AsView<'a>,
        outcome: &str,
        status: u16,
        reason: &str,
        job_id: &str,
    ) {
        let v = attempt.as_view();
        let at = resq::UnixMs::now();
        tracing::info!(
            target: "resq::audit",
            at = %at, request_id = v.request_id, client_ip = %v.ip, route = v.route,
            token_id = v.token_id, token_name = v.token_name, class = v.class, queue = v.queue,
            jobs = v.jobs, job_id, outcome, status, reason,
            "api request"
        );
        let fields: Fields = vec![
            ("at_ms", at.0.to_string()),
            ("request_id", v.request_id.to_string()),
            ("client_ip", v.ip.to_string()),
            ("route", v.route.to_string()),
            ("token_id", v.token_id.to_string()),
            ("token_name", v.token_name.to_string()),
            // What the client sent, clipped: an entry stays small.
            ("class", crate::problem::clip(v.class, 200)),
            ("queue", crate::problem::clip(v.queue, 200)),
            ("jobs", v.jobs.to_string()),
            ("job_id", job_id.to_string()),
            ("outcome", outcome.to_string()),
            ("status", status.to_string()),
            ("reason", reason.to_string()),
        ];
        // Never wait for room: a Redis that cannot take the trail (away,
        // out of memory) must not stall the answers, 503s included.
        if self.tx.try_send(Message::Entry(fields)).is_err() {
            tracing::error!(target: "resq::audit", "the audit stream is behind; this entry is only in the log");
        }
    }

    /// Waits until every entry recorded so far is in the stream, for at
    /// most `bound` (Redis may be away; the entries are in the log).
    /// Records a dashboard action: who did what to which thing, from where,
    /// and how it ended.
    pub(crate) fn record_action(&self, user: &str, ip: std::net::IpAddr, action: &str, target: &str, outcome: &str) {
        let at = resq::UnixMs::now();
        tracing::info!(
            target: "resq::audit",
            at = %at, client_ip = %ip, user = %crate::problem::clip(user, 200), action,
            target = %crate::problem::clip(target, 200), outcome,
            "dashboard action"
        );
        let fields: Fields = vec![
            ("at_ms", at.0.to_string()),
            ("source", "dashboard".to_string()),
            ("client_ip", ip.to_string()),
            ("user", crate::problem::clip(user, 200)),
            ("action", action.to_string()),
            ("target", crate::problem::clip(target, 200)),
            ("outcome", outcome.to_string()),
        ];
        if self.tx.try_send(Message::Entry(fields)).is_err() {
            tracing::error!(target: "resq::audit", "the audit stream is behind; this entry is only in the log");
        }
    }

    pub async fn flush(&self, bound: Duration) {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        if tokio::time::timeout(bound, flushed).await.is_err() {
            tracing::error!("the audit stream could not be written out before exit; the entries are in the log");
        }
    }
}

async fn write(store: ApiStore, mut rx: mpsc::Receiver<Message>) {
    let mut pending: Vec<Fields> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(Message::Entry(fields)) => pending.push(fields),
                Some(Message::Flush(done)) => waiting.push(done),
                None => return,
            }
        }
        while pending.len() < BATCH {
            match rx.try_recv() {
                Ok(Message::Entry(fields)) => pending.push(fields),
                Ok(Message::Flush(done)) => waiting.push(done),
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            if let Err(e) = store.audit_many(&pending).await {
                // Retried on a timer, not on the next request.
                tracing::warn!(error = %e, entries = pending.len(), "could not append to the audit stream; will retry");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            pending.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Something that can show itself as an audit entry.
pub(crate) trait AsView<'a> {
    fn as_view(&'a self) -> AuditView<'a>;
}
