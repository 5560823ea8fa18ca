//! Envelopes (`crates/resq/src/envelope/`): decode + verify + decrypt, the
//! way a worker opens a list element, and seal (encrypt + sign).
//!
//! Properties:
//! - any bytes, opened with the fuzz keyring, give a job or a typed
//!   refusal (a `Rejection` with its reason), never a panic;
//! - for any job built from the bytes (any class, queue, id, arguments,
//!   unknown fields, timestamps; signed by an HMAC, an Ed25519 or a scoped
//!   key; arguments encrypted or not): sealing fails exactly when it must
//!   (an integer past 2^53 outside the encrypted arguments, a key out of
//!   scope, encryption without id and queue), and otherwise
//!   open(seal(job)) == job;
//! - any edit of a sealed envelope's bytes (flipped, inserted, removed
//!   bytes, a cut) is refused with a typed error, or opens to the very same
//!   signed content (the canonical form; e.g. `1.0` for `1`, which JCS
//!   writes alike);
//! - a sealed job found on another queue is refused (`wrong_queue`).

use crate::{has_unsafe_integer, keyring, object, string, value, SIGNING_KIDS};
use arbitrary::{Result, Unstructured};
use resq::envelope::{decrypt_args, encrypt_args, sign, signing_message, verify, SealError, Verified};
use resq::keyring::Keyring;
use resq::{Envelope, PayloadLimits, Reason, Rejection};

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let ring = keyring();
    // The bytes as a list element: a job or a typed refusal.
    let _ = open(data, None, ring);
    // A job built from the bytes, sealed, opened, then tampered with.
    let mut u = Unstructured::new(data);
    if let Ok(case) = Case::build(&mut u) {
        case.check(ring, &mut u);
    }
}

/// Opens `bytes` as a worker does, on `queue` (default: the queue the job
/// names, else `default`). Unsigned jobs are refused.
fn open(bytes: &[u8], queue: Option<&str>, ring: &Keyring) -> std::result::Result<Envelope, Rejection> {
    let limits = PayloadLimits::default();
    let mut envelope = Envelope::decode(bytes, &limits)?;
    let queue = queue.or(envelope.queue.as_deref()).unwrap_or("default").to_string();
    match verify(&envelope, &queue, ring, false)? {
        Verified::Signed { kid } => assert!(envelope.sig.as_ref().is_some_and(|s| s.kid == kid)),
        Verified::UnsignedAllowed => panic!("an unsigned job passed where signatures are required"),
    }
    decrypt_args(&mut envelope, ring, &limits)?;
    assert!(envelope.enc.is_none(), "decrypted arguments left `enc` behind");
    Ok(envelope)
}

/// Names resq's envelope knows: an unknown field may not take one.
const KNOWN: &[&str] = &[
    "class",
    "args",
    "id",
    "queue",
    "enqueued_at",
    "expires_at",
    "attempt",
    "unique",
    "timeout_ms",
    "mark",
    "enc",
    "sig",
];

struct Case {
    job: Envelope,
    kid: &'static str,
    encrypt: bool,
}

fn optional<T>(u: &mut Unstructured<'_>, f: impl FnOnce(&mut Unstructured<'_>) -> Result<T>) -> Result<Option<T>> {
    Ok(if u.arbitrary()? { Some(f(u)?) } else { None })
}

fn timestamp(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0..=2)? {
        0 => f64::from(u.int_in_range(0u32..=4_000_000_000)?),
        1 => f64::from(u.int_in_range(0u32..=4_000_000_000)?) + f64::from(u.int_in_range(0u16..=999)?) / 1000.0,
        // Any finite double: a producer may write any number there.
        _ => Some(f64::from_bits(u.arbitrary()?))
            .filter(|f| f.is_finite())
            .unwrap_or(0.0),
    })
}

