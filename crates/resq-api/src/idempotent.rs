//! `Idempotency-Key`: the same key and body within the window get the
//! first answer; the same key with another body is refused; a request
//! still in flight holds the key.

use axum::http::{HeaderMap, StatusCode};
use resq::{EnqueueError, StoreError};
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::server::{outcome_unknown, refusal_of, unavailable, ApiState};

/// A request's hold on its key (nothing, when it sent none).
pub(crate) struct Once<'a> {
    state: &'a ApiState,
    token: &'a str,
    key: Option<String>,
    body_hash: String,
}

/// What the key said.
pub(crate) enum Begun<'a> {
    /// Go on and store; then tell the hold the answer.
    Fresh(Once<'a>),
    /// The same body was answered before: this answer (a job id, or ids
    /// joined by commas).
    Replay(String),
}

/// Takes the request's key, if it sent one.
pub(crate) async fn begin<'a>(
    state: &'a ApiState,
    token: &'a str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Begun<'a>, Problem> {
    let key = key_of(headers)?;
    let body_hash: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    let Some(k) = &key else {
        return Ok(Begun::Fresh(Once {
            state,
            token,
            key,
            body_hash,
        }));
    };
    let window = state.settings.idempotency_window;
    match state
        .store
        .idempotency_begin(token, k, &body_hash, window)
        .await
        .map_err(unavailable)?
    {
        resq_redis::api::Idempotency::Fresh => Ok(Begun::Fresh(Once {
            state,
            token,
            key,
            body_hash,
        })),
        resq_redis::api::Idempotency::Replay(answer) => Ok(Begun::Replay(answer)),
        resq_redis::api::Idempotency::Conflict => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_conflict",
            "this Idempotency-Key was used with another body; use a new key for a new request",
        )),
        resq_redis::api::Idempotency::InProgress => Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being handled; retry it later",
        )),
    }
}

impl Once<'_> {
    /// The jobs were stored: the key keeps this answer for the window.
    pub(crate) async fn stored(&self, answer: &str) {
        if let Some(key) = &self.key {
            let window = self.state.settings.idempotency_window;
            let _ = self
                .state
                .store
                .idempotency_finish(self.token, key, &self.body_hash, answer, window)
                .await;
        }
    }

    /// The enqueue failed: a definite refusal gives the key back; a store
    /// that did not answer may have stored the jobs, and one that stored
    /// them without its replicas' confirmation (`redis.wait_replicas`) did,
    /// so then the key stays taken (its short pending lifetime ends it) and
    /// the answer says so.
    pub(crate) async fn failed(&self, e: EnqueueError) -> Problem {
        let unknown = matches!(e, EnqueueError::Store(StoreError::Unavailable(_)));
        // Stored on the master, not confirmed on its replicas: the jobs
        // exist, so the key is not given back either.
        let stored = matches!(e, EnqueueError::Store(StoreError::NotReplicated { .. }));
        if let (Some(key), false) = (&self.key, unknown || stored) {
            let _ = self.state.store.idempotency_abort(self.token, key).await;
        }
        if unknown {
            outcome_unknown()
        } else {
            refusal_of(e)
        }
    }
}

fn key_of(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let fine = !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic());
    if !fine {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_string()))
}
