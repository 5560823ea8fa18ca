//! The replay check, coalesced. Every signed job asks whether its id already
//! ran to success; the asks that arrive while one store call is out are
//! answered together by the next call (one `MGET` for Redis) instead of one
//! round trip each, so the check costs little at high throughput and nothing
//! in latency when the worker is quiet.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};

/// Most ids answered by one store call.
const MAX_BATCH: usize = 1024;

type Ask = (String, oneshot::Sender<Result<bool, StoreError>>);

/// The asking side; the answering task ends when every gate is dropped.
#[derive(Clone)]
pub(crate) struct ReplayGate {
    tx: mpsc::UnboundedSender<Ask>,
}

impl ReplayGate {
    pub(crate) fn start(store: Arc<dyn Store>) -> ReplayGate {
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
                let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
                match store.are_done(&ids).await {
                    Ok(flags) if flags.len() == batch.len() => {
                        for ((_, reply), done) in batch.into_iter().zip(flags) {
                            let _ = reply.send(Ok(done));
                        }
                    }
                    Ok(_) => {
                        for (_, reply) in batch {
                            let _ = reply.send(Err(StoreError::Protocol("replay check answered a wrong count".into())));
                        }
                    }
                    Err(e) => {
                        for (_, reply) in batch {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        ReplayGate { tx }
    }

    /// True when this id already ran to success.
    pub(crate) async fn is_done(&self, id: &str) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((id.to_string(), reply))
            .map_err(|_| StoreError::Unavailable("the replay check stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the replay check stopped".into()))?
    }
}
