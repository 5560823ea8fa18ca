//! The dashboard in a real browser (headless Chromium over WebDriver),
//! against the real `resq serve` and a private redis-server: an operator's
//! day (log in, retry a failure, pause a queue, log out), forged and
//! cross-site posts refused, and XSS payloads from published advisories
//! planted everywhere a value from Redis or the URL reaches a page: none
//! runs. Screenshots of every page go to `target/screenshots/`.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::http::Server;
use common::web::*;
use common::*;
use fantoccini::{Client, Locator};
use serde_json::json;

fn serve(env: &Env) -> Server {
    Server::start(
        env.resq(),
        env.dir.path().join(format!("serve-{}.log", uuid::Uuid::new_v4())),
    )
}

async fn login(c: &Client, addr: &str, name: &str) {
    c.goto(&format!("http://{addr}/login")).await.unwrap();
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Id("submit")).await.unwrap().click().await.unwrap();
    // The click returns before the next page has loaded: wait for it.
    let who = c
        .wait()
        .for_element(Locator::Id("user"))
        .await
        .expect("logged in")
        .text()
        .await
        .unwrap();
    assert_eq!(who, name);
}

async fn path(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_string()
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

async fn is_paused(env: &Env, queue: &str) -> bool {
    redis::cmd("SISMEMBER")
        .arg("resque:resq:paused-queues")
        .arg(queue)
        .query_async(&mut env.conn())
        .await
        .unwrap()
}

fn screenshots_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn an_operator_logs_in_retries_a_failure_pauses_a_queue_and_logs_out() {
    let env = Env::start().await;
    add_user(&env, "ada", "admin");
    env.append_config("[dashboard]\nsample_interval_s = 1\n");
    // Real traffic for the charts: a worker runs jobs, a few fail.
    let client = env.client();
    for i in 0..3000 {
        client
            .enqueue_raw("Noop", vec![json!({"pad": ""})], "default")
            .await
            .unwrap();
        if i % 100 == 0 {
            let msg = format!("upstream timed out (attempt {i})");
            client
                .enqueue_raw("Fail", vec![json!({"message": msg})], "mail")
                .await
                .unwrap();
        }
    }
    client
        .enqueue_raw("Noop", vec![json!({"pad": ""})], "reports")
        .await
        .unwrap();
    let server = serve(&env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut worker = env.spawn_worker(&["--queues", "default,mail", "--burst"]);
    wait_child(&mut worker);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let failures = env.llen("resque:failed").await;
    assert_eq!(failures, 30);

    let b = Browser::start().await;
    let c = &b.client;
    login(c, &server.addr, "ada").await;
    // Every page, drawn and saved.
    let shots = screenshots_dir();
    for (name, page) in [
        ("overview", "/"),
        ("queues", "/queues"),
        ("queue", "/queues/default"),
        ("workers", "/workers"),
        ("working", "/working"),
        ("failed", "/failed"),
        ("scheduled", "/scheduled"),
        ("retries", "/retries"),
        ("expired", "/expired"),
        ("cron", "/cron"),
        ("stats", "/stats"),
        ("audit", "/audit"),
        ("users", "/users"),
        ("tokens", "/tokens"),
    ] {
        c.goto(&format!("http://{}{page}", server.addr)).await.unwrap();
        assert_eq!(path(c).await, page, "{name} sent the browser elsewhere");
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
    }
    // The overview draws its charts from real samples.
    c.goto(&format!("http://{}/", server.addr)).await.unwrap();
    let lines = c.find_all(Locator::Css("svg polyline")).await.unwrap();
    assert!(lines.len() >= 3, "{} lines", lines.len());

    // Retry the first failure from its row.
    c.goto(&format!("http://{}/failed", server.addr)).await.unwrap();
    c.find(Locator::Css("button.retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    env.wait_until("the retried failure leaves the list", || async {
        env.llen("resque:failed").await == failures - 1
    })
    .await;
    assert_eq!(env.llen("resque:queue:mail").await, 1);

    // Pause a queue.
    c.goto(&format!("http://{}/queues/reports", server.addr)).await.unwrap();
    c.find(Locator::Id("pause")).await.unwrap().click().await.unwrap();
    c.wait()
        .for_element(Locator::Id("resume"))
        .await
        .expect("a resume button now");
    assert!(is_paused(&env, "reports").await);
    assert!(body_text(c).await.contains("Paused"));

    // Log out: every page sends the browser to the login page again.
    c.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    c.wait()
        .for_element(Locator::Id("login"))
        .await
        .expect("the login page");
    assert_eq!(path(c).await, "/login");
    c.goto(&format!("http://{}/failed", server.addr)).await.unwrap();
    assert_eq!(path(c).await, "/login");
    b.close().await;
}

/// Serves one page from another origin (another port of 127.0.0.1: the
/// same site, so SameSite=Strict still sends the cookie; only the dashboard's
/// cross-origin check stands in the way).
fn attacker_page(html: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    addr
}

#[tokio::test]
async fn a_viewers_forged_post_and_a_cross_site_form_are_refused() {
    let env = Env::start().await;
    add_user(&env, "vic", "viewer");
    add_user(&env, "ola", "operator");
    env.client()
        .enqueue_raw("Noop", vec![json!({"pad": ""})], "default")
        .await
        .unwrap();
    let server = serve(&env);

    // A viewer builds the operator's form by hand, with their own valid token.
    let b = Browser::start().await;
    let c = &b.client;
    login(c, &server.addr, "vic").await;
    c.goto(&format!("http://{}/queues/default", server.addr)).await.unwrap();
    assert!(
        c.find(Locator::Id("pause")).await.is_err(),
        "a viewer is shown no pause button"
    );
    c.execute(
        r#"const f = document.createElement('form');
           f.method = 'post'; f.action = '/queues/default/pause';
           const t = document.querySelector('input[name=csrf]').cloneNode();
           f.appendChild(t); document.body.appendChild(f); f.submit();"#,
        vec![],
    )
    .await
    .unwrap();
    let error = c.wait().for_element(Locator::Id("error")).await.expect("an error page");
    assert!(error.text().await.unwrap().contains("this needs the operator role"));
    assert!(!is_paused(&env, "default").await);
    b.close().await;

    // An operator visits another site whose form posts to the dashboard,
    // with the operator's real token (as if it leaked): still refused.
    let b = Browser::start().await;
    let c = &b.client;
    login(c, &server.addr, "ola").await;
    c.goto(&format!("http://{}/queues/default", server.addr)).await.unwrap();
    let csrf = c
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let evil = attacker_page(format!(
        r#"<!doctype html><form id="f" method="post" action="http://{}/queues/default/pause"><input name="csrf" value="{csrf}"></form><script>document.getElementById('f').submit()</script>"#,
        server.addr
    ));
    c.goto(&format!("http://{evil}/")).await.unwrap();
    let error = c.wait().for_element(Locator::Id("error")).await.expect("an error page");
    assert_eq!(error.text().await.unwrap(), "cross-site requests are refused");
    assert!(!is_paused(&env, "default").await);
    b.close().await;
}

/// What each payload would do if it ran: mark the page.
const MARK: &str = "document.documentElement.setAttribute('data-xss','1')";

/// Payloads after the published advisories: resque-web (queue names, failed
/// `class` filter, error messages), Sidekiq Web (`substr`, `period`, `days`
/// parameters, queue and class names), Flower (task args, worker names),
/// rq-dashboard (job descriptions), Faktory (job arguments). Each is text
/// only if escaped; parsed as HTML it would call MARK.
fn payloads() -> Vec<String> {
    vec![
        format!("<script>{MARK}</script>"),
        format!("\"><img src=x onerror=\"{MARK}\">"),
        format!("'><svg/onload={MARK}>"),
        format!("</title><script>{MARK}</script>"),
        format!("</textarea><iframe srcdoc=\"<script>parent.{MARK}</script>\"></iframe>"),
        format!("javascript:{MARK}"),
        format!("<a href=\"javascript:{MARK}\">x</a>"),
        format!("{{{{7*7}}}}<details open ontoggle=\"{MARK}\">"),
    ]
}

async fn no_script_ran(c: &Client, page: &str) {
    if let Ok(text) = c.get_alert_text().await {
        panic!("{page}: an alert opened: {text}");
    }
    let marked = c
        .execute("return document.documentElement.getAttribute('data-xss')", vec![])
        .await
        .unwrap();
    assert!(marked.is_null(), "{page}: a payload ran");
}

/// The dashboard's count of CSP violations browsers reported.
async fn violations(c: &Client, addr: &str) -> u64 {
    c.goto(&format!("http://{addr}/stats")).await.unwrap();
    let text = body_text(c).await;
    let line = text
        .lines()
        .find(|l| l.contains("CSP violations reported since start"))
        .expect("the count on the stats page");
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[tokio::test]
async fn xss_payloads_planted_everywhere_never_run() {
    let env = Env::start().await;
    add_user(&env, "ada", "admin");
    let mut conn = env.conn();
    let payloads = payloads();
    for (i, p) in payloads.iter().enumerate() {
        let queue = format!("q{i}{p}");
        let job = json!({"class": p, "args": [p, {"note": p}], "id": format!("id-{i}")});
        let worker = format!("host{p}:{i}:{p}");
        let failure = json!({"failed_at": "2026/12/02 06:01:00 UTC", "payload": {"class": p, "args": [p]},
            "exception": p, "error": p, "backtrace": [p, p], "worker": worker, "queue": queue});
        let working = json!({"queue": queue, "run_at": "2026-12-02T06:00:00Z", "payload": {"class": p, "args": [p]}});
        redis::pipe()
            .sadd("resque:queues", &queue)
            .rpush(format!("resque:queue:{queue}"), job.to_string())
            .rpush("resque:failed", failure.to_string())
            .sadd("resque:workers", &worker)
            .set(format!("resque:worker:{worker}"), working.to_string())
            .zadd("resque:resq:schedule", job.to_string(), 1_900_000_000_000u64)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let server = serve(&env);
    let b = Browser::start().await;
    let c = &b.client;
    login(c, &server.addr, "ada").await;
    let addr = &server.addr;

    let before = violations(c, addr).await;
    let mut pages: Vec<String> = [
        "/",
        "/queues",
        "/workers",
        "/working",
        "/failed",
        "/scheduled",
        "/audit",
        "/stats",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for p in &payloads {
        let e = enc(p);
        pages.push(format!(
            "/queues/{}",
            enc(&format!("q{}{p}", payloads.iter().position(|x| x == p).unwrap()))
        ));
        pages.push(format!("/queues/{e}"));
        pages.push(format!("/failed/{e}"));
        pages.push(format!("/failed?class={e}&queue={e}&reason={e}"));
        pages.push(format!("/queues/q0?class={e}&offset={e}"));
        pages.push(format!("/?range={e}"));
        pages.push(format!("/failed?offset={e}&limit={e}&substr={e}&period={e}&days={e}"));
        pages.push(format!("/{e}"));
    }
    let mut shown = 0;
    for page in &pages {
        c.goto(&format!("http://{addr}{page}")).await.unwrap();
        no_script_ran(c, page).await;
        // The payload is on the page as text: it was escaped, not dropped.
        let text = body_text(c).await;
        if text.contains("<script>document.documentElement") || text.contains("onerror=") {
            shown += 1;
        }
    }
    assert!(shown >= 10, "payloads were shown as text on only {shown} pages");

    // The failed page's filter form carries the payload back, escaped.
    c.goto(&format!("http://{addr}/failed?class={}", enc(&payloads[1])))
        .await
        .unwrap();
    let value = c
        .find(Locator::Css("#filter input[name=class]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some(payloads[1].as_str()));
    no_script_ran(c, "filter").await;

    // No violation was reported: nothing even tried to run. The count
    // works: an inline script forced into a page is refused and counted.
    assert_eq!(violations(c, addr).await, before);
    c.execute(
        "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.appendChild(s);",
        vec![],
    )
    .await
    .unwrap();
    let ran = c.execute("return window.__ran === 1", vec![]).await.unwrap();
    assert_eq!(ran, serde_json::Value::Bool(false), "CSP let an inline script run");
    let mut counted = before;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        counted = violations(c, addr).await;
        if counted > before {
            break;
        }
    }
    assert!(counted > before, "the violation was not reported");
    b.close().await;
}
