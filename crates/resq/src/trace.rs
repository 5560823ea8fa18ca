//! W3C trace context (`traceparent`) carried in the signed envelope, so a
//! worker's span for a job continues the trace of the request that
//! enqueued it. Only a well-formed value is kept (W3C Trace Context,
//! version 00): anything else is dropped, never an error, as the
//! specification asks of a receiver.

/// The envelope field that carries it (signed with the rest).
pub const TRACEPARENT_FIELD: &str = "traceparent";

/// A checked `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
///
/// ```
/// let t = resq::trace::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(resq::trace::TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// The value when it is a valid version-00 `traceparent`.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, parent, flags] = parts.as_slice() else {
            return None;
        };
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let ok =
            *version == "00" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2) && !zero(trace) && !zero(parent);
        ok.then(|| TraceParent(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace this job belongs to.
    pub fn trace_id(&self) -> &str {
        // ok: `parse` admits only `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex (ASCII).
        &self.0[3..35]
    }

    /// The producer's span (the parent of the worker's).
    pub fn parent_id(&self) -> &str {
        // ok: as above.
        &self.0[36..52]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_version_00_value_is_kept() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(good).unwrap();
        assert_eq!(
            (t.trace_id(), t.parent_id()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "<script>-x-y-z",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }
}
