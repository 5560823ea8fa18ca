//! Keys: named (`kid`), scoped to the classes and queues they may sign for,
//! rotated by adding a new key and making it the signer while the old one still
//! verifies. HMAC-SHA256 keys are shared by producers and workers; Ed25519 lets
//! producers sign with a private key that workers never hold. Encryption keys
//! (XChaCha20-Poly1305) rotate the same way.
//!
//! Key material lives in zeroized buffers and no `Debug`, `Display` or error
//! message ever shows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use glob::Pattern;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// A signature algorithm, by its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigAlg {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::Hs256 => "HS256",
            SigAlg::EdDsa => "EdDSA",
        }
    }
}

enum Material {
    Hmac(Zeroizing<Vec<u8>>),
    EdPrivate(Box<ed25519_dalek::SigningKey>),
    EdPublic(ed25519_dalek::VerifyingKey),
}

/// One signing/verification key and its scope.
pub struct SigKey {
    kid: String,
    alg: SigAlg,
    material: Material,
    classes: Vec<Pattern>,
    queues: Vec<Pattern>,
}

impl std::fmt::Debug for SigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("classes", &self.classes.iter().map(Pattern::as_str).collect::<Vec<_>>())
            .field("queues", &self.queues.iter().map(Pattern::as_str).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SigKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// True when this key may sign jobs of `class` on `queue`.
    pub fn allows(&self, class: &str, queue: &str) -> bool {
        self.classes.iter().any(|p| p.matches(class)) && self.queues.iter().any(|p| p.matches(queue))
    }

    /// The class and queue patterns this key may sign for.
    pub fn scope(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.classes.iter().map(Pattern::as_str).collect(),
            self.queues.iter().map(Pattern::as_str).collect(),
        )
    }

    /// True when this key may sign any class on any queue (`*` in both).
    pub fn is_unscoped(&self) -> bool {
        self.classes.iter().any(|p| p.as_str() == "*") && self.queues.iter().any(|p| p.as_str() == "*")
    }

    /// True when this key holds what signing needs (not a public key alone).
    pub fn can_sign(&self) -> bool {
        !matches!(self.material, Material::EdPublic(_))
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &self.material {
            Material::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
                mac.update(message);
                Some(mac.finalize().into_bytes().to_vec())
            }
            Material::EdPrivate(key) => {
                use ed25519_dalek::Signer;
                Some(key.sign(message).to_bytes().to_vec())
            }
            Material::EdPublic(_) => None,
        }
    }

    /// Constant-time for HMAC; strict verification for Ed25519.
    #[cfg(test)]
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use crate::envelope::canonical::Sink;
        let mut covered = self.covered();
        covered.put(message);
        covered.verify(signature)
    }

    /// A check of a signature by this key, whose message is then written
    /// into it piece by piece (see [`Covered`]).
    pub(crate) fn covered(&self) -> Covered<'_> {
        Covered {
            key: self,
            mac: match &self.material {
                // HMAC takes a key of any length: never `None` for an HMAC key.
                Material::Hmac(secret) => Hmac::<Sha256>::new_from_slice(secret).ok(),
                Material::EdPrivate(_) | Material::EdPublic(_) => None,
            },
            gathered: Vec::with_capacity(STRAIGHT),
        }
    }
}

/// A piece of at least this many bytes (a large argument, or a long run of
/// one between escapes) goes straight into an HMAC; shorter ones are
/// gathered first, as one message, so that a small envelope costs what a
/// message built whole costs.
const STRAIGHT: usize = 512;

/// The bytes a signature covers, on their way into its check by one key.
/// An HMAC takes a long piece where it lies, so verifying a job never
/// copies a large payload whole first; short pieces are gathered, and
/// hashed before the next long one or at the end. Ed25519 reads its message
/// twice, so its bytes are all gathered.
pub(crate) struct Covered<'k> {
    key: &'k SigKey,
    mac: Option<Hmac<Sha256>>,
    gathered: Vec<u8>,
}

impl crate::envelope::canonical::Sink for Covered<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() >= STRAIGHT {
            if let Some(mac) = &mut self.mac {
                mac.update(&self.gathered);
                self.gathered.clear();
                mac.update(bytes);
                return;
            }
        }
        self.gathered.extend_from_slice(bytes);
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.gathered.push(byte);
    }
}

