//! The HTTP enqueue API through the real `resq serve`, over real HTTP,
//! against a private redis-server: every status code, and every attack of
//! the unauthorized-enqueueing threat model tried and seen to fail.

mod common;

use common::http::{post_json, request, Server};
use common::*;
use serde_json::{json, Value};

const JOBS: &str = "/api/v1/jobs";
const BULK: &str = "/api/v1/jobs/bulk";

fn serve(env: &Env) -> Server {
    Server::start(
        env.resq(),
        env.dir.path().join(format!("serve-{}.log", uuid::Uuid::new_v4())),
    )
}

/// `resq token create ... --json`: (id, secret).
fn token(env: &Env, args: &[&str]) -> (String, String) {
    env.token(args)
}

fn echo_token(env: &Env) -> (String, String) {
    token(
        env,
        &[
            "--name",
            "app",
            "--classes",
            "Echo,Noop",
            "--queues",
            "default,mail*",
            "--rate",
            "1000/s",
            "--burst",
            "1000",
        ],
    )
}

async fn queued(env: &Env, queue: &str) -> u64 {
    env.llen(&format!("resque:queue:{queue}")).await
}

/// The API's requests in the audit trail (`resq audit tail --json`; the
/// CLI's token changes left out), once it shows what `ready` waits for:
/// entries reach the stream from a writer task a moment after their answers.
async fn audit_until(env: &Env, limit: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut entries = Vec::new();
    for _ in 0..250 {
        let o = env.run(&["audit", "tail", "--json", "--limit", limit]);
        assert!(o.status.success(), "{}", stderr(&o));
        entries = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e.get("route").is_some())
            .collect();
        if ready(&entries) {
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the audit trail never showed what was expected: {entries:?}");
}

/// `secret` with its last character changed (so its checksum fails).
fn wrong(secret: &str) -> String {
    let last = if secret.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &secret[..secret.len() - 1])
}

