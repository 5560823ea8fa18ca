//! Alerts evaluated by resq itself, one evaluator per fleet: every
//! `resq serve` runs the loop, and the one holding a Redis lock evaluates.
//! Each interval it reads the fleet (as `/metrics` does) and the failure
//! records written since the last look, and raises or resolves:
//!
//! - `tampering`: any job refused as `bad_signature`, `unknown_key`,
//!   `out_of_scope`, `wrong_queue` or `replayed` (one is an incident);
//! - `flood`: a queue grew by more than `flood_multiple` times its usual
//!   growth (and by at least `flood_min` jobs) in one interval; with
//!   `pause_on_flood` the queue is paused, and that is audited;
//! - `failure_ratio`: failures over all finished jobs in the interval;
//! - `queue_depth`, `oldest_job`: over their thresholds, per queue;
//! - `no_workers`: jobs wait and no worker is registered;
//! - `dead_workers`: registered workers silent for 5 minutes;
//! - `redis_memory`: used over `memory_ratio` of maxmemory;
//! - `token_surge`: an API token the API throttles after a surge above
//!   its own baseline (the API's automated response).
//!
//! Each raise, repeat (every `repeat`) and resolve goes to the log and to
//! every webhook as a JSON POST signed with HMAC-SHA256
//! (`X-Resq-Signature: sha256=<hex>` over `<timestamp>.<body>`, the
//! timestamp in `X-Resq-Timestamp`), retried with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use resq::UnixMs;
use serde::Serialize;
use sha2::Sha256;

use crate::metrics::Fleet;

/// The refusals that mean someone who can write to Redis forged or moved a job.
pub const TAMPERING: &[&str] = &[
    "bad_signature",
    "unknown_key",
    "out_of_scope",
    "wrong_queue",
    "replayed",
];
/// Failure records read per interval at most.
const RECORDS_PER_LOOK: u64 = 1_000;

/// What to watch and whom to tell.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhooks: Vec<String>,
    /// The HMAC key webhooks are signed with (none: unsigned).
    pub secret: Option<String>,
    pub interval: Duration,
    /// A firing alert is sent again this often.
    pub repeat: Duration,
    pub queue_depth: Option<u64>,
    pub oldest_job: Option<Duration>,
    pub failure_ratio: f64,
    /// At least this many jobs must finish in an interval for the ratio to count.
    pub failure_min: u64,
    pub memory_ratio: f64,
    pub flood_multiple: f64,
    pub flood_min: u64,
    pub pause_on_flood: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            secret: None,
            interval: Duration::from_secs(15),
            repeat: Duration::from_secs(3600),
            queue_depth: None,
            oldest_job: None,
            failure_ratio: 0.1,
            failure_min: 20,
            memory_ratio: 0.9,
            flood_multiple: 10.0,
            flood_min: 1_000,
            pause_on_flood: false,
        }
    }
}

/// One alert, as logged and sent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `rule` or `rule:queue`: the same condition keeps its key.
    pub key: String,
    pub rule: &'static str,
    pub severity: &'static str,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// What one look saw, besides the fleet.
#[derive(Debug, Default, Clone)]
pub struct Look {
    pub fleet: Fleet,
    /// Refusals that signal tampering since the last look, by reason.
    pub tampering: HashMap<String, u64>,
    /// Jobs finished since the last look: (processed, failed).
    pub finished: (u64, u64),
    /// API tokens the API throttles after a surge: (id, name).
    pub surging_tokens: Vec<(String, String)>,
}

/// The evaluator's memory between looks.
#[derive(Default)]
pub struct Rules {
    /// Each queue's usual growth per interval (an exponential average).
    baseline: HashMap<String, f64>,
    depth: HashMap<String, u64>,
    /// Looked before: a queue first seen after the first look was empty
    /// then (a new queue filling at once is a flood too).
    looked: bool,
}

