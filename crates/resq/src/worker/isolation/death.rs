//! Why a child process died in the middle of a job, as a failure record:
//! over its CPU limit (SIGXCPU), over its memory limit (Rust's allocation
//! failure message, then an abort), or a crash of some other kind.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::failure::FailureInfo;
use crate::reason::Reason;

/// What the worker knew about the child's limits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_ms: Option<u64>,
}

/// What Rust's default allocation-error handler prints before it aborts.
const ALLOCATION_FAILED: &str = "memory allocation of ";

/// `status` is `None` when the child could not be reaped; `stderr_tail` is
/// the last lines it wrote.
pub(crate) fn classify(status: Option<ExitStatus>, stderr_tail: &str, limits: Limits) -> FailureInfo {
    let last_words = last_words(stderr_tail);
    let signal = status.and_then(|s| s.signal());
    if signal == Some(SIGXCPU) {
        let limit = limits.cpu_ms.map_or_else(String::new, |ms| format!(" of {ms} ms"));
        return FailureInfo::of(
            Reason::ResourceLimit,
            format!("the job used more than its CPU limit{limit}; its process was stopped (SIGXCPU)"),
        );
    }
    if let Some(line) = stderr_tail.lines().find(|l| l.contains(ALLOCATION_FAILED)) {
        let line: String = line.trim().chars().take(300).collect();
        let limit = limits
            .memory_bytes
            .map_or_else(String::new, |b| format!(" of {} MiB", b / (1024 * 1024)));
        return FailureInfo::of(
            Reason::ResourceLimit,
            format!("the job went over its memory limit{limit} and its process ended ({line})"),
        );
    }
    let how = match (status, signal) {
        (_, Some(SIGKILL)) => {
            "was killed by SIGKILL, not sent by resq (the kernel's out-of-memory killer does this)".to_string()
        }
        (_, Some(n)) => format!("died of signal {n}{}", signal_name(n)),
        (Some(s), None) => format!("exited with code {} in the middle of the job", s.code().unwrap_or(-1)),
        (None, None) => "stopped answering and could not be reaped".to_string(),
    };
    let said = if last_words.is_empty() {
        String::new()
    } else {
        format!(": {last_words}")
    };
    FailureInfo::of(Reason::JobCrashed, format!("the job's process {how}{said}"))
}

const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;

fn signal_name(n: i32) -> &'static str {
    match n {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// The child's last stderr line, short: it goes into a failure record.
fn last_words(tail: &str) -> String {
    let line = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signalled(n: i32) -> Option<ExitStatus> {
        Some(ExitStatus::from_raw(n))
    }
    fn exited(code: i32) -> Option<ExitStatus> {
        Some(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn deaths_are_told_apart() {
        let limits = Limits {
            memory_bytes: Some(64 * 1024 * 1024),
            cpu_ms: Some(1500),
        };
        let oom = "memory allocation of 1048576 bytes failed\nnote: run with RUST_BACKTRACE=1\n";
        let cases = [
            (signalled(SIGXCPU), "", Reason::ResourceLimit, "CPU limit of 1500 ms"),
            (
                signalled(6),
                oom,
                Reason::ResourceLimit,
                "memory limit of 64 MiB and its process ended (memory allocation of 1048576 bytes failed)",
            ),
            (
                signalled(6),
                "assertion failed\n",
                Reason::JobCrashed,
                "signal 6 (SIGABRT): assertion failed",
            ),
            (signalled(SIGKILL), "", Reason::JobCrashed, "SIGKILL, not sent by resq"),
            (signalled(11), "", Reason::JobCrashed, "signal 11 (SIGSEGV)"),
            (
                exited(3),
                "bye\n\n",
                Reason::JobCrashed,
                "exited with code 3 in the middle of the job: bye",
            ),
            (None, "", Reason::JobCrashed, "could not be reaped"),
        ];
        for (status, tail, reason, phrase) in cases {
            let info = classify(status, tail, limits);
            assert_eq!(info.reason, reason, "{phrase}");
            assert_eq!(info.exception, reason.code());
            assert!(info.message.contains(phrase), "{:?} lacks {phrase:?}", info.message);
        }
    }

    #[test]
    fn a_long_last_line_is_cut() {
        let tail = "x".repeat(10_000);
        let info = classify(exited(1), &tail, Limits::default());
        assert!(info.message.len() < 500);
    }
}
