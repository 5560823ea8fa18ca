//! Sealing an envelope on the producer side: encrypt the arguments (when the
//! job type asks), then sign the whole envelope.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::canonical::{self, CanonicalError, Sink};
use super::{Encrypted, Envelope, Signature};
use crate::keyring::{EncKey, SigKey};

/// Domain-separates resq envelope signatures from anything else the key signs.
pub const SIG_DOMAIN: &[u8] = b"resq-envelope-v1\n";
/// Domain-separates the associated data of encrypted arguments.
pub const AAD_DOMAIN: &[u8] = b"resq-args-v1\n";

/// Why an envelope could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("the envelope could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("key {0} cannot sign (it is a public key)")]
    CannotSign(String),
    #[error("key {kid} is not allowed to sign {class} on {queue}")]
    OutOfScope { kid: String, class: String, queue: String },
    #[error("encryption needs the job's id and queue")]
    MissingBinding,
    #[error("encryption failed")]
    Encrypt,
}

/// The bytes a signature covers: domain, key id, canonical envelope (no `sig`).
///
/// The canonical form is written straight from the decoded envelope, so what
/// is verified is exactly what the worker will act on: the known fields as
/// decoded, and every unknown field as it came.
pub fn signing_message(kid: &str, envelope: &Envelope) -> Result<Vec<u8>, SealError> {
    let mut message = Vec::with_capacity(SIG_DOMAIN.len() + kid.len() + 1 + 256);
    write_signing_message(kid, envelope, &mut message)?;
    Ok(message)
}

/// Writes what [`signing_message`] returns into `out`: the verifier streams
/// it into the MAC, so a large argument is not copied whole first.
pub(crate) fn write_signing_message(kid: &str, envelope: &Envelope, out: &mut impl Sink) -> Result<(), SealError> {
    use canonical::Member;
    let mut members: Vec<(&str, Member<'_>)> = Vec::with_capacity(8 + envelope.extra.len());
    members.push(("class", Member::Str(&envelope.class)));
    members.push(("args", Member::Values(&envelope.args)));
    if let Some(id) = &envelope.id {
        members.push(("id", Member::Str(id)));
    }
    if let Some(queue) = &envelope.queue {
        members.push(("queue", Member::Str(queue)));
    }
    if let Some(t) = envelope.enqueued_at {
        members.push(("enqueued_at", Member::Float(t)));
    }
    if let Some(t) = envelope.expires_at {
        members.push(("expires_at", Member::Float(t)));
    }
    members.push(("attempt", Member::Int(u64::from(envelope.attempt))));
    if let Some(key) = &envelope.unique {
        members.push(("unique", Member::Str(key)));
    }
    if let Some(ms) = envelope.timeout_ms {
        members.push(("timeout_ms", Member::Int(ms)));
    }
    if let Some(mark) = &envelope.mark {
        members.push(("mark", Member::Str(mark)));
    }
    let enc;
    if let Some(e) = &envelope.enc {
        enc = serde_json::to_value(e)?;
        members.push(("enc", Member::Value(&enc)));
    }
    for (name, value) in &envelope.extra {
        members.push((name, Member::Value(value)));
    }
    out.put(SIG_DOMAIN);
    out.put(kid.as_bytes());
    out.put_byte(b'\n');
    canonical::write_members(members, out)?;
    Ok(())
}

/// Signs `envelope` in place with `key`, after checking the key's scope.
pub fn sign(envelope: &mut Envelope, key: &SigKey) -> Result<(), SealError> {
    let queue = envelope.queue.clone().unwrap_or_default();
    if !key.allows(&envelope.class, &queue) {
        return Err(SealError::OutOfScope {
            kid: key.kid().to_string(),
            class: envelope.class.clone(),
            queue,
        });
    }
    envelope.sig = None;
    let message = signing_message(key.kid(), envelope)?;
    let raw = key
        .sign(&message)
        .ok_or_else(|| SealError::CannotSign(key.kid().to_string()))?;
    envelope.sig = Some(Signature {
        kid: key.kid().to_string(),
        alg: key.alg().name().to_string(),
        v: URL_SAFE_NO_PAD.encode(raw),
    });
    Ok(())
}

/// The associated data binding ciphertext to one job: id, class and queue.
pub(crate) fn associated_data(id: &str, class: &str, queue: &str) -> Vec<u8> {
    let mut aad = AAD_DOMAIN.to_vec();
    for part in [id, class, queue] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(b'\n');
    }
    aad
}

/// Moves `args` into `enc` (XChaCha20-Poly1305, random 192-bit nonce).
pub fn encrypt_args(envelope: &mut Envelope, key: &EncKey) -> Result<(), SealError> {
    let (Some(id), Some(queue)) = (envelope.id.as_deref(), envelope.queue.as_deref()) else {
        return Err(SealError::MissingBinding);
    };
    let plaintext = serde_json::to_vec(&envelope.args)?;
    let aad = associated_data(id, &envelope.class, queue);
    let cipher = XChaCha20Poly1305::new_from_slice(key.secret.as_ref()).map_err(|_| SealError::Encrypt)?;
    let nonce = XNonce::generate();
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    envelope.enc = Some(Encrypted {
        kid: key.kid().to_string(),
        alg: "XC20P".to_string(),
        nonce: URL_SAFE_NO_PAD.encode(nonce.as_slice()),
        ct: URL_SAFE_NO_PAD.encode(ct),
    });
    envelope.args = Vec::new();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            "[\\x00-\\x1f\"\\\\é€😀]{0,6}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// The direct writer equals RFC 8785 over the envelope as a JSON value.
        #[test]
        fn direct_canonical_form_equals_the_generic_one(
            args in prop::collection::vec(json_leaf(), 0..5),
            extra in prop::collection::btree_map("[a-z_\\x7f-\\u{10ff}]{1,6}", json_leaf(), 0..4),
            enqueued_at in 0f64..2e9,
            attempt in any::<u32>(),
            with_enc in any::<bool>(),
        ) {
            let mut extra: serde_json::Map<String, Value> = extra.into_iter().collect();
            for known in ["class", "args", "id", "queue", "enqueued_at", "expires_at", "attempt", "unique", "timeout_ms", "mark", "enc", "sig"] {
                extra.remove(known);
            }
            let envelope = Envelope {
                class: "A::B".into(),
                args,
                id: Some("01890a5d-ac96-774b-bcce-b302099a8057".into()),
                queue: Some("q".into()),
                enqueued_at: Some(enqueued_at),
                expires_at: None,
                attempt,
                timeout_ms: (attempt % 2 == 0).then_some(u64::from(attempt)),
                mark: (attempt % 5 == 0).then(|| "AAECAwQFBgcICQoL.7".to_string()),
                unique: (attempt % 3 == 0).then(|| "k\u{e9}y".to_string()),
                enc: with_enc.then(|| super::super::Encrypted { kid: "e".into(), alg: "XC20P".into(), nonce: "n".into(), ct: "c\"t".into() }),
                extra,
                sig: None,
            };
            let direct = signing_message("k", &envelope).unwrap();
            let generic = canonical::to_vec(&serde_json::to_value(&envelope).unwrap()).unwrap();
            let prefix = b"resq-envelope-v1\nk\n".len();
            prop_assert_eq!(String::from_utf8_lossy(&direct[prefix..]), String::from_utf8_lossy(&generic));
        }
    }
}
