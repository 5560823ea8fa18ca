//! The payload limits scanner (`crates/resq/src/limits.rs`) on any bytes,
//! under several sets of limits.
//!
//! Properties:
//! - it never panics, whatever the bytes;
//! - on every input serde_json parses (valid JSON), it gives exactly the
//!   verdict of a reference checker that walks the parsed grammar (the
//!   first limit crossed in document order, or none);
//! - when it lets valid JSON through, the parsed value is within the
//!   limits: depth, string length, elements per array or object;
//! - it refuses an integer exactly when serde_json's `i64`/`u64` cannot
//!   hold it.

use resq::limits::{LimitError, PayloadLimits, MAX_CONFIGURABLE_DEPTH};
use serde_json::Value;

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    for limits in limit_sets(data.len()) {
        let verdict = limits.check(data);
        let Some(value) = &parsed else { continue };
        let expected = Reference::check(data, &limits);
        assert_eq!(verdict, expected, "scanner and reference disagree under {limits:?}");
        if verdict.is_ok() {
            assert!(depth(value) <= limits.max_depth.min(MAX_CONFIGURABLE_DEPTH), "too deep");
            assert!(within(value, &limits), "a string or container over the limit passed");
        }
    }
}

fn limit_sets(len: usize) -> Vec<PayloadLimits> {
    let default = PayloadLimits::default();
    vec![
        default,
        PayloadLimits {
            max_bytes: 4096,
            max_depth: 3,
            max_string_bytes: 8,
            max_array_len: 4,
        },
        PayloadLimits {
            max_bytes: len.saturating_sub(1),
            max_depth: 1,
            max_string_bytes: 0,
            max_array_len: 1,
        },
        PayloadLimits {
            max_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_string_bytes: usize::MAX,
            max_array_len: usize::MAX,
        },
        // A set that moves with the input, so each limit meets each shape.
        PayloadLimits {
            max_bytes: len,
            max_depth: len % 7,
            max_string_bytes: len % 13,
            max_array_len: len % 5,
        },
    ]
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Decoded strings are never longer than their raw form, so a string that
/// passed the raw limit is within it decoded too.
fn within(v: &Value, limits: &PayloadLimits) -> bool {
    match v {
        Value::String(s) => s.len() <= limits.max_string_bytes,
        Value::Array(a) => a.len() <= limits.max_array_len && a.iter().all(|v| within(v, limits)),
        Value::Object(o) => {
            o.len() <= limits.max_array_len
                && o.iter()
                    .all(|(k, v)| k.len() <= limits.max_string_bytes && within(v, limits))
        }
        _ => true,
    }
}

/// A recursive-descent walk over JSON that serde_json accepted, checking
/// each limit where the grammar meets it. The scanner's documented order:
/// the byte limit first; then, token by token, a string's length before it
/// counts, a container counts before its depth is checked, an integer is
/// checked before it counts; an object counts its keys (a member is one
/// element), an array its elements.
struct Reference<'a> {
    bytes: &'a [u8],
    at: usize,
    limits: &'a PayloadLimits,
    /// Elements seen in each open container.
    counts: Vec<usize>,
}

impl<'a> Reference<'a> {
    fn check(bytes: &'a [u8], limits: &'a PayloadLimits) -> Result<(), LimitError> {
        if bytes.len() > limits.max_bytes {
            return Err(LimitError::TooManyBytes {
                actual: bytes.len(),
                limit: limits.max_bytes,
            });
        }
        let mut walk = Reference {
            bytes,
            at: 0,
            limits,
            counts: Vec::new(),
        };
        walk.value(true)
    }

    fn skip_space(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.skip_space();
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    /// One element of the open container (or the top-level value).
    fn count(&mut self) -> Result<(), LimitError> {
        if let Some(n) = self.counts.last_mut() {
            *n += 1;
            if *n > self.limits.max_array_len {
                return Err(LimitError::ArrayTooLong {
                    limit: self.limits.max_array_len,
                });
            }
        }
        Ok(())
    }

    /// A value; `counted` is false for an object member's value (its key
    /// counted the member).
    fn value(&mut self, counted: bool) -> Result<(), LimitError> {
        let count = |walk: &mut Self| if counted { walk.count() } else { Ok(()) };
        match self.peek() {
            b'"' => {
                self.string()?;
                count(self)
            }
            open @ (b'[' | b'{') => {
                count(self)?;
                let limit = self.limits.max_depth.min(MAX_CONFIGURABLE_DEPTH);
                if self.counts.len() + 1 > limit {
                    return Err(LimitError::TooDeep { limit });
                }
                self.at += 1;
                self.counts.push(0);
                let close = if open == b'[' { b']' } else { b'}' };
                if self.peek() == close {
                    self.at += 1;
                } else {
                    loop {
                        if open == b'{' {
                            self.peek();
                            self.string()?;
                            self.count()?;
                            self.peek(); // the colon
                            self.at += 1;
                            self.value(false)?;
                        } else {
                            self.value(true)?;
                        }
                        let next = self.peek();
                        self.at += 1;
                        if next == close {
                            break;
                        }
                    }
                }
                self.counts.pop();
                Ok(())
            }
            b't' | b'n' => {
                self.at += 4;
                count(self)
            }
            b'f' => {
                self.at += 5;
                count(self)
            }
            _ => {
                let start = self.at;
                while matches!(
                    self.bytes.get(self.at),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                let token = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    return Err(LimitError::IntegerOutOfRange);
                }
                count(self)
            }
        }
    }

    /// A string at the cursor: its raw length (escapes as written) against
    /// the limit.
    fn string(&mut self) -> Result<(), LimitError> {
        self.at += 1;
        let start = self.at;
        while self.bytes[self.at] != b'"' {
            self.at += if self.bytes[self.at] == b'\\' { 2 } else { 1 };
        }
        let raw = self.at - start;
        self.at += 1;
        if raw > self.limits.max_string_bytes {
            return Err(LimitError::StringTooLong {
                limit: self.limits.max_string_bytes,
            });
        }
        Ok(())
    }
}
