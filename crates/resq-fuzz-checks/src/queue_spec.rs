//! Queue specs (`crates/resq/src/queue_spec.rs`): the bytes, as text, are a
//! `--queues` value.
//!
//! Properties:
//! - parsing gives a spec or a typed error, never a panic, and an error
//!   quotes at most a clipped part of the input;
//! - a spec's normal form (`as_str`) parses to the same spec: same form,
//!   same kind, same worker-id part, same queues from any known set;
//! - resolving gives no queue twice, and only queues that exist or that the
//!   spec names literally;
//! - a weighted spec draws every queue exactly once per fetch, whatever
//!   the random numbers (including ones just under 1).

use resq::QueueSpec;

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let spec = match text.parse::<QueueSpec>() {
        Ok(spec) => spec,
        Err(e) => {
            // An error quotes at most 64 characters of the input, each
            // escaped in at most 10 (`\u{10ffff}`), in a sentence of its own.
            let shown = e.to_string();
            assert!(
                shown.chars().count() <= 64 * 10 + 200,
                "an error quotes too much: {} chars",
                shown.len()
            );
            return;
        }
    };
    // A known set: fixed names plus every plain name the spec mentions.
    let mut known: Vec<String> = [
        "low", "high", "default", "mail_a", "mail_b", "critical", "cold", "a.b", "x-y",
    ]
    .map(String::from)
    .to_vec();
    let entries: Vec<&str> = spec.as_str().split(',').collect();
    for entry in &entries {
        let name = entry.split(':').next().unwrap_or("").trim_start_matches('!');
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
            known.push(name.to_string());
        }
    }

    let again: QueueSpec = spec.as_str().parse().expect("a spec's normal form parses"); // ok: a property check; a panic is the finding
    assert_eq!(again.as_str(), spec.as_str());
    assert_eq!(again.is_weighted(), spec.is_weighted());
    assert_eq!(again.is_dynamic(), spec.is_dynamic());
    assert_eq!(again.for_worker_id(), spec.for_worker_id());
    let queues = spec.resolve(&known);
    assert_eq!(again.resolve(&known), queues);

    let mut seen = std::collections::BTreeSet::new();
    for q in &queues {
        assert!(seen.insert(q.as_str()), "{q} resolved twice");
        let literal = entries.iter().any(|e| e.split(':').next() == Some(q.as_str()));
        assert!(known.contains(q) || literal, "{q} neither exists nor is named");
    }

    if spec.is_weighted() {
        let draws: Vec<f64> = data
            .iter()
            .map(|b| f64::from(*b) / 256.0)
            .chain([0.0, 1.0 - f64::EPSILON, 0.5])
            .collect();
        let mut next = 0usize;
        let order = spec.weighted_order(|| {
            next += 1;
            draws[next % draws.len()]
        });
        let mut sorted_order = order.clone();
        sorted_order.sort();
        let mut sorted_queues = queues.clone();
        sorted_queues.sort();
        assert_eq!(sorted_order, sorted_queues, "a weighted draw is not a permutation");
    }
}
