//! What the dashboard keeps in Redis: chart samples (one replica samples
//! each interval, the lists stay bounded, the read is bounded), the login
//! lockout counted in one step, users and sessions.

mod common;

use std::time::Duration;

use common::*;
use resq::UnixMs;
use resq_redis::web::{Role, Sample, SessionRecord, UserRecord, WebStore, COARSE_KEPT, FINE_KEPT};

fn sample(at_ms: u64) -> Sample {
    Sample {
        at_ms,
        processed: at_ms / 10,
        failed: 0,
        waiting: 1,
        queues: vec![("default".into(), 1)],
    }
}

#[tokio::test]
async fn one_replica_samples_each_interval_and_the_lists_stay_bounded() {
    let env = Env::start().await;
    let a = WebStore::new(&env.store);
    let b = WebStore::new(&env.store);
    let interval = Duration::from_secs(3600);
    assert!(a.record_sample(&sample(1), interval).await.unwrap());
    assert!(
        !b.record_sample(&sample(2), interval).await.unwrap(),
        "the other replica waits its turn"
    );
    // Many samples (turns cleared by hand, as intervals passing would).
    let mut conn = env.store.connection();
    for i in 0..(FINE_KEPT as u64 + 50) {
        let _: () = redis::cmd("DEL")
            .arg("resque:resq:web:history-turn")
            .arg("resque:resq:web:history-turn:coarse")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(a.record_sample(&sample(10 + i), interval).await.unwrap());
    }
    let fine: u64 = redis::cmd("LLEN")
        .arg("resque:resq:web:history:fine")
        .query_async(&mut conn)
        .await
        .unwrap();
    let coarse: u64 = redis::cmd("LLEN")
        .arg("resque:resq:web:history:coarse")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fine, FINE_KEPT as u64);
    assert_eq!(coarse, COARSE_KEPT as u64);
    // An hour at 1 s between samples reads the fine list, at most its length, oldest first.
    let got = a
        .samples(Duration::from_secs(3600), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), FINE_KEPT);
    assert!(got.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    // A day reads the coarse list.
    let day = a
        .samples(Duration::from_secs(86_400), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(day.len(), COARSE_KEPT);
}

#[tokio::test]
async fn a_lockout_counts_before_the_check_and_locks_after_five() {
    let env = Env::start().await;
    let web = WebStore::new(&env.store);
    let now = UnixMs::now();
    let (first, longest) = (Duration::from_secs(30), Duration::from_secs(900));
    for _ in 0..5 {
        assert!(web.login_attempt("h", now, 5, first, longest).await.unwrap());
    }
    assert!(!web.login_attempt("h", now, 5, first, longest).await.unwrap(), "locked");
    assert!(!web
        .login_attempt("h", now.plus(Duration::from_secs(29)), 5, first, longest)
        .await
        .unwrap());
    // The lock passes: one more try, then a lock twice as long.
    assert!(web
        .login_attempt("h", now.plus(Duration::from_secs(31)), 5, first, longest)
        .await
        .unwrap());
    let later = now.plus(Duration::from_secs(31 + 59));
    assert!(!web.login_attempt("h", later, 5, first, longest).await.unwrap());
    assert!(web
        .login_attempt("h", later.plus(Duration::from_secs(2)), 5, first, longest)
        .await
        .unwrap());
    // A success clears it.
    web.login_succeeded("h").await.unwrap();
    assert!(web.login_attempt("h", now, 5, first, longest).await.unwrap());
}

#[tokio::test]
async fn users_and_sessions_round_trip_and_sessions_expire_when_idle() {
    let env = Env::start().await;
    let web = WebStore::new(&env.store);
    let user = UserRecord {
        name: "ada".into(),
        role: Role::Operator,
        hash: "$argon2id$v=19$...".into(),
        created_at_ms: 1,
        changed_at_ms: 1,
    };
    assert!(web.create_user(&user).await.unwrap());
    assert!(!web.create_user(&user).await.unwrap(), "names are unique");
    assert_eq!(web.user("ada").await.unwrap(), Some(user.clone()));
    assert_eq!(web.user_count().await.unwrap(), 1);
    let session = SessionRecord {
        user: "ada".into(),
        csrf: "t".into(),
        created_at_ms: 2,
        user_changed_at_ms: 1,
    };
    web.create_session("abc", &session, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(
        web.touch_session("abc", Duration::from_millis(200)).await.unwrap(),
        Some(session)
    );
    let mut conn = env.store.connection();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("resque:resq:web:session:abc")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        web.touch_session("abc", Duration::from_millis(200)).await.unwrap(),
        None
    );
    assert!(web.remove_user("ada").await.unwrap());
    assert!(!web.remove_user("ada").await.unwrap());
}
