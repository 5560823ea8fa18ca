//! Property-based fuzzing of the HTTP API with schemathesis, against the
//! OpenAPI document the server itself serves: no 5xx, and no status, body,
//! header or content type outside the document. A bounded run (a fixed
//! seed and number of examples) so it belongs in the suite;
//! `scripts/ensure-schemathesis` installs the tool (`scripts/test` runs it).

mod common;

use std::process::Command;

use common::http::Server;
use common::*;
use serde_json::Value;

fn schemathesis() -> std::path::PathBuf {
    let local =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/schemathesis/bin/schemathesis");
    if local.exists() {
        return local;
    }
    panic!("schemathesis is not installed: run scripts/ensure-schemathesis (scripts/test does)");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let env = Env::start().await;
    let o = env.run(&[
        "token",
        "create",
        "--json",
        "--name",
        "fuzz",
        "--classes",
        "*",
        "--queues",
        "*",
        "--rate",
        "100000/s",
        "--burst",
        "100000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = serde_json::from_slice::<Value>(&o.stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let server = Server::start(env.resq(), env.dir.path().join("serve.log"));
    let out = Command::new(schemathesis())
        .current_dir(env.dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .args([
            "run",
            &format!("http://{}/api/v1/openapi.json", server.addr),
            "--header",
            &format!("Authorization: Bearer {secret}"),
            "--max-examples",
            "100",
            "--seed",
            "1",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
    assert!(!report.contains(&secret[..24]), "the secret stays out of the report");
    // It did enqueue: generated jobs of registered classes got through.
    assert!(!server.log_text().contains("panicked"), "{}", server.log_text());
}
