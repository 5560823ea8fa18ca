//! The dashboard through the real `resq serve`, over real HTTP, against a
//! private redis-server: logins, roles, form tokens, cross-site posts,
//! headers, read-only mode, masking, Ruby's records, the audit trail and
//! the work a page costs. (The real-browser tests are in `browser.rs`.)

mod common;

use common::http::{request, Server};
use common::web::*;
use common::*;
use serde_json::json;

fn serve(env: &Env) -> Server {
    // No sampling while a test counts commands.
    env.append_config("[dashboard]\nsample_interval_s = 3600\n");
    Server::start(
        env.resq(),
        env.dir.path().join(format!("serve-{}.log", uuid::Uuid::new_v4())),
    )
}

async fn enqueue_noop(env: &Env, queue: &str, n: usize) {
    let client = env.client();
    for _ in 0..n {
        client
            .enqueue_raw("Noop", vec![json!({"pad": ""})], queue)
            .await
            .unwrap();
    }
}

async fn paused(env: &Env, queue: &str) -> bool {
    redis::cmd("SISMEMBER")
        .arg("resque:resq:paused-queues")
        .arg(queue)
        .query_async(&mut env.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn with_no_user_the_login_page_says_how_to_add_one_and_nothing_logs_in() {
    let env = Env::start().await;
    let server = serve(&env);
    let page = request(&server.addr, "GET", "/login", &[], b"");
    assert!(
        page.text().contains("resq user add NAME --role admin"),
        "{}",
        page.text()
    );
    for (name, password) in [("admin", "admin"), ("admin", ""), ("resq", "resq")] {
        let r = try_login(&server.addr, name, password, None);
        assert_ne!(r.status, 303, "{name}/{password} logged in");
        assert!(set_cookie(&r, "resq-session").is_none());
    }
    // Every page sends an anonymous browser to the login page.
    for path in ["/", "/queues", "/failed", "/users", "/stats"] {
        let r = request(&server.addr, "GET", path, &[], b"");
        assert_eq!((r.status, r.header("location")), (303, Some("/login")), "{path}");
    }
}

#[tokio::test]
async fn login_rotates_the_session_id_and_logout_ends_the_session() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let server = serve(&env);
    // A fixation attempt: the browser arrives with a session id an attacker chose.
    let r = try_login(&server.addr, "ada", PASSWORD, Some("resq-session=attacker-chosen"));
    assert_eq!(r.status, 303, "{}", r.text());
    let id = set_cookie(&r, "resq-session").unwrap();
    assert_ne!(id, "attacker-chosen");
    assert!(id.len() >= 40);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("resq-session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"),
        "{cookie}"
    );
    // Redis holds the hash of the id, never the id.
    assert!(env.keys(&format!("*{id}*")).await.is_empty());
    assert_eq!(env.keys("resque:resq:web:session:*").await.len(), 1);

    let s = Session::login(&server, "ada");
    assert_eq!(s.get("/").status, 200);
    let out = s.post("/logout", &[]);
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    let after = s.get("/");
    assert_eq!((after.status, after.header("location")), (303, Some("/login")));
}

#[tokio::test]
async fn every_failed_login_gets_one_answer_and_a_name_locks_out() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let server = serve(&env);
    let unknown = try_login(&server.addr, "nobody", PASSWORD, None);
    let wrong = try_login(&server.addr, "ada", "wrong password here", None);
    assert_eq!(unknown.status, wrong.status);
    let message = |r: &common::http::Response| {
        let t = r.text();
        let start = t.find("id=\"message\"").expect("a message");
        t[start..start + 120].to_string()
    };
    assert_eq!(message(&unknown), message(&wrong));
    // Four more wrong passwords: the name is locked, the right one is refused too.
    for _ in 0..4 {
        assert_eq!(try_login(&server.addr, "ada", "wrong password here", None).status, 401);
    }
    let locked = try_login(&server.addr, "ada", PASSWORD, None);
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert_eq!(message(&locked), message(&wrong));
    assert!(set_cookie(&locked, "resq-session").is_none());
    // A name nobody has locks out the same way (nothing tells them apart).
    for _ in 0..5 {
        try_login(&server.addr, "nobody", "x", None);
    }
    assert_eq!(try_login(&server.addr, "nobody", PASSWORD, None).status, 429);
}

