//! The fuzz targets' properties in the test suite, without libFuzzer: each
//! target's `check` runs on every input of its seed corpus
//! (`fuzz/corpus/<target>/`) and on 200 mutations of each (100 for
//! `envelope`): bit flips, interesting bytes and tokens, insertions,
//! deletions, repeated slices, cuts, splices with another input of the
//! corpus, one to four at a time, drawn from a seed fixed per target, so
//! every run checks the same inputs.
//!
//! This replaces the libFuzzer smoke run the suite had (an instrumented
//! second build of resq and resq-cli, about 8.5 minutes on a fresh CI
//! machine): it needs no build but the test's, and what it checks is the
//! same code. Coverage-guided runs stay on purpose: `scripts/fuzz`.
//!
//! A failure names the target, the input, the mutation and its bytes, and
//! writes the whole input to `target/tmp/fuzz-checks/<target>/`, where the
//! libFuzzer target replays it (`target/fuzz/.../<target> <file>`) and
//! from where it can join the corpus as a regression.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Mutations of each corpus input.
const MUTATIONS: u64 = 200;

/// Failures shown in full; the rest are counted.
const SHOWN: usize = 12;

/// A run that takes more CPU time fails, as a slow input is a finding for
/// libFuzzer (its `-timeout`): it is what a worker would spend on it. The
/// slowest take under 0.1 s in the debug build. CPU time, not wall time:
/// on a loaded machine a run may wait seconds for a core.
const SLOW: Duration = Duration::from_secs(5);

/// One `#[test]` per target (they run in parallel), each with its seed
/// (its name hashed) and its mutations an input, and the list
/// `every_target_is_checked` compares with `fuzz/fuzz_targets/`.
macro_rules! targets {
    ($($target:ident: $mutations:expr),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), resq_fuzz_checks::$target::check, $mutations);
            }
        )*
        const TARGETS: &[&str] = &[$(stringify!($target)),*];
    };
}

targets!(
    limits: MUTATIONS,
    // Ed25519 unoptimized (the test profile) takes about 8 ms a run, up to
    // four verifications: half the mutations keep this test near the others.
    envelope: MUTATIONS / 2,
    canonical: MUTATIONS,
    queue_spec: MUTATIONS,
    config: MUTATIONS,
    cron: MUTATIONS,
    protocol: MUTATIONS,
);

#[test]
fn every_target_is_checked() {
    let dir = repo().join("fuzz/fuzz_targets");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    found.sort();
    let mut tested: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    tested.sort();
    assert_eq!(found, tested, "fuzz/fuzz_targets/ and the targets tested here differ");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An input on which the check panicked.
struct Failure {
    file: String,
    /// `None`: the corpus input as committed.
    mutation: Option<u64>,
    bytes: Vec<u8>,
    /// The panic's message and where it was raised.
    message: String,
}

fn replay(target: &str, check: fn(&[u8]), mutations: u64) {
    let started = Instant::now();
    let corpus = read_corpus(target);
    let seed = fnv1a(target.as_bytes());
    let mut failures = Vec::new();
    let mut runs = 0u64;
    let mut slowest = Duration::ZERO;
    for (index, (file, input)) in corpus.iter().enumerate() {
        runs += 1;
        if let Err(message) = run(check, input, &mut slowest) {
            failures.push(Failure {
                file: file.clone(),
                mutation: None,
                bytes: input.clone(),
                message,
            });
            // Its mutations would mostly fail the same way.
            continue;
        }
        let others: Vec<&[u8]> = corpus
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, (_, bytes))| bytes.as_slice())
            .collect();
        for n in 0..mutations {
            let mut rng = Rng::new(seed ^ fnv1a(file.as_bytes()) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mutant = mutate(input, &others, &mut rng);
            runs += 1;
            if let Err(message) = run(check, &mutant, &mut slowest) {
                failures.push(Failure {
                    file: file.clone(),
                    mutation: Some(n),
                    bytes: mutant,
                    message,
                });
                // One failing mutation names the input.
                break;
            }
        }
    }
    println!(
        "{target}: {} inputs, {runs} runs ({mutations} mutations an input), {:.2} s, the slowest {:.1} ms of CPU",
        corpus.len(),
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
    if failures.is_empty() {
        return;
    }
    let committed = failures.iter().filter(|f| f.mutation.is_none()).count();
    let mut report = format!(
        "{target}: the check failed on {committed} of the {} corpus inputs as committed, \
         and on a mutation of {} of the others:\n",
        corpus.len(),
        failures.len() - committed,
    );
    for failure in failures.iter().take(SHOWN) {
        let which = match failure.mutation {
            None => "as committed".to_string(),
            Some(n) => format!("mutation {n}"),
        };
        let _ = writeln!(
            report,
            "- fuzz/corpus/{target}/{}, {which}: {}\n  {} bytes: {}",
            failure.file,
            failure.message,
            failure.bytes.len(),
            hex(&failure.bytes),
        );
        if let Some(path) = save(target, failure) {
            let _ = writeln!(report, "  saved as {}", path.display());
        }
    }
    if failures.len() > SHOWN {
        let _ = writeln!(report, "- and {} more", failures.len() - SHOWN);
    }
    panic!("{report}");
}

/// The corpus, sorted by file name; fails when there is none.
fn read_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/corpus").join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{target}: no seed corpus at {}: {e}", dir.display()));
    let mut corpus: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("{target}: {}: {e}", dir.display()));
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).unwrap_or_else(|e| panic!("{target}: {name}: {e}"));
            (name, bytes)
        })
        .collect();
    corpus.sort();
    assert!(
        !corpus.is_empty(),
        "{target}: the seed corpus {} is empty",
        dir.display()
    );
    corpus
}

