//! TOML errors that quote nothing from the file.
//!
//! `toml`'s own error text shows the offending line, and serde's messages
//! quote the offending value (`invalid type: string "hunter2", expected
//! u64`) or key (``unknown field `hunter2` ``). In a config or keys file
//! that value may be a password or a key someone pasted in the wrong place,
//! and error messages end up in terminals, logs and CI output. So a message
//! keeps its line and column, its own words, and quoted words that the
//! caller knows are names of its own format (field names, enum values),
//! and every other quoted part is replaced by `(…)`.

/// What was wrong with a TOML file, and where, with nothing from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlProblem {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for TomlProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

/// Longest message kept (serde's "expected one of" lists can be long).
const MAX_MESSAGE: usize = 400;

/// Describes `err`, raised while parsing `text`. `known` lists the words of
/// the format itself that may be quoted back (its keys and enum values).
///
/// ```
/// let text = "[redis]\npassword = \"hunter2-hunter2\"\n";
/// let err = toml::from_str::<toml::Table>("x = \"hunter2\" = 1").unwrap_err();
/// let problem = resq::toml_error::describe("x = \"hunter2\" = 1", &err, &["x"]);
/// assert!(!problem.to_string().contains("hunter2"));
/// # let _ = text;
/// ```
pub fn describe(text: &str, err: &toml::de::Error, known: &[&str]) -> TomlProblem {
    let (line, column) = match err.span() {
        Some(span) => {
            let before = &text[..floor_char_boundary(text, span.start)];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    TomlProblem {
        line,
        column,
        message: redact(err.message(), known),
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Replaces every quoted part of `message` (`` `…` `` or `"…"`) that is not
/// in `known` and not punctuation, and flattens it to one line.
pub fn redact(message: &str, known: &[&str]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        out.push_str(&rest[..open]);
        let quote = &rest[open..open + 1];
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            // An unbalanced quote: drop the rest, it may be a value.
            out.push_str(quote);
            out.push_str("(…)");
            rest = "";
            break;
        };
        let inner = &after[..close];
        let punctuation = !inner.is_empty() && inner.len() <= 3 && !inner.chars().any(char::is_alphanumeric);
        out.push_str(quote);
        if known.contains(&inner) || punctuation {
            out.push_str(inner);
        } else {
            out.push_str("(…)");
        }
        out.push_str(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let flat: String = out
        .trim()
        .chars()
        .map(|c| if c == '\n' { ';' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    if flat.chars().count() > MAX_MESSAGE {
        let mut cut: String = flat.chars().take(MAX_MESSAGE).collect();
        cut.push('…');
        cut
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        url: Option<String>,
        count: Option<u64>,
        mode: Option<Mode>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Safe,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        section: Option<Section>,
    }

    const SECRET: &str = "s3cr3t-Zq9XvBn4Lk2Wp8Rt";
    const KNOWN: &[&str] = &["section", "url", "count", "mode", "fast", "safe"];

    /// Every way a value can be wrong, with a secret where the value goes:
    /// the message says what and where, and never the secret.
    #[test]
    fn table_of_broken_files_never_quote_the_secret() {
        let cases = [
            (format!("[section]\npassword = \"{SECRET}\"\n"), 2, "unknown field"),
            (format!("[section]\ncount = \"{SECRET}\"\n"), 2, "invalid type"),
            (format!("[section]\nmode = \"{SECRET}\"\n"), 2, "unknown variant"),
            (format!("[section]\nurl = {SECRET}\n"), 2, ""),
            (format!("[section]\nurl = \"{SECRET}\n"), 2, ""),
            (format!("[section]\n{SECRET} = 1\n"), 2, "unknown field"),
            (format!("[section]\nurl = \"a\"\nurl = \"{SECRET}\"\n"), 3, ""),
            (format!("[{SECRET}]\n"), 1, "unknown field"),
            (format!("[section]\ncount = {}\n", "9".repeat(30)), 2, ""),
            (format!("[section]\nurl = [\"{SECRET}\"]\n"), 2, "invalid type"),
        ];
        for (text, line, phrase) in cases {
            let err = toml::from_str::<File>(&text).unwrap_err();
            let problem = describe(&text, &err, KNOWN);
            let shown = problem.to_string();
            assert!(!shown.contains(SECRET) && !shown.contains("999999"), "{shown}");
            assert!(shown.contains(phrase), "{shown}");
            assert_eq!(problem.line, line, "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
        }
    }

    #[test]
    fn known_words_and_punctuation_stay() {
        assert_eq!(
            redact("unknown field `pasword`, expected `url` or `count`", KNOWN),
            "unknown field `(…)`, expected `url` or `count`"
        );
        assert_eq!(redact("expected `=`, `.`\nor \"x", KNOWN), "expected `=`, `.`;or \"(…)");
    }
}
