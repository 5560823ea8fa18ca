//! `resq acl --role ...` against a real redis-server: each role's rule is
//! applied as printed, then the role's real work runs under that user
//! through the real binary, and what it must not do is refused. And
//! `resq doctor` against servers configured each unsafe way, and one
//! configured well.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::http::Server;
use common::web::*;
use common::*;
use local_redis::Options;
use serde_json::json;

const ADMIN_PASSWORD: &str = "administrator-password-for-tests";

/// An environment whose default user needs a password (the administrator).
async fn env_with(options: Options) -> Env {
    Env::start_with(options, Some(ADMIN_PASSWORD)).await
}

async fn admin_env() -> Env {
    env_with(Options {
        requirepass: Some(ADMIN_PASSWORD.into()),
        ..Options::default()
    })
    .await
}

/// `resq` as the administrator (the default user with its password).
fn as_admin(env: &Env) -> Command {
    let mut cmd = env.resq();
    cmd.env("RESQ_REDIS_PASSWORD", ADMIN_PASSWORD);
    cmd
}

/// `resq` logged in as `user`.
fn as_user(env: &Env, user: &str, password: &str) -> Command {
    let mut cmd = env.resq();
    cmd.env("RESQ_REDIS_USERNAME", user)
        .env("RESQ_REDIS_PASSWORD", password);
    cmd
}

