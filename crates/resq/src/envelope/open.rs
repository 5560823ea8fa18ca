//! Opening an envelope on the worker side: verify the signature, the key's
//! scope and the queue, then decrypt the arguments. Each refusal has its own
//! reason code; none of them echoes key material.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;

use super::seal::{associated_data, write_signing_message, SealError};
use super::Envelope;
use crate::keyring::Keyring;
use crate::limits::PayloadLimits;
use crate::reason::{Reason, Rejection};

/// How an envelope passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Signed by this key, in scope, on its own queue.
    Signed { kid: String },
    /// Unsigned, on a queue whose policy allows that (migration from Ruby).
    UnsignedAllowed,
}

/// Checks `envelope`, fetched from `queue`, against the keyring.
pub fn verify(
    envelope: &Envelope,
    queue: &str,
    keyring: &Keyring,
    allow_unsigned: bool,
) -> Result<Verified, Rejection> {
    let Some(sig) = &envelope.sig else {
        return if allow_unsigned {
            Ok(Verified::UnsignedAllowed)
        } else {
            Err(Rejection::new(
                Reason::Unsigned,
                "the job is not signed and its queue requires signatures. If it was re-queued by a tool \
                 that drops signatures (resque-web's Retry re-creates only class and args), retry the \
                 original failure with `resq failed retry <id>` instead",
            ))
        };
    };
    let key = keyring.get(&sig.kid).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownKey,
            format!("signed with unknown key id {:?}", clip(&sig.kid)),
        )
    })?;
    if sig.alg != key.alg().name() {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!("alg {:?} is not key {}'s", clip(&sig.alg), key.kid()),
        ));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(&sig.v)
        .map_err(|_| Rejection::new(Reason::BadSignature, "the signature is not base64url"))?;
    // The signed bytes go straight into the check: a large argument is
    // hashed where it lies, not copied into a message first.
    let mut covered = key.covered();
    write_signing_message(&sig.kid, envelope, &mut covered).map_err(|e| match e {
        SealError::Canonical(c) => Rejection::new(Reason::NumberOutOfRange, c.to_string()),
        other => Rejection::new(Reason::MalformedPayload, other.to_string()),
    })?;
    if !covered.verify(&raw) {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!("the signature by key {} does not match the job", key.kid()),
        ));
    }
    let signed_queue = envelope.queue.as_deref().unwrap_or("");
    if !key.allows(&envelope.class, signed_queue) {
        return Err(Rejection::new(
            Reason::OutOfScope,
            format!(
                "key {} may not sign {} on {}",
                key.kid(),
                clip(&envelope.class),
                clip(signed_queue)
            ),
        ));
    }
    if signed_queue != queue {
        return Err(Rejection::new(
            Reason::WrongQueue,
            format!(
                "signed for queue {:?} but found on {:?}",
                clip(signed_queue),
                clip(queue)
            ),
        ));
    }
    Ok(Verified::Signed {
        kid: key.kid().to_string(),
    })
}

/// Replaces `enc` by the decrypted `args`, checking them against the limits.
pub fn decrypt_args(envelope: &mut Envelope, keyring: &Keyring, limits: &PayloadLimits) -> Result<(), Rejection> {
    let Some(enc) = envelope.enc.take() else { return Ok(()) };
    let fail = |why: &str| Rejection::new(Reason::DecryptFailed, why.to_string());
    if enc.alg != "XC20P" {
        return Err(fail("unknown encryption algorithm"));
    }
    let key = keyring.enc_key(&enc.kid).ok_or_else(|| {
        Rejection::new(
            Reason::DecryptFailed,
            format!(
                "encrypted with key id {:?}, which this worker does not hold: add it to the worker's keys file (encryption_keys)",
                clip(&enc.kid)
            ),
        )
    })?;
    let nonce = URL_SAFE_NO_PAD
        .decode(&enc.nonce)
        .map_err(|_| fail("the nonce is not base64url"))?;
    let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| fail("the nonce is not 24 bytes"))?;
    let ct = URL_SAFE_NO_PAD
        .decode(&enc.ct)
        .map_err(|_| fail("the ciphertext is not base64url"))?;
    let (Some(id), Some(queue)) = (envelope.id.as_deref(), envelope.queue.as_deref()) else {
        return Err(fail("an encrypted job needs its id and queue"));
    };
    let aad = associated_data(id, &envelope.class, queue);
    let cipher = XChaCha20Poly1305::new_from_slice(key.secret.as_ref()).map_err(|_| fail("bad key"))?;
    let plaintext = cipher.decrypt(&nonce, Payload { msg: &ct, aad: &aad }).map_err(|_| {
        Rejection::new(
            Reason::DecryptFailed,
            format!(
                "the arguments do not decrypt with key {}: edited, or bound to another job",
                key.kid()
            ),
        )
    })?;
    limits
        .check(&plaintext)
        .map_err(|e| Rejection::new(e.reason(), e.to_string()))?;
    let args: Vec<Value> = serde_json::from_slice(&plaintext)
        .map_err(|_| Rejection::new(Reason::MalformedPayload, "decrypted arguments are not a JSON array"))?;
    envelope.args = args;
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::sign;
    use crate::keyring::SigAlg;
    use proptest::prelude::*;

    proptest! {
        /// A job signed from a message built whole verifies where the check
        /// hashes long arguments where they lie: strings of any length
        /// around the pass-through bound, with escapes anywhere; and one
        /// changed character of an argument is refused.
        #[test]
        fn long_arguments_verify_and_an_edit_is_refused(
            text in "[a\"\\\\\n\u{1}é😀]{0,3}[abc]{0,1500}[a\"\\\\\n]{0,3}[xyz]{0,700}",
            short in "[a-z]{0,20}",
            at in any::<prop::sample::Index>(),
        ) {
            for alg in [SigAlg::Hs256, SigAlg::EdDsa] {
                let (file, _) = Keyring::generate(alg, "t1");
                let ring = Keyring::from_toml(&file).unwrap();
                let mut envelope = crate::envelope::sample(vec![Value::from(text.clone()), Value::from(short.clone())]);
                sign(&mut envelope, ring.signer().unwrap()).unwrap();
                prop_assert!(verify(&envelope, "q", &ring, false).is_ok());
                if !text.is_empty() {
                    let mut chars: Vec<char> = text.chars().collect();
                    let i = at.index(chars.len());
                    chars[i] = if chars[i] == 'q' { 'r' } else { 'q' };
                    envelope.args[0] = Value::from(chars.into_iter().collect::<String>());
                    let refused = verify(&envelope, "q", &ring, false).unwrap_err();
                    prop_assert_eq!(refused.reason, Reason::BadSignature);
                }
            }
        }
    }
}
