//! Hard limits on the shape of a JSON payload, checked in one pass over the raw
//! bytes *before* the payload is parsed.
//!
//! Anyone who can write to Redis (or reach an enqueue path) controls these bytes.
//! `serde_json` would allocate a `Vec` per array and a `String` per escaped string
//! while it parses, so a 500 MB string or ten million empty arrays would be paid for
//! before any check could run. The scanner here allocates nothing: it walks the
//! bytes once, keeps a fixed-size stack of per-level element counts, and refuses the
//! payload at the first limit it crosses. Syntax errors are left to `serde_json`,
//! which runs only on payloads that passed.

use crate::reason::Reason;

/// The largest nesting depth any configuration may ask for; the scanner's stack
/// is a fixed array of this size, so the limit costs no allocation.
pub const MAX_CONFIGURABLE_DEPTH: usize = 128;

/// What a payload may look like before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayloadLimits {
    /// Whole payload, in bytes.
    pub max_bytes: usize,
    /// Nesting of arrays and objects (the payload object itself is depth 1).
    pub max_depth: usize,
    /// One string (key or value), in raw bytes as stored, escapes included.
    pub max_string_bytes: usize,
    /// Elements of one array or members of one object.
    pub max_array_len: usize,
}

impl Default for PayloadLimits {
    /// Generous for real jobs, small enough that a hostile payload costs little.
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024,
            max_depth: 32,
            max_string_bytes: 256 * 1024,
            max_array_len: 10_000,
        }
    }
}

/// Why a payload was refused by [`PayloadLimits::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("payload is {actual} bytes, over the limit of {limit}")]
    TooManyBytes { actual: usize, limit: usize },
    #[error("payload nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("a string in the payload is over {limit} bytes")]
    StringTooLong { limit: usize },
    #[error("an array or object in the payload has more than {limit} elements")]
    ArrayTooLong { limit: usize },
    #[error("an integer in the payload is outside the 64-bit range")]
    IntegerOutOfRange,
}

impl LimitError {
    /// The reason code recorded in the failed list.
    pub fn reason(&self) -> Reason {
        match self {
            LimitError::TooDeep { .. } => Reason::PayloadTooDeep,
            LimitError::IntegerOutOfRange => Reason::NumberOutOfRange,
            _ => Reason::PayloadTooLarge,
        }
    }
}

impl PayloadLimits {
    /// Checks `bytes` against every limit without allocating.
    ///
    /// Integers (number tokens with no fraction or exponent) must fit in `i64` or
    /// `u64`: `serde_json` would otherwise turn them silently into a lossy `f64`.
    ///
    /// ```
    /// use resq::PayloadLimits;
    /// let limits = PayloadLimits { max_depth: 2, ..PayloadLimits::default() };
    /// assert!(limits.check(br#"{"class":"A","args":[1]}"#).is_ok());
    /// assert!(limits.check(br#"{"class":"A","args":[[1]]}"#).is_err());
    /// ```
    pub fn check(&self, bytes: &[u8]) -> Result<(), LimitError> {
        if bytes.len() > self.max_bytes {
            return Err(LimitError::TooManyBytes {
                actual: bytes.len(),
                limit: self.max_bytes,
            });
        }
        let max_depth = self.max_depth.min(MAX_CONFIGURABLE_DEPTH);
        // counts[d] = elements seen so far in the container open at depth d+1;
        // `pending[d]` is true while that container has had no element yet.
        let mut counts = [0usize; MAX_CONFIGURABLE_DEPTH];
        let mut pending = [true; MAX_CONFIGURABLE_DEPTH];
        let mut depth = 0usize;
        let mut i = 0usize;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    let start = i + 1;
                    let j = string_end(bytes, start);
                    if j - start > self.max_string_bytes {
                        return Err(LimitError::StringTooLong {
                            limit: self.max_string_bytes,
                        });
                    }
                    self.count_element(depth, &mut counts, &mut pending)?;
                    i = j + 1;
                    continue;
                }
                b'[' | b'{' => {
                    self.count_element(depth, &mut counts, &mut pending)?;
                    depth += 1;
                    if depth > max_depth {
                        return Err(LimitError::TooDeep { limit: max_depth });
                    }
                    counts[depth - 1] = 0;
                    pending[depth - 1] = true;
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b',' if depth > 0 => pending[depth - 1] = true,
                b'-' | b'0'..=b'9' => {
                    let end = number_end(bytes, i);
                    check_integer(&bytes[i..end])?;
                    self.count_element(depth, &mut counts, &mut pending)?;
                    i = end;
                    continue;
                }
                b't' | b'f' | b'n' => {
                    self.count_element(depth, &mut counts, &mut pending)?;
                    while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                        i += 1;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }

    /// Counts the first token after an opening bracket or a comma, so an array
    /// counts its elements and an object its members (a key and its value are one).
    fn count_element(
        &self,
        depth: usize,
        counts: &mut [usize; MAX_CONFIGURABLE_DEPTH],
        pending: &mut [bool; MAX_CONFIGURABLE_DEPTH],
    ) -> Result<(), LimitError> {
        if depth == 0 {
            return Ok(());
        }
        let level = depth - 1;
        if pending[level] {
            pending[level] = false;
            counts[level] += 1;
            if counts[level] > self.max_array_len {
                return Err(LimitError::ArrayTooLong {
                    limit: self.max_array_len,
                });
            }
        }
        Ok(())
    }
}

/// Where the string starting at `start` (just past its opening quote) ends:
/// the index of its closing quote, or `bytes.len()` when it has none. It
/// jumps from quote or backslash to the next (a SIMD search), so a 64 KiB
/// string takes a few steps, not 64 Ki.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut j = start;
    while let Some(k) = bytes.get(j..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        j += k;
        if bytes[j] == b'"' {
            return j;
        }
        // Skip the escaped byte: `\"` does not end the string.
        j += 2;
    }
    bytes.len()
}

fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && matches!(bytes[end], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
        end += 1;
    }
    end
}

/// An integer token must fit in `i64` (negative) or `u64` (positive).
fn check_integer(token: &[u8]) -> Result<(), LimitError> {
    if token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Ok(()); // a float: serde_json refuses the ones outside f64
    }
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let mut value: u128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Ok(()); // malformed: serde_json reports it
        }
        value = value * 10 + u128::from(d - b'0');
        if value > u128::from(u64::MAX) + 1 {
            return Err(LimitError::IntegerOutOfRange);
        }
    }
    let fits = if negative {
        value <= u128::from(i64::MIN.unsigned_abs())
    } else {
        value <= u128::from(u64::MAX)
    };
    if fits {
        Ok(())
    } else {
        Err(LimitError::IntegerOutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> PayloadLimits {
        PayloadLimits {
            max_bytes: 200,
            max_depth: 3,
            max_string_bytes: 8,
            max_array_len: 4,
        }
    }

    #[test]
    fn table_of_cases() {
        let cases: &[(&str, Option<LimitError>)] = &[
            (r#"{"a":[1,2,3]}"#, None),
            (r#"{"a":[1,2,3,4]}"#, None),
            (r#"{"a":[1,2,3,4,5]}"#, Some(LimitError::ArrayTooLong { limit: 4 })),
            (r#"{"a":[[[1]]]}"#, Some(LimitError::TooDeep { limit: 3 })),
            (r#"{"a":[[1]]}"#, None),
            (r#"{"a":"12345678"}"#, None),
            (r#"{"a":"123456789"}"#, Some(LimitError::StringTooLong { limit: 8 })),
            (r#"{"a":"123\"567"}"#, None),
            (r#"{"a":"12345\"789"}"#, Some(LimitError::StringTooLong { limit: 8 })),
            (r#"{"a":[[],[],[],[]]}"#, None),
            (r#"{"a":[[],[],[],[],[]]}"#, Some(LimitError::ArrayTooLong { limit: 4 })),
            (r#"{"a":[-9223372036854775808]}"#, None),
            (r#"{"a":[-9223372036854775809]}"#, Some(LimitError::IntegerOutOfRange)),
            (r#"{"a":[18446744073709551615]}"#, None),
            (r#"{"a":[18446744073709551616]}"#, Some(LimitError::IntegerOutOfRange)),
            (r#"{"a":[1e400]}"#, None), // a float: serde_json's job
            (r#"{"a":[true,false,null]}"#, None),
        ];
        for (input, expected) in cases {
            assert_eq!(small().check(input.as_bytes()).err(), *expected, "{input}");
        }
    }

    #[test]
    fn byte_limit_comes_first() {
        let big = vec![b' '; 201];
        assert_eq!(
            small().check(&big),
            Err(LimitError::TooManyBytes {
                actual: 201,
                limit: 200
            })
        );
    }

    #[test]
    fn depth_limit_is_capped_by_the_fixed_stack() {
        let limits = PayloadLimits {
            max_depth: 10_000,
            ..PayloadLimits::default()
        };
        let deep = "[".repeat(MAX_CONFIGURABLE_DEPTH + 1);
        assert_eq!(
            limits.check(deep.as_bytes()),
            Err(LimitError::TooDeep {
                limit: MAX_CONFIGURABLE_DEPTH
            })
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z\"\\\\]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn depth_of(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        /// The scanner's depth agrees with the parsed value's depth.
        #[test]
        fn depth_matches_parsed_depth(v in json_value(), limit in 1usize..8) {
            let text = serde_json::to_vec(&v).unwrap();
            let limits = PayloadLimits { max_depth: limit, ..PayloadLimits::default() };
            let refused = matches!(limits.check(&text), Err(LimitError::TooDeep { .. }));
            prop_assert_eq!(refused, depth_of(&v) > limit);
        }

        /// The string scanner ends where a byte-by-byte walk ends.
        #[test]
        fn string_end_matches_a_byte_walk(
            bytes in prop::collection::vec(prop::sample::select(b"ab\\\"x".to_vec()), 0..64),
            start in 0usize..64,
        ) {
            let start = start.min(bytes.len());
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            prop_assert_eq!(string_end(&bytes, start), j.min(bytes.len()));
        }

        /// Arbitrary bytes never panic the scanner.
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = small().check(&bytes);
            let _ = PayloadLimits::default().check(&bytes);
        }
    }
}
