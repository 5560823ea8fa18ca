//! `resq doctor`: audits the Redis server resq uses (with resq's own
//! connection and user) and resq's configuration, and prints each finding
//! with its severity, what it means and the fix. Exit code: 0 when nothing
//! is above info, 3 when the worst is low or medium, 4 when high or
//! critical (1 and 2 keep their meaning: it could not run, bad input).

use std::os::unix::fs::PermissionsExt;

use clap::Args;
use resq::Registry;
use resq_redis::api::ApiStore;
use resq_redis::facts::{ClusterFacts, RedisFacts};
use serde_json::json;

use crate::config::{IsolationMode, Settings};
use crate::doctor::{cluster_findings, config_findings, redis_findings, ConfigFacts, Finding, Severity};
use crate::output::safe;
use crate::{connect, Failure};

#[derive(Args)]
pub struct DoctorArgs {
    /// One JSON object: every finding, and the worst severity.
    #[arg(long)]
    json: bool,
}

pub async fn doctor(settings: &Settings, registry: &Registry, args: DoctorArgs) -> Result<(), Failure> {
    let store = connect(settings).await?;
    let mut config = config_facts(settings, registry, &ApiStore::new(&store, 1)).await?;
    // In sentinel mode the URL's host is not used: judge the master's address.
    if let Some(master) = store.sentinel_master() {
        config.redis_loopback = url_is_loopback(&format!("redis://{master}"));
    }
    let redis_config = settings.redis().map_err(Failure::usage)?;
    let (mut findings, maxmemory): (Vec<Finding>, Option<u64>) = if redis_config.cluster.is_some() {
        // In cluster mode each master is judged (the seeds' addresses are
        // the URL's hosts: judged as they are listed).
        let cluster = ClusterFacts::read(&store, redis_config)
            .await
            .map_err(Failure::runtime)?;
        // The marks spread over the masters: their memory adds up.
        let maxmemory = cluster
            .masters
            .iter()
            .map(|m| m.facts.as_ref().ok().and_then(|f| f.maxmemory).filter(|&b| b > 0))
            .sum::<Option<u64>>();
        (cluster_findings(&cluster, &config), maxmemory)
    } else {
        let redis = RedisFacts::read(&store).await.map_err(Failure::runtime)?;
        (redis_findings(&redis, &config), redis.maxmemory)
    };
    findings.extend(config_findings(&config));
    if let Some((rate, window)) = observed_rate(&store).await {
        findings.push(crate::doctor::marks_projection(rate, window, maxmemory));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let worst = findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Info);
    if args.json {
        println!("{}", json!({"worst": worst, "findings": findings}));
    } else {
        for f in &findings {
            println!("{:<8} {}: {}", f.severity.label(), f.code, safe(&f.title));
            if f.severity > Severity::Info {
                println!("         means: {}", f.meaning);
                println!("         fix:   {}", f.fix);
            }
        }
        let above = findings.iter().filter(|f| f.severity > Severity::Info).count();
        println!("{above} finding(s) above info; worst: {}", worst.label().to_lowercase());
    }
    match worst.exit_code() {
        0 => Ok(()),
        code => Err(Failure {
            message: format!("resq doctor: worst finding {}", worst.label().to_lowercase()),
            code,
        }),
    }
}

/// The fleet's processing rate: from the dashboard's samples when `resq
/// serve` takes them (the last hour, at most), else two reads of Resque's
/// counter a second apart. `None` when it cannot be read.
async fn observed_rate(store: &resq_redis::RedisStore) -> Option<(f64, f64)> {
    let web = resq_redis::web::WebStore::new(store);
    let samples = web
        .samples(std::time::Duration::from_secs(3600), std::time::Duration::from_secs(10))
        .await
        .ok()?;
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let span = last.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0;
        if span >= 10.0 {
            return Some((last.processed.saturating_sub(first.processed) as f64 / span, span));
        }
    }
    let admin = resq::Admin::new(std::sync::Arc::new(store.clone()));
    let before = admin.stats().await.ok()?.processed;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = admin.stats().await.ok()?.processed;
    Some((after.saturating_sub(before) as f64, 1.0))
}

/// The host of a Redis URL is a loopback address (or a Unix socket).
fn url_is_loopback(url: &str) -> bool {
    if url.starts_with("redis+unix://") || url.starts_with("unix://") {
        return true;
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

async fn config_facts(settings: &Settings, registry: &Registry, api: &ApiStore) -> Result<ConfigFacts, Failure> {
    let redis = settings.redis().map_err(Failure::usage)?;
    let url_has_user = redis
        .url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'));
    let mut c = ConfigFacts {
        redis_anonymous: redis.username.is_none() && redis.password.is_none() && !url_has_user,
        redis_loopback: url_is_loopback(&redis.url),
        redis_tls: redis.url.starts_with("rediss://"),
        allow_unsigned: settings.allow_unsigned.iter().map(|p| p.as_str().to_string()).collect(),
        wait_replicas: redis.wait.map_or(0, |w| w.replicas),
        ..ConfigFacts::default()
    };
    match &settings.keys_file {
        None => c.keys_file_missing = true,
        Some(path) => match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                c.keys_file_mode = Some(mode);
                if mode & 0o077 == 0 {
                    if let Ok(ring) = settings.keyring() {
                        c.unscoped_keys = ring
                            .kids()
                            .into_iter()
                            .filter_map(|kid| ring.get(kid))
                            .filter(|k| k.can_sign() && k.is_unscoped())
                            .map(|k| k.kid().to_string())
                            .collect();
                    }
                }
            }
            Err(_) => c.keys_file_missing = true,
        },
    }
    let listen = settings.api.listen.as_deref().unwrap_or("127.0.0.1:8080");
    c.serve_public = listen
        .parse::<std::net::SocketAddr>()
        .map_or(true, |a| !a.ip().is_loopback());
    c.serve_tls = settings.api.tls_cert_file.is_some() && settings.api.tls_key_file.is_some();
    c.serve_plain_allowed = settings.api.allow_plain_http;
    let now = resq::UnixMs::now().0;
    for token in api.tokens().await.map_err(Failure::runtime)? {
        let active = token.revoked_at_ms.is_none() && token.expires_at_ms.is_none_or(|e| e > now);
        if !active {
            continue;
        }
        if token.expires_at_ms.is_none() {
            c.tokens_without_expiry.push(token.id.clone());
        }
        if token.rate_per_s > 10_000.0 {
            c.tokens_unlimited.push(token.id.clone());
        }
    }
    c.isolation_off = settings.isolation.mode == IsolationMode::None;
    c.classes_without_timeout = registry
        .classes()
        .into_iter()
        .filter(|class| registry.info(class).is_some_and(|i| i.timeout.is_none()))
        .map(str::to_string)
        .collect();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_told_apart() {
        for (url, loopback) in [
            ("redis://127.0.0.1:6379/0", true),
            ("redis://user:pw@127.0.0.1:6379", true),
            ("rediss://localhost", true),
            ("redis://[::1]:6379", true),
            ("redis+unix:///run/redis.sock", true),
            ("redis://10.0.0.5:6379", false),
            ("redis://127.0.0.1@evil.example:6379", false),
            ("redis://redis.internal", false),
        ] {
            assert_eq!(url_is_loopback(url), loopback, "{url}");
        }
    }
}
