//! The config file (`crates/resq-cli/src/config.rs`): the bytes are a
//! `resq.toml`, loaded through `config::load` as `resq --config` loads one
//! (an empty environment).
//!
//! Every `@@` in the input becomes a secret (a password-like token) before
//! the file is written, so the fuzzer can put secrets anywhere: values,
//! keys, table names, half-written strings, comments.
//!
//! Properties:
//! - any text gives settings or a typed `ConfigError`, never a panic;
//! - no error message holds any six characters of the secret, except in
//!   the parts that by design name what the file named: a cron entry's
//!   name, the password file's path, the password variable's name;
//! - a parse error's line is a line of the file.

use resq::cron::CronError;
use resq_cli::config::{load, ConfigError, Env};

const SECRET: &str = "Zq9XvBn4Lk2Wp8Rt";

struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// Loads `text` as the file `resq.toml` in a temporary directory of this
/// thread (removed when the thread ends), so checks on several threads
/// (the tests run in parallel) never read each other's file.
fn load_text(text: &str) -> Result<(), ConfigError> {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary directory"); // ok: a property check; a panic is the finding
    }
    DIR.with(|dir| {
        let path = dir.path().join("resq.toml");
        std::fs::write(&path, text).expect("write the config file"); // ok: a property check; a panic is the finding
        load(Some(&path), &NoEnv).map(drop)
    })
}

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.replace("@@", SECRET);
    if reads_a_device(&text) {
        return;
    }
    let Err(err) = load_text(&text) else { return };
    let mut shown = err.to_string();
    for named in by_design(&err) {
        shown = shown.replace(&named, "");
    }
    let chars: Vec<char> = SECRET.chars().collect();
    for window in chars.windows(6) {
        let part: String = window.iter().collect();
        assert!(!shown.contains(&part), "the error quotes the secret: {err}");
    }
    if let ConfigError::Parse { problem, .. } = &err {
        assert!(
            problem.line <= text.lines().count() + 1,
            "line {} of a shorter file",
            problem.line
        );
        assert!(!problem.message.contains('\n'), "a parse error over several lines");
    }
}

/// What an error names from the file on purpose.
fn by_design(err: &ConfigError) -> Vec<String> {
    match err {
        ConfigError::PasswordFile { path, .. } => vec![path.display().to_string()],
        ConfigError::PasswordEnvMissing { var } => vec![var.clone()],
        ConfigError::Cron(
            CronError::BadExpression { name, .. }
            | CronError::BadTimeZone { name }
            | CronError::BadJob { name, .. }
            | CronError::Duplicate(name),
        ) => vec![name.clone()],
        _ => Vec::new(),
    }
}

/// A `redis.password_file` that is no plain file (`/dev/zero`, a FIFO)
/// would make `load` read forever: such files are not the fuzzer's to
/// open. Missing paths and plain files are fine.
fn reads_a_device(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let path = table
        .get("redis")
        .and_then(|r| r.get("password_file"))
        .and_then(|p| p.as_str());
    match path.map(std::fs::metadata) {
        Some(Ok(meta)) => !meta.is_file() || meta.len() > 1 << 20,
        _ => false,
    }
}