/// A refusal never echoes the secret it was sent.
fn no_secret(r: &common::http::Response, secret: &str) {
    let all = format!("{:?}{}", r.headers, r.text());
    assert!(!all.contains(&secret[..20]), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_status_code_and_nothing_stored_on_a_refusal() {
    let env = Env::start().await;
    let (_, secret) = echo_token(&env);
    let (_, any_class) = token(&env, &["--name", "any", "--classes", "*", "--queues", "*"]);
    let (_, small) = token(
        &env,
        &[
            "--name",
            "small",
            "--classes",
            "Echo",
            "--queues",
            "default",
            "--max-bytes",
            "200",
        ],
    );
    let server = serve(&env);
    let a = server.addr.as_str();

    let ok = post_json(a, JOBS, &secret, &[], r#"{"class":"Echo","args":{"message":"hi"}}"#);
    assert_eq!(ok.status, 201, "{}", ok.text());
    let body = ok.json();
    assert_eq!(
        (body["class"].as_str(), body["queue"].as_str(), body["state"].as_str()),
        (Some("Echo"), Some("default"), Some("queued"))
    );
    let stored = env.lrange("resque:queue:default").await;
    assert_eq!(stored.len(), 1);
    let job: Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(job["id"], body["id"]);
    assert!(
        job["sig"]["v"].is_string() && job["mark"].is_string(),
        "signed like every other door: {job}"
    );

    let later = post_json(
        a,
        JOBS,
        &secret,
        &[],
        r#"{"class":"Echo","args":{"message":"later"},"run_in_s":60}"#,
    );
    assert_eq!((later.status, later.json()["state"].as_str()), (201, Some("scheduled")));

    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    type Case<'a> = (&'a str, String, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "another token's class",
            secret.clone(),
            r#"{"class":"Spin","args":{"ms":1}}"#.into(),
            vec![],
            403,
            "forbidden_class",
        ),
        (
            "another token's queue",
            secret.clone(),
            r#"{"class":"Echo","queue":"critical","args":{"message":"x"}}"#.into(),
            vec![],
            403,
            "forbidden_queue",
        ),
        (
            "class switching by an extra field",
            secret.clone(),
            r#"{"class":"Echo","job_class":"Spin","args":{"message":"x"}}"#.into(),
            vec![],
            422,
            "invalid_request",
        ),
        (
            "class switching by a duplicate key",
            secret.clone(),
            r#"{"class":"Echo","class":"Spin","args":{"message":"x"}}"#.into(),
            vec![],
            422,
            "invalid_request",
        ),
        (
            "an unregistered class",
            any_class.clone(),
            r#"{"class":"Kernel::Exec","args":["rm -rf /"]}"#.into(),
            vec![],
            422,
            "unregistered_class",
        ),
        (
            "arguments against the class's rules",
            secret.clone(),
            r#"{"class":"Echo","args":{"message":5}}"#.into(),
            vec![],
            422,
            "invalid_args",
        ),
        (
            "malformed JSON",
            secret.clone(),
            r#"{"class":"Echo","#.into(),
            vec![],
            400,
            "malformed_json",
        ),
        (
            "deep nesting",
            secret.clone(),
            format!(r#"{{"class":"Echo","args":{deep}}}"#),
            vec![],
            422,
            "invalid_request",
        ),
        (
            "over the token's size",
            small.clone(),
            format!(r#"{{"class":"Echo","args":{{"message":"{}"}}}}"#, "x".repeat(400)),
            vec![],
            413,
            "payload_too_large",
        ),
        (
            "a bad idempotency key",
            secret.clone(),
            r#"{"class":"Echo","args":{"message":"x"}}"#.into(),
            vec![("Idempotency-Key", "")],
            400,
            "invalid_request",
        ),
        (
            "a scheduled unique job",
            secret.clone(),
            r#"{"class":"Echo","args":{"message":"x"},"run_in_s":5,"unique_key":"k"}"#.into(),
            vec![],
            422,
            "invalid_request",
        ),
    ];
    for (what, token, body, extra, status, reason) in &cases {
        let r = post_json(a, JOBS, token, extra, body);
        let p = r.problem(*status, reason);
        no_secret(&r, token);
        eprintln!("{what}: {p}");
    }
    // The failing field is named, for a wrong type and for a broken rule.
    for (token, body, field) in [
        (&secret, r#"{"class":"Echo","args":{"message":5}}"#, "message"),
        (&any_class, r#"{"class":"Flaky","args":{"failures":11}}"#, "failures"),
    ] {
        let p = post_json(a, JOBS, token, &[], body).problem(422, "invalid_args");
        assert_eq!(p["fields"], json!([field]), "{p}");
        assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
    }

    // Wrong content type, before the body is looked at.
    let auth = format!("Bearer {secret}");
    let r = request(
        a,
        "POST",
        JOBS,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"{}",
    );
    r.problem(415, "unsupported_media_type");
    // A Content-Length over the limit is refused before the body is read:
    // the request sends none of the 10 MB it announces.
    let r = common::http::raw(
        a,
        format!("POST {JOBS} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    r.problem(413, "payload_too_large");
    // A chunked body that grows past the limit is cut off.
    let chunk = "a".repeat(4096);
    let mut chunked = format!("POST {JOBS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {small}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    chunked.push_str(&format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()));
    common::http::raw(a, chunked.as_bytes()).problem(413, "payload_too_large");
    let r = request(a, "GET", "/nowhere", &[], b"");
    r.problem(404, "not_found");

    assert_eq!(queued(&env, "default").await, 1, "only the first job was stored");
    assert_eq!(queued(&env, "critical").await, 0);
    for (path, status) in [("/healthz", 200), ("/readyz", 200)] {
        assert_eq!(request(a, "GET", path, &[], b"").status, status, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_is_bearer_only_and_says_nothing_about_why() {
    let env = Env::start().await;
    let (id, secret) = echo_token(&env);
    let (expiring_id, expiring) = token(
        &env,
        &[
            "--name",
            "short",
            "--classes",
            "Echo",
            "--queues",
            "default",
            "--expires",
            "1s",
        ],
    );
    let (revoked_id, revoked) = echo_token(&env);
    assert!(env.run(&["token", "revoke", &revoked_id]).status.success());
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;

    // A guessed secret: right shape, wrong checksum; right checksum, wrong
    // random part (another token's id); a bare string; none at all.
    let mut guessed = secret.clone();
    guessed.replace_range(20..24, if &secret[20..24] == "0000" { "1111" } else { "0000" });
    std::thread::sleep(std::time::Duration::from_millis(1100)); // the 1 s token expires
    let mut answers = Vec::new();
    for (what, headers) in [
        ("no Authorization", vec![("Content-Type", "application/json")]),
        (
            "a guessed secret",
            vec![
                ("Authorization", format!("Bearer {guessed}").leak() as &str),
                ("Content-Type", "application/json"),
            ],
        ),
        (
            "a revoked token",
            vec![
                ("Authorization", format!("Bearer {revoked}").leak() as &str),
                ("Content-Type", "application/json"),
            ],
        ),
        (
            "an expired token",
            vec![
                ("Authorization", format!("Bearer {expiring}").leak() as &str),
                ("Content-Type", "application/json"),
            ],
        ),
        (
            "Basic instead of Bearer",
            vec![
                ("Authorization", format!("Basic {secret}").leak() as &str),
                ("Content-Type", "application/json"),
            ],
        ),
        // A browser's ambient credentials: a session cookie and an Origin,
        // no bearer. The API never reads cookies, so CSRF cannot reach it.
        (
            "a cookie only",
            vec![
                (
                    "Cookie",
                    format!("session={secret}; resq_token={secret}").leak() as &str,
                ),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/json"),
            ],
        ),
    ] {
        let r = request(a, "POST", JOBS, &headers, body.as_bytes());
        let p = r.problem(401, "unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"resq\""), "{what}");
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{what}: no CORS unless configured"
        );
        no_secret(&r, &secret);
        answers.push(p["detail"].as_str().unwrap().to_string());
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "one message for every failure: {answers:?}");
    assert_eq!(queued(&env, "default").await, 0);
    // The right token works; `token list` shows each state, never a secret.
    assert_eq!(post_json(a, JOBS, &secret, &[], body).status, 201);
    let o = env.run(&["token", "list", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let status_of = |id: &str| list.iter().find(|t| t["id"] == id).unwrap()["status"].clone();
    assert_eq!(
        (status_of(&id), status_of(&revoked_id), status_of(&expiring_id)),
        (json!("active"), json!("revoked"), json!("expired"))
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("resq_"),
        "no secret listed"
    );
    // Redis holds hashes, not secrets.
    let stored: Vec<String> = redis::cmd("HVALS")
        .arg("resque:resq:api:tokens")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(stored.iter().all(|r| !r.contains(&secret[..24])));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_stops_within_a_second_on_every_replica_and_a_rotation_has_a_grace_period() {
    let env = Env::start().await;
    let (id, secret) = echo_token(&env);
    let one = serve(&env);
    let two = serve(&env);
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    for replica in [&one, &two] {
        assert_eq!(post_json(&replica.addr, JOBS, &secret, &[], body).status, 201);
    }
    let o = env.run(&["token", "rotate", &id, "--grace", "1s", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    for replica in [&one, &two] {
        assert_eq!(
            post_json(&replica.addr, JOBS, &secret, &[], body).status,
            201,
            "old secret in its grace period"
        );
        assert_eq!(post_json(&replica.addr, JOBS, &new_secret, &[], body).status, 201);
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        post_json(&one.addr, JOBS, &secret, &[], body).status,
        401,
        "old secret after its grace period"
    );
    assert!(env.run(&["token", "revoke", &id]).status.success());
    // A replica may use a record it read within the last second: a second
    // after the revocation, every replica refuses it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for replica in [&one, &two] {
        post_json(&replica.addr, JOBS, &new_secret, &[], body).problem(401, "unauthorized");
    }
    // A revoked token cannot be rotated back to life.
    let o = env.run(&["token", "rotate", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A token unused in that second is refused at once: nothing cached.
    let (other, other_secret) = echo_token(&env);
    assert!(env.run(&["token", "revoke", &other]).status.success());
    post_json(&one.addr, JOBS, &other_secret, &[], body).problem(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentication_is_limited_per_client_ip_and_a_forged_forwarded_for_changes_nothing() {
    let env = Env::start().await;
    env.append_config("[api]\nauth_failures_per_minute = 3\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    let bad = wrong(&secret);
    for n in 0..3 {
        // Each guess claims another client address: from an untrusted peer
        // the header is ignored, so they all count against 127.0.0.1.
        let forged = format!("10.0.0.{n}");
        post_json(a, JOBS, &bad, &[("X-Forwarded-For", &forged)], body).problem(401, "unauthorized");
    }
    let r = post_json(a, JOBS, &bad, &[("X-Forwarded-For", "10.9.9.9")], body);
    r.problem(429, "rate_limited");
    assert!(
        r.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{:?}",
        r.headers
    );
    // Past the limit, even a right token waits: guesses get no answer.
    post_json(a, JOBS, &secret, &[], body).problem(429, "rate_limited");
    // The audit trail shows the socket's address, not the forged ones.
    let entries = audit_until(&env, "10", |e| e.len() >= 5).await;
    assert!(entries.iter().all(|e| e["client_ip"] == "127.0.0.1"), "{entries:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_client() {
    let env = Env::start().await;
    env.append_config("[api]\ntrusted_proxies = [\"127.0.0.1\"]\nauth_failures_per_minute = 2\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    let bad = wrong(&secret);
    for _ in 0..2 {
        post_json(a, JOBS, &bad, &[("X-Forwarded-For", "203.0.113.7")], body).problem(401, "unauthorized");
    }
    post_json(a, JOBS, &bad, &[("X-Forwarded-For", "203.0.113.7")], body).problem(429, "rate_limited");
    // Another client behind the same proxy has its own budget; the left
    // entries of the header (which the client writes) are not believed.
    let r = post_json(
        a,
        JOBS,
        &secret,
        &[("X-Forwarded-For", "203.0.113.7, 198.51.100.2")],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let entries = audit_until(&env, "10", |e| e.len() >= 4).await;
    let last = entries.last().unwrap();
    assert_eq!(last["client_ip"], "198.51.100.2");
    assert_eq!(last["outcome"], "accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_per_token_class_and_queue_are_shared_by_replicas() {
    let env = Env::start().await;
    env.append_config("[api.class_rates]\nNoop = \"2/h\"\n");
    let (_, slow) = token(
        &env,
        &[
            "--name",
            "slow",
            "--classes",
            "Echo,Noop",
            "--queues",
            "default",
            "--rate",
            "1/h",
            "--burst",
            "3",
        ],
    );
    let (_, other) = token(
        &env,
        &[
            "--name",
            "other",
            "--classes",
            "Echo,Noop",
            "--queues",
            "default",
            "--rate",
            "1000/s",
            "--burst",
            "1000",
        ],
    );
    let one = serve(&env);
    let two = serve(&env);
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    // Three at once on two replicas, then the fourth is refused: one budget.
    for addr in [&one.addr, &two.addr, &one.addr] {
        let r = post_json(addr, JOBS, &slow, &[], body);
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.header("ratelimit-remaining").is_some());
    }
    let r = post_json(&two.addr, JOBS, &slow, &[], body);
    let p = r.problem(429, "rate_limited");
    assert!(p["detail"].as_str().unwrap().contains("token slow"), "{p}");
    assert!(
        r.header("retry-after").unwrap().parse::<u64>().unwrap() > 60,
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // Another token is not slowed by it.
    assert_eq!(post_json(&one.addr, JOBS, &other, &[], body).status, 201);
    // The class limit holds across tokens: two Noop jobs, then none.
    let noop = r#"{"class":"Noop","args":{}}"#;
    assert_eq!(post_json(&one.addr, JOBS, &other, &[], noop).status, 201);
    assert_eq!(post_json(&two.addr, JOBS, &other, &[], noop).status, 201);
    let p = post_json(&one.addr, JOBS, &other, &[], noop).problem(429, "rate_limited");
    assert!(p["detail"].as_str().unwrap().contains("class Noop"), "{p}");
    // A batch larger than a limit's burst could never pass: 422, not 429.
    let five: Vec<Value> = (0..5).map(|_| json!({"class":"Echo","args":{"message":"x"}})).collect();
    let p =
        post_json(&one.addr, BULK, &slow, &[], &json!({ "jobs": five }).to_string()).problem(422, "invalid_request");
    assert!(p["detail"].as_str().unwrap().contains("could never pass"), "{p}");
    // A refused bulk counts nothing: the limits are all or nothing.
    let bulk = json!({"jobs": [{"class":"Echo","args":{"message":"a"}}, {"class":"Noop","args":{}}]}).to_string();
    post_json(&one.addr, BULK, &other, &[], &bulk).problem(429, "rate_limited");
    assert_eq!(post_json(&one.addr, JOBS, &other, &[], body).status, 201);
    assert_eq!(queued(&env, "default").await, 3 + 1 + 2 + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_stores_every_job_or_none() {
    let env = Env::start().await;
    env.append_config("[api]\nmax_bulk_jobs = 100\n");
    // Caps are read (and cached a second) by the server: set before it starts.
    assert!(env.run(&["queue", "cap", "mail", "10"]).status.success());
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let jobs: Vec<Value> = (0..50)
        .map(|i| json!({"class":"Echo","args":{"message":format!("m{i}")}}))
        .collect();
    let r = post_json(a, BULK, &secret, &[], &json!({ "jobs": jobs }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["count"], 50);
    assert_eq!(queued(&env, "default").await, 50);
    // One bad job anywhere: nothing of the batch is stored, and it is named.
    for (bad, status, reason) in [
        (json!({"class":"Echo","args":{"message":7}}), 422, "invalid_args"),
        (json!({"class":"Spin","args":{"ms":1}}), 403, "forbidden_class"),
        (
            json!({"class":"Echo","queue":"critical","args":{"message":"x"}}),
            403,
            "forbidden_queue",
        ),
        (
            json!({"class":"Echo","args":{"message":"x"},"run_in_s":5}),
            422,
            "invalid_request",
        ),
    ] {
        let mut batch = jobs.clone();
        batch.insert(30, bad);
        let p = post_json(a, BULK, &secret, &[], &json!({ "jobs": batch }).to_string()).problem(status, reason);
        assert_eq!(p["index"], 30, "{p}");
    }
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"class":"Echo","args":{"message":"x"}}))
        .collect();
    post_json(a, BULK, &secret, &[], &json!({ "jobs": too_many }).to_string()).problem(422, "invalid_request");
    post_json(a, BULK, &secret, &[], r#"{"jobs":[]}"#).problem(422, "invalid_request");
    assert_eq!(queued(&env, "default").await, 50);
    // A queue at its cap refuses the whole batch (503, Retry-After).
    let mail: Vec<Value> = (0..11)
        .map(|_| json!({"class":"Echo","queue":"mail","args":{"message":"x"}}))
        .collect();
    let r = post_json(a, BULK, &secret, &[], &json!({ "jobs": mail }).to_string());
    r.problem(503, "queue_full");
    assert!(r.header("retry-after").is_some());
    assert_eq!(queued(&env, "mail").await, 0);
    let r = post_json(a, BULK, &secret, &[], &json!({ "jobs": &mail[..10] }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(queued(&env, "mail").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_returns_the_first_answer_and_refuses_another_body() {
    let env = Env::start().await;
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"pay invoice 7"}}"#;
    let key = [("Idempotency-Key", "invoice-7")];
    let first = post_json(a, JOBS, &secret, &key, body);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post_json(a, JOBS, &secret, &key, body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["id"], first.json()["id"]);
    post_json(
        a,
        JOBS,
        &secret,
        &key,
        r#"{"class":"Echo","args":{"message":"pay invoice 8"}}"#,
    )
    .problem(422, "idempotency_conflict");
    assert_eq!(queued(&env, "default").await, 1);
    // Another key is another request.
    assert_eq!(
        post_json(a, JOBS, &secret, &[("Idempotency-Key", "invoice-8")], body).status,
        201
    );
    // Bulk too.
    let bulk = r#"{"jobs":[{"class":"Echo","args":{"message":"a"}},{"class":"Echo","args":{"message":"b"}}]}"#;
    let one = post_json(a, BULK, &secret, &[("Idempotency-Key", "batch-1")], bulk);
    let two = post_json(a, BULK, &secret, &[("Idempotency-Key", "batch-1")], bulk);
    assert_eq!((one.status, two.status), (201, 200));
    assert_eq!(one.json()["ids"], two.json()["ids"]);
    assert_eq!(queued(&env, "default").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_over_its_memory_watermark_answers_503_until_it_drains() {
    let env = Env::start().await;
    // A watermark at half of maxmemory, and a maxmemory half as much again
    // as what is used: over the watermark, far from Redis's own refusal.
    env.append_config("[api]\nmemory_watermark = 0.5\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    assert_eq!(post_json(a, JOBS, &secret, &[], body).status, 201);
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + used / 2)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let r = post_json(a, JOBS, &secret, &[], body);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = refused.expect("503 once the watcher reads the memory");
    r.problem(503, "redis_memory");
    assert!(r.header("retry-after").is_some());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let mut accepted = false;
    for _ in 0..100 {
        if post_json(a, JOBS, &secret, &[], body).status == 201 {
            accepted = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(accepted, "accepted again below the watermark");
}

/// `redis.wait_replicas = 1` and no replica: each enqueue is stored on the
/// master, then answered 503 `not_replicated` (not a refusal: the job is
/// queued), and an Idempotency-Key sent with it stays held.
#[tokio::test(flavor = "multi_thread")]
async fn an_enqueue_no_replica_confirmed_is_503_not_replicated_and_stays_stored() {
    let env = Env::start().await;
    env.append_config("[redis]\nwait_replicas = 1\nwait_timeout_ms = 100\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    let r = post_json(a, JOBS, &secret, &[], body);
    r.problem(503, "not_replicated");
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("0 of the 1 replica"), "{}", r.text());
    assert_eq!(queued(&env, "default").await, 1, "stored on the master");
    let keyed = [("Idempotency-Key", "order-1")];
    post_json(a, JOBS, &secret, &keyed, body).problem(503, "not_replicated");
    post_json(a, JOBS, &secret, &keyed, body).problem(409, "idempotency_in_progress");
    assert_eq!(queued(&env, "default").await, 2);
    let bulk = r#"{"jobs":[{"class":"Echo","args":{"message":"a"}},{"class":"Echo","args":{"message":"b"}}]}"#;
    post_json(a, BULK, &secret, &[], bulk).problem(503, "not_replicated");
    assert_eq!(queued(&env, "default").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_surge_above_a_tokens_baseline_throttles_it_and_raises_an_alert() {
    let env = Env::start().await;
    env.append_config(
        "[api]\nsurge_window_s = 1\nsurge_min_windows = 2\nsurge_multiple = 4\nsurge_floor = 1\nsurge_throttle_s = 60\n",
    );
    let (id, secret) = echo_token(&env);
    let (_, calm) = token(&env, &["--name", "calm", "--classes", "Echo", "--queues", "default"]);
    let server = serve(&env);
    let a = server.addr.as_str();
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    // Its usual rate: one job a window, for three windows.
    for _ in 0..3 {
        assert_eq!(post_json(a, JOBS, &secret, &[], body).status, 201);
        std::thread::sleep(std::time::Duration::from_millis(1050));
    }
    // Then forty at once: the surge is seen within the window.
    let mut throttled = None;
    for _ in 0..40 {
        let r = post_json(a, JOBS, &secret, &[], body);
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("throttled during the surge");
    r.problem(429, "throttled");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 30);
    // Other tokens go on.
    assert_eq!(post_json(a, JOBS, &calm, &[], body).status, 201);
    // The alert: in the audit trail and the log.
    let entries = audit_until(&env, "100", |e| e.iter().any(|e| e["outcome"] == "alert")).await;
    let alerts: Vec<&Value> = entries.iter().filter(|e| e["outcome"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["token_id"], id.as_str());
    assert!(
        server.log_text().contains("\"target\":\"resq::alert\""),
        "{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_audited_in_the_stream_and_the_json_log() {
    let env = Env::start().await;
    let (id, secret) = echo_token(&env);
    let mut server = serve(&env);
    let a = server.addr.clone();
    let ok = post_json(
        &a,
        JOBS,
        &secret,
        &[],
        r#"{"class":"Echo","queue":"mail.out","args":{"message":"x"}}"#,
    );
    assert_eq!(ok.status, 201);
    post_json(&a, JOBS, &secret, &[], r#"{"class":"Spin","args":{"ms":1}}"#).problem(403, "forbidden_class");
    post_json(&a, JOBS, "nope", &[], "{}").problem(401, "unauthorized");
    let entries = audit_until(&env, "20", |e| e.len() >= 3).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    let e = &entries[0];
    for field in [
        "at_ms",
        "request_id",
        "client_ip",
        "token_id",
        "token_name",
        "class",
        "queue",
        "job_id",
        "outcome",
        "status",
        "reason",
    ] {
        assert!(e.get(field).is_some(), "{field} in {e}");
    }
    assert_eq!(
        (
            e["outcome"].as_str(),
            e["token_id"].as_str(),
            e["class"].as_str(),
            e["queue"].as_str()
        ),
        (Some("accepted"), Some(id.as_str()), Some("Echo"), Some("mail.out"))
    );
    assert_eq!(e["job_id"], ok.json()["id"]);
    assert_eq!(e["request_id"].as_str(), ok.header("x-request-id"));
    assert_eq!(
        (entries[1]["outcome"].as_str(), entries[1]["reason"].as_str()),
        (Some("refused"), Some("forbidden_class"))
    );
    assert_eq!(
        (entries[2]["reason"].as_str(), entries[2]["token_id"].as_str()),
        (Some("unauthorized"), Some(""))
    );
    assert!(
        !serde_json::to_string(&entries).unwrap().contains("resq_"),
        "no secret in the trail"
    );
    // Text form too.
    let o = env.run(&["audit", "tail"]);
    assert!(
        stdout(&o).contains("accepted") && stdout(&o).contains("forbidden_class"),
        "{}",
        stdout(&o)
    );
    // TERM: the server finishes and exits cleanly; each request was one
    // JSON log line under resq::audit.
    assert!(server.stop().success());
    let log = server.log_text();
    let audit_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "resq::audit")
        .collect();
    assert_eq!(audit_lines.len(), 3, "{log}");
    assert_eq!(audit_lines[0]["fields"]["outcome"], "accepted");
    assert!(!log.contains(&secret[..24]));
}

#[tokio::test]
async fn plain_http_off_loopback_needs_an_explicit_opt_in() {
    let env = Env::start().await;
    let o = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-plain-http"), "{}", stderr(&o));
    env.append_config("[api]\nmax_bulk_jobs = 0\n");
    let o = env.run(&["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("api.max_bulk_jobs must be between"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_from_a_pem_certificate_and_key() {
    let env = Env::start().await;
    let pki = resq_test_support::Pki::generate();
    env.append_config(&format!(
        "[api]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let body = r#"{"class":"Echo","args":{"message":"over tls"}}"#;
    let request = format!(
        "POST {JOBS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = common::http::raw_tls(&server.addr, &pki.path("ca.pem"), request.as_bytes()).expect("TLS handshake");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(queued(&env, "default").await, 1);
    // Plain HTTP to the TLS port gets no answer a client could take for one.
    let plain = std::panic::catch_unwind(|| common::http::raw(&server.addr, request.as_bytes()));
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 201));
    // A client that trusts another CA refuses the server.
    let other = resq_test_support::Pki::generate();
    assert!(common::http::raw_tls(&server.addr, &other.path("ca.pem"), request.as_bytes()).is_err());
    assert_eq!(queued(&env, "default").await, 1);
    // Half a TLS pair is refused at start, naming the keys, not the files' text.
    let env2 = Env::start().await;
    env2.append_config(&format!("[api]\ntls_cert_file = {:?}\n", pki.path("server.pem")));
    let o = env2.run(&["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("api.tls_cert_file and api.tls_key_file go together"),
        "{}",
        stderr(&o)
    );
    let env3 = Env::start().await;
    env3.append_config(&format!(
        "[api]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("ca.pem")
    ));
    let o = env3.run(&["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("api.tls_key_file: no PEM private key"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_only_for_listed_origins_and_never_with_credentials() {
    let env = Env::start().await;
    env.append_config("[api]\ncors_origins = [\"https://app.example.com\"]\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let preflight = |origin: &str| {
        request(
            a,
            "OPTIONS",
            JOBS,
            &[("Origin", origin), ("Access-Control-Request-Method", "POST")],
            b"",
        )
    };
    let ok = preflight("https://app.example.com");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(ok.header("access-control-allow-credentials").is_none());
    let evil = preflight("https://evil.example");
    assert!(
        evil.header("access-control-allow-origin").is_none(),
        "{:?}",
        evil.headers
    );
    let body = r#"{"class":"Echo","args":{"message":"x"}}"#;
    let r = post_json(a, JOBS, &secret, &[("Origin", "https://app.example.com")], body);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    let r = post_json(a, JOBS, &secret, &[("Origin", "https://evil.example")], body);
    assert!(r.header("access-control-allow-origin").is_none());
}

/// Every command's count of calls (INFO commandstats).
async fn command_calls(env: &Env) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_string(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// Redis's count of calls of one command (INFO commandstats).
async fn calls(env: &Env, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tracked_job_shows_each_state_to_its_own_token_only() {
    let env = Env::start().await;
    let (_, secret) = token(
        &env,
        &[
            "--name",
            "app",
            "--classes",
            "Echo,Fail,Flaky",
            "--queues",
            "default,later",
            "--rate",
            "1000/s",
            "--burst",
            "1000",
        ],
    );
    let (_, stranger) = echo_token(&env);
    let server = serve(&env);
    let a = server.addr.as_str();
    let state = |id: &str, who: &str| {
        let r = request(
            a,
            "GET",
            &format!("{JOBS}/{id}"),
            &[("Authorization", &format!("Bearer {who}"))],
            b"",
        );
        (r.status, if r.status == 200 { r.json() } else { Value::Null })
    };
    let enqueue = |body: Value| {
        let r = post_json(a, JOBS, &secret, &[], &body.to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    };
    let ok = enqueue(json!({"class":"Echo","args":{"message":"x"},"track":true}));
    let fails = enqueue(json!({"class":"Fail","args":{"message":"boom"},"track":true}));
    let flaky = enqueue(json!({"class":"Flaky","args":{"failures":1},"track":true}));
    let later = enqueue(json!({"class":"Echo","queue":"later","args":{"message":"x"},"run_in_s":3600,"track":true}));
    let short = enqueue(json!({"class":"Echo","queue":"later","args":{"message":"x"},"ttl_s":1,"track":true}));
    let untracked = enqueue(json!({"class":"Echo","args":{"message":"x"}}));
    assert_eq!(state(&ok, &secret).1["state"], "queued");
    assert_eq!(state(&later, &secret).1["state"], "scheduled");
    // Another token, an untracked job, a made-up id: the same 404.
    for (id, who) in [
        (&ok, &stranger),
        (&untracked, &secret),
        (&"01a23508-0000-7000-8000-000000000000".to_string(), &secret),
    ] {
        let r = request(
            a,
            "GET",
            &format!("{JOBS}/{id}"),
            &[("Authorization", &format!("Bearer {who}"))],
            b"",
        );
        r.problem(404, "not_found");
    }
    request(a, "GET", &format!("{JOBS}/{ok}"), &[], b"").problem(401, "unauthorized");
    // The worker runs the default queue: success, failure, a retry.
    let o = env.run(&["worker", "--queues", "default", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (status, s) = state(&ok, &secret);
    assert_eq!(
        (status, s["state"].as_str(), s["class"].as_str(), s["queue"].as_str()),
        (200, Some("succeeded"), Some("Echo"), Some("default"))
    );
    let f = state(&fails, &secret).1;
    assert_eq!(
        (f["state"].as_str(), f["error"].as_str()),
        (Some("failed"), Some("boom"))
    );
    let r = state(&flaky, &secret).1;
    assert_eq!(
        (r["state"].as_str(), r["attempt"].as_u64()),
        (Some("retrying"), Some(0)),
        "{r}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        state(&short, &secret).1["state"],
        "expired",
        "past its lifetime before it ran"
    );
    assert_eq!(state(&later, &secret).1["state"], "scheduled");
    // What tracking costs: one small hash per tracked job (untracked jobs
    // write none), one write a step.
    let tracked_keys = env.keys("resque:resq:track:*").await;
    assert_eq!(tracked_keys.len(), 5, "{tracked_keys:?}");
    // Enqueueing: the commands of 10 untracked jobs, then of 10 tracked.
    let snapshot = || async { command_calls(&env).await };
    let s0 = snapshot().await;
    for _ in 0..10 {
        enqueue(json!({"class":"Echo","args":{"message":"x"}}));
    }
    let s1 = snapshot().await;
    for _ in 0..10 {
        enqueue(json!({"class":"Echo","args":{"message":"x"},"track":true}));
    }
    let s2 = snapshot().await;
    let mut extra = std::collections::BTreeMap::new();
    for (command, n2) in &s2 {
        let plain = s1.get(command).copied().unwrap_or(0) - s0.get(command).copied().unwrap_or(0);
        let tracked = n2 - s1.get(command).copied().unwrap_or(0);
        if tracked != plain {
            extra.insert(command.clone(), tracked as i64 - plain as i64);
        }
    }
    // Not the enqueues': INFO (this snapshot) and HKEYS (the server's
    // once-a-second read of the queue caps) fall in either window, and
    // audit entries (one XADD each, both kinds alike) are written a moment
    // after their answers, so one may land in the next window.
    extra.remove("info");
    extra.remove("hkeys");
    extra.remove("xadd");
    eprintln!("10 tracked enqueues cost beyond 10 untracked: {extra:?}");
    assert_eq!(
        extra,
        [("hset".to_string(), 10), ("pexpireat".to_string(), 10)]
            .into_iter()
            .collect()
    );
    // Running them: two more writes each (running, succeeded).
    let before = (calls(&env, "hset").await, calls(&env, "pexpireat").await);
    assert!(env.run(&["worker", "--queues", "default", "--burst"]).status.success());
    let run = (
        calls(&env, "hset").await - before.0,
        calls(&env, "pexpireat").await - before.1,
    );
    eprintln!("a burst worker running 20 jobs, 10 tracked: {run:?} HSET/PEXPIREAT");
    assert!(run.0 >= 20 && run.1 >= 20, "{run:?}");
    let one: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&tracked_keys[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    eprintln!("a tracked job's record: {one} bytes");
    assert!(one < 512, "{one}");
}

#[tokio::test(flavor = "multi_thread")]
async fn term_lets_a_request_in_flight_finish_and_accepts_no_new_one() {
    use std::io::{Read, Write};
    let env = Env::start().await;
    let (_, secret) = echo_token(&env);
    let mut server = serve(&env);
    let body = r#"{"class":"Echo","args":{"message":"in flight"}}"#;
    // Headers and half the body, then TERM, then the rest.
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {JOBS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The listener is closed: a new connection is refused.
    assert!(
        std::net::TcpStream::connect(&server.addr).is_err(),
        "no new connections after TERM"
    );
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = wait_child(&mut server.child);
    assert!(status.success(), "{}", server.log_text());
    assert_eq!(queued(&env, "default").await, 1);
    // Its audit entry was written before the exit.
    let entries = audit_until(&env, "10", |e| !e.is_empty()).await;
    assert_eq!(entries[0]["outcome"], "accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_trickles_its_headers_is_cut_off_and_others_are_served() {
    use std::io::{Read, Write};
    let env = Env::start().await;
    env.append_config("[api]\nheader_timeout_s = 1\nmax_connections = 4\n");
    let (_, secret) = echo_token(&env);
    let server = serve(&env);
    // Four connections that start a request and never finish its headers
    // (a slowloris): they hold every slot, then the header timeout frees them.
    let mut slow: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
            s.write_all(format!("POST {JOBS} HTTP/1.1\r\nHost: x\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();
    // Each is closed by the server (an answer or not, then end of stream),
    // not left open for as long as the client likes.
    for s in &mut slow {
        let mut rest = Vec::new();
        // Ok: the server ended the stream (a timeout here would be Err).
        assert!(
            s.read_to_end(&mut rest).is_ok(),
            "the server kept a slow connection open"
        );
        let text = String::from_utf8_lossy(&rest);
        assert!(!text.contains("201"), "{text}");
    }
    // The slots are free again: a normal request is served.
    let r = post_json(
        &server.addr,
        JOBS,
        &secret,
        &[],
        r#"{"class":"Echo","args":{"message":"x"}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Out-of-range settings are refused at start.
    let env2 = Env::start().await;
    env2.append_config("[api]\nmax_connections = 0\n");
    let o = env2.run(&["serve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("api.max_connections must be between"),
        "{}",
        stderr(&o)
    );
}
