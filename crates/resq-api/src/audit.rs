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
            ("class", v.class.to_string()),
            ("queue", v.queue.to_string()),
            ("jobs", v.jobs.to_string()),
            ("job_id", job_id.to_string()),
            ("outcome", outcome.to_string()),
            ("status", status.to_string()),
            ("reason", reason.to_string()),
        ];
        if self.tx.send(Message::Entry(fields)).await.is_err() {
            tracing::error!("the audit writer is gone; an entry reached only the log");
        }
    }

    /// Waits until every entry recorded so far is in the stream (or its
    /// write failed and was logged).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write(store: ApiStore, mut rx: mpsc::Receiver<Message>) {
    let mut pending: Vec<Fields> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut take = |m: Message, pending: &mut Vec<Fields>| match m {
            Message::Entry(fields) => pending.push(fields),
            Message::Flush(done) => waiting.push(done),
        };
        take(first, &mut pending);
        while pending.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending),
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            match store.audit_many(&pending).await {
                Ok(()) => pending.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, entries = pending.len(), "could not append to the audit stream; will retry");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // Bounded: a Redis away for long keeps the newest.
                    if pending.len() > QUEUE {
                        let drop = pending.len() - QUEUE;
                        pending.drain(..drop);
                        tracing::error!(
                            entries = drop,
                            "audit entries lost while Redis was away (they are in the log)"
                        );
                    }
                    continue;
                }
            }
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
