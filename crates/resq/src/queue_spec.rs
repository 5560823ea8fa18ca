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
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec: QueueSpec = "critical,mail*,*,!low".parse()?;
/// let known = ["low", "default", "mail_b", "mail_a", "critical"].map(String::from);
/// assert_eq!(spec.resolve(&known), ["critical", "mail_a", "mail_b", "default"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QueueSpec {
    source: String,
    entries: Vec<Entry>,
    exclusions: Vec<Pattern>,
    /// `name:weight` entries: the order is drawn at random for every fetch,
    /// each queue in proportion to its weight, so no queue starves.
    weights: Vec<(String, u32)>,
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
    #[error("weighted entry {0:?} must be `queue:weight` with a plain queue name and a weight from 1 to 1000")]
    BadWeight(String),
    #[error("a weighted queue list takes only `queue:weight` entries (no plain names, globs or exclusions)")]
    MixedWeights,
    #[error("queue {0:?} has two weights: give each queue of a weighted list one `queue:weight` entry")]
    DuplicateWeight(String),
}

impl std::str::FromStr for QueueSpec {
    type Err = QueueSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        let mut exclusions = Vec::new();
        let mut weights = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some((name, weight)) = raw.split_once(':') {
                let weight: u32 = weight
                    .parse()
                    .ok()
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or_else(|| QueueSpecError::BadWeight(raw.chars().take(64).collect()))?;
                crate::names::check_queue(name)
                    .map_err(|_| QueueSpecError::BadWeight(raw.chars().take(64).collect()))?;
                // Twice would draw the queue twice per fetch (found by fuzz/).
                if weights.iter().any(|(seen, _)| seen == name) {
                    return Err(QueueSpecError::DuplicateWeight(name.to_string()));
                }
                weights.push((name.to_string(), weight));
                continue;
            }
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
                    // Clipped like every entry an error quotes (found by fuzz/).
                    pattern: body.chars().take(64).collect(),
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
        let mixed = !entries.is_empty() || !exclusions.is_empty();
        if !weights.is_empty() && mixed {
            return Err(QueueSpecError::MixedWeights);
        }
        if entries.is_empty() && weights.is_empty() {
            return Err(QueueSpecError::Empty);
        }
        Ok(QueueSpec {
            source: s.split(',').map(str::trim).collect::<Vec<_>>().join(","),
            entries,
            exclusions,
            weights,
        })
    }
}

impl QueueSpec {
    /// The spec as written, normalised; it is the third part of the worker id.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The queues as a worker id lists them (Resque's form, comma-joined):
    /// the spec itself, or for a weighted spec its queue names without
    /// weights, so Ruby tools that read the id see queues that exist.
    ///
    /// ```
    /// let spec: resq::QueueSpec = "rq:2,legacy:1".parse().unwrap();
    /// assert_eq!(spec.for_worker_id(), "rq,legacy");
    /// let spec: resq::QueueSpec = "critical,mail*,!mail_bulk".parse().unwrap();
    /// assert_eq!(spec.for_worker_id(), "critical,mail*,!mail_bulk");
    /// ```
    pub fn for_worker_id(&self) -> String {
        if self.weights.is_empty() {
            self.source.clone()
        } else {
            let names: Vec<&str> = self.weights.iter().map(|(name, _)| name.as_str()).collect();
            names.join(",")
        }
    }

    /// True for a `queue:weight` spec (the order is drawn per fetch).
    pub fn is_weighted(&self) -> bool {
        !self.weights.is_empty()
    }

    /// For a weighted spec, a fresh order: each next queue is drawn from those
    /// left in proportion to its weight. `random` yields numbers in [0, 1).
    pub fn weighted_order(&self, mut random: impl FnMut() -> f64) -> Vec<String> {
        let mut left: Vec<&(String, u32)> = self.weights.iter().collect();
        let mut order = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let total: u32 = left.iter().map(|(_, w)| w).sum();
            let mut pick = random() * f64::from(total);
            let mut index = left.len() - 1;
            for (i, (_, w)) in left.iter().enumerate() {
                if pick < f64::from(*w) {
                    index = i;
                    break;
                }
                pick -= f64::from(*w);
            }
            order.push(left.remove(index).0.clone());
        }
        order
    }

    /// True when the spec has globs, so the queue set must be re-read.
    pub fn is_dynamic(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Glob(_)))
    }

    /// The queues to fetch from, in priority order, without duplicates.
    pub fn resolve(&self, known: &[String]) -> Vec<String> {
        if self.is_weighted() {
            return self.weights.iter().map(|(q, _)| q.clone()).collect();
        }
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
    fn weighted_specs() {
        let spec: QueueSpec = "critical:6,default:3,low:1".parse().unwrap();
        assert!(spec.is_weighted());
        // Fixed draws: 0.0 picks the first queue left, 0.99 the last.
        assert_eq!(spec.weighted_order(|| 0.0), ["critical", "default", "low"]);
        assert_eq!(spec.weighted_order(|| 0.99), ["low", "default", "critical"]);
        // Over many draws the first queue follows the weights.
        let mut seed = 12345u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut first = std::collections::HashMap::new();
        for _ in 0..10_000 {
            *first.entry(spec.weighted_order(&mut next)[0].clone()).or_insert(0) += 1;
        }
        assert!((5_500..6_500).contains(&first["critical"]), "{first:?}");
        assert!((2_500..3_500).contains(&first["default"]), "{first:?}");
        assert!((600..1_400).contains(&first["low"]), "{first:?}");
        for bad in [
            "a:0",
            "a:1001",
            "a:x",
            "a*:2",
            "a:2,b",
            "a:2,!b",
            "a:b:c",
            "a:1,b:1,a:2",
        ] {
            assert!(bad.parse::<QueueSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in ["", ",", "!x", "a b", "[", "q;DEL"] {
            assert!(bad.parse::<QueueSpec>().is_err(), "{bad}");
        }
    }

    /// An error quotes at most 64 characters of an entry, a bad glob too
    /// (fuzz/: a long unclosed `[` was quoted whole).
    #[test]
    fn errors_quote_a_clipped_entry() {
        let long = format!("[{}", "a".repeat(10_000));
        for spec in [
            long.clone(),
            format!("x,{long}"),
            format!("{long}:2"),
            format!("{}~", "a".repeat(10_000)),
        ] {
            let shown = spec.parse::<QueueSpec>().unwrap_err().to_string();
            assert!(shown.len() < 300, "{} bytes: {shown:.80}", shown.len());
        }
    }

    #[test]
    fn new_queues_appear_on_resolve() {
        let spec: QueueSpec = "*".parse().unwrap();
        assert!(spec.resolve(&[]).is_empty());
        assert_eq!(spec.resolve(&["new".to_string()]), ["new"]);
    }
}