impl Rules {
    /// The alerts that hold now.
    pub fn evaluate(&mut self, s: &AlertSettings, look: &Look) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut alert = |key: String, rule, severity, summary: String, queue: Option<String>| {
            out.push(Alert {
                key,
                rule,
                severity,
                summary,
                queue,
            })
        };
        if !look.tampering.is_empty() {
            let mut parts: Vec<String> = look.tampering.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            alert(
                "tampering".into(),
                "tampering",
                "critical",
                format!("jobs refused as tampered: {} (see resq failed list)", parts.join(", ")),
                None,
            );
        }
        let (processed, failed) = look.finished;
        if processed + failed >= s.failure_min && failed as f64 > s.failure_ratio * (processed + failed) as f64 {
            alert(
                "failure_ratio".into(),
                "failure_ratio",
                "warning",
                format!("{failed} of {} finished jobs failed", processed + failed),
                None,
            );
        }
        let mut waiting = 0;
        for (queue, size, age) in &look.fleet.queues {
            waiting += size;
            if let Some(max) = s.queue_depth.filter(|max| size > max) {
                alert(
                    format!("queue_depth:{queue}"),
                    "queue_depth",
                    "warning",
                    format!("{queue} holds {size} jobs (over {max})"),
                    Some(queue.clone()),
                );
            }
            if let (Some(max), Some(age)) = (s.oldest_job, age) {
                if *age > max.as_secs_f64() {
                    alert(
                        format!("oldest_job:{queue}"),
                        "oldest_job",
                        "warning",
                        format!("the oldest job on {queue} has waited {age:.0} s"),
                        Some(queue.clone()),
                    );
                }
            }
            let before = self.depth.insert(queue.clone(), *size);
            let before = if self.looked { Some(before.unwrap_or(0)) } else { before };
            if let Some(before) = before {
                let growth = size.saturating_sub(before) as f64;
                let usual = self.baseline.get(queue).copied().unwrap_or(0.0);
                if growth >= s.flood_min as f64 && growth > s.flood_multiple * usual.max(1.0) {
                    alert(
                        format!("flood:{queue}"),
                        "flood",
                        "critical",
                        format!("{queue} grew by {growth:.0} jobs in one interval (usually {usual:.0})"),
                        Some(queue.clone()),
                    );
                } else {
                    // A flood does not teach the baseline.
                    self.baseline.insert(queue.clone(), usual * 0.9 + growth * 0.1);
                }
            }
        }
        for (id, name) in &look.surging_tokens {
            alert(
                format!("token_surge:{id}"),
                "token_surge",
                "warning",
                format!("API token {id} ({name}) enqueues far above its baseline and is throttled"),
                None,
            );
        }
        if look.fleet.stale_workers > 0 {
            alert(
                "dead_workers".into(),
                "dead_workers",
                "warning",
                format!(
                    "{} registered workers have sent no heartbeat for 5 minutes (resq reaps its own; Ruby's are pruned when a Ruby worker starts)",
                    look.fleet.stale_workers
                ),
                None,
            );
        }
        self.looked = true;
        if waiting > 0 && look.fleet.resq_workers + look.fleet.ruby_workers == 0 {
            alert(
                "no_workers".into(),
                "no_workers",
                "critical",
                format!("{waiting} jobs wait and no worker is registered"),
                None,
            );
        }
        let (used, max) = (look.fleet.redis_used, look.fleet.redis_max);
        if max > 0 && used as f64 > s.memory_ratio * max as f64 {
            alert(
                "redis_memory".into(),
                "redis_memory",
                "critical",
                format!("Redis uses {used} of {max} bytes"),
                None,
            );
        }
        out
    }
}

/// What to send now, given what fires and what was firing.
#[derive(Default)]
pub struct Firing {
    since: HashMap<String, (Alert, Instant)>,
}

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `firing`, `repeat` or `resolved`.
    pub status: &'static str,
    #[serde(flatten)]
    pub alert: Alert,
    pub at: String,
}

impl Firing {
    pub fn update(&mut self, now: Instant, repeat: Duration, alerts: Vec<Alert>) -> Vec<Notice> {
        let at = UnixMs::now().to_string();
        let mut out = Vec::new();
        let keys: std::collections::HashSet<String> = alerts.iter().map(|a| a.key.clone()).collect();
        for alert in alerts {
            match self.since.get_mut(&alert.key) {
                None => {
                    out.push(Notice {
                        status: "firing",
                        alert: alert.clone(),
                        at: at.clone(),
                    });
                    self.since.insert(alert.key.clone(), (alert, now));
                }
                Some((last, sent)) if now.duration_since(*sent) >= repeat => {
                    *last = alert.clone();
                    *sent = now;
                    out.push(Notice {
                        status: "repeat",
                        alert,
                        at: at.clone(),
                    });
                }
                Some((last, _)) => *last = alert,
            }
        }
        let gone: Vec<String> = self.since.keys().filter(|k| !keys.contains(*k)).cloned().collect();
        for key in gone {
            if let Some((alert, _)) = self.since.remove(&key) {
                out.push(Notice {
                    status: "resolved",
                    alert,
                    at: at.clone(),
                });
            }
        }
        out
    }
}

/// True for an `http://` or `https://` URL with a host.
pub fn valid_webhook(url: &str) -> bool {
    url.parse::<hyper::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()))
}

/// `sha256=<hex>` of `<timestamp>.<body>` under `secret`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<hyper::body::Bytes>,
>;

