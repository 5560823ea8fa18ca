//! Printing values that came from outside (queue names, worker ids, error
//! messages from Redis) to a terminal: control characters are escaped so a
//! hostile name cannot move the cursor, rewrite lines or set the title.

/// `s` with every control character shown as an escape.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Truncates to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(safe("ok\u{1b}[2Jx\n"), "ok\\u{1b}[2Jx\\n");
        assert_eq!(safe("plain é"), "plain é");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
