//! Validated queue and class names.
//!
//! Names end up in Redis keys, worker ids, process titles, log lines and HTML.
//! resq only *creates* names from a small alphabet: letters, digits and `_ . -`
//! (plus `::` between class segments), so a name can never carry a glob
//! character into a queue spec, a `:` into a worker id, or markup into a page.
//! Names that Ruby producers created are still read and worked: this check guards
//! what resq writes, not what it reads.

/// Longest queue or class name resq will write.
pub const MAX_NAME_BYTES: usize = 128;

/// A name that was refused, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("queue name {0:?} is not allowed: use 1 to 128 letters, digits, '_', '-' or '.'")]
    Queue(String),
    #[error(
        "class name {0:?} is not allowed: use a Ruby constant path such as \
         `SendEmail` or `Mailers::Welcome` (at most 128 bytes)"
    )]
    Class(String),
}

/// Checks a queue name that resq is about to write.
///
/// ```
/// assert!(resq::names::check_queue("mailers").is_ok());
/// assert!(resq::names::check_queue("mail*").is_err());
/// ```
pub fn check_queue(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Queue(truncate_for_message(name)))
    }
}

/// Checks a class name: `Segment(::Segment)*`, each segment an identifier that
/// starts with a letter or `_`.
///
/// ```
/// assert!(resq::names::check_class("Mailers::Welcome").is_ok());
/// assert!(resq::names::check_class("Kernel.system").is_err());
/// ```
pub fn check_class(name: &str) -> Result<(), NameError> {
    let segment_ok = |s: &str| {
        let mut bytes = s.bytes();
        matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if name.len() <= MAX_NAME_BYTES && name.split("::").all(segment_ok) {
        Ok(())
    } else {
        Err(NameError::Class(truncate_for_message(name)))
    }
}

/// Keeps error messages short when the name itself is hostile.
fn truncate_for_message(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["a", "default", "mail-ers_2.high", &"q".repeat(128)] {
            assert!(check_queue(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "mail*",
            "h?gh",
            "[cd]",
            "!x",
            "a,b",
            "é",
            &"q".repeat(129),
        ] {
            assert!(check_queue(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn class_names() {
        for ok in ["A", "SendEmail", "Mailers::Welcome", "_X", "Job2"] {
            assert!(check_class(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2Job", "A::", "::A", "A:B", "A.b", "A B", "<script>", "A::::B"] {
            assert!(check_class(bad).is_err(), "{bad}");
        }
    }
}
