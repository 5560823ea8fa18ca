//! What can go wrong in a store.

use std::sync::Arc;

/// The backend's own error (a Redis error, an I/O error), kept whole as the
/// source of a [`StoreError`]. Cheap to clone, so one failure can be told to
/// every job waiting on it.
#[derive(Debug, Clone)]
pub struct BackendError(Arc<dyn std::error::Error + Send + Sync>);

impl BackendError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A failure the store describes itself (no backend error behind it).
    pub fn message(text: impl Into<String>) -> Self {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Message(String);
        Self::new(Message(text.into()))
    }

    /// The backend's error, to downcast.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A storage failure. Each message is whole on its own (it says the
/// backend's words too); the backend's error is also kept as the source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, or the connection dropped: retrying
    /// later may work.
    #[error("cannot reach the store: {0}")]
    Unavailable(#[source] BackendError),
    /// The store refused the command (permissions, out of memory, a script
    /// error).
    #[error("the store refused the command: {0}")]
    Refused(#[source] BackendError),
    /// The store answered something this version does not understand.
    #[error("the store answered something unexpected: {what}")]
    Protocol { what: &'static str },
    #[error(
        "queue {queue} is full ({length} of {cap} jobs waiting): nothing was enqueued; try later or raise the cap"
    )]
    QueueFull { queue: String, cap: u64, length: u64 },
}
