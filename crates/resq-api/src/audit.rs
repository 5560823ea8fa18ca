//! The audit trail: every accepted and refused request, as one line in the
//! JSON log (target `resq::audit`, for a SIEM) and as an entry in a capped
//! Redis stream (`resq audit tail`). The entry is written before the
//! answer leaves (a client that saw its answer finds it in the trail); a
//! store error is logged and does not change the answer.

use resq_redis::api::ApiStore;

use crate::server::AuditView;

#[derive(Clone)]
pub struct Audit {
    store: ApiStore,
}

impl Audit {
    pub fn new(store: ApiStore) -> Self {
        Self { store }
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
        let fields: Vec<(&str, String)> = vec![
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
        if let Err(e) = self.store.audit(&fields).await {
            tracing::warn!(error = %e, "could not append to the audit stream");
        }
    }
}

/// Something that can show itself as an audit entry.
pub(crate) trait AsView<'a> {
    fn as_view(&'a self) -> AuditView<'a>;
}