fn client() -> Option<HttpClient> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .ok()?
        .https_or_http()
        .enable_http1()
        .build();
    Some(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Posts `notice` to `url`, three tries 1 s and 2 s apart; a refusal or
/// an unreachable hook is logged.
async fn deliver(client: HttpClient, url: String, secret: Option<String>, notice: Notice) {
    let Ok(body) = serde_json::to_vec(&notice) else { return };
    let timestamp = UnixMs::now().0.to_string();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        let mut request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header("user-agent", "resq-alerts")
            .header("x-resq-timestamp", &timestamp);
        if let Some(secret) = &secret {
            request = request.header("x-resq-signature", signature(secret, &timestamp, &body));
        }
        let Ok(request) = request.body(http_body_util::Full::new(hyper::body::Bytes::from(body.clone()))) else {
            tracing::error!("alerts: a webhook URL that is not a URL");
            return;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => return,
            Ok(Ok(response)) => {
                tracing::warn!(status = %response.status(), attempt, "alerts: a webhook refused a notice")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, attempt, "alerts: a webhook could not be reached"),
            Err(_) => tracing::warn!(attempt, "alerts: a webhook did not answer in 10 s"),
        }
    }
    tracing::error!(key = %notice.alert.key, "alerts: a notice was not delivered after 3 tries (it is in this log)");
}

/// The evaluator loop of one `resq serve`: it evaluates while it holds the
/// fleet's lock.
pub async fn run(d: Arc<crate::dashboard::Dashboard>, settings: AlertSettings) {
    let me = uuid::Uuid::new_v4().to_string();
    let client = client();
    let mut rules = Rules::default();
    let mut firing = Firing::default();
    let mut last_totals: Option<(u64, u64)> = None;
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match d.web.hold_lock("alerts", &me, settings.interval * 3).await {
            Ok(true) => {}
            Ok(false) => {
                // Another replica evaluates; start afresh if this one takes over.
                last_totals = None;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "alerts: no lock this interval");
                continue;
            }
        }
        let look = match look(&d, &mut last_totals).await {
            Ok(look) => look,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: could not read the fleet");
                continue;
            }
        };
        let alerts = rules.evaluate(&settings, &look);
        for notice in firing.update(Instant::now(), settings.repeat, alerts) {
            log(&notice);
            if notice.status == "firing" && notice.alert.rule == "flood" && settings.pause_on_flood {
                if let Some(queue) = &notice.alert.queue {
                    respond_pause(&d, queue).await;
                }
            }
            if let Some(client) = &client {
                for url in &settings.webhooks {
                    tokio::spawn(deliver(
                        client.clone(),
                        url.clone(),
                        settings.secret.clone(),
                        notice.clone(),
                    ));
                }
            }
        }
    }
}

fn log(notice: &Notice) {
    let a = &notice.alert;
    match notice.status {
        "resolved" => tracing::info!(target: "resq::alerts", key = %a.key, rule = a.rule, "resolved: {}", a.summary),
        _ => {
            tracing::warn!(target: "resq::alerts", key = %a.key, rule = a.rule, severity = a.severity, status = notice.status, "{}", a.summary)
        }
    }
}

/// The automated response to a flood: the queue is paused, and audited.
async fn respond_pause(d: &crate::dashboard::Dashboard, queue: &str) {
    let ip = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    match d.admin.set_queue_paused(queue, true).await {
        Ok(()) => d
            .audit
            .record_action("resq-alerts", ip, "queue.pause", queue, "ok: paused on a flood"),
        Err(e) => d
            .audit
            .record_action("resq-alerts", ip, "queue.pause", queue, &format!("refused: {e}")),
    }
}

