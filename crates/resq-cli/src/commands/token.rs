//! `resq token`: the HTTP API's bearer tokens. A secret is printed once,
//! at creation or rotation; Redis keeps only its hash.

use clap::Subcommand;
use resq_api::token::{self, NewToken, TokenError};
use resq_redis::api::{ApiStore, TokenRecord};
use serde_json::json;

use crate::config::Settings;
use crate::output::safe;
use crate::{connect, Failure};

#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token; its secret is printed once.
    Create {
        /// Who or what uses it (shown in the audit trail).
        #[arg(long)]
        name: String,
        /// Classes it may enqueue: names or globs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        classes: Vec<String>,
        /// Queues it may enqueue to: names or globs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        queues: Vec<String>,
        /// Sustained rate: 100/s, 6000/m, 10/h.
        #[arg(long, default_value = "10/s")]
        rate: String,
        /// Jobs allowed at once above the rate.
        #[arg(long, default_value_t = 20)]
        burst: u32,
        /// Largest request body (one job), bytes.
        #[arg(long, default_value_t = 65_536)]
        max_bytes: usize,
        /// It stops working after this long: 90d, 12h.
        #[arg(long)]
        expires: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every token (never a secret).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a token at once, on every API replica.
    Revoke { id: String },
    /// A new secret for a token; the old one keeps working for the grace period.
    Rotate {
        id: String,
        /// How long the old secret stays valid: 1h, 10m.
        #[arg(long, default_value = "1h")]
        grace: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn token(settings: &Settings, action: TokenAction) -> Result<(), Failure> {
    let redis = connect(settings).await?;
    let store = ApiStore::new(&redis, 1);
    match action {
        TokenAction::Create {
            name,
            classes,
            queues,
            rate,
            burst,
            max_bytes,
            expires,
            json,
        } => {
            let rate_per_s = resq_api::parse_rate(&rate).map_err(|e| Failure::usage(format!("--rate: {e}")))?;
            let expires_in = expires
                .as_deref()
                .map(crate::when::parse_duration)
                .transpose()
                .map_err(|e| Failure::usage(format!("--expires: {e}")))?;
            let new = NewToken {
                name,
                classes,
                queues,
                rate_per_s,
                burst,
                max_bytes,
                expires_in,
            };
            let (record, secret) = token::create(&store, new).await.map_err(failure)?;
            let target = format!("{} ({})", record.id, record.name);
            super::audit_cli(settings, &redis, "token.create", &target, "ok").await;
            print_secret(&record, &secret, json, "created");
        }
        TokenAction::List { json } => {
            let records = store.tokens().await.map_err(Failure::runtime)?;
            if json {
                let list: Vec<_> = records.iter().map(describe).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if records.is_empty() {
                println!("no tokens (resq token create)");
            } else {
                for r in &records {
                    println!(
                        "{}  {:<20} {:<9} classes {} queues {} rate {}/s burst {}{}",
                        r.id,
                        safe(&r.name),
                        status(r),
                        safe(&r.classes.join(",")),
                        safe(&r.queues.join(",")),
                        r.rate_per_s,
                        r.burst,
                        r.expires_at_ms
                            .map(|ms| format!(" expires {}", resq::UnixMs(ms)))
                            .unwrap_or_default()
                    );
                }
            }
        }
        TokenAction::Revoke { id } => {
            let record = token::revoke(&store, &id).await.map_err(failure)?;
            let target = format!("{} ({})", record.id, record.name);
            super::audit_cli(settings, &redis, "token.revoke", &target, "ok").await;
            println!("revoked token {} ({})", record.id, safe(&record.name));
        }
        TokenAction::Rotate { id, grace, json } => {
            let grace = crate::when::parse_duration(&grace).map_err(|e| Failure::usage(format!("--grace: {e}")))?;
            let (record, secret) = token::rotate(&store, &id, grace).await.map_err(failure)?;
            let target = format!("{} ({})", record.id, record.name);
            super::audit_cli(settings, &redis, "token.rotate", &target, "ok").await;
            print_secret(&record, &secret, json, "rotated");
        }
    }
    Ok(())
}

fn print_secret(record: &TokenRecord, secret: &str, json: bool, what: &str) {
    if json {
        let mut v = describe(record);
        v["secret"] = json!(secret);
        println!("{v}");
    } else {
        println!("{what} token {} ({})", record.id, safe(&record.name));
        println!("secret (shown once, store it now): {secret}");
    }
}

fn status(r: &TokenRecord) -> &'static str {
    let now = resq::UnixMs::now().0;
    if r.revoked_at_ms.is_some() {
        "revoked"
    } else if r.expires_at_ms.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

fn describe(r: &TokenRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "name": r.name,
        "status": status(r),
        "classes": r.classes,
        "queues": r.queues,
        "rate_per_s": r.rate_per_s,
        "burst": r.burst,
        "max_bytes": r.max_bytes,
        "created_at": resq::UnixMs(r.created_at_ms).to_string(),
        "expires_at": r.expires_at_ms.map(|ms| resq::UnixMs(ms).to_string()),
        "revoked_at": r.revoked_at_ms.map(|ms| resq::UnixMs(ms).to_string()),
        "previous_valid_until": r.previous.as_ref().map(|p| resq::UnixMs(p.valid_until_ms).to_string()),
    })
}

fn failure(e: TokenError) -> Failure {
    match e {
        TokenError::Store(_) | TokenError::Random(_) => Failure::runtime(e),
        _ => Failure::usage(e),
    }
}
