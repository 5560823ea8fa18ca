//! Resque worker ids: `<hostname>:<pid>:<queue spec>`.
//!
//! Ruby workers split every registered id on its first two `:` when they start
//! and prune dead workers; an id with fewer than two `:` crashes them. The host
//! part is cleaned of `:` and the queue spec cannot hold one (see `QueueSpec`),
//! so an id built here always has exactly two.

use std::fmt;

/// A worker's id, as registered in `resque:workers`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerId {
    id: String,
}

impl WorkerId {
    /// Builds the id. `queues` is the normalised queue spec.
    ///
    /// ```
    /// let id = resq::WorkerId::new("web-1", 4242, "critical,default");
    /// assert_eq!(id.as_str(), "web-1:4242:critical,default");
    /// ```
    pub fn new(host: &str, pid: u32, queues: &str) -> Self {
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let queues = queues.replace(':', "-");
        Self {
            id: format!("{host}:{pid}:{queues}"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_exactly_two_colons() {
        for (host, spec) in [("a:b", "q"), ("", "*"), ("h", "a:b,c"), ("ünï", "x")] {
            let id = WorkerId::new(host, 1, spec);
            assert_eq!(id.as_str().matches(':').count(), 2, "{id}");
        }
    }
}
