//! Writes the envelope target's seed corpus: real envelopes, sealed by
//! resq with the fuzz keyring (so they verify), and a few that do not.
//!
//!   cargo run -p resq-fuzz-checks --example envelope_seeds -- fuzz/corpus/envelope

use resq::envelope::{encrypt_args, sign};
use resq::Envelope;
use serde_json::json;

fn job(class: &str, queue: &str, args: serde_json::Value) -> Envelope {
    let mut extra = serde_json::Map::new();
    extra.insert("plugin".into(), json!({"retries": [1, 2.5, "\u{e9}"]}));
    Envelope {
        class: class.into(),
        args: args.as_array().cloned().unwrap_or_default(),
        id: Some("01890a5d-ac96-774b-bcce-b302099a8057".into()),
        queue: Some(queue.into()),
        enqueued_at: Some(1_795_478_400.25),
        expires_at: Some(1_795_482_000.0),
        attempt: 1,
        unique: Some("report:2026-11-24".into()),
        timeout_ms: Some(30_000),
        mark: Some("AAECAwQFBgcICQoL.7".into()),
        enc: None,
        extra,
        sig: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: envelope_seeds <corpus dir>")?;
    let ring = resq_fuzz_checks::keyring();
    let args =
        json!([{"to": "a@example.com", "n": 9_007_199_254_740_991_u64, "s": "\"\\\n\u{1}\u{2028}😀"}, -0.5, null]);
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, kid, class, queue, encrypt) in [
        ("hs256", "hs-fuzz", "Echo", "default", false),
        ("eddsa", "ed-fuzz", "Echo", "critical", false),
        ("hs256-encrypted", "hs-fuzz", "Mailers::Welcome", "mail", true),
        ("scoped", "scoped", "Mailers::Welcome", "mail_bulk", false),
    ] {
        let mut envelope = job(class, queue, args.clone());
        if encrypt {
            encrypt_args(&mut envelope, ring.encrypter().ok_or("no encryption key")?)?;
        }
        sign(&mut envelope, ring.get(kid).ok_or("no such key")?)?;
        seeds.push((name, envelope.to_bytes()?));
    }
    seeds.push((
        "ruby-unsigned",
        br#"{"class":"Mailers::Welcome","args":[1,"x"],"queue":"mail"}"#.to_vec(),
    ));
    let mut forged = job("Echo", "default", json!([1]));
    sign(&mut forged, ring.get("hs-fuzz").ok_or("no such key")?)?;
    forged.args = vec![json!(2)];
    seeds.push(("edited-args", forged.to_bytes()?));
    for (name, bytes) in seeds {
        std::fs::write(format!("{dir}/{name}"), bytes)?;
    }
    Ok(())
}
