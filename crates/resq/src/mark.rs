//! Replay marks: the compact claim that makes a signed job attempt run once.
//!
//! Every signed envelope carries a `mark`, `"<block>.<index>"`: a random
//! 96-bit block id (16 base64url characters) chosen by the producer that
//! signed it, and the envelope's place in that block (0 to 4095). A producer
//! fills one block before it draws the next, so the marks of one producer
//! sit next to each other. The store keeps one bitmap per block and queue;
//! claiming a mark sets its bit, atomically, before the job runs, so of any
//! number of copies of one envelope exactly one is claimed and runs, and
//! every other copy is refused `replayed`.
//!
//! A block costs about 512 bytes of bitmap when full plus one key, so a mark
//! costs well under one byte of Redis memory where a producer signs many
//! jobs. The bitmap lives until the latest expiry of the jobs it marks (plus
//! a margin for clock skew), and Redis drops it then, so nothing is ever
//! scanned to forget a mark.
//!
//! A retry is a new attempt: the worker re-signs the envelope with a mark of
//! its own. An envelope signed without a mark (another producer) is claimed
//! under a mark derived from its signature: one block of its own, exact, but
//! a key per job.

use std::fmt;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Marks per block: a block's bitmap is at most 512 bytes.
pub const BLOCK_MARKS: u16 = 4096;

/// Random block ids are 12 bytes, 16 base64url characters.
const RANDOM_BLOCK_CHARS: usize = 16;
/// Blocks derived from a signature are 16 bytes, 22 characters, so they can
/// never equal a random block id.
const DERIVED_BLOCK_CHARS: usize = 22;

/// One envelope's place in a block of marks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mark {
    /// The block id (base64url).
    pub block: String,
    /// The envelope's bit in the block, below [`BLOCK_MARKS`].
    pub index: u16,
}

impl Mark {
    /// Reads the envelope's `mark` field: `<16 base64url chars>.<0..4095>`,
    /// the index without leading zeros (one spelling per mark).
    ///
    /// ```
    /// use resq::mark::Mark;
    /// let mark = Mark::parse("AAECAwQFBgcICQoL.17").unwrap();
    /// assert_eq!((mark.block.as_str(), mark.index), ("AAECAwQFBgcICQoL", 17));
    /// assert!(Mark::parse("AAECAwQFBgcICQoL.4096").is_none());
    /// assert!(Mark::parse("AAECAwQFBgcICQoL.017").is_none());
    /// assert!(Mark::parse("short.1").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<Mark> {
        let (block, index) = text.split_once('.')?;
        let block_ok = block.len() == RANDOM_BLOCK_CHARS && block.bytes().all(is_base64url);
        let index_ok = !index.is_empty()
            && index.len() <= 4
            && index.bytes().all(|b| b.is_ascii_digit())
            && !(index.len() > 1 && index.starts_with('0'));
        if !(block_ok && index_ok) {
            return None;
        }
        let index: u16 = index.parse().ok()?;
        (index < BLOCK_MARKS).then(|| Mark {
            block: block.to_string(),
            index,
        })
    }

    /// The mark of an envelope signed without one: a block of its own,
    /// derived from the key id and signature (which cover the whole
    /// envelope, its id and attempt included).
    pub fn derived(kid: &str, signature: &str) -> Mark {
        let mut hash = Sha256::new();
        hash.update(b"resq-mark-v1\n");
        hash.update(kid.as_bytes());
        hash.update(b"\n");
        hash.update(signature.as_bytes());
        let digest = hash.finalize();
        let block = URL_SAFE_NO_PAD.encode(&digest[..16]);
        debug_assert_eq!(block.len(), DERIVED_BLOCK_CHARS);
        Mark { block, index: 0 }
    }
}

/// The mark a verified, signed envelope is claimed under: its `mark`, or
/// one derived from its signature when its producer set none. `None` for an
/// unsigned envelope (anyone could forge one, so it cannot be claimed) or a
/// `mark` that is not a mark.
pub fn mark_of(envelope: &crate::envelope::Envelope) -> Result<Option<Mark>, BadMark> {
    match (&envelope.mark, &envelope.sig) {
        (_, None) => Ok(None),
        (Some(text), Some(_)) => Mark::parse(text).map(Some).ok_or(BadMark),
        (None, Some(sig)) => Ok(Some(Mark::derived(&sig.kid, &sig.v))),
    }
}

/// An envelope's `mark` field is not `<16 base64url characters>.<0-4095>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job's mark is not <16 base64url characters>.<0-4095>")]
pub struct BadMark;

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.block, self.index)
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Hands out marks to the envelopes one producer signs: the next index of
/// the current block, and a fresh random block when it is full. Cheap to
/// share between threads.
#[derive(Debug, Default)]
pub struct MarkSource {
    current: Mutex<Option<(String, u16)>>,
}

impl MarkSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next unused mark.
    pub fn next(&self) -> Mark {
        // A poisoned lock holds a consistent (block, next) pair: keep using it.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let (block, index) = match current.take() {
            Some((block, index)) if index < BLOCK_MARKS => (block, index),
            _ => (random_block(), 0),
        };
        *current = Some((block.clone(), index + 1));
        Mark { block, index }
    }
}

/// 96 random bits. Two producers draw the same block with probability about
/// (live blocks) / 2^96 per draw: for 10^9 live blocks, under 10^-19.
fn random_block() -> String {
    let mut bytes = [0u8; 12];
    // ok: the OS random source failing is not outside data and leaves no
    // safe way to make marks.
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_fills_a_block_then_draws_another() {
        let source = MarkSource::new();
        let first = source.next();
        assert_eq!(first.index, 0);
        assert_eq!(Mark::parse(&first.to_string()), Some(first.clone()));
        let mut last = first.clone();
        for _ in 1..BLOCK_MARKS {
            last = source.next();
        }
        assert_eq!(
            (last.block.as_str(), last.index),
            (first.block.as_str(), BLOCK_MARKS - 1)
        );
        let next = source.next();
        assert_ne!(next.block, first.block);
        assert_eq!(next.index, 0);
    }

    #[test]
    fn table_of_mark_spellings() {
        let cases = [
            ("AAECAwQFBgcICQoL.0", Some(0)),
            ("AAECAwQFBgcICQoL.4095", Some(4095)),
            ("AAECAwQFBgcICQoL.4096", None),
            ("AAECAwQFBgcICQoL.00", None),
            ("AAECAwQFBgcICQoL.-1", None),
            ("AAECAwQFBgcICQoL.", None),
            ("AAECAwQFBgcICQoL", None),
            ("AAECAwQFBgcICQo*.1", None),
            ("AAECAwQFBgcICQoLx.1", None),
            ("AAECAwQFBgcICQoL.1.2", None),
            ("AAECAwQFBgcICQoL.99999", None),
        ];
        for (text, index) in cases {
            assert_eq!(Mark::parse(text).map(|m| m.index), index, "{text}");
        }
    }

    #[test]
    fn derived_marks_are_distinct_per_signature_and_never_random_blocks() {
        let a = Mark::derived("k1", "sigA");
        assert_eq!(a, Mark::derived("k1", "sigA"));
        assert_ne!(a, Mark::derived("k1", "sigB"));
        assert_ne!(a, Mark::derived("k2", "sigA"));
        assert_eq!(a.block.len(), DERIVED_BLOCK_CHARS);
        assert!(Mark::parse(&a.to_string()).is_none());
    }
}
