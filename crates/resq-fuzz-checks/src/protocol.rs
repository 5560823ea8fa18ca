//! The isolation protocol reader
//! (`crates/resq/src/worker/isolation/protocol.rs`): the bytes are what a
//! job child wrote on its stdout.
//!
//! Properties:
//! - the reader gives frames or typed errors, never a panic;
//! - it gives exactly one frame per complete line (the message, or
//!   `Malformed` for a line that is not one) and ends with `Closed`, as a
//!   reference split of the bytes on newlines says;
//! - the frames do not depend on the read buffer's size (1 byte to 8 KiB),
//!   so a message split across reads is read whole;
//! - a message read is a fixed point: its encoding reads back as itself,
//!   and so does a request the child would parse.

use resq::worker::isolation::protocol_fuzzing::{parse_answer, parse_request, read_all, Frame};

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let mut expected = Vec::new();
    let mut lines = data.split(|&b| b == b'\n');
    let last = lines.next_back();
    for line in lines {
        expected.push(match parse_answer(line) {
            Some(message) => Frame::Message(message),
            None => Frame::Malformed,
        });
        if let Some(request) = parse_request(line) {
            let line = request.strip_suffix(b"\n").expect("an encoded request ends its line"); // ok: a property check; a panic is the finding
            assert_eq!(
                parse_request(line),
                Some(request.clone()),
                "a request changes when re-read"
            );
        }
    }
    // `split` always yields a last piece: empty after a final newline, or
    // the unfinished line the child never ended. Either way the stream is
    // closed there.
    let _ = last;
    expected.push(Frame::Closed);

    for capacity in [1, 3, 64, 8192] {
        let frames = read_all(data, capacity);
        assert_eq!(frames, expected, "buffer of {capacity} bytes");
    }
    for frame in &expected {
        if let Frame::Message(line) = frame {
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(
                read_all(line, 8192),
                [frame.clone(), Frame::Closed],
                "a message changes when re-read"
            );
        }
    }
}
