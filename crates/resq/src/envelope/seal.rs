//! Sealing an envelope on the producer side: encrypt the arguments (when the
//! job type asks), then sign the whole envelope.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::canonical::{self, CanonicalError};
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
pub fn signing_message(kid: &str, envelope: &Envelope) -> Result<Vec<u8>, SealError> {
    let mut value = serde_json::to_value(envelope)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("sig");
    }
    let canonical = canonical::to_vec(&value)?;
    let mut message = Vec::with_capacity(SIG_DOMAIN.len() + kid.len() + 1 + canonical.len());
    message.extend_from_slice(SIG_DOMAIN);
    message.extend_from_slice(kid.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(&canonical);
    Ok(message)
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