#[tokio::test]
async fn each_role_does_what_it_may_and_nothing_more() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    add_user(&env, "ola", "operator");
    add_user(&env, "ann", "admin");
    enqueue_noop(&env, "default", 1).await;
    let server = serve(&env);
    let viewer = Session::login(&server, "vic");
    let operator = Session::login(&server, "ola");
    let admin = Session::login(&server, "ann");

    // A viewer's forged post, with its own valid token: refused on the server.
    let r = viewer.post("/queues/default/pause", &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!paused(&env, "default").await);
    assert!(
        !viewer.get("/queues/default").text().contains("/pause\""),
        "a viewer sees no action forms"
    );
    assert_eq!(viewer.get("/users").status, 403);

    let r = operator.post("/queues/default/pause", &[]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(paused(&env, "default").await);
    let r = operator.post(
        "/users/add",
        &[("name", "eve"), ("role", "admin"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 403);
    assert_eq!(operator.get("/tokens").status, 403);

    let r = admin.post(
        "/users/add",
        &[("name", "eve"), ("role", "viewer"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(admin.get("/users").text().contains("eve"));
    // Promoting ola to viewer ends ola's session at once.
    assert_eq!(admin.post("/users/ola/role", &[("role", "viewer")]).status, 303);
    assert_eq!(operator.get("/").header("location"), Some("/login"));
}

#[tokio::test]
async fn a_post_needs_the_sessions_token_and_this_site_and_get_changes_nothing() {
    let env = Env::start().await;
    add_user(&env, "ola", "operator");
    enqueue_noop(&env, "default", 1).await;
    let server = serve(&env);
    let s = Session::login(&server, "ola");
    let refused = [
        s.post("/queues/default/pause", &[("csrf", "")]),
        s.post(
            "/queues/default/pause",
            &[("csrf", "forged-token-of-the-right-length-000000000000")],
        ),
        // Right token, but the browser says another site sent it.
        s.post_with("/queues/default/pause", &[], &[("Sec-Fetch-Site", "cross-site")]),
        s.post_with("/queues/default/pause", &[], &[("Sec-Fetch-Site", "same-site")]),
        s.post_with("/queues/default/pause", &[], &[("Origin", "http://evil.example")]),
        s.post_with("/queues/default/pause", &[], &[("Origin", "null")]),
    ];
    for r in &refused {
        assert_eq!(r.status, 403, "{}", r.text());
    }
    // A login form posted from elsewhere is refused too.
    let (token, cookie) = login_form(&server.addr);
    let body = form(&[("name", "ola"), ("password", PASSWORD), ("token", &token)]);
    let r = request(
        &server.addr,
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
    // No state change over GET: an action's route answers GET with 405.
    for path in ["/queues/default/pause", "/failed/clear", "/failed/bulk", "/logout"] {
        assert_eq!(s.get(path).status, 405, "{path}");
    }
    assert!(!paused(&env, "default").await);
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_are_never_cached() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    for path in ["/", "/login", "/queues", "/failed", "/no-such-page-here/x"] {
        let r = if path == "/login" {
            request(&server.addr, "GET", path, &[], b"")
        } else {
            s.get(path)
        };
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        if path.starts_with("/no-such") {
            continue; // the API's 404 (problem+json) answers unknown paths
        }
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        // No inline script or style anywhere: the only script is none at all.
        let html = r.text();
        assert!(!html.contains("<script") && !html.contains("style="), "{path}");
    }
}

#[tokio::test]
async fn read_only_mode_has_no_forms_and_no_action_routes() {
    let env = Env::start().await;
    add_user(&env, "ann", "admin");
    enqueue_noop(&env, "default", 2).await;
    env.append_config("[dashboard]\nread_only = true\n");
    let server = Server::start(env.resq(), env.dir.path().join("serve.log"));
    let s = Session::login(&server, "ann");
    for path in [
        "/",
        "/queues/default",
        "/failed",
        "/users",
        "/tokens",
        "/cron",
        "/scheduled",
    ] {
        let html = s.get(path).text();
        let posts: Vec<&str> = html
            .match_indices("method=\"post\"")
            .map(|(i, _)| &html[i..i + 40])
            .collect();
        assert!(posts.iter().all(|p| p.contains("/logout")), "{path}: {posts:?}");
    }
    for path in ["/queues/default/pause", "/failed/clear", "/users/add"] {
        let r = s.post(path, &[("name", "x"), ("role", "admin"), ("password", PASSWORD)]);
        assert!(r.status == 404 || r.status == 405, "{path}: {}", r.status);
    }
    assert!(!paused(&env, "default").await);
}

#[tokio::test]
async fn secret_looking_arguments_are_masked_and_encrypted_ones_never_shown() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    let plain = json!({"class": "Signup", "args": [{"email": "a@example.com", "password": "hunter2-secret-pw", "nested": {"api_token": "tok-123-secret"}}]});
    let sealed = json!({"class": "Payroll", "args": [], "enc": {"kid": "k1", "alg": "XC20P", "nonce": "bm9uY2U", "ct": "Y2lwaGVydGV4dC1ieXRlcw"}});
    for job in [&plain, &sealed] {
        redis::pipe()
            .rpush("resque:queue:default", job.to_string())
            .sadd("resque:queues", "default")
            .query_async::<()>(&mut env.conn())
            .await
            .unwrap();
    }
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let html = s.get("/queues/default").text();
    assert!(html.contains("a@example.com"), "{html}");
    for secret in ["hunter2-secret-pw", "tok-123-secret", "Y2lwaGVydGV4dC1ieXRlcw"] {
        assert!(!html.contains(secret), "{secret} shown");
    }
    assert!(html.contains("[masked]") && html.contains("arguments encrypted"));
}

#[tokio::test]
async fn ruby_workers_queues_and_failures_appear_as_resque_wrote_them() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    // What Resque 3.0 writes for a worker running a job, and for a failure.
    let id = "rubyhost:4242:mail,default";
    let working =
        json!({"queue": "mail", "run_at": "2026-12-02T06:00:00Z", "payload": {"class": "Mailer", "args": [7]}});
    let failure = json!({"failed_at": "2026/12/02 06:01:00 UTC", "payload": {"class": "Mailer", "args": [7]},
        "exception": "Net::ReadTimeout", "error": "execution expired", "backtrace": ["app/mailer.rb:3:in `deliver'"],
        "worker": id, "queue": "mail"});
    redis::pipe()
        .sadd("resque:workers", id)
        .set(format!("resque:worker:{id}"), working.to_string())
        .set(format!("resque:worker:{id}:started"), "2026-12-02 05:00:00 +0000")
        .set(format!("resque:stat:processed:{id}"), 12)
        .rpush("resque:failed", failure.to_string())
        .rpush("resque:queue:mail", json!({"class": "Mailer", "args": [8]}).to_string())
        .sadd("resque:queues", "mail")
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let workers = s.get("/workers").text();
    assert!(
        workers.contains("rubyhost") && workers.contains("Ruby") && workers.contains("Mailer"),
        "{workers}"
    );
    let working = s.get("/working").text();
    assert!(
        working.contains("rubyhost:4242:mail,default") && working.contains("[7]"),
        "{working}"
    );
    let failed = s.get("/failed").text();
    assert!(
        failed.contains("Net::ReadTimeout") && failed.contains("execution expired"),
        "{failed}"
    );
    let queues = s.get("/queues").text();
    assert!(queues.contains("Ruby serves it"), "{queues}");
    let queue = s.get("/queues/mail").text();
    assert!(queue.contains("Mailer") && queue.contains("[8]"), "{queue}");
}

#[tokio::test]
async fn every_action_is_audited_with_its_user() {
    let env = Env::start().await;
    add_user(&env, "ola", "operator");
    enqueue_noop(&env, "default", 1).await;
    let server = serve(&env);
    let s = Session::login(&server, "ola");
    assert_eq!(s.post("/queues/default/pause", &[]).status, 303);
    assert_eq!(s.post("/queues/default/cap", &[("cap", "50")]).status, 303);
    let mut text = String::new();
    for _ in 0..200 {
        text = stdout(&env.run(&["audit", "tail", "--json", "--limit", "50"]));
        if text.contains("queue.cap") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for action in ["login", "queue.pause", "queue.cap"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"action\":\"{action}\"")))
            .unwrap_or_else(|| panic!("{action} not audited: {text}"));
        assert!(line.contains("\"user\":\"ola\""), "{line}");
    }
    // The audit page shows it to a logged-in user.
    assert!(s.get("/audit").text().contains("queue.pause"));
}

/// Every command Redis has run so far (INFO commandstats).
async fn commands(env: &Env) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Commands one page costs, less the INFO that counts them.
async fn cost(env: &Env, s: &Session, path: &str) -> u64 {
    let before = commands(env).await;
    let r = s.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    commands(env).await - before - 1
}

#[tokio::test]
async fn a_page_costs_the_same_commands_on_a_million_jobs_as_on_three() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    enqueue_noop(&env, "small", 3).await;
    let failure = json!({"failed_at": "2026/12/02 06:01:00 UTC", "payload": {"class": "Mailer", "args": [7]},
        "exception": "Net::ReadTimeout", "error": "boom", "backtrace": [], "worker": "h:1:q", "queue": "mail"})
    .to_string();
    redis::cmd("RPUSH")
        .arg("resque:failed")
        .arg(&failure)
        .arg(&failure)
        .arg(&failure)
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let small_queue = cost(&env, &s, "/queues/small?offset=0&limit=100").await;
    let small_failed = cost(&env, &s, "/failed?offset=0&limit=100").await;

    // A million jobs in one queue and 100,000 more failures.
    let job = std::str::from_utf8(&env.lrange("resque:queue:small").await[0].clone().into_bytes())
        .unwrap()
        .to_string();
    let fill = r#"
        local batch = {}
        for i = 1, tonumber(ARGV[2]) do
            batch[#batch + 1] = ARGV[1]
            if #batch == 5000 then redis.call('RPUSH', KEYS[1], unpack(batch)); batch = {} end
        end
        if #batch > 0 then redis.call('RPUSH', KEYS[1], unpack(batch)) end
        return redis.call('LLEN', KEYS[1])"#;
    let n: u64 = redis::cmd("EVAL")
        .arg(fill)
        .arg(1)
        .arg("resque:queue:big")
        .arg(&job)
        .arg(1_000_000)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(n, 1_000_000);
    let _: u64 = redis::cmd("SADD")
        .arg("resque:queues")
        .arg("big")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let _: u64 = redis::cmd("EVAL")
        .arg(fill)
        .arg(1)
        .arg("resque:failed")
        .arg(&failure)
        .arg(100_000)
        .query_async(&mut env.conn())
        .await
        .unwrap();

    let big_queue = cost(&env, &s, "/queues/big?offset=500000&limit=100").await;
    let big_failed = cost(&env, &s, "/failed?offset=50000&limit=100").await;
    // One more queue in the set: one more LLEN on the queue page, nothing per job.
    assert_eq!(
        big_queue,
        small_queue + 1,
        "queue page: {small_queue} then {big_queue} commands"
    );
    assert_eq!(
        big_failed, small_failed,
        "failed page: {small_failed} then {big_failed} commands"
    );
    assert!(big_queue < 20 && big_failed < 20, "{big_queue} {big_failed}");
    // A page shows at most 100 rows whatever it asks for.
    let html = s.get("/queues/big?offset=999999999999&limit=100000").text();
    assert!(html.matches("<tr>").count() <= 101);
    let html = s.get("/failed?limit=100000").text();
    assert!(html.matches("<tr>").count() <= 101);
    // A filtered page scans a bounded stretch (5,000 records, 500 a read).
    let filtered = cost(&env, &s, "/failed?class=NoSuchClass").await;
    assert!(filtered <= big_failed + 12, "a filter cost {filtered} commands");
    // A handle no record has (Ruby's records are found by a hash of their
    // bytes) reads a window near where the page said it was, not the list.
    for path in ["/failed/r-0000000000000000?at=50000", "/failed/r-0000000000000000"] {
        let before = commands(&env).await;
        assert_eq!(s.get(path).status, 404);
        let spent = commands(&env).await - before - 1;
        assert!(spent <= 12, "{path}: {spent} commands");
    }
    let before = commands(&env).await;
    let r = s.post("/failed/r-0000000000000000/retry", &[("at", "99000")]);
    assert_eq!(r.status, 403, "a viewer: {}", r.text());
    let r = s.post("/failed/r-0000000000000000/retry", &[]);
    assert_eq!(r.status, 403);
    assert!(commands(&env).await - before < 20);
    // The overview and the stats page too.
    assert!(cost(&env, &s, "/").await < 30);
    assert!(cost(&env, &s, "/stats").await < 30);
}

#[tokio::test]
async fn the_stats_page_shows_no_secret_from_redis() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let html = s.get("/stats").text();
    assert!(html.contains("redis_version"));
    for word in ["requirepass", "masterauth", "config_file", "executable", "dir="] {
        assert!(!html.contains(word), "{word} on the stats page");
    }
}

async fn session_keys(env: &Env) -> Vec<String> {
    env.keys("resque:resq:web:session:*").await
}

fn logged_out(s: &Session) -> bool {
    s.get("/").header("location") == Some("/login")
}

#[tokio::test]
async fn sessions_end_when_idle_too_old_or_when_their_user_changes() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let server = serve(&env);
    let mut conn = env.conn();

    // Idle: the session's key expires (its idle timeout, shortened here).
    let s = Session::login(&server, "ada");
    let key = session_keys(&env).await.pop().unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 29 * 60 * 1000, "the idle timeout is 30 min by default: {ttl}");
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(logged_out(&s));

    // Too old: begun 13 hours ago (the absolute timeout is 12 h), however busy.
    let s = Session::login(&server, "ada");
    let key = session_keys(&env).await.pop().unwrap();
    let json: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&json).unwrap();
    let old = resq::UnixMs::now().0 - 13 * 3600 * 1000;
    record["created_at_ms"] = json!(old);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(record.to_string())
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(logged_out(&s));
    assert!(session_keys(&env).await.is_empty(), "the old session is removed");

    // The user's password changes, or the user goes: their sessions end.
    let s = Session::login(&server, "ada");
    let mut child = env
        .resq()
        .args(["user", "passwd", "ada", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "another long password").unwrap();
    }
    assert!(child.wait().unwrap().success());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(logged_out(&s));
    let r = try_login(&server.addr, "ada", "another long password", None);
    assert_eq!(r.status, 303);
    let id = set_cookie(&r, "resq-session").unwrap();
    let s = Session {
        addr: server.addr.clone(),
        cookie: format!("resq-session={id}"),
        csrf: String::new(),
    };
    assert!(!logged_out(&s));
    assert!(env.run(&["user", "remove", "ada"]).status.success());
    assert!(logged_out(&s));
    // And the CLI's changes are in the audit trail, with the OS user.
    let text = stdout(&env.run(&["audit", "tail", "--json", "--limit", "20"]));
    for action in ["user.add", "user.passwd", "user.remove"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("\"action\":\"{action}\"")) && l.contains("\"source\":\"cli\"")),
            "{action}: {text}"
        );
    }
}

