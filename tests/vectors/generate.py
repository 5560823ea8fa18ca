#!/usr/bin/env python3
"""Generates envelope-v1.json with implementations independent of resq:
Python's hmac/hashlib for HS256 and PyNaCl (libsodium) for Ed25519 and
XChaCha20-Poly1305. resq's tests check that resq produces and accepts exactly
these bytes. Run once by hand (pip install pynacl); CI only reads the output.

The canonical form here is RFC 8785 for this envelope's values: sorted ASCII
keys, strings as UTF-8 (non-ASCII text unescaped), and numbers whose shortest
form Python and ECMAScript agree on.
"""
import base64, hashlib, hmac, json
import nacl.bindings as sodium
from nacl.signing import SigningKey

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

hs_secret = bytes(range(0x00, 0x20))
ed_seed = bytes(range(0x20, 0x40))
enc_key = bytes(range(0x40, 0x60))
nonce = bytes(range(0x60, 0x78))

args = [{"to": "ana@example.com", "template": "welcome"}]
base = {
    "class": "SendEmail",
    "id": "01890a5d-ac96-774b-bcce-b302099a8057",
    "queue": "mailers",
    "enqueued_at": 1795514338.25,
    "expires_at": 1796119138.25,
    "attempt": 0,
}

def signed(envelope, kid, alg, sign):
    body = canonical(envelope)
    message = b"resq-envelope-v1\n" + kid.encode() + b"\n" + body
    out = dict(envelope)
    out["sig"] = {"kid": kid, "alg": alg, "v": b64(sign(message))}
    return body, message, out

plain = dict(base, args=args)
hs_body, hs_msg, hs_env = signed(plain, "hs-test", "HS256", lambda m: hmac.new(hs_secret, m, hashlib.sha256).digest())
ed = SigningKey(ed_seed)
ed_body, ed_msg, ed_env = signed(plain, "ed-test", "EdDSA", lambda m: ed.sign(m).signature)

plaintext = json.dumps(args, separators=(",", ":")).encode()
aad = b"resq-args-v1\n" + "\n".join([base["id"], base["class"], base["queue"]]).encode() + b"\n"
ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, enc_key)
encrypted = dict(base, args=[], enc={"kid": "enc-test", "alg": "XC20P", "nonce": b64(nonce), "ct": b64(ct)})
enc_body, enc_msg, enc_env = signed(encrypted, "hs-test", "HS256", lambda m: hmac.new(hs_secret, m, hashlib.sha256).digest())

hs = lambda m: hmac.new(hs_secret, m, hashlib.sha256).digest()

# resq's own fields beyond the base: a uniqueness key, a timeout and the
# replay mark every resq producer writes.
full = dict(base, args=args, unique="user:42", timeout_ms=30000, mark="AAECAwQFBgcICQoL.17")
full_body, full_msg, full_env = signed(full, "hs-test", "HS256", hs)

# A retry as a worker re-signs it: attempt 2, the history of the two failed
# attempts, a mark of the worker's own.
retry = dict(base, args=args, attempt=2, mark="DA0ODxAREhMUFRYX.4095", failures=[
    {"attempt": 0, "failed_at": "2026/11/24 09:58:58 UTC", "exception": "IoError", "error": "disk full"},
    {"attempt": 1, "failed_at": "2026/11/24 09:59:20 UTC", "exception": "timeout",
     "error": "the job ran longer than 30000 ms and it was cancelled"},
])
retry_body, retry_msg, retry_env = signed(retry, "hs-test", "HS256", hs)

# Non-ASCII text (accents, CJK, an emoji beyond the BMP, an escaped quote)
# and fields resq does not know, which are kept and signed.
text_args = [{"to": "zoë@example.com", "template": "東京 \"welcome\" 🎉"}]
extra = dict(base, args=text_args, mark="GBkaGxwdHh8gISIj.0",
             traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
             origin={"app": "billing", "region": "eu-1"})
extra_body, extra_msg, extra_env = signed(extra, "ed-test", "EdDSA", lambda m: ed.sign(m).signature)

vectors = {
    "about": "resq envelope v1 test vectors; see generate.py. All binary values are unpadded base64url.",
    "keys": {
        "hs256": {"kid": "hs-test", "secret": b64(hs_secret)},
        "ed25519": {"kid": "ed-test", "private": b64(ed_seed), "public": b64(bytes(ed.verify_key))},
        "xc20p": {"kid": "enc-test", "secret": b64(enc_key)},
    },
    "cases": [
        {"name": "hs256", "canonical": hs_body.decode(), "message": b64(hs_msg), "envelope": hs_env},
        {"name": "ed25519", "canonical": ed_body.decode(), "message": b64(ed_msg), "envelope": ed_env},
        {"name": "hs256+xc20p", "canonical": enc_body.decode(), "message": b64(enc_msg), "envelope": enc_env,
         "plaintext_args": plaintext.decode(), "aad": b64(aad)},
        {"name": "hs256+unique+timeout+mark", "canonical": full_body.decode(), "message": b64(full_msg),
         "envelope": full_env},
        {"name": "hs256+retry", "canonical": retry_body.decode(), "message": b64(retry_msg), "envelope": retry_env},
        {"name": "ed25519+non-ascii+extra-fields", "canonical": extra_body.decode(), "message": b64(extra_msg),
         "envelope": extra_env},
    ],
}
with open("envelope-v1.json", "w", encoding="utf-8") as f:
    json.dump(vectors, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote envelope-v1.json")
