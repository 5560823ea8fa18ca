//! Connecting the way production does: a password, an ACL user, TLS with a
//! private CA and client certificates, and reconnecting after Redis goes away.
//! Each test starts its own redis-server with the configuration it needs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use local_redis::{LocalRedis, Options, TlsFiles};
use resq::{Client, Control, JobQueues, Worker};
use resq_redis::{RedisConfig, RedisStore};
use secrecy::SecretString;

async fn try_roundtrip(config: &RedisConfig) -> Result<(), String> {
    let store = RedisStore::connect(config, "resque").await.map_err(|e| e.to_string())?;
    Client::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(resq::Keyring::ephemeral()),
    )
    .map_err(|e| e.to_string())?
    .enqueue(&Echo { message: "x".into() })
    .await
    .map_err(|e| e.to_string())?;
    store.queues().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test]
async fn requirepass_is_used_and_never_printed() {
    let secret = "s3cret-pass-123";
    let redis = LocalRedis::start_with(Options {
        requirepass: Some(secret.into()),
        ..Options::default()
    })
    .unwrap();

    let anonymous = try_roundtrip(&RedisConfig::new(redis.url())).await.unwrap_err();
    assert!(anonymous.to_uppercase().contains("AUTH"), "{anonymous}");

    let mut wrong = RedisConfig::new(redis.url());
    wrong.password = Some(SecretString::from("not-it"));
    let err = try_roundtrip(&wrong).await.unwrap_err();
    assert!(!err.contains("not-it"), "the password leaked: {err}");

    let mut right = RedisConfig::new(redis.url());
    right.password = Some(SecretString::from(secret));
    try_roundtrip(&right).await.unwrap();
    assert!(!format!("{right:?}").contains(secret));

    // A password in the URL works and is redacted from messages too.
    let in_url = RedisConfig::new(format!("redis://:{secret}@127.0.0.1:{}/0", redis.port()));
    try_roundtrip(&in_url).await.unwrap();
    assert!(!in_url.redacted_url().contains(secret));
}

#[tokio::test]
async fn acl_user_with_password() {
    let redis = LocalRedis::start_with(Options {
        acl_users: vec![
            "user default off".into(),
            "user resq-worker on >worker-pw ~resque:* +@all".into(),
        ],
        ..Options::default()
    })
    .unwrap();
    let mut config = RedisConfig::new(redis.url());
    config.username = Some("resq-worker".into());
    config.password = Some(SecretString::from("worker-pw"));
    try_roundtrip(&config).await.unwrap();

    config.password = Some(SecretString::from("worker-pw-wrong"));
    let err = try_roundtrip(&config).await.unwrap_err();
    assert!(!err.contains("worker-pw-wrong"), "{err}");

    // A key outside the user's pattern is refused: the ACL is really applied.
    let mut bad_ns = RedisConfig::new(redis.url());
    bad_ns.username = Some("resq-worker".into());
    bad_ns.password = Some(SecretString::from("worker-pw"));
    let store = RedisStore::connect(&bad_ns, "other").await.unwrap();
    assert!(store.queues().await.is_err());
}

use resq_test_support::Pki;

/// A TLS-only server with this PKI's certificates.
fn tls_server(pki: &Pki, require_client_cert: bool) -> LocalRedis {
    LocalRedis::start_with(Options {
        tls: Some(TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            ca: pki.path("ca.pem"),
            require_client_cert,
        }),
        ..Options::default()
    })
    .unwrap()
}

fn tls_config(url: String, ca: Option<&Path>, client: Option<(&Path, &Path)>) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.ca_file = ca.map(Path::to_path_buf);
    if let Some((cert, key)) = client {
        c.client_cert_file = Some(cert.to_path_buf());
        c.client_key_file = Some(key.to_path_buf());
    }
    c.connect_timeout = Duration::from_secs(3);
    c
}

#[tokio::test]
async fn tls_with_private_ca() {
    let pki = Pki::generate();
    let redis = tls_server(&pki, false);
    assert!(redis.url().starts_with("rediss://"));
    try_roundtrip(&tls_config(redis.url(), Some(&pki.path("ca.pem")), None))
        .await
        .unwrap();
    // Without our CA the server's certificate is not trusted, and the
    // message says which setting names the CA.
    let err = try_roundtrip(&tls_config(redis.url(), None, None)).await.unwrap_err();
    assert!(
        err.contains(
            "the server's certificate is not trusted (invalid peer certificate: UnknownIssuer): no ca_file is set"
        ),
        "{err}"
    );
    let other_ca = Pki::generate();
    let err = try_roundtrip(&tls_config(redis.url(), Some(&other_ca.path("ca.pem")), None))
        .await
        .unwrap_err();
    assert!(err.contains("ca.pem did not sign it"), "{err}");
    // Plain text to a TLS port does not work either.
    let plain = format!("redis://127.0.0.1:{}/0", redis.port());
    assert!(try_roundtrip(&tls_config(plain, None, None)).await.is_err());
}