/// Runs `resq acl --role ROLE` with `password` on stdin and applies the
/// printed rule as the administrator; returns the user name.
async fn apply_role(env: &Env, role: &str, password: &str) -> String {
    let mut child = env
        .resq()
        .args(["acl", "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains(password), "the password is not printed when given");
    let line = text.lines().find(|l| l.starts_with("ACL SETUSER ")).expect("a rule");
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = redis::cmd("ACL");
    for w in &words[1..] {
        cmd.arg(*w);
    }
    let _: () = cmd
        .query_async(&mut env.conn())
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    words[2].to_string()
}

/// A raw connection as `user`.
async fn connect_as(env: &Env, user: &str, password: &str) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}/0", env.redis.port());
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// True when Redis refuses `args` to this connection for want of permission.
async fn refused(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> bool {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query_async::<redis::Value>(conn).await {
        Ok(_) => false,
        // DEBUG is also off by default (enable-debug-command no).
        Err(e) => {
            let e = e.to_string();
            e.contains("NOPERM")
                || e.contains("permission")
                || e.contains("not allowed")
                || e.contains("can't run this command")
        }
    }
}

fn ok(cmd: &mut Command, args: &[&str]) -> String {
    let o = cmd.args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const PW: &str = "role-password-0123456789";

#[tokio::test]
async fn a_producer_enqueues_and_can_do_nothing_else() {
    let env = admin_env().await;
    let user = apply_role(&env, "producer", PW).await;
    ok(
        &mut as_user(&env, &user, PW),
        &["enqueue", "Echo", "--args", r#"{"message":"hi"}"#],
    );
    ok(
        &mut as_user(&env, &user, PW),
        &["enqueue", "Echo", "--args", r#"{"message":"later"}"#, "--in", "1h"],
    );
    assert_eq!(env.llen("resque:queue:default").await, 1);
    // WAIT (redis.wait_replicas) is the producer's: with no replica the
    // job is stored and reported not confirmed, never refused for want of
    // permission.
    let o = as_user(&env, &user, PW)
        .env("RESQ_REDIS_WAIT_REPLICAS", "1")
        .env("RESQ_REDIS_WAIT_TIMEOUT_MS", "50")
        .args(["enqueue", "Echo", "--args", r#"{"message":"waits"}"#])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("0 of the 1 replica"), "{err}");
    assert!(!err.contains("NOPERM"), "{err}");
    assert_eq!(env.llen("resque:queue:default").await, 2);
    // A failure record to protect.
    let _: () = redis::cmd("RPUSH")
        .arg("resque:failed")
        .arg(json!({"payload": {"class": "A", "args": []}, "exception": "E"}).to_string())
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let mut c = connect_as(&env, &user, PW).await;
    for args in [
        &["LPOP", "resque:queue:default"][..],
        &["LRANGE", "resque:queue:default", "0", "-1"],
        &["DEL", "resque:queue:default"],
        &["LRANGE", "resque:failed", "0", "-1"],
        &["LLEN", "resque:failed"],
        &["DEL", "resque:failed"],
        &["HGETALL", "resque:resq:web:users"],
        &["FLUSHALL"],
        &["CONFIG", "GET", "*"],
        &["KEYS", "*"],
        &["RPUSH", "other:queue:x", "y"],
    ] {
        assert!(refused(&mut c, args).await, "a producer may run {args:?}");
    }
    // A script cannot launder it either: Redis checks the commands inside.
    assert!(
        refused(
            &mut c,
            &[
                "EVAL",
                "return redis.call('LPOP', KEYS[1])",
                "1",
                "resque:queue:default"
            ]
        )
        .await
    );
    assert_eq!(env.llen("resque:failed").await, 1);
}

#[tokio::test]
async fn a_worker_works_retries_and_reaps_and_cannot_touch_the_server() {
    let env = admin_env().await;
    let user = apply_role(&env, "worker", PW).await;
    for args in [
        &["enqueue", "Echo", "--args", r#"{"message":"a"}"#][..],
        &["enqueue", "Echo", "--args", r#"{"message":"b"}"#],
        &["enqueue", "Fail", "--args", r#"{"message":"boom"}"#],
        &["enqueue", "Flaky", "--args", r#"{"failures":1}"#],
    ] {
        ok(&mut as_admin(&env), args);
    }
    // A worker that dies holding nothing, to be reaped by the next.
    let mut dead = as_user(&env, &user, PW)
        .args(["worker", "--queues", "nothing-here"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_until("the first worker registers", || async {
        env.keys("resque:resq:alive:*").await.len() == 1
    })
    .await;
    let dead_id = env.keys("resque:resq:alive:*").await[0]
        .trim_start_matches("resque:resq:alive:")
        .to_string();
    unsafe { libc::kill(dead.id() as i32, libc::SIGKILL) };
    let _ = dead.wait();
    let mut worker = as_user(&env, &user, PW)
        .args(["--log-format", "json", "worker", "--queues", "default"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("worker.log")).unwrap())
        .spawn()
        .unwrap();
    env.wait_until(
        "jobs run, the failure is recorded, the retry runs, the dead worker is reaped",
        || async {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg("resque:workers")
                .query_async(&mut env.conn())
                .await
                .unwrap();
            env.processed().await >= 3 && env.llen("resque:failed").await == 1 && !members.contains(&dead_id)
        },
    )
    .await;
    signal(&worker, libc::SIGTERM);
    wait_child(&mut worker);
    let log = std::fs::read_to_string(env.dir.path().join("worker.log")).unwrap();
    assert!(!log.contains("NOPERM"), "{log}");
    let mut c = connect_as(&env, &user, PW).await;
    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["CONFIG", "SET", "save", ""],
        &["KEYS", "*"],
        &["DEBUG", "SLEEP", "0"],
        &["SET", "other:key", "x"],
    ] {
        assert!(refused(&mut c, args).await, "a worker may run {args:?}");
    }
}

#[tokio::test]
async fn resq_serve_works_as_web_and_a_read_only_web_user_cannot_push() {
    let env = admin_env().await;
    let web = apply_role(&env, "web", PW).await;
    let read_only = apply_role(&env, "web-read-only", PW).await;
    let mut child = as_admin(&env)
        .args(["user", "add", "ola", "--role", "operator", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(child.wait().unwrap().success());
    ok(
        &mut as_admin(&env),
        &["enqueue", "Fail", "--args", r#"{"message":"boom"}"#],
    );
    let mut w = as_admin(&env).args(["worker", "--burst"]).spawn().unwrap();
    wait_child(&mut w);
    assert_eq!(env.llen("resque:failed").await, 1);
    let token = ok(
        &mut as_admin(&env),
        &[
            "token",
            "create",
            "--json",
            "--name",
            "app",
            "--classes",
            "Echo",
            "--queues",
            "default",
        ],
    );
    let secret = serde_json::from_str::<serde_json::Value>(&token).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // The web user: dashboard reads and actions, API enqueues.
    let log = env.dir.path().join("serve-web.log");
    let server = Server::start(as_user(&env, &web, PW), log);
    let s = Session::login(&server, "ola");
    for page in [
        "/",
        "/queues",
        "/failed",
        "/workers",
        "/working",
        "/stats",
        "/audit",
        "/scheduled",
    ] {
        assert_eq!(s.get(page).status, 200, "{page}");
    }
    let failed = s.get("/failed").text();
    let retry = failed.find("/retry\"").expect("a retry button");
    let start = failed[..retry].rfind("/failed/").unwrap() + "/failed/".len();
    let handle = failed[start..retry].to_string();
    assert_eq!(s.post(&format!("/failed/{handle}/retry"), &[("at", "0")]).status, 303);
    assert_eq!(env.llen("resque:failed").await, 0);
    assert_eq!(s.post("/queues/Fail/pause", &[]).status, 303, "pausing");
    let r = common::http::post_json(
        &server.addr,
        "/api/v1/jobs",
        &secret,
        &[],
        r#"{"class":"Echo","args":{"message":"x"}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    drop(server);

    // The read-only web user: pages and logins, no pushes.
    let mut cmd = as_user(&env, &read_only, PW);
    cmd.env("RESQ_CONFIG", env.dir.path().join("ro.toml"));
    std::fs::write(env.dir.path().join("ro.toml"), "[dashboard]\nread_only = true\n").unwrap();
    let server = Server::start(cmd, env.dir.path().join("serve-ro.log"));
    let s = Session::login(&server, "ola");
    for page in ["/", "/queues", "/failed", "/workers", "/audit"] {
        assert_eq!(s.get(page).status, 200, "{page}");
    }
    let mut c = connect_as(&env, &read_only, PW).await;
    for args in [
        &["WAIT", "0", "0"][..],
        &["RPUSH", "resque:queue:default", "x"],
        &["LPOP", "resque:queue:default"],
        &["DEL", "resque:failed"],
        &["FLUSHALL"],
    ] {
        assert!(refused(&mut c, args).await, "a read-only web user may run {args:?}");
    }
    let r = common::http::post_json(
        &server.addr,
        "/api/v1/jobs",
        &secret,
        &[],
        r#"{"class":"Echo","args":{"message":"x"}}"#,
    );
    assert_ne!(r.status, 201, "a read-only server enqueued: {}", r.text());
}

#[tokio::test]
async fn an_admin_runs_the_operators_commands_and_nothing_server_wide() {
    let env = admin_env().await;
    let admin = apply_role(&env, "admin", PW).await;
    ok(
        &mut as_user(&env, &admin, PW),
        &["enqueue", "Echo", "--args", r#"{"message":"a"}"#],
    );
    ok(&mut as_user(&env, &admin, PW), &["stats"]);
    ok(&mut as_user(&env, &admin, PW), &["failed", "clear"]);
    ok(
        &mut as_user(&env, &admin, PW),
        &[
            "token",
            "create",
            "--name",
            "x",
            "--classes",
            "Echo",
            "--queues",
            "default",
        ],
    );
    ok(&mut as_user(&env, &admin, PW), &["queue", "pause", "default"]);
    let mut c = connect_as(&env, &admin, PW).await;
    for args in [
        &["FLUSHALL"][..],
        &["CONFIG", "GET", "*"],
        &["KEYS", "*"],
        &["ACL", "LIST"],
        &["SHUTDOWN"],
    ] {
        assert!(refused(&mut c, args).await, "an admin may run {args:?}");
    }
}

/// `resq doctor --json` run with `cmd`: (exit code, the codes of findings
/// above info).
fn doctor(mut cmd: Command) -> (i32, Vec<(String, String)>) {
    let o = cmd.args(["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "{} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let findings = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (o.status.code().unwrap_or(-1), findings)
}

fn has(findings: &[(String, String)], code: &str, severity: &str) -> bool {
    findings.iter().any(|(c, s)| c == code && s == severity)
}

#[tokio::test]
async fn doctor_on_a_server_left_at_its_defaults_says_what_is_wrong_and_exits_4() {
    let env = Env::start().await;
    let (code, findings) = doctor(env.resq());
    assert_eq!(code, 4, "{findings:?}");
    for (finding, severity) in [
        ("redis-no-password", "critical"),
        ("redis-no-persistence", "high"),
        ("redis-dangerous-commands", "high"),
        ("redis-no-maxmemory", "medium"),
        ("unscoped-signing-keys", "medium"),
        ("no-isolation-no-timeout", "medium"),
    ] {
        assert!(has(&findings, finding, severity), "{finding}: {findings:?}");
    }
    // The text form says what it means and the fix.
    let text = stdout(&env.run(&["doctor"]));
    assert!(
        text.contains("CRITICAL redis-no-password") && text.contains("fix:"),
        "{text}"
    );
    // And what replay marks will hold at the rate it observes.
    assert!(
        text.contains("replay-marks-projection: replay marks: 0.0 jobs/s"),
        "{text}"
    );
}

#[tokio::test]
async fn doctor_finds_an_evicting_policy_and_resqs_own_unsafe_settings() {
    let env = env_with(Options {
        requirepass: Some(ADMIN_PASSWORD.into()),
        extra_args: vec![
            "--maxmemory".into(),
            "64mb".into(),
            "--maxmemory-policy".into(),
            "allkeys-lru".into(),
        ],
        ..Options::default()
    })
    .await;
    let config = env.dir.path().join("resq.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[security]\nallow_unsigned = [\"legacy\"]\n[api]\nlisten = \"0.0.0.0:8080\"\n");
    std::fs::write(&config, text).unwrap();
    ok(
        &mut as_admin(&env),
        &[
            "token",
            "create",
            "--name",
            "forever",
            "--classes",
            "Echo",
            "--queues",
            "default",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.keys_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, findings) = doctor(as_admin(&env));
    assert_eq!(code, 4);
    for (finding, severity) in [
        ("redis-evicts", "critical"),
        ("unsigned-queues", "high"),
        ("keys-file-readable", "critical"),
        ("serve-public-plain", "high"),
        ("tokens-never-expire", "low"),
    ] {
        assert!(has(&findings, finding, severity), "{finding}: {findings:?}");
    }
    assert!(
        !findings
            .iter()
            .any(|(c, _)| c == "redis-no-password" || c == "redis-no-maxmemory"),
        "{findings:?}"
    );
}

#[tokio::test]
async fn doctor_finds_nothing_above_info_on_a_well_configured_setup() {
    let env = env_with(Options {
        requirepass: Some(ADMIN_PASSWORD.into()),
        extra_args: vec![
            "--maxmemory".into(),
            "64mb".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
            "--appendonly".into(),
            "yes".into(),
        ],
        ..Options::default()
    })
    .await;
    let user = apply_role(&env, "worker", PW).await;
    // Keys scoped to their classes, and jobs in child processes.
    let keys = std::fs::read_to_string(env.keys_path()).unwrap().replacen(
        "classes = [\"*\"]",
        "classes = [\"Echo\", \"Noop\"]",
        1,
    );
    std::fs::write(env.keys_path(), keys).unwrap();
    let config = env.dir.path().join("resq.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[isolation]\nmode = \"process\"\n");
    std::fs::write(&config, text).unwrap();
    let (code, findings) = doctor(as_user(&env, &user, PW));
    assert_eq!((code, findings), (0, vec![]));
}
