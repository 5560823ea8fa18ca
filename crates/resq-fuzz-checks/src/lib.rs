//! The properties of resq's fuzz targets, one module per target, each with
//! one `check(data: &[u8])` that panics (an `assert!`) when a property
//! fails. Two drivers run them:
//!
//! - libFuzzer, through the thin targets in `fuzz/fuzz_targets/`
//!   (`scripts/fuzz`: long runs on purpose, coverage-guided);
//! - `cargo test`, through `tests/corpus.rs`: every input of the seed
//!   corpora (`fuzz/corpus/<target>/`) and a fixed number of deterministic
//!   mutations of each, so the suite checks the properties on every run
//!   without the instrumented build libFuzzer needs.
//!
//! A check never reads anything but its bytes (the `config` check writes
//! them to a temporary file of its thread to load it), so both drivers see
//! the same verdict for the same input, and an input one driver reports
//! replays in the other.
//!
//! What the targets share lives here: JSON values built from the bytes, a
//! fixed keyring, and small reference implementations the checks compare
//! resq against (naive on purpose: written from the specification, not
//! from resq's code).

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use resq::keyring::Keyring;
use serde_json::{Map, Number, Value};

pub mod canonical;
pub mod config;
pub mod cron;
pub mod envelope;
pub mod limits;
pub mod protocol;
pub mod queue_spec;

/// The largest integer RFC 8785 (I-JSON) signs exactly: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The fuzz keyring: an HMAC key (the signer), an Ed25519 key, an HMAC key
/// scoped to `Mailers::*` on `mail*`, and an XChaCha20-Poly1305 key. The
/// secrets are fixed, so envelopes in the seed corpus verify.
pub const KEYS_TOML: &str = r#"signing_key = "hs-fuzz"
encryption_key = "enc-fuzz"

[[keys]]
kid = "hs-fuzz"
alg = "HS256"
secret = "cmVzcS1mdXp6LWhtYWMta2V5LTAxMjM0NTY3ODlhYmM"

[[keys]]
kid = "ed-fuzz"
alg = "EdDSA"
private = "cmVzcS1mdXp6LWVkMjU1MTktc2VlZC0wMTIzNDU2Nzg"

[[keys]]
kid = "scoped"
alg = "HS256"
secret = "cmVzcS1mdXp6LXNjb3BlZC1obWFjLWtleS0wMTIzNDU"
classes = ["Mailers::*"]
queues = ["mail*"]

[[encryption_keys]]
kid = "enc-fuzz"
alg = "XC20P"
secret = "cmVzcS1mdXp6LXhjaGFjaGEta2V5LTAxMjM0NTY3ODk"
"#;

/// The signing key ids of [`KEYS_TOML`].
pub const SIGNING_KIDS: [&str; 3] = ["hs-fuzz", "ed-fuzz", "scoped"];

/// [`KEYS_TOML`], loaded once.
pub fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| match Keyring::from_toml(KEYS_TOML) {
        Ok(ring) => ring,
        Err(e) => panic!("the fuzz keyring does not load: {e}"),
    })
}

/// Characters where JSON and JCS get interesting: escapes, controls, DEL,
/// non-ASCII of each UTF-8 length, the line separators JavaScript once
/// escaped, both sides of the surrogate range, and characters whose UTF-16
/// order differs from their UTF-8 (code point) order (U+E000..U+FFFF sort
/// after the surrogate pairs of U+10000.. in UTF-16).
const CHARS: &[char] = &[
    'a',
    'Z',
    '0',
    ' ',
    '/',
    '"',
    '\\',
    '\n',
    '\r',
    '\t',
    '\u{8}',
    '\u{c}',
    '\u{0}',
    '\u{1}',
    '\u{1f}',
    '\u{7f}',
    '\u{80}',
    'é',
    'ö',
    '€',
    '\u{2028}',
    '\u{2029}',
    '\u{d7ff}',
    '\u{e000}',
    '\u{fb33}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10000}',
    '😀',
    '\u{10ffff}',
];