thread_local! {
    /// True while this thread runs a check: its panics are reported, not
    /// printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic was raised.
    static RAISED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The check on `input`: the panic's message and place when it fails, or
/// its time when it took over [`SLOW`]; `slowest` is the longest run yet.
/// The panic is not printed (a failing target may panic on thousands of
/// inputs, each with a backtrace under `RUST_BACKTRACE`): the test's report
/// says it once per input.
fn run(check: fn(&[u8]), input: &[u8], slowest: &mut Duration) -> Result<(), String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                RAISED_AT.with(|at| *at.borrow_mut() = info.location().map(|l| l.to_string()));
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let started = thread_cpu_time();
    let result = catch_unwind(AssertUnwindSafe(|| check(input)));
    let took = thread_cpu_time().saturating_sub(started);
    QUIET.with(|quiet| quiet.set(false));
    *slowest = took.max(*slowest);
    if result.is_ok() && took > SLOW {
        return Err(format!("took {took:.1?} of CPU, over the {SLOW:?} a run may take"));
    }
    result.map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_string()
        };
        let mut message: String = message.chars().take(400).collect::<String>().replace('\n', " ");
        if let Some(at) = RAISED_AT.with(|at| at.borrow_mut().take()) {
            let _ = write!(message, " (at {at})");
        }
        message
    })
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Writes a failing input where it can be replayed; `None` when it cannot.
fn save(target: &str, failure: &Failure) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-checks").join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let suffix = failure
        .mutation
        .map_or("corpus".to_string(), |n| format!("mutation-{n}"));
    let path = dir.join(format!("{}.{suffix}", failure.file));
    std::fs::write(&path, &failure.bytes).ok()?;
    Some(path)
}

/// Hex, clipped to the first and last 48 bytes.
fn hex(bytes: &[u8]) -> String {
    let show = |part: &[u8]| part.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if bytes.len() <= 96 {
        show(bytes)
    } else {
        format!(
            "{}..({} bytes)..{}",
            show(&bytes[..48]),
            bytes.len() - 96,
            show(&bytes[bytes.len() - 48..])
        )
    }
}

/// FNV-1a, 64 bits: the seeds from names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: small, fast, and the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes where parsers of JSON, TOML, cron lines and queue specs turn:
/// NUL, the ends of a byte and of ASCII, quotes, escapes, line ends,
/// separators, digits, signs, wildcards, and the config check's secret
/// marker.
const INTERESTING: &[u8] = b"\x00\x01\x1f\x7f\x80\xc0\xff\"\\\n\r\t 09-+.eE{}[],:=#*/!?@LW";

/// Longer tokens, like a fuzzing dictionary: TOML tables and multi-line
/// strings, cron macros, the config check's secret, JSON's literals and
/// empty containers, a line separator, an unfinished UTF-8 sequence.
const TOKENS: &[&[u8]] = &[
    b"[[",
    b"]]",
    b"\"\"\"",
    b"@hourly",
    b"@@",
    b"null",
    b"true",
    b"{}",
    b"[]",
    b"\xe2\x80\xa8",
    b"\xf0\x9f",
];