#[tokio::test]
async fn logins_from_one_address_are_limited_whatever_the_names() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let server = serve(&env);
    let statuses: Vec<u16> = (0..11)
        .map(|i| try_login(&server.addr, &format!("guess{i}"), "nope", None).status)
        .collect();
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(statuses[10], 429);
    // The right password from this address waits too.
    assert_eq!(try_login(&server.addr, "ada", PASSWORD, None).status, 429);
}

#[tokio::test]
async fn over_https_cookies_are_host_only_and_secure() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let pki = resq_test_support::Pki::generate();
    env.append_config(&format!(
        "[api]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    let server = serve(&env);
    let get = "GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let r = common::http::raw_tls(&server.addr, &pki.path("ca.pem"), get.as_bytes()).expect("TLS");
    let cookie = set_cookies(&r).pop().expect("the login form's cookie");
    assert!(cookie.starts_with("__Host-resq-login="), "{cookie}");
    for flag in ["; Secure", "; HttpOnly", "; SameSite=Strict", "; Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let token = field(&r.text(), "token").unwrap();
    let value = cookie.split(';').next().unwrap();
    let body = form(&[("name", "ada"), ("password", PASSWORD), ("token", &token)]);
    let post = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {value}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = common::http::raw_tls(&server.addr, &pki.path("ca.pem"), post.as_bytes()).expect("TLS");
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000"));
    let session = set_cookies(&r).into_iter().find(|c| c.contains("-session=")).unwrap();
    assert!(
        session.starts_with("__Host-resq-session=") && session.contains("; Secure"),
        "{session}"
    );
}

#[tokio::test]
async fn cron_fires_now_through_the_policy_and_an_admin_revokes_a_token() {
    let env = Env::start().await;
    add_user(&env, "ann", "admin");
    env.append_config(
        "[[cron]]\nname = \"nightly\"\nschedule = \"0 3 * * *\"\nclass = \"Echo\"\nargs = {message = \"hi\"}\nqueue = \"ops\"\n",
    );
    let (id, _) = env.token(&["--name", "app", "--classes", "Echo", "--queues", "default"]);
    let server = serve(&env);
    let s = Session::login(&server, "ann");
    assert!(s.get("/cron").text().contains("nightly"));
    assert_eq!(s.post("/cron/nightly/fire", &[]).status, 303);
    let jobs = env.lrange("resque:queue:ops").await;
    assert_eq!(jobs.len(), 1);
    assert!(
        jobs[0].contains("\"sig\""),
        "fired jobs are signed like any other: {}",
        jobs[0]
    );
    assert_eq!(s.post("/cron/no-such-entry/fire", &[]).status, 404);

    assert!(s.get("/tokens").text().contains(&id));
    assert_eq!(s.post(&format!("/tokens/{id}/revoke"), &[]).status, 303);
    let list = stdout(&env.run(&["token", "list", "--json"]));
    assert!(list.contains("\"status\":\"revoked\""), "{list}");
}

#[tokio::test]
async fn refresh_intervals_and_ranges_are_clamped_on_the_server() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let refresh = |path: &str| {
        let html = s.get(path).text();
        html.find("http-equiv=\"refresh\" content=\"").map(|i| {
            let rest = &html[i + 30..];
            rest[..rest.find('"').unwrap()].to_string()
        })
    };
    assert_eq!(refresh("/"), None);
    assert_eq!(refresh("/?refresh=0"), None);
    assert_eq!(refresh("/?refresh=1").as_deref(), Some("5"));
    assert_eq!(refresh("/?refresh=60").as_deref(), Some("60"));
    assert_eq!(refresh("/?refresh=99999999").as_deref(), Some("300"));
    // A range it does not offer is the smallest; a number that is not one is refused.
    assert!(s.get("/?range=9999d").text().contains("class=\"active\">1h<"));
    assert_eq!(s.get("/?refresh=-1").status, 400);
    assert_eq!(s.get("/workers?offset=abc").status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_cannot_slip_past_a_lockout_and_typed_secrets_stay_out_of_the_audit() {
    let env = Env::start().await;
    add_user(&env, "ada", "operator");
    let server = serve(&env);
    // Twelve guesses at once from different connections: at most five are
    // checked (the lock counts each attempt before checking it).
    let addr = server.addr.clone();
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || try_login(&addr, "ada", "wrong password here", None).status)
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{checked} guesses were checked: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");

    // A password typed into the name field is not written to the audit trail.
    try_login(&server.addr, "my-secret-password-typed-here", "x", None);
    let mut text = String::new();
    for _ in 0..200 {
        text = stdout(&env.run(&["audit", "tail", "--json", "--limit", "50"]));
        if text.contains("unknown name") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(text.contains("unknown name"), "{text}");
    assert!(!text.contains("my-secret-password-typed-here"), "{text}");
}

#[tokio::test]
async fn removing_every_failure_needs_the_box_ticked_and_bulk_work_is_bounded() {
    let env = Env::start().await;
    add_user(&env, "ola", "operator");
    let failure = json!({"failed_at": "2026/12/02 06:01:00 UTC", "payload": {"class": "Mailer", "args": [7]},
        "exception": "Net::ReadTimeout", "error": "boom", "backtrace": [], "worker": "h:1:q", "queue": "mail"});
    for _ in 0..3 {
        let _: u64 = redis::cmd("RPUSH")
            .arg("resque:failed")
            .arg(failure.to_string())
            .query_async(&mut env.conn())
            .await
            .unwrap();
    }
    let server = serve(&env);
    let s = Session::login(&server, "ola");
    let r = s.post("/failed/bulk", &[("what", "remove")]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(env.llen("resque:failed").await, 3);
    // A filter needs no box: it names what goes.
    assert_eq!(
        s.post("/failed/bulk", &[("what", "remove"), ("class", "Nothing")])
            .status,
        303
    );
    assert_eq!(env.llen("resque:failed").await, 3);
    assert_eq!(
        s.post("/failed/bulk", &[("what", "remove"), ("confirm", "yes")]).status,
        303
    );
    assert_eq!(env.llen("resque:failed").await, 0);
}

#[tokio::test]
async fn the_working_page_shows_every_job_a_resq_worker_holds() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    let client = env.client();
    for ms in [5_000u64, 5_001, 5_002] {
        client
            .enqueue_raw("Sleep", vec![json!({"ms": ms})], "default")
            .await
            .unwrap();
    }
    let mut worker = env.spawn_worker(&["--queues", "default", "--concurrency", "4"]);
    env.wait_until("the worker holds three jobs", || async { env.in_flight().await == 3 })
        .await;
    let server = serve(&env);
    let s = Session::login(&server, "vic");
    let html = s.get("/working").text();
    for ms in ["5000", "5001", "5002"] {
        assert!(
            html.contains(&format!("{{&#34;ms&#34;:{ms}}}")) || html.contains(&format!("\"ms\":{ms}")),
            "{ms}: {html}"
        );
    }
    assert!(html.contains("(resq)"), "{html}");
    // The fleet's metrics count them without reading them (each running
    // signed job also has a claim field beside it in the hash).
    let log = env.dir.path().join("serve-metrics.log");
    let mut cmd = env.resq();
    cmd.env("RESQ_METRICS_BIND", "127.0.0.1:0");
    let _metrics_server = Server::start(cmd, log.clone());
    let mut addr = None;
    for _ in 0..500 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("metrics on http://").nth(1) {
            addr = rest.split('/').next().map(str::to_string);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let metrics = request(&addr.expect("a metrics address"), "GET", "/metrics", &[], b"").text();
    assert!(metrics.lines().any(|l| l == "resq_in_flight_jobs 3"), "{metrics}");
    signal(&worker, libc::SIGTERM);
    wait_child(&mut worker);
}