#[tokio::test]
async fn tls_with_client_certificate() {
    let pki = Pki::generate();
    let redis = tls_server(&pki, true);
    let ca = pki.path("ca.pem");
    let err = try_roundtrip(&tls_config(redis.url(), Some(&ca), None))
        .await
        .unwrap_err();
    assert!(err.contains("refused the client certificate (none was given)"), "{err}");
    // A certificate from another CA: refused, and the file is named.
    let other = Pki::generate();
    let (wrong_cert, wrong_key) = (other.path("client.pem"), other.path("client.key"));
    let err = try_roundtrip(&tls_config(redis.url(), Some(&ca), Some((&wrong_cert, &wrong_key))))
        .await
        .unwrap_err();
    assert!(
        err.contains(&format!("refused the client certificate {}", wrong_cert.display())),
        "{err}"
    );
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    try_roundtrip(&tls_config(redis.url(), Some(&ca), Some((&cert, &key))))
        .await
        .unwrap();

    let half = RedisConfig {
        client_key_file: None,
        ..tls_config(redis.url(), Some(&ca), Some((&cert, &key)))
    };
    let err = try_roundtrip(&half).await.unwrap_err();
    assert!(err.contains("together"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn worker_survives_redis_going_away_and_coming_back() {
    let (logs, _guard) = capture_logs();
    let mut env = Env::start().await;
    let client = env.client();
    client
        .enqueue(&Echo {
            message: "before".into(),
        })
        .await
        .unwrap();
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), registry(), env.config("default")).run(rx));
    wait_for_processed(&env, "1").await;

    env.redis.kill();
    // Restarted once the worker has met the outage (and backs off).
    eventually("the worker meets the outage", || async {
        logs.text().contains("fetch failed")
    })
    .await;
    env.redis.restart().unwrap();
    // The restarted server is empty: enqueue again; the same worker must run it.
    let mut enqueued = false;
    for _ in 0..100 {
        if client
            .enqueue(&Echo {
                message: "after".into(),
            })
            .await
            .is_ok()
        {
            enqueued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(enqueued, "the client reconnects");
    wait_for_processed(&env, "1").await;
    control.quit();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.processed, 2);
    env.redis.kill();
}

async fn wait_for_processed(env: &Env, want: &str) {
    for _ in 0..500 {
        if let Ok(Some(v)) = redis::cmd("GET")
            .arg("resque:stat:processed")
            .query_async::<Option<String>>(&mut env.conn())
            .await
        {
            if v == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("processed never reached {want}");
}

/// How many connections a server has accepted (read over a plain
/// connection of our own, which counts one more).
async fn connections_received(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// A scheme that does not match the server fails on the first attempt (one
/// connection, counted by the server: no retries) and says what to change.
#[tokio::test]
async fn a_wrong_scheme_fails_at_once_and_says_why() {
    let plain = LocalRedis::start().unwrap();
    let before = connections_received(&plain.url()).await;
    let tls_to_plain = tls_config(format!("rediss://127.0.0.1:{}/0", plain.port()), None, None);
    let err = RedisStore::connect(&tls_to_plain, "resque")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("TLS was refused") && err.contains("use redis://"), "{err}");
    let after = connections_received(&plain.url()).await;
    assert_eq!(after - before, 2, "one attempt (and our own INFO connection)");

    let pki = Pki::generate();
    let tls = tls_server(&pki, false);
    let plain_to_tls = tls_config(format!("redis://127.0.0.1:{}/0", tls.port()), None, None);
    let err = RedisStore::connect(&plain_to_tls, "resque")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("use rediss://"), "{err}");

    let nobody = LocalRedis::start().unwrap();
    let port = nobody.port();
    drop(nobody);
    let err = RedisStore::connect(&RedisConfig::new(format!("redis://127.0.0.1:{port}/0")), "resque")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("connection refused"), "{err}");
}

/// An idle worker polls seldom (here once a minute) but starts a new job at
/// once: producers publish on the wake channel with every enqueue.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_worker_is_woken_at_once_by_an_enqueue() {
    let env = Env::start().await;
    let client = env.client();
    client
        .enqueue(&Echo {
            message: "wake-first".into(),
        })
        .await
        .unwrap();
    let mut config = env.config("default");
    config.poll_min = Duration::from_secs(60);
    config.poll_max = Duration::from_secs(60);
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), registry(), config).run(rx));
    // The first job runs; the worker's next fetch finds nothing and it waits
    // its minute, subscribed to the wake channel.
    eventually("the first job ran", || async { ran("wake-first") }).await;
    eventually("subscribed", || async {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("resque:resq:wake")
            .query_async(&mut env.conn())
            .await
            .unwrap();
        subscribers == 1
    })
    .await;
    client
        .enqueue(&Echo {
            message: "wake-second".into(),
        })
        .await
        .unwrap();
    // Well within the minute: only a wake-up explains it.
    eventually("the second job ran before the next poll", || async {
        ran("wake-second")
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();
}

/// An ACL user without channel rights still enqueues, and its workers find
/// the jobs by polling.
#[tokio::test(flavor = "multi_thread")]
async fn without_channel_rights_enqueue_works_and_workers_poll() {
    let redis = LocalRedis::start_with(Options {
        acl_users: vec![
            "user default off".into(),
            "user nochannels on >pw ~resque:* resetchannels +@all".into(),
        ],
        ..Options::default()
    })
    .unwrap();
    let mut config = RedisConfig::new(redis.url());
    config.username = Some("nochannels".into());
    config.password = Some(SecretString::from("pw"));
    let store = RedisStore::connect(&config, "resque").await.unwrap();
    let keyring = std::sync::Arc::new(resq::Keyring::ephemeral());
    let client = Client::new(std::sync::Arc::new(store.clone()), std::sync::Arc::clone(&keyring)).unwrap();
    client
        .enqueue(&Echo {
            message: "polled".into(),
        })
        .await
        .unwrap();
    let mut worker_config = fast_config("default", keyring);
    worker_config.burst = true;
    let (_control, rx) = Control::new();
    let report = Worker::new(std::sync::Arc::new(store), registry(), worker_config)
        .run(rx)
        .await
        .unwrap();
    assert_eq!((report.processed, report.failed), (1, 0));
    assert!(ran("polled"));
}