/// Numbers to put where a number was: around ±2^53, the ends of `i64` and
/// `u64` and past them, doubles at the edges of their forms and range, and
/// the ends of cron fields.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"-0",
    b"-1",
    b"9007199254740991",
    b"9007199254740992",
    b"-9007199254740993",
    b"9223372036854775807",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1.0",
    b"-0.0",
    b"1e16",
    b"1e21",
    b"1e-7",
    b"5e-324",
    b"1.7976931348623157e308",
    b"1e400",
    b"0.1",
    b"7",
    b"24",
    b"31",
    b"59",
    b"60",
];

/// What to put inside a string: JSON escapes (a lone surrogate, a pair,
/// controls, the line separator), raw UTF-8 of each length, a long run,
/// the config check's secret marker.
const IN_STRINGS: &[&[u8]] = &[
    b"\\u0000",
    b"\\ud800",
    b"\\ud83d\\ude00",
    b"\\u2028",
    b"\\\"",
    b"\\\\",
    b"\\n",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
    b"\xef\xbf\xbf",
    b"\xf0\x9f\x98\x80",
    b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    b"@@",
    b"#",
    b"'",
];

/// One to four edits of `input` (one in half the mutations, so that many
/// still parse and reach the properties past the parser); `others` is the
/// rest of its corpus (for splices).
fn mutate(input: &[u8], others: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = match rng.below(8) {
        0..=3 => 1,
        4 | 5 => 2,
        6 => 3,
        _ => 4,
    };
    for _ in 0..edits {
        let len = out.len();
        match rng.below(14) {
            // Flip a bit.
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            // Overwrite a byte with an interesting one.
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = *rng.pick(INTERESTING);
            }
            // Insert an interesting byte.
            2 => {
                let at = rng.below(len + 1);
                out.insert(at, *rng.pick(INTERESTING));
            }
            // Insert or overwrite with any byte.
            3 => {
                let at = rng.below(len + 1);
                let byte = rng.next() as u8;
                if at < len && rng.below(2) == 0 {
                    out[at] = byte;
                } else {
                    out.insert(at, byte);
                }
            }
            // Delete a range of up to 16 bytes.
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                out.drain(at..at + n);
            }
            // Repeat a slice of up to 32 bytes one to 8 times somewhere.
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                let slice = out[at..at + n].to_vec();
                let times = 1 + rng.below(8);
                let to = rng.below(len + 1);
                out.splice(to..to, slice.iter().copied().cycle().take(n * times));
            }
            // Cut the end off.
            6 if len > 0 => {
                let at = rng.below(len);
                out.truncate(at);
            }
            // Splice: this input's head, another one's tail.
            7 if !others.is_empty() => {
                let other = rng.pick(others);
                let at = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            // Insert a token.
            8 => {
                let at = rng.below(len + 1);
                let token = rng.pick(TOKENS);
                out.splice(at..at, token.iter().copied());
            }
            // Replace a number (a run of digits, signs, points and
            // exponents) with another.
            9 | 10 if out.iter().any(u8::is_ascii_digit) => {
                let mut at = rng.below(len);
                while !out[at].is_ascii_digit() {
                    at = (at + 1) % len;
                }
                let in_number = |b: &u8| b.is_ascii_digit() || b"+-.eE".contains(b);
                let start = out[..at].iter().rposition(|b| !in_number(b)).map_or(0, |i| i + 1);
                let end = out[at..].iter().position(|b| !in_number(b)).map_or(len, |i| at + i);
                out.splice(start..end, rng.pick(NUMBERS).iter().copied());
            }
            // Insert escapes or characters inside a string.
            11 | 12 => {
                let inside = string_insides(&out);
                let at = if inside.is_empty() {
                    rng.below(len + 1)
                } else {
                    *rng.pick(&inside)
                };
                out.splice(at..at, rng.pick(IN_STRINGS).iter().copied());
            }
            // Swap two bytes.
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                out.swap(a, b);
            }
            // An edit that needs bytes, on none: insert one.
            _ => out.insert(0, *rng.pick(INTERESTING)),
        }
    }
    out
}

/// The positions inside double-quoted strings (after the opening quote, up
/// to the closing one), where an insertion keeps the string a string.
fn string_insides(bytes: &[u8]) -> Vec<usize> {
    let mut inside = Vec::new();
    let (mut open, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if open && !escaped {
            inside.push(i);
        }
        if escaped {
            escaped = false;
        } else if b == b'\\' && open {
            escaped = true;
        } else if b == b'"' {
            open = !open;
        }
    }
    inside
}
