//! What an operator sets for the API (`[api]` in resq.toml), and the rate
//! notation tokens and limits share (`100/s`, `6000/m`, `10/h`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use resq_redis::api::SurgeSettings;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_s: f64,
    pub burst: u32,
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate is a positive number of jobs per second, minute or hour: 100/s, 6000/m, 10/h")]
pub struct BadRate;

/// Parses `N/s`, `N/m` or `N/h` into jobs a second.
pub fn parse_rate(text: &str) -> Result<f64, BadRate> {
    let (n, unit) = text.trim().split_once('/').ok_or(BadRate)?;
    let n: f64 = n.trim().parse().map_err(|_| BadRate)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(BadRate),
    };
    let rate = n / per;
    if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err(BadRate)
    }
}

/// A shared limit as an operator writes it: `N/s`, `N/m` or `N/h` is at
/// most N in that time, so N at once (the burst), refilled evenly.
pub fn parse_limit(text: &str) -> Result<Rate, BadRate> {
    let per_s = parse_rate(text)?;
    let n: f64 = text
        .split('/')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or(BadRate)?;
    let burst = n.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
    Ok(Rate { per_s, burst })
}

/// The API server's settings; every default is a safe one.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The largest body of a bulk request (a single job's body is bounded
    /// by its token's `max_bytes`).
    pub max_bulk_bytes: usize,
    /// The most jobs one bulk request may hold.
    pub max_bulk_jobs: usize,
    /// Peers whose `X-Forwarded-For` is believed (a reverse proxy); from
    /// anyone else the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins allowed to call the API from a browser; none by default (no
    /// CORS header is ever sent then).
    pub cors_origins: Vec<String>,
    /// Failed authentications allowed per client IP (a burst, refilled at
    /// the rate): past it, 429 until it refills.
    pub auth_failures: Rate,
    /// Limits shared by every token, per class and per queue.
    pub class_rates: BTreeMap<String, Rate>,
    pub queue_rates: BTreeMap<String, Rate>,
    pub surge: SurgeSettings,
    /// Refuse (503) while Redis's `used_memory` is above this share of its
    /// `maxmemory` (when one is set).
    pub memory_watermark: f64,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Entries the audit stream keeps (about).
    pub audit_max: usize,
    /// Connections held at once, and the time a client has to send headers.
    pub connections: crate::ConnectionLimits,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_bulk_bytes: 16 * 1024 * 1024,
            max_bulk_jobs: 10_000,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            auth_failures: Rate {
                per_s: 10.0 / 60.0,
                burst: 10,
            },
            class_rates: BTreeMap::new(),
            queue_rates: BTreeMap::new(),
            surge: SurgeSettings::default(),
            memory_watermark: 0.9,
            idempotency_window: Duration::from_secs(24 * 3600),
            audit_max: 100_000,
            connections: crate::ConnectionLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_each_unit_and_refusals() {
        let cases = [
            ("100/s", Some(100.0)),
            ("6000/m", Some(100.0)),
            ("36/h", Some(0.01)),
            (" 5 / s ", Some(5.0)),
            ("0/s", None),
            ("-1/s", None),
            ("1e9/s", None),
            ("NaN/s", None),
            ("inf/s", None),
            ("10", None),
            ("10/d", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rate(text).ok(), want, "{text:?}");
        }
        assert_eq!(parse_limit("2/h").map(|r| r.burst), Ok(2));
        assert_eq!(parse_limit("0.5/s").map(|r| r.burst), Ok(1));
    }
}