/// Reads the fleet and what failed since the last look.
async fn look(d: &crate::dashboard::Dashboard, last: &mut Option<(u64, u64)>) -> Result<Look, resq::StoreError> {
    let fleet = Fleet::read(&d.admin, &d.api).await?;
    let now = (fleet.processed_total, fleet.failed_total);
    let (finished, new_failures) = match *last {
        Some((p, f)) => (
            (now.0.saturating_sub(p), now.1.saturating_sub(f)),
            now.1.saturating_sub(f),
        ),
        None => ((0, 0), 0),
    };
    *last = Some(now);
    let mut tampering = HashMap::new();
    if new_failures > 0 {
        // New records are at the tail of the failed list.
        let total = d.admin.failed_count().await?;
        let n = new_failures.min(RECORDS_PER_LOOK).min(total);
        for entry in d.admin.failed(total - n, n).await? {
            let reason = entry
                .record
                .reason
                .clone()
                .or(entry.record.exception.clone())
                .unwrap_or_default();
            if TAMPERING.contains(&reason.as_str()) {
                *tampering.entry(reason).or_insert(0) += 1;
            }
        }
    }
    // Tokens the API throttles after a surge (one read per active token).
    let mut surging_tokens = Vec::new();
    for token in d.api.tokens().await? {
        if token.revoked_at_ms.is_some() {
            continue;
        }
        if let (_, Some(_)) = d.api.token(&token.id).await? {
            surging_tokens.push((token.id, token.name));
        }
    }
    Ok(Look {
        fleet,
        tampering,
        finished,
        surging_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AlertSettings {
        AlertSettings {
            queue_depth: Some(100),
            oldest_job: Some(Duration::from_secs(60)),
            ..AlertSettings::default()
        }
    }

    fn look(queues: Vec<(&str, u64)>) -> Look {
        Look {
            fleet: Fleet {
                queues: queues.into_iter().map(|(q, n)| (q.to_string(), n, Some(1.0))).collect(),
                resq_workers: 1,
                ..Fleet::default()
            },
            ..Look::default()
        }
    }

    #[test]
    fn each_rule_fires_on_its_condition_only() {
        let s = settings();
        let mut rules = Rules::default();
        assert_eq!(rules.evaluate(&s, &look(vec![("mail", 10)])), vec![]);
        let keys = |a: Vec<Alert>| a.into_iter().map(|a| a.key).collect::<Vec<_>>();
        assert_eq!(
            keys(rules.evaluate(&s, &look(vec![("mail", 101)]))),
            vec!["queue_depth:mail"]
        );
        let mut l = look(vec![]);
        l.tampering.insert("bad_signature".into(), 1);
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["tampering"]);
        let mut l = look(vec![]);
        l.finished = (50, 10);
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["failure_ratio"]);
        l.finished = (5, 5);
        assert_eq!(keys(rules.evaluate(&s, &l)), Vec::<String>::new(), "too few to judge");
        let mut l = look(vec![("mail", 1)]);
        l.fleet.resq_workers = 0;
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["no_workers"]);
        let mut l = look(vec![]);
        (l.fleet.redis_used, l.fleet.redis_max) = (95, 100);
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["redis_memory"]);
        let mut l = look(vec![]);
        l.fleet.stale_workers = 2;
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["dead_workers"]);
        let mut l = look(vec![]);
        l.surging_tokens.push(("t1".into(), "billing".into()));
        assert_eq!(keys(rules.evaluate(&s, &l)), vec!["token_surge:t1"]);
    }

    #[test]
    fn a_flood_is_growth_far_above_the_usual() {
        let s = AlertSettings {
            flood_min: 100,
            ..AlertSettings::default()
        };
        let mut rules = Rules::default();
        let mut depth = 0;
        for _ in 0..20 {
            depth += 20; // usual growth: 20 an interval
            assert!(rules.evaluate(&s, &look(vec![("q", depth)])).is_empty());
        }
        depth += 150; // above flood_min, but under 10x the usual 20
        assert!(rules.evaluate(&s, &look(vec![("q", depth)])).is_empty());
        depth += 5_000;
        let alerts = rules.evaluate(&s, &look(vec![("q", depth)]));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key, "flood:q");
        // A queue that appears full at once, after the first look.
        let alerts = rules.evaluate(&s, &look(vec![("q", depth), ("new", 500)]));
        assert!(alerts.iter().any(|a| a.key == "flood:new"), "{alerts:?}");
    }

    #[test]
    fn notices_fire_once_repeat_and_resolve() {
        let mut f = Firing::default();
        let t0 = Instant::now();
        let a = Alert {
            key: "tampering".into(),
            rule: "tampering",
            severity: "critical",
            summary: "x".into(),
            queue: None,
        };
        let status = |n: Vec<Notice>| n.into_iter().map(|n| n.status).collect::<Vec<_>>();
        assert_eq!(
            status(f.update(t0, Duration::from_secs(60), vec![a.clone()])),
            vec!["firing"]
        );
        assert_eq!(
            status(f.update(t0 + Duration::from_secs(10), Duration::from_secs(60), vec![a.clone()])),
            Vec::<&str>::new()
        );
        assert_eq!(
            status(f.update(t0 + Duration::from_secs(61), Duration::from_secs(60), vec![a])),
            vec!["repeat"]
        );
        assert_eq!(
            status(f.update(t0 + Duration::from_secs(62), Duration::from_secs(60), vec![])),
            vec!["resolved"]
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        let sig = signature("s3cret", "1700000000000", br#"{"a":1}"#);
        assert_eq!(
            sig,
            "sha256=8a6f992378d0d47b6fcdf1cc8d72e46ba5c789b2c9d3a538be31fe07d598ba6d"
        );
        assert_ne!(sig, signature("other", "1700000000000", br#"{"a":1}"#));
    }
}
