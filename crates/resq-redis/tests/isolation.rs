//! Process isolation refuses a program that is not a resq child.

mod common;

use common::*;
use resq::{Control, Worker};

#[tokio::test]
async fn isolation_with_a_program_that_is_not_a_resq_child_fails_at_start() {
    let env = Env::start().await;
    let mut config = env.config("default");
    config.isolation = Some(resq::worker::isolation::Isolation {
        program: Some("/bin/true".into()),
        ..Default::default()
    });
    let (_control, rx) = Control::new();
    let err = Worker::new(env.dyn_store(), registry(), config)
        .run(rx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/bin/true did not start as a resq child") && err.contains("serve_if_child"),
        "{err}"
    );
}