/// A short string of [`CHARS`] and arbitrary code points.
pub fn string(u: &mut Unstructured<'_>, max_chars: usize) -> Result<String> {
    let n = u.int_in_range(0..=max_chars)?;
    let mut s = String::new();
    for _ in 0..n {
        let c = if u.ratio(3, 4)? {
            *u.choose(CHARS)?
        } else {
            char::from_u32(u.int_in_range(0..=0x10ffff)?).unwrap_or('?')
        };
        s.push(c);
    }
    Ok(s)
}

/// A number: small and edge integers (at and past ±2^53, the ends of i64
/// and u64) or a finite double from any bit pattern.
pub fn number(u: &mut Unstructured<'_>) -> Result<Value> {
    const EDGES: &[i128] = &[
        0,
        1,
        -1,
        MAX_SAFE_INTEGER as i128,
        -(MAX_SAFE_INTEGER as i128),
        MAX_SAFE_INTEGER as i128 + 1,
        -(MAX_SAFE_INTEGER as i128) - 1,
        i64::MIN as i128,
        i64::MAX as i128,
        u64::MAX as i128,
    ];
    Ok(match u.int_in_range(0..=4)? {
        0 => Value::from(u.int_in_range(-1000i64..=1000)?),
        1 => {
            let n = *u.choose(EDGES)?;
            match u64::try_from(n) {
                Ok(p) => Value::from(p),
                Err(_) => Value::from(i64::try_from(n).unwrap_or(i64::MIN)),
            }
        }
        2 => Value::from(u.int_in_range(-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64)?),
        3 => {
            const FLOATS: &[f64] = &[
                0.5,
                -0.0,
                1.0,
                1e21,
                1e20,
                1e-7,
                1e-6,
                5e-324,
                1.7976931348623157e308,
                0.1,
                333333333.3333333,
            ];
            Value::from(*u.choose(FLOATS)?)
        }
        _ => {
            let f = f64::from_bits(u.arbitrary()?);
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    })
}

/// A JSON value at most `depth` containers deep.
pub fn value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let kinds = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(string(u, 12)?),
        4 => {
            let n = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => Value::Object(object(u, depth - 1, 4)?),
    })
}

/// An object of up to `max` members with unicode keys.
pub fn object(u: &mut Unstructured<'_>, depth: usize, max: usize) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=max)?;
    let mut map = Map::new();
    for _ in 0..n {
        map.insert(string(u, 4)?, value(u, depth)?);
    }
    Ok(map)
}

/// True when `value` holds an integer RFC 8785 cannot sign exactly
/// (|n| > 2^53 - 1).
pub fn has_unsafe_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(p), _) => p > MAX_SAFE_INTEGER,
            (None, Some(i)) => i.unsigned_abs() > MAX_SAFE_INTEGER,
            _ => false,
        },
        Value::Array(items) => items.iter().any(has_unsafe_integer),
        Value::Object(map) => map.values().any(has_unsafe_integer),
        _ => false,
    }
}

/// RFC 8785 written from the RFC: members sorted by the UTF-16 code units
/// of their names, strings with JSON's shortest escapes (serde_json's, which
/// are ECMAScript's), numbers in ECMAScript's form (integers as digits,
/// doubles by ryu-js), nothing else. `None` for an unsafe integer.
pub fn reference_jcs(value: &Value) -> Option<String> {
    let mut out = String::new();
    write_reference(value, &mut out)?;
    Some(out)
}

fn write_reference(value: &Value, out: &mut String) -> Option<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&serde_json::to_string(value).ok()?),
        Value::Number(n) => {
            if let Some(p) = n.as_u64() {
                (p <= MAX_SAFE_INTEGER).then_some(())?;
                out.push_str(&p.to_string());
            } else if let Some(i) = n.as_i64() {
                (i.unsigned_abs() <= MAX_SAFE_INTEGER).then_some(())?;
                out.push_str(&i.to_string());
            } else {
                out.push_str(ryu_js::Buffer::new().format_finite(n.as_f64()?));
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_reference(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort_by_key(|k| k.encode_utf16().collect::<Vec<u16>>());
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).ok()?);
                out.push(':');
                write_reference(&map[name.as_str()], out)?;
            }
            out.push('}');
        }
    }
    Some(())
}

/// Equal as JSON data: numbers by value (`1`, `1.0` and `1e0` are one
/// number, as are `0` and `-0`), everything else exactly.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
