//! RFC 8785 JSON Canonicalization Scheme (JCS): the bytes a signature covers.
//!
//! Object members sorted by the UTF-16 code units of their names, no
//! whitespace, strings with the minimal escapes of ECMAScript's
//! `JSON.stringify`, numbers in ECMAScript's shortest form (via `ryu-js`).
//!
//! Integers must be I-JSON (|n| ≤ 2^53): a larger integer would be rounded to
//! a double by every other JCS implementation, so two different payloads
//! could share one canonical form and one signature. Such envelopes are
//! refused instead.

use serde_json::{Map, Number, Value};

/// The largest integer a double holds exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value that has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("integer {0} is outside ±(2^53-1) and cannot be signed exactly (send it as a string)")]
    UnsafeInteger(String),
}

/// The canonical bytes of `value`.
///
/// ```
/// use serde_json::json;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bytes = resq::envelope::canonical::to_vec(&json!({"b": [1.50, "é"], "a": null}))?;
/// assert_eq!(bytes, r#"{"a":null,"b":[1.5,"é"]}"#.as_bytes());
/// # Ok(()) }
/// ```
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Where canonical bytes go: a buffer, or a signature's check (see
/// `keyring::Covered`), which hashes a large argument where it lies instead
/// of copying it whole into a message first.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// One byte (a bracket, a comma, a quote): most of the calls, so each
    /// sink has its own short path for it.
    fn put_byte(&mut self, byte: u8);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

fn write_value(value: &Value, out: &mut impl Sink) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.put(b"null"),
        Value::Bool(true) => out.put(b"true"),
        Value::Bool(false) => out.put(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.put_byte(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_byte(b',');
                }
                write_value(item, out)?;
            }
            out.put_byte(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut impl Sink) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.put_byte(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.put_byte(b',');
        }
        write_string(name, out);
        out.put_byte(b':');
        write_value(value, out)?;
    }
    out.put_byte(b'}');
    Ok(())
}

fn write_number(n: &Number, out: &mut impl Sink) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(u.to_string()));
        }
        out.put(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(i.to_string()));
        }
        out.put(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        // serde_json never holds NaN or infinities.
        let mut buf = ryu_js::Buffer::new();
        out.put(buf.format_finite(f).as_bytes());
    }
    Ok(())
}

fn write_string(s: &str, out: &mut impl Sink) {
    // Only ASCII bytes are ever escaped, so the string goes out in runs
    // between them: a 64 KiB argument is one piece (one copy into a buffer,
    // or hashed where it lies by a signature's check), not 64 Ki pushes.
    let bytes = s.as_bytes();
    out.put_byte(b'"');
    let mut run = 0;
    while let Some(i) = next_escape(bytes, run) {
        let b = bytes[i];
        out.put(&bytes[run..i]);
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xF)],
            ]);
        } else {
            out.put(escape);
        }
        run = i + 1;
    }
    out.put(&bytes[run..]);
    out.put_byte(b'"');
}

/// The first byte at or after `from` that JSON escapes (a control byte, a
/// quote or a backslash). A long string is tested 64 bytes at a time with no
/// branch inside a block, which the compiler turns into vector compares (16
/// bytes an instruction with the baseline SSE2): a 64 KiB argument without
/// one is passed over in about 4 us here, against 17 us a word at a time.
/// What is left, and a short string (most of an envelope's), is tested a
/// word of 8 bytes at a time (SWAR), then byte by byte.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const BLOCK: usize = 64;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(block) = bytes.get(i..i + BLOCK).and_then(|b| <&[u8; BLOCK]>::try_from(b).ok()) {
        if block.iter().fold(false, |any, &b| any | escaped(b)) {
            break;
        }
        i += BLOCK;
    }
    // True when some byte of `w` is below `n` (n <= 0x80), or is zero.
    let has_less = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS != 0;
    let has_byte = |w: u64, b: u8| has_less(w ^ (ONES * u64::from(b)), 1);
    while let Some(word) = bytes.get(i..i + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        let w = u64::from_le_bytes(word);
        if has_less(w, 0x20) || has_byte(w, b'"') || has_byte(w, b'\\') {
            break;
        }
        i += 8;
    }
    bytes.get(i..)?.iter().position(|&b| escaped(b)).map(|k| i + k)
}

/// True for a byte JSON escapes. Without short-circuits, so that a block of
/// them is tested with vector compares.
fn escaped(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// One member of an object being written canonically.
pub(crate) enum Member<'a> {
    Str(&'a str),
    Float(f64),
    Int(u64),
    Values(&'a [Value]),
    Value(&'a Value),
}

/// Writes an object from borrowed members, sorted by name as JCS requires,
/// without building a `serde_json::Value` first (the hot path of signing and
/// verifying every job).
pub(crate) fn write_members(mut members: Vec<(&str, Member<'_>)>, out: &mut impl Sink) -> Result<(), CanonicalError> {
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.put_byte(b'{');
    for (i, (name, member)) in members.into_iter().enumerate() {
        if i > 0 {
            out.put_byte(b',');
        }
        write_string(name, out);
        out.put_byte(b':');
        match member {
            Member::Str(s) => write_string(s, out),
            Member::Float(f) => match serde_json::Number::from_f64(f) {
                Some(n) => write_number(&n, out)?,
                None => out.put(b"null"),
            },
            Member::Int(n) => write_number(&serde_json::Number::from(n), out)?,
            Member::Values(items) => {
                out.put_byte(b'[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.put_byte(b',');
                    }
                    write_value(item, out)?;
                }
                out.put_byte(b']');
            }
            Member::Value(v) => write_value(v, out)?,
        }
    }
    out.put_byte(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Strings are written as serde_json writes them (JCS's escapes are
        /// JSON's shortest), whatever mix of plain, control, quote,
        /// backslash and non-ASCII characters, at every alignment, in and
        /// across the scan's 64-byte blocks.
        #[test]
        fn strings_are_escaped_as_json_escapes_them(
            s in prop::collection::vec(
                prop_oneof![
                    Just('a'), Just('"'), Just('\\'), Just('\n'), Just('\u{1}'), Just('\u{1f}'),
                    Just('\u{7f}'), Just('é'), Just('😀'), Just(' '),
                ],
                0..300,
            ).prop_map(|cs| cs.into_iter().collect::<String>())
        ) {
            let mut out = Vec::new();
            write_string(&s, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }

    fn canon(input: &str) -> String {
        let v: Value = serde_json::from_str(input).unwrap();
        String::from_utf8(to_vec(&v).unwrap()).unwrap()
    }

    /// RFC 8785, section 3.2.2 (the "sample" input and its canonical output).
    #[test]
    fn rfc8785_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785, section 3.2.3 (sorting by UTF-16 code units).
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = canon(input);
        assert_eq!(
            out,
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    /// RFC 8785 appendix B: ECMAScript number serialization.
    #[test]
    fn rfc8785_numbers() {
        let cases = [
            ("0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("9007199254740991", "9007199254740991"),
            ("-9007199254740991", "-9007199254740991"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("123456789.0", "123456789"),
            ("295147905179352830000", "295147905179352830000"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn unsafe_integers_are_refused() {
        for input in ["9007199254740992", "-9007199254740992", "18446744073709551615"] {
            let v: Value = serde_json::from_str(input).unwrap();
            assert!(to_vec(&v).is_err(), "{input}");
        }
    }
}
