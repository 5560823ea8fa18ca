//! RFC 8785 canonical JSON (`crates/resq/src/envelope/canonical.rs`), on
//! the bytes as JSON when they parse, and on a value built from the bytes.
//!
//! Properties, for every value:
//! - the form is refused (`UnsafeInteger`) exactly when the value holds an
//!   integer past ±(2^53-1);
//! - otherwise it equals a reference written from the RFC (UTF-16 key
//!   order, JSON's shortest escapes, ECMAScript numbers);
//! - it is JSON, and parses back to the same data: parse(canonical(x)) ==
//!   parse(x), numbers compared by value (`1.0` is written `1`);
//! - it is a fixed point: canonical(parse(canonical(x))) == canonical(x).

use crate::{has_unsafe_integer, reference_jcs, same_json};
use arbitrary::Unstructured;
use resq::envelope::canonical::{to_vec, CanonicalError};
use serde_json::{Number, Value};

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_value(&value);
    }
    if let Ok(value) = crate::value(&mut Unstructured::new(data), 4) {
        check_value(&value);
    }
}

/// The properties on one value.
fn check_value(value: &Value) {
    match to_vec(value) {
        Err(CanonicalError::UnsafeInteger(n)) => {
            assert!(
                has_unsafe_integer(value),
                "refused {n} in a value without an unsafe integer"
            );
        }
        Ok(bytes) => {
            assert!(!has_unsafe_integer(value), "an unsafe integer was written");
            let text = std::str::from_utf8(&bytes).expect("canonical JSON is UTF-8"); // ok: a property check; a panic is the finding
            assert_eq!(
                Some(text),
                reference_jcs(value).as_deref(),
                "differs from the reference"
            );
            let back: Value = serde_json::from_slice(&bytes).expect("canonical JSON parses"); // ok: a property check; a panic is the finding
            assert!(same_json(&back, value), "parses to other data: {text}");
            // A fixed point in JCS's data model, where every number is a
            // double: an integral double past 2^53 is written as digits,
            // which read as doubles give the same double back.
            let again = to_vec(&as_doubles(&back)).expect("doubles have a canonical form"); // ok: a property check; a panic is the finding
            assert_eq!(again, bytes, "not a fixed point");
            // resq itself reads such digits as an integer and refuses it
            // (by design: integers past 2^53 are not signed); nothing else
            // makes the canonical form refuse its own output.
            if let Err(CanonicalError::UnsafeInteger(n)) = to_vec(&back) {
                assert!(has_big_integral_double(value), "refused its own output at {n}");
            }
        }
    }
}

/// `value` with every number as a double (RFC 8785's data model).
fn as_doubles(value: &Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().and_then(Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(as_doubles).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect()),
        other => other.clone(),
    }
}

/// True when `value` holds a double that is a whole number past 2^53 - 1.
fn has_big_integral_double(value: &Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() > crate::MAX_SAFE_INTEGER as f64),
        Value::Array(items) => items.iter().any(has_big_integral_double),
        Value::Object(map) => map.values().any(has_big_integral_double),
        _ => false,
    }
}