impl Covered<'_> {
    /// True when `signature` is the key's over the bytes written: compared
    /// in constant time for HMAC; verified strictly for Ed25519.
    pub(crate) fn verify(self, signature: &[u8]) -> bool {
        match (self.mac, &self.key.material) {
            (Some(mut mac), _) => {
                mac.update(&self.gathered);
                mac.verify_slice(signature).is_ok()
            }
            (None, Material::EdPrivate(key)) => verify_ed(&key.verifying_key(), &self.gathered, signature),
            (None, Material::EdPublic(key)) => verify_ed(key, &self.gathered, signature),
            (None, Material::Hmac(_)) => false,
        }
    }
}

fn verify_ed(key: &ed25519_dalek::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

/// One encryption key (XChaCha20-Poly1305, 256-bit).
pub struct EncKey {
    kid: String,
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for EncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl EncKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Every key a process holds, and which ones sign and encrypt.
#[derive(Debug, Default)]
pub struct Keyring {
    sig: HashMap<String, SigKey>,
    signer: Option<String>,
    enc: HashMap<String, EncKey>,
    encrypter: Option<String>,
}

/// A keyring that could not be loaded. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read the keys file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the keys file {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the keys file is not valid: {0}")]
    Parse(crate::toml_error::TomlProblem),
    #[error("key {kid}: {why}")]
    BadKey { kid: String, why: String },
    #[error("key id {0} appears twice")]
    DuplicateKid(String),
    #[error("{which} names key {kid}, which is not in the file")]
    UnknownActive { which: &'static str, kid: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption_key: Option<String>,
    #[serde(default)]
    keys: Vec<SigKeyFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    encryption_keys: Vec<EncKeyFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigKeyFile {
    kid: String,
    alg: SigAlg,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public: Option<String>,
    #[serde(default = "everything")]
    classes: Vec<String>,
    #[serde(default = "everything")]
    queues: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncKeyFile {
    kid: String,
    alg: String,
    secret: String,
}

fn everything() -> Vec<String> {
    vec!["*".to_string()]
}

/// What [`Keyring::add_key`] made.
pub struct AddedKey {
    /// The whole keys file, with the new key.
    pub text: Zeroizing<String>,
    /// The new key's id.
    pub kid: String,
    /// For an Ed25519 key: the `[[keys]]` entry (public only) that workers
    /// add to their file.
    pub worker_entry: Option<String>,
}

const HEADER: &str = "# resq keys: keep this file secret (mode 0600). Rotate with `resq keys rotate`:\n\
                      # a new key signs, the old one still verifies until its jobs have expired.\n";
const WORKER_FILE_HEADER: &str = "# resq keys for workers: the producers' Ed25519 public key (verify only) and\n\
                                  # the encryption key that opens encrypted arguments. Keep it secret (mode 0600).\n";

fn render(file: &KeyFile) -> Zeroizing<String> {
    Zeroizing::new(format!("{HEADER}{}", toml::to_string(file).unwrap_or_default()))
}

/// A new signing key in `file` (id `hs-<suffix>` or `ed-<suffix>`); for
/// Ed25519 also its public-only entry.
fn new_signing_key(file: &mut KeyFile, alg: SigAlg, kid_suffix: &str) -> (String, Option<SigKeyFile>) {
    let kid = format!("{}-{kid_suffix}", if alg == SigAlg::Hs256 { "hs" } else { "ed" });
    let secret = random32();
    let (key, public) = match alg {
        SigAlg::Hs256 => (
            SigKeyFile {
                kid: kid.clone(),
                alg,
                secret: Some(URL_SAFE_NO_PAD.encode(secret.as_ref())),
                private: None,
                public: None,
                classes: everything(),
                queues: everything(),
            },
            None,
        ),
        SigAlg::EdDsa => {
            let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
            let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
            (
                SigKeyFile {
                    kid: kid.clone(),
                    alg,
                    secret: None,
                    private: Some(URL_SAFE_NO_PAD.encode(secret.as_ref())),
                    public: Some(public.clone()),
                    classes: everything(),
                    queues: everything(),
                },
                Some(SigKeyFile {
                    kid: kid.clone(),
                    alg,
                    secret: None,
                    private: None,
                    public: Some(public),
                    classes: everything(),
                    queues: everything(),
                }),
            )
        }
    };
    file.keys.push(key);
    (kid, public)
}

/// A new encryption key in `file` (id `enc-<suffix>`).
fn new_encryption_key(file: &mut KeyFile, kid_suffix: &str) -> String {
    let kid = format!("enc-{kid_suffix}");
    file.encryption_keys.push(EncKeyFile {
        kid: kid.clone(),
        alg: "XC20P".into(),
        secret: URL_SAFE_NO_PAD.encode(random32().as_ref()),
    });
    kid
}

/// The words of the keys file format, which error messages may quote.
const KEY_FILE_WORDS: &[&str] = &[
    "signing_key",
    "encryption_key",
    "keys",
    "encryption_keys",
    "kid",
    "alg",
    "secret",
    "private",
    "public",
    "classes",
    "queues",
    "HS256",
    "EdDSA",
    "XC20P",
];

/// A key id as messages show it: quoted when it is a short name, otherwise
/// not at all (a secret pasted into `kid` must not be printed back).
fn shown(kid: &str) -> String {
    let name_like = (1..=24).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name_like {
        format!("{kid:?}")
    } else {
        "(an id that is not a short name)".into()
    }
}

fn decode_b64(kid: &str, what: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| KeyringError::BadKey {
            kid: shown(kid),
            why: format!("{what} is not unpadded base64url"),
        })
}

fn random32() -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    // The OS random source failing is not outside data and leaves nothing safe to do.
    getrandom::fill(bytes.as_mut()).expect("the OS random source failed"); // ok: see above
    bytes
}

fn patterns(kid: &str, list: &[String]) -> Result<Vec<Pattern>, KeyringError> {
    list.iter()
        .map(|p| {
            Pattern::new(p).map_err(|e| KeyringError::BadKey {
                kid: shown(kid),
                why: format!("a scope entry is not a valid glob ({})", e.msg),
            })
        })
        .collect()
}

impl Keyring {
    /// A throwaway keyring (one HMAC key and one encryption key, all scopes),
    /// for `resq demo` and tests. Jobs it signs cannot be verified by anyone else.
    pub fn ephemeral() -> Keyring {
        let mut ring = Keyring::default();
        let kid = "ephemeral".to_string();
        ring.sig.insert(
            kid.clone(),
            SigKey {
                kid: kid.clone(),
                alg: SigAlg::Hs256,
                material: Material::Hmac(Zeroizing::new(random32().to_vec())),
                classes: vec![Pattern::new("*").unwrap_or_default()],
                queues: vec![Pattern::new("*").unwrap_or_default()],
            },
        );
        ring.signer = Some(kid.clone());
        ring.enc.insert(
            kid.clone(),
            EncKey {
                kid: kid.clone(),
                secret: random32(),
            },
        );
        ring.encrypter = Some(kid);
        ring
    }

    /// Loads a keys file; refuses one that group or others can read.
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Keyring::from_toml(&text)
    }

    /// Parses the keys file format (see `resq keys generate`).
    pub fn from_toml(text: &str) -> Result<Keyring, KeyringError> {
        // toml's own message quotes the offending line and serde's the
        // offending value, which may be a secret: keep neither.
        let file: KeyFile = toml::from_str(text)
            .map_err(|e| KeyringError::Parse(crate::toml_error::describe(text, &e, KEY_FILE_WORDS)))?;
        let mut ring = Keyring::default();
        for k in file.keys {
            let material = match k.alg {
                SigAlg::Hs256 => {
                    let secret = k.secret.as_deref().ok_or_else(|| KeyringError::BadKey {
                        kid: shown(&k.kid),
                        why: "an HS256 key needs `secret`".into(),
                    })?;
                    let bytes = decode_b64(&k.kid, "secret", secret)?;
                    if bytes.len() < 32 {
                        return Err(KeyringError::BadKey {
                            kid: shown(&k.kid),
                            why: "an HS256 secret must be at least 32 bytes".into(),
                        });
                    }
                    Material::Hmac(bytes)
                }
                SigAlg::EdDsa => match (&k.private, &k.public) {
                    (Some(private), _) => {
                        let seed = decode_b64(&k.kid, "private", private)?;
                        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| KeyringError::BadKey {
                            kid: shown(&k.kid),
                            why: "an EdDSA private key is 32 bytes".into(),
                        })?;
                        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                        if let Some(public) = &k.public {
                            let given = decode_b64(&k.kid, "public", public)?;
                            if given.as_slice() != key.verifying_key().as_bytes() {
                                return Err(KeyringError::BadKey {
                                    kid: shown(&k.kid),
                                    why: "public does not match private".into(),
                                });
                            }
                        }
                        Material::EdPrivate(Box::new(key))
                    }
                    (None, Some(public)) => {
                        let bytes = decode_b64(&k.kid, "public", public)?;
                        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyringError::BadKey {
                            kid: shown(&k.kid),
                            why: "an EdDSA public key is 32 bytes".into(),
                        })?;
                        let key =
                            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyringError::BadKey {
                                kid: shown(&k.kid),
                                why: "not an Ed25519 public key".into(),
                            })?;
                        Material::EdPublic(key)
                    }
                    (None, None) => {
                        return Err(KeyringError::BadKey {
                            kid: shown(&k.kid),
                            why: "an EdDSA key needs `private` or `public`".into(),
                        })
                    }
                },
            };
            let key = SigKey {
                classes: patterns(&k.kid, &k.classes)?,
                queues: patterns(&k.kid, &k.queues)?,
                kid: k.kid.clone(),
                alg: k.alg,
                material,
            };
            if ring.sig.insert(k.kid.clone(), key).is_some() {
                return Err(KeyringError::DuplicateKid(shown(&k.kid)));
            }
        }
        for k in file.encryption_keys {
            if k.alg != "XC20P" {
                return Err(KeyringError::BadKey {
                    kid: shown(&k.kid),
                    why: "unknown encryption alg (use XC20P)".into(),
                });
            }
            let bytes = decode_b64(&k.kid, "secret", &k.secret)?;
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyringError::BadKey {
                kid: shown(&k.kid),
                why: "an XC20P secret is 32 bytes".into(),
            })?;
            if ring
                .enc
                .insert(
                    k.kid.clone(),
                    EncKey {
                        kid: k.kid.clone(),
                        secret: Zeroizing::new(secret),
                    },
                )
                .is_some()
            {
                return Err(KeyringError::DuplicateKid(shown(&k.kid)));
            }
        }
        if let Some(kid) = &file.signing_key {
            match ring.sig.get(kid) {
                Some(k) if k.can_sign() => {}
                Some(_) => {
                    return Err(KeyringError::BadKey {
                        kid: shown(kid),
                        why: "signing_key is a public key only".into(),
                    })
                }
                None => {
                    return Err(KeyringError::UnknownActive {
                        which: "signing_key",
                        kid: shown(kid),
                    })
                }
            }
        }
        if let Some(kid) = &file.encryption_key {
            if !ring.enc.contains_key(kid) {
                return Err(KeyringError::UnknownActive {
                    which: "encryption_key",
                    kid: shown(kid),
                });
            }
        }
        ring.signer = file.signing_key;
        ring.encrypter = file.encryption_key;
        Ok(ring)
    }

    /// A new keys file: one signing key (`HS256` or `EdDSA`) and one encryption
    /// key, both active. Returns the file text and, for EdDSA, the public-only
    /// file workers use.
    pub fn generate(alg: SigAlg, kid_suffix: &str) -> (Zeroizing<String>, Option<String>) {
        let mut file = KeyFile {
            signing_key: None,
            encryption_key: None,
            keys: Vec::new(),
            encryption_keys: Vec::new(),
        };
        let (kid, public) = new_signing_key(&mut file, alg, kid_suffix);
        file.signing_key = Some(kid);
        let ekid = new_encryption_key(&mut file, kid_suffix);
        file.encryption_key = Some(ekid.clone());
        // Workers of an Ed25519 producer get the public key, and the
        // encryption key they need to open encrypted arguments.
        let worker_file = public.map(|public| {
            let enc = file.encryption_keys.iter().find(|k| k.kid == ekid).map(|k| EncKeyFile {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                secret: k.secret.clone(),
            });
            let workers = KeyFile {
                signing_key: None,
                encryption_key: Some(ekid),
                keys: vec![public],
                encryption_keys: enc.into_iter().collect(),
            };
            format!("{WORKER_FILE_HEADER}{}", toml::to_string(&workers).unwrap_or_default())
        });
        (render(&file), worker_file)
    }

    /// Adds a new key to a keys file's text, every other key left as it
    /// was: a signing key (`alg`), or an encryption key (`alg` `None`).
    /// With `activate` it becomes the one that signs (or encrypts); the old
    /// one still verifies (decrypts) the jobs made before. Returns the new
    /// text, the new key's id, and for an Ed25519 key the entry workers add
    /// to their verify-only file.
    pub fn add_key(
        text: &str,
        alg: Option<SigAlg>,
        kid_suffix: &str,
        activate: bool,
    ) -> Result<AddedKey, KeyringError> {
        // The file must be valid before: it is re-read, and written back whole.
        Keyring::from_toml(text)?;
        let mut file: KeyFile = toml::from_str(text)
            .map_err(|e| KeyringError::Parse(crate::toml_error::describe(text, &e, KEY_FILE_WORDS)))?;
        let (kid, worker_entry) = match alg {
            Some(alg) => {
                let (kid, public) = new_signing_key(&mut file, alg, kid_suffix);
                if activate {
                    file.signing_key = Some(kid.clone());
                }
                let entry = public.map(|p| {
                    let one = KeyFile {
                        signing_key: None,
                        encryption_key: None,
                        keys: vec![p],
                        encryption_keys: Vec::new(),
                    };
                    toml::to_string(&one).unwrap_or_default()
                });
                (kid, entry)
            }
            None => {
                let kid = new_encryption_key(&mut file, kid_suffix);
                if activate {
                    file.encryption_key = Some(kid.clone());
                }
                (kid, None)
            }
        };
        let text = render(&file);
        Keyring::from_toml(&text)?;
        Ok(AddedKey {
            text,
            kid,
            worker_entry,
        })
    }

    /// The key that signs new jobs, if this process may sign.
    pub fn signer(&self) -> Option<&SigKey> {
        self.signer.as_ref().and_then(|kid| self.sig.get(kid))
    }

    /// A verification key by id.
    pub fn get(&self, kid: &str) -> Option<&SigKey> {
        self.sig.get(kid)
    }

    /// The key that encrypts new arguments.
    pub fn encrypter(&self) -> Option<&EncKey> {
        self.encrypter.as_ref().and_then(|kid| self.enc.get(kid))
    }

    /// An encryption key by id, for decryption.
    pub fn enc_key(&self, kid: &str) -> Option<&EncKey> {
        self.enc.get(kid)
    }

    /// True when the keyring can verify nothing.
    pub fn has_verification_keys(&self) -> bool {
        !self.sig.is_empty()
    }

    /// The key ids, for messages (never the material).
    pub fn kids(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.sig.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::canonical::Sink;
    use proptest::prelude::*;

    proptest! {
        /// A check fed in pieces (single bytes, short pieces gathered, long
        /// ones hashed where they lie, in any order) says what a check of
        /// the whole message says, for both algorithms; and a changed byte
        /// anywhere fails it.
        #[test]
        fn a_check_fed_in_pieces_is_a_check_of_the_whole(
            pieces in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 1..2),
                    prop::collection::vec(any::<u8>(), 0..1500),
                ],
                0..12,
            ),
            flip in any::<prop::sample::Index>(),
        ) {
            let message: Vec<u8> = pieces.concat();
            for alg in [SigAlg::Hs256, SigAlg::EdDsa] {
                let (text, _) = Keyring::generate(alg, "t1");
                let ring = Keyring::from_toml(&text).unwrap();
                let key = ring.signer().unwrap();
                let sig = key.sign(&message).unwrap();
                let feed = |pieces: &[Vec<u8>]| {
                    let mut covered = key.covered();
                    for piece in pieces {
                        match piece.as_slice() {
                            [byte] => covered.put_byte(*byte),
                            bytes => covered.put(bytes),
                        }
                    }
                    covered
                };
                prop_assert!(feed(&pieces).verify(&sig));
                if !message.is_empty() {
                    let mut changed = pieces.clone();
                    let at = flip.index(message.len());
                    let (mut piece, mut offset) = (0, at);
                    while offset >= changed[piece].len() {
                        offset -= changed[piece].len();
                        piece += 1;
                    }
                    changed[piece][offset] ^= 1;
                    prop_assert!(!feed(&changed).verify(&sig));
                }
            }
        }
    }

    #[test]
    fn generated_files_load_and_sign() {
        for alg in [SigAlg::Hs256, SigAlg::EdDsa] {
            let (text, public) = Keyring::generate(alg, "t1");
            let ring = Keyring::from_toml(&text).unwrap();
            let key = ring.signer().unwrap();
            let sig = key.sign(b"msg").unwrap();
            assert!(key.verify(b"msg", &sig));
            assert!(!key.verify(b"msg2", &sig));
            assert!(ring.encrypter().is_some());
            if let Some(public) = public {
                let workers = Keyring::from_toml(&public).unwrap();
                assert!(workers.signer().is_none());
                let k = workers.get(key.kid()).unwrap();
                assert!(!k.can_sign() && k.verify(b"msg", &sig));
                assert!(!public.contains("private"));
            }
        }
    }

    #[test]
    fn bad_files_are_clear_and_never_show_secrets() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
        let ok = format!("[[keys]]\nkid = \"a\"\nalg = \"HS256\"\nsecret = \"{secret}\"\n");
        // (file, what the message must say)
        let cases = [
            (
                format!("[[keys]]\nkid = \"a\"\nalg = \"HS256\"\nsecret = \"{secret}!!\"\n"),
                "key \"a\": secret is not unpadded base64url",
            ),
            (
                format!("[[keys]]\nkid = \"a\"\nalg = \"HS999\"\nsecret = \"{secret}\"\n"),
                "line 3, column 7: unknown variant `(…)`, expected `HS256` or `EdDSA`",
            ),
            (
                format!("[[keys]]\nkid = \"a\"\nalg = \"{secret}\"\n"),
                "unknown variant `(…)`",
            ),
            (
                format!("[[keys]]\nkid = \"a\"\nalg = \"HS256\"\nsecret = {secret}\n"),
                "line 4",
            ),
            (
                format!("[[keys]]\nkid = \"a\"\nalg = \"HS256\"\nsecret = \"{secret}\n"),
                "line 4",
            ),
            (
                format!("signing_key = \"b\"\n{ok}"),
                "signing_key names key \"b\", which is not in the file",
            ),
            (
                format!("signing_key = \"{secret}\"\n{ok}"),
                "signing_key names key (an id that is not a short name)",
            ),
            (format!("{ok}{ok}"), "key id \"a\" appears twice"),
            (
                ok.to_string()
                    .replace("kid = \"a\"", &format!("kid = \"{secret}\""))
                    .repeat(2),
                "key id (an id that is not a short name) appears twice",
            ),
            (
                "[[keys]]\nkid = \"a\"\nalg = \"HS256\"\nsecret = \"c2hvcnQ\"\n".to_string(),
                "at least 32 bytes",
            ),
            (format!("{ok}typo = 1\n"), "line 5, column 1: unknown field `(…)`"),
            (format!("{ok}{secret} = 1\n"), "unknown field `(…)`"),
            (
                format!("{ok}classes = [\"[{secret}\"]\n"),
                "a scope entry is not a valid glob",
            ),
            (
                format!("[[encryption_keys]]\nkid = \"e\"\nalg = \"{secret}\"\nsecret = \"{secret}\"\n"),
                "key \"e\": unknown encryption alg (use XC20P)",
            ),
        ];
        for (text, says) in cases {
            let err = Keyring::from_toml(&text).unwrap_err().to_string();
            assert!(!err.contains(secret) && !err.contains(&secret[..12]), "{err}");
            assert!(err.contains(says), "{err}\nwanted: {says}");
            assert!(!err.contains('\n'), "{err}");
        }
        // Debug shows key ids, never key material, in any spelling.
        let enc = "ZW5jLWtleS1lbmMta2V5LWVuYy1rZXktZW5jLWtleSE";
        let ring = Keyring::from_toml(&format!(
            "{ok}[[encryption_keys]]\nkid = \"e\"\nalg = \"XC20P\"\nsecret = \"{enc}\"\n"
        ))
        .unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("\"a\"") && shown.contains("\"e\""), "{shown}");
        for key in [secret, enc] {
            let raw = URL_SAFE_NO_PAD.decode(key).unwrap();
            let as_bytes = format!("{:?}", &raw[..8]);
            let as_text = String::from_utf8_lossy(&raw[..8]).into_owned();
            assert!(!shown.contains(key), "{shown}");
            assert!(!shown.contains(&as_bytes[1..as_bytes.len() - 1]), "{shown}");
            assert!(!shown.contains(&as_text), "{shown}");
        }
    }

    #[test]
    fn scopes_limit_classes_and_queues() {
        let text = "[[keys]]\nkid = \"m\"\nalg = \"HS256\"\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA\"\nclasses = [\"Mailers::*\"]\nqueues = [\"mail*\"]\n";
        let ring = Keyring::from_toml(text).unwrap();
        let k = ring.get("m").unwrap();
        assert!(k.allows("Mailers::Welcome", "mail"));
        assert!(!k.allows("Billing::Charge", "mail"));
        assert!(!k.allows("Mailers::Welcome", "default"));
    }
}
