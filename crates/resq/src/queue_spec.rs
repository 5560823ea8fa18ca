//! Resque's queue spec: a comma list in strict priority order, with `*`, globs
//! (`mail*`, `h?gh`, `[cd]*`) and `!exclusions`, resolved against the queues that
//! exist (`resque:queues`) each time the worker re-reads them.

use glob::Pattern;

/// One entry of the spec.
#[derive(Debug, Clone)]
enum Entry {
    /// A plain queue name: always worked, even before the queue exists.
    Literal(String),
    /// A glob, expanded to the matching queues in sorted order.
    Glob(Pattern),
}

/// A parsed queue spec.
///
/// ```
/// use resq::QueueSpec;
/// let spec: QueueSpec = "critical,mail*,*,!low".parse().unwrap();
/// let known = ["low", "default", "mail_b", "mail_a", "critical"].map(String::from);
/// assert_eq!(spec.resolve(&known), ["critical", "mail_a", "mail_b", "default"]);
/// ```
#[derive(Debug, Clone)]
pub struct QueueSpec {
    source: String,
    entries: Vec<Entry>,
    exclusions: Vec<Pattern>,
}

/// A queue spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueSpecError {
    #[error("the queue list is empty: give queue names in priority order, e.g. `critical,default,*`")]
    Empty,
    #[error("queue pattern {pattern:?} is not a valid glob: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("queue list entry {0:?} may only hold letters, digits, '_', '-', '.', and glob characters")]
    BadEntry(String),
}

impl std::str::FromStr for QueueSpec {
    type Err = QueueSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        let mut exclusions = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (negated, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let allowed =
                |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*' | b'?' | b'[' | b']' | b'!');
            if body.is_empty() || !body.bytes().all(allowed) {
                return Err(QueueSpecError::BadEntry(raw.chars().take(64).collect()));
            }
            let is_glob = body.bytes().any(|b| matches!(b, b'*' | b'?' | b'['));
            if negated || is_glob {
                let pattern = Pattern::new(body).map_err(|e| QueueSpecError::BadPattern {
                    pattern: body.to_string(),
                    message: e.msg.to_string(),
                })?;
                if negated {
                    exclusions.push(pattern);
                } else {
                    entries.push(Entry::Glob(pattern));
                }
            } else {
                entries.push(Entry::Literal(body.to_string()));
            }
        }
        if entries.is_empty() {
            return Err(QueueSpecError::Empty);
        }
        Ok(QueueSpec {
            source: s.split(',').map(str::trim).collect::<Vec<_>>().join(","),
            entries,
            exclusions,
        })
    }
}

impl QueueSpec {
    /// The spec as written, normalised; it is the third part of the worker id.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the spec has globs, so the queue set must be re-read.
    pub fn is_dynamic(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Glob(_)))
    }

    /// The queues to fetch from, in priority order, without duplicates.
    pub fn resolve(&self, known: &[String]) -> Vec<String> {
        let mut sorted: Vec<&String> = known.iter().collect();
        sorted.sort_unstable();
        let mut out: Vec<String> = Vec::new();
        let push = |q: &str, out: &mut Vec<String>| {
            if !self.exclusions.iter().any(|p| p.matches(q)) && !out.iter().any(|o| o == q) {
                out.push(q.to_string());
            }
        };
        for entry in &self.entries {
            match entry {
                Entry::Literal(name) => push(name, &mut out),
                Entry::Glob(p) => {
                    for q in sorted.iter().filter(|q| p.matches(q)) {
                        push(q, &mut out);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["low", "high", "default", "mail_b", "mail_a", "critical", "cold"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn table_of_specs() {
        let cases: &[(&str, &[&str])] = &[
            ("critical,default", &["critical", "default"]),
            ("*", &["cold", "critical", "default", "high", "low", "mail_a", "mail_b"]),
            (
                "critical,*",
                &["critical", "cold", "default", "high", "low", "mail_a", "mail_b"],
            ),
            ("mail*", &["mail_a", "mail_b"]),
            ("h?gh,low", &["high", "low"]),
            ("[cd]*", &["cold", "critical", "default"]),
            ("*,!mail*,!low", &["cold", "critical", "default", "high"]),
            ("missing,critical", &["missing", "critical"]),
            (" critical , default ", &["critical", "default"]),
        ];
        for (spec, expected) in cases {
            let parsed: QueueSpec = spec.parse().unwrap();
            assert_eq!(parsed.resolve(&known()), *expected, "{spec}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in ["", ",", "!x", "a b", "a:b", "[", "q;DEL"] {
            assert!(bad.parse::<QueueSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn new_queues_appear_on_resolve() {
        let spec: QueueSpec = "*".parse().unwrap();
        assert!(spec.resolve(&[]).is_empty());
        assert_eq!(spec.resolve(&["new".to_string()]), ["new"]);
    }
}