impl Case {
    fn build(u: &mut Unstructured<'_>) -> Result<Case> {
        const CLASSES: &[&str] = &["Echo", "Mailers::Welcome", "A::B::C", ""];
        const QUEUES: &[&str] = &["default", "mail", "mail_bulk", "critical", ""];
        let class = if u.arbitrary()? {
            u.choose(CLASSES)?.to_string()
        } else {
            string(u, 8)?
        };
        let queue = optional(u, |u| {
            Ok(if u.arbitrary()? {
                u.choose(QUEUES)?.to_string()
            } else {
                string(u, 8)?
            })
        })?;
        let n = u.int_in_range(0..=4)?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            args.push(value(u, 3)?);
        }
        let mut extra = object(u, 2, 3)?;
        extra.retain(|k, _| !KNOWN.contains(&k.as_str()));
        let job = Envelope {
            class,
            args,
            id: optional(u, |u| string(u, 12))?,
            queue,
            enqueued_at: optional(u, timestamp)?,
            expires_at: optional(u, timestamp)?,
            attempt: u.arbitrary()?,
            unique: optional(u, |u| string(u, 8))?,
            timeout_ms: optional(u, |u| {
                Ok(if u.arbitrary()? {
                    u.int_in_range(0..=86_400_000)?
                } else {
                    u.arbitrary()?
                })
            })?,
            mark: optional(u, |u| string(u, 8))?,
            enc: None,
            extra,
            sig: None,
        };
        Ok(Case {
            job,
            kid: u.choose(&SIGNING_KIDS)?,
            encrypt: u.arbitrary()?,
        })
    }

    fn check(self, ring: &Keyring, u: &mut Unstructured<'_>) {
        let Case { job, kid, encrypt } = self;
        let key = ring.get(kid).expect("the fuzz keyring has every signing kid"); // ok: a property check; a panic is the finding
        let mut sealed = job.clone();
        if encrypt {
            let enc = ring.encrypter().expect("the fuzz keyring encrypts"); // ok: a property check; a panic is the finding
            match encrypt_args(&mut sealed, enc) {
                Err(SealError::MissingBinding) => {
                    assert!(
                        job.id.is_none() || job.queue.is_none(),
                        "refused to encrypt a bound job"
                    );
                    return;
                }
                Err(e) => panic!("encrypting failed: {e}"),
                Ok(()) => assert!(job.id.is_some() && job.queue.is_some(), "encrypted an unbound job"),
            }
        }
        let queue = job.queue.clone().unwrap_or_default();
        let unsafe_number = (!encrypt && job.args.iter().any(has_unsafe_integer))
            || job.extra.values().any(has_unsafe_integer)
            || job.timeout_ms.is_some_and(|ms| ms > crate::MAX_SAFE_INTEGER);
        match sign(&mut sealed, key) {
            Err(SealError::OutOfScope { .. }) => {
                assert!(!key.allows(&job.class, &queue), "refused a key in scope");
                return;
            }
            Err(SealError::Canonical(_)) => {
                assert!(
                    key.allows(&job.class, &queue) && unsafe_number,
                    "refused a signable job"
                );
                return;
            }
            Err(e) => panic!("signing failed: {e}"),
            Ok(()) => assert!(
                key.allows(&job.class, &queue) && !unsafe_number,
                "signed what it must not"
            ),
        }
        let bytes = sealed.to_bytes().expect("a sealed envelope serializes"); // ok: a property check; a panic is the finding
        if bytes.len() > PayloadLimits::default().max_bytes {
            return;
        }
        let found_on = job.queue.as_deref().unwrap_or("");
        let mut opened = match open(&bytes, Some(found_on), ring) {
            Ok(opened) => opened,
            Err(e) => panic!("a sealed job did not open: {e:?}"),
        };
        assert!(opened.sig.take().is_some_and(|s| s.kid == kid));
        assert_eq!(opened, job, "open(seal(job)) != job");

        // Found on another queue: refused.
        let elsewhere = format!("{found_on}-elsewhere");
        let refused = open(&bytes, Some(&elsewhere), ring).expect_err("opened on another queue");
        assert_eq!(refused.reason, Reason::WrongQueue);

        // Tampered with: refused, or the same signed content.
        let Ok(tampered) = tamper(&bytes, u) else { return };
        if tampered == bytes {
            return;
        }
        if let Ok(mut opened) = open(&tampered, Some(found_on), ring) {
            opened.sig = None;
            // Encrypted arguments are authenticated as bytes, not signed in
            // canonical form (they may hold integers past 2^53): they must
            // come back exactly, and the rest be signed alike.
            if encrypt {
                assert_eq!(opened.args, job.args, "edited encrypted arguments opened");
            }
            let signed = |e: &Envelope| {
                let mut e = e.clone();
                if encrypt {
                    e.args.clear();
                }
                let message = signing_message(kid, &e);
                message.expect("an opened job has a canonical form") // ok: a property check; a panic is the finding
            };
            assert_eq!(
                signed(&opened),
                signed(&job),
                "an edited envelope opened to other content: {}",
                String::from_utf8_lossy(&tampered)
            );
        }
    }
}

/// One to four edits of `bytes`: a flipped byte, a byte inserted, a byte
/// removed, or the end cut off.
fn tamper(bytes: &[u8], u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut out = bytes.to_vec();
    for _ in 0..u.int_in_range(1..=4)? {
        if out.is_empty() {
            break;
        }
        let at = u.choose_index(out.len())?;
        match u.int_in_range(0..=3)? {
            0 => out[at] ^= u.int_in_range(1..=255)?,
            1 => out.insert(at, *u.choose(b"0123456789.eE-+ \"\\{}[],:abcsigv")?),
            2 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    Ok(out)
}
