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
    /// The write is done on the master, but fewer replicas than asked for
    /// (`wanted`, the Redis store's `redis.wait_replicas`) confirmed they
    /// hold it within the wait's timeout (`got` did). It stays done unless
    /// the master fails before a replica receives it: then a failover may
    /// promote a replica without it, and it is lost. Nothing is undone, so
    /// the caller must not take this for a refusal.
    ///
    /// For an enqueue: the job is queued now. A producer that needs the
    /// job to survive a failover may enqueue it again; the retry is a new
    /// job (a new id, a new replay mark), so if both copies survive it runs
    /// twice, as after any enqueue whose answer was lost (`Unavailable`).
    /// Only a byte-identical copy of one signed envelope is refused by its
    /// replay mark (`replayed`) once one copy ran. For an ack or a requeue:
    /// sending it again cannot add a replica (it was applied once; a second
    /// ack finds the job gone), so a worker takes it as done and logs it.
    #[error(
        "the write is done on the Redis master, but only {got} of the {wanted} replica(s) asked for confirmed it \
         in time: it may be lost if the master fails before a replica has it"
    )]
    NotReplicated { wanted: u32, got: u32 },
}
