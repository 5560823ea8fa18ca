//! What the worker and its child processes say to each other: one JSON
//! object per line, the worker's requests on the child's stdin and the
//! child's answers on its (original) stdout.
//!
//! The child runs job code, so the worker reads its answers as outside data:
//! a line has a length limit and must parse, or the child is treated as broken.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::failure::FailureInfo;
use crate::reason::Reason;

/// The environment variable that makes a program a resq child; its value is
/// the protocol version.
pub(crate) const CHILD_ENV: &str = "RESQ_CHILD";
pub(crate) const PROTOCOL_VERSION: &str = "1";
/// The worker's pid: the child exits when its parent is gone.
pub(crate) const PARENT_ENV: &str = "RESQ_CHILD_PARENT";
/// The child's address-space limit in bytes (RLIMIT_AS).
pub(crate) const MEMORY_ENV: &str = "RESQ_CHILD_MEMORY_BYTES";

/// The longest line either side accepts (an answer carries at most a short
/// failure message; a request carries a job's arguments, already within the
/// worker's payload limits).
pub(crate) const MAX_LINE: usize = 64 * 1024 * 1024;
/// Longest failure message a child sends back.
pub(crate) const MAX_MESSAGE: usize = 4096;

/// Worker -> child: run one job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    pub class: String,
    pub args: Vec<Value>,
    pub id: Option<String>,
    pub queue: String,
    pub attempt: u32,
    /// CPU time the run may use; the kernel counts whole seconds, so it is
    /// rounded up.
    pub cpu_limit_ms: Option<u64>,
}

/// Child -> worker.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ChildMessage {
    /// Sent once at start-up: the child is ready for jobs.
    Ready { pid: u32 },
    /// The job ran to success.
    Done,
    /// The job failed, panicked or was refused.
    Failed {
        reason: Reason,
        exception: String,
        message: String,
    },
}

impl ChildMessage {
    pub(crate) fn from_result(result: Result<(), FailureInfo>) -> Self {
        match result {
            Ok(()) => ChildMessage::Done,
            Err(info) => ChildMessage::Failed {
                reason: info.reason,
                exception: truncate(info.exception, 256),
                message: truncate(info.message, MAX_MESSAGE),
            },
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the other side closed the pipe")]
    Closed,
    #[error("a line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("not a protocol message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line (without its newline) of at most `MAX_LINE` bytes.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    let n = reader.take(MAX_LINE as u64 + 1).read_until(b'\n', buf).await?;
    if n == 0 {
        return Err(FrameError::Closed);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() > MAX_LINE {
            FrameError::TooLong
        } else {
            FrameError::Closed
        });
    }
    buf.pop();
    Ok(())
}

/// Reads one message from a child.
pub(crate) async fn read_message<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<ChildMessage, FrameError> {
    let mut buf = Vec::new();
    read_line(reader, &mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// One message as a line.
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (string keys, no maps of
    // other keys); an empty object would make the other side stop cleanly.
    let mut line = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// The reader as the fuzz target `fuzz/fuzz_targets/protocol.rs` drives it.
/// The protocol is crate-private; this hidden module is the one way in from
/// outside the crate, for fuzzing and its regression tests. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::{encode, read_message, ChildMessage, FrameError, RunRequest};

    /// What one read of a child's answer gave.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Frame {
        /// A message, re-encoded as the line a child would send for it.
        Message(Vec<u8>),
        Closed,
        TooLong,
        Malformed,
        Io,
    }

    /// Reads answers from `bytes`, as the worker reads a child's stdout,
    /// through a buffer of `capacity` bytes, until a read ends the stream
    /// (closed, too long or I/O); a malformed line is one frame and the
    /// next line is read after it.
    pub fn read_all(bytes: &[u8], capacity: usize) -> Vec<Frame> {
        let mut reader = tokio::io::BufReader::with_capacity(capacity.max(1), bytes);
        let mut frames = Vec::new();
        loop {
            let frame = match ready(read_message(&mut reader)) {
                Some(Ok(message)) => Frame::Message(encode(&message)),
                Some(Err(FrameError::Closed)) => Frame::Closed,
                Some(Err(FrameError::TooLong)) => Frame::TooLong,
                Some(Err(FrameError::Malformed(_))) => Frame::Malformed,
                // A slice never waits: `None` cannot happen, and ends the stream like I/O would.
                Some(Err(FrameError::Io(_))) | None => Frame::Io,
            };
            let last = !matches!(frame, Frame::Message(_) | Frame::Malformed);
            frames.push(frame);
            if last {
                return frames;
            }
        }
    }

    /// One line (without its newline) as the worker parses an answer: the
    /// message re-encoded, or `None` when it is not one.
    pub fn parse_answer(line: &[u8]) -> Option<Vec<u8>> {
        serde_json::from_slice::<ChildMessage>(line).ok().map(|m| encode(&m))
    }

    /// One line as a child parses a request: re-encoded, or `None`.
    pub fn parse_request(line: &[u8]) -> Option<Vec<u8>> {
        serde_json::from_slice::<RunRequest>(line).ok().map(|r| encode(&r))
    }

    /// Polls `future` once: reads from a slice are always ready.
    fn ready<F: Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_within_the_limit_and_parsed() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"{\"type\":\"done\"}\n", "done"),
            (b"{\"type\":\"ready\",\"pid\":7}\n", "ready"),
            (b"{\"type\":\"done\"}", "closed"),
            (b"", "closed"),
            (b"not json\n", "malformed"),
            (
                b"{\"type\":\"failed\",\"reason\":\"no_such\",\"exception\":\"x\",\"message\":\"m\"}\n",
                "malformed",
            ),
        ];
        for (input, expected) in cases {
            let mut reader = tokio::io::BufReader::new(input);
            let got = match read_message(&mut reader).await {
                Ok(ChildMessage::Done) => "done",
                Ok(ChildMessage::Ready { .. }) => "ready",
                Ok(ChildMessage::Failed { .. }) => "failed",
                Err(FrameError::Closed) => "closed",
                Err(FrameError::Malformed(_)) => "malformed",
                Err(FrameError::TooLong) => "too long",
                Err(FrameError::Io(_)) => "io",
            };
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[tokio::test]
    async fn a_line_without_end_is_cut_at_the_limit() {
        let input = vec![b'x'; MAX_LINE + 10];
        let mut reader = tokio::io::BufReader::new(&input[..]);
        assert!(matches!(read_message(&mut reader).await, Err(FrameError::TooLong)));
    }

    /// The fuzzing facade reads a stream line by line, a malformed line
    /// being one frame, and at any buffer size the same frames.
    #[test]
    fn the_fuzzing_reader_reads_every_line_at_any_buffer_size() {
        use fuzzing::{read_all, Frame};
        let input = b"{\"type\":\"ready\",\"pid\":7}\nnot json\n{\"type\":\"done\"}\n{\"type\"";
        for capacity in [1, 2, 7, 64, 8192] {
            assert_eq!(
                read_all(input, capacity),
                [
                    Frame::Message(b"{\"type\":\"ready\",\"pid\":7}\n".to_vec()),
                    Frame::Malformed,
                    Frame::Message(b"{\"type\":\"done\"}\n".to_vec()),
                    Frame::Closed,
                ],
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let message = ChildMessage::from_result(Err(FailureInfo {
            reason: Reason::JobFailed,
            exception: "E".into(),
            message: "é".repeat(MAX_MESSAGE),
        }));
        let ChildMessage::Failed { message, .. } = message else {
            panic!("a failure stays a failure");
        };
        assert!(message.len() <= MAX_MESSAGE && message.chars().all(|c| c == 'é'));
    }
}
