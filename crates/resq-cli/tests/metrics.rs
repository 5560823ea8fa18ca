//! Observability through the real binaries: a worker's own Prometheus
//! counters and histograms (`resq worker --metrics-bind`), the fleet's
//! gauges (`resq serve --metrics-bind`), scraped over HTTP with labels
//! bounded; and a job's span continuing the trace that enqueued it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::http::{request, Server};
use common::*;
use serde_json::json;

/// The address a process printed for its metrics (on stderr, in `log`).
async fn metrics_addr(log: &std::path::Path) -> String {
    for _ in 0..500 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("metrics on http://").nth(1) {
            return rest.split('/').next().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no metrics address in {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The value of the sample `name{...}` whose labels include every pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_worker_counts_jobs_by_class_queue_and_reason_and_times_them() {
    let env = Env::start().await;
    let client = env.client();
    for i in 0..3 {
        client
            .enqueue_raw("Echo", vec![json!({"message": format!("m{i}")})], "default")
            .await
            .unwrap();
    }
    client
        .enqueue_raw("Fail", vec![json!({"message": "boom"})], "default")
        .await
        .unwrap();
    // Refused before running: unsigned, and a class nobody registered (its
    // name must not become a label).
    env.store
        .push_unchecked(&[
            (
                "default".into(),
                br#"{"class":"Echo","args":[{"message":"unsigned"}]}"#.to_vec(),
            ),
            ("default".into(), br#"{"class":"Evil<script>","args":[]}"#.to_vec()),
        ])
        .await
        .unwrap();
    let log = env.dir.path().join("worker.log");
    let mut worker = env
        .resq()
        .args(["worker", "--queues", "default", "--metrics-bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = metrics_addr(&log).await;
    env.wait_until("every job is done", || async {
        env.processed().await >= 3 && env.llen("resque:failed").await == 3
    })
    .await;
    let text = request(&addr, "GET", "/metrics", &[], b"").text();
    assert_eq!(
        sample(
            &text,
            "resq_jobs_succeeded_total",
            &[("queue", "default"), ("class", "Echo")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "resq_jobs_failed_total",
            &[("class", "Fail"), ("reason", "job_failed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "resq_jobs_refused_total",
            &[("class", "Echo"), ("reason", "unsigned")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "resq_jobs_refused_total", &[("class", "unregistered")]).is_some(),
        "{text}"
    );
    assert!(!text.contains("Evil"), "a hostile class name became a label: {text}");
    assert_eq!(
        sample(&text, "resq_job_run_seconds_count", &[("class", "Echo")]),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(&text, "resq_job_wait_seconds_count", &[("queue", "default")]).unwrap_or(0.0) >= 3.0,
        "{text}"
    );
    assert!(text.contains("# HELP resq_jobs_refused_total"));
    signal(&worker, libc::SIGTERM);
    wait_child(&mut worker);
}

#[tokio::test]
async fn resq_serve_reports_the_fleet_read_from_redis() {
    let env = Env::start().await;
    let client = env.client();
    for _ in 0..4 {
        client
            .enqueue_raw("Echo", vec![json!({"message": "x"})], "mail")
            .await
            .unwrap();
    }
    let id = "rubyhost:7:mail";
    // Its last heartbeat ten minutes ago: dead, most likely.
    let old = resq::UnixMs::now().minus(Duration::from_secs(600)).to_string();
    redis::pipe()
        .sadd("resque:workers", id)
        .hset("resque:workers:heartbeat", id, old)
        .rpush(
            "resque:failed",
            json!({"payload": {"class": "A", "args": []}, "exception": "E"}).to_string(),
        )
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let log = env.dir.path().join("serve.log");
    let mut cmd = env.resq();
    cmd.env("RESQ_METRICS_BIND", "127.0.0.1:0");
    let _server = Server::start(cmd, log.clone());
    let addr = metrics_addr(&log).await;
    let text = request(&addr, "GET", "/metrics", &[], b"").text();
    assert_eq!(
        sample(&text, "resq_queue_jobs", &[("queue", "mail")]),
        Some(4.0),
        "{text}"
    );
    let age = sample(&text, "resq_queue_oldest_job_age_seconds", &[("queue", "mail")]).expect("an age");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(sample(&text, "resq_workers", &[("kind", "ruby")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "resq_failed_records", &[]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "resq_workers_stale", &[]), Some(1.0), "{text}");
    assert!(
        sample(&text, "resq_redis_memory_used_bytes", &[]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    // Each scrape reads Redis afresh.
    client
        .enqueue_raw("Echo", vec![json!({"message": "y"})], "mail")
        .await
        .unwrap();
    let text = request(&addr, "GET", "/metrics", &[], b"").text();
    assert_eq!(
        sample(&text, "resq_queue_jobs", &[("queue", "mail")]),
        Some(5.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_jobs_span_continues_the_trace_of_the_request_that_enqueued_it() {
    let env = Env::start().await;
    let (_, secret) = env.token(&["--name", "app", "--classes", "Echo", "--queues", "default"]);
    let server = Server::start(env.resq(), env.dir.path().join("serve.log"));
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = r#"{"class":"Echo","args":{"message":"traced"}}"#;
    let r = common::http::post_json(&server.addr, "/api/v1/jobs", &secret, &[("traceparent", trace)], body);
    assert_eq!(r.status, 201, "{}", r.text());
    // A malformed one is dropped, not refused.
    let r = common::http::post_json(
        &server.addr,
        "/api/v1/jobs",
        &secret,
        &[("traceparent", "00-zz-<script>-01")],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let jobs = env.lrange("resque:queue:default").await;
    assert!(jobs[0].contains(trace), "carried in the signed envelope: {}", jobs[0]);
    assert!(!jobs[1].contains("traceparent"), "{}", jobs[1]);
    let log = env.dir.path().join("worker.log");
    let mut worker = env
        .resq()
        .env("RESQ_LOG", "resq=debug")
        .args(["--log-format", "json", "worker", "--queues", "default", "--burst"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_child(&mut worker);
    let text = std::fs::read_to_string(&log).unwrap();
    let traced: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""))
        .collect();
    assert!(!traced.is_empty(), "{text}");
    assert!(
        traced
            .iter()
            .all(|l| l.contains("\"parent_id\":\"00f067aa0ba902b7\"") && l.contains("\"class\":\"Echo\"")),
        "{traced:?}"
    );
    // The other job's lines carry its id but no trace.
    assert!(
        text.lines()
            .any(|l| l.contains("\"name\":\"job\"") && !l.contains("trace_id")),
        "{text}"
    );
}
