//! Claims, coalesced. Every signed job claims its attempt's replay mark
//! before it runs; the claims that arrive while one store call is out are
//! sent together by the next call (one script for Redis) instead of one
//! round trip each, so claiming costs little at high throughput and nothing
//! in latency when the worker is quiet.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::BackendError;
use crate::store::{Claim, ClaimOutcome, Store, StoreError};
use crate::worker_id::WorkerId;

/// Most claims sent in one store call.
const MAX_BATCH: usize = 1024;

type Ask = (Claim, oneshot::Sender<Result<ClaimOutcome, StoreError>>);

/// The asking side; the answering task ends when every gate is dropped.
#[derive(Clone)]
pub(crate) struct ClaimGate {
    tx: mpsc::UnboundedSender<Ask>,
}

impl ClaimGate {
    pub(crate) fn start(store: Arc<dyn Store>, worker: WorkerId) -> ClaimGate {
        let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(ask) => batch.push(ask),
                        Err(_) => break,
                    }
                }
                let (claims, replies): (Vec<Claim>, Vec<_>) = batch.into_iter().unzip();
                match store.claim(&worker, &claims).await {
                    Ok(outcomes) if outcomes.len() == replies.len() => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Ok(_) => {
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Protocol {
                                what: "a claim answer with a wrong count",
                            }));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        ClaimGate { tx }
    }

    /// Claims one attempt's mark.
    pub(crate) async fn claim(&self, claim: Claim) -> Result<ClaimOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((claim, reply))
            .map_err(|_| StoreError::Unavailable(BackendError::message("the claim gate stopped")))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable(BackendError::message("the claim gate stopped")))?
    }
}
