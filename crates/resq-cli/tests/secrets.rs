//! No secret in any output: a table of broken configs, Redis URLs, keys files
//! and environment settings, each carrying a marker secret where a careless
//! operator would put one, run through the real binary with trace-level
//! JSON logs. The command must fail with a message, and nothing it prints
//! (stdout, stderr, logs) may contain the marker.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{stderr, stdout};

/// Looks like a real secret: long, and base64url like resq's own keys.
const MARKER: &str = "Zk9xQ3Rm7bW2pL0vS8nHjT4yE1cA6dUq";

struct Case {
    what: &'static str,
    /// resq.toml, if any.
    config: Option<String>,
    /// keys.toml, if any (written mode 0600).
    keys: Option<String>,
    env: Vec<(&'static str, String)>,
    /// The command to run; `None`: each of `stats`, `worker --burst` and
    /// `enqueue`, so every path that reads the settings is tried.
    args: Option<&'static [&'static str]>,
}

fn case(what: &'static str) -> Case {
    Case {
        what,
        config: None,
        keys: None,
        env: Vec::new(),
        args: None,
    }
}

const COMMANDS: [&[&str]; 3] = [
    &["stats"],
    &["worker", "--burst"],
    &["enqueue", "Echo", "--args", "{\"message\":\"x\"}"],
];

fn run(dir: &Path, case: &Case, args: &[&str], redis_url: &str) -> Output {
    let _ = std::fs::remove_file(dir.join("resq.toml"));
    let _ = std::fs::remove_file(dir.join("keys.toml"));
    if let Some(text) = &case.config {
        std::fs::write(dir.join("resq.toml"), text).unwrap();
    }
    // A sound keys file unless the case breaks it, so that commands which
    // need keys get as far as the setting under test.
    let sound = format!("signing_key = \"k\"\n[[keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"{GOOD_KEY}\"\n");
    {
        let text = case.keys.as_ref().unwrap_or(&sound);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("keys.toml"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resq"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RESQ_LOG", "trace")
        .env("RESQ_REDIS_URL", redis_url)
        .stdin(Stdio::null());
    cmd.env("RESQ_KEYS_FILE", dir.join("keys.toml"));
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    cmd.arg("--log-format").arg("json").args(args).output().unwrap()
}

const GOOD_KEY: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

#[test]
fn no_broken_config_url_keys_file_or_variable_prints_its_secret() {
    let redis = local_redis::LocalRedis::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = MARKER;
    let good_key = GOOD_KEY;
    let key_file = |body: String| format!("signing_key = \"k\"\n[[keys]]\nkid = \"k\"\nalg = \"HS256\"\n{body}\n");
    let url_case = |what: &'static str, url: String| Case {
        env: vec![("RESQ_REDIS_URL", url)],
        ..case(what)
    };
    let cases = vec![
        Case {
            config: Some(format!("[redis]\npassword = \"{m}\"\n")),
            ..case("a password under [redis] (an unknown key)")
        },
        Case {
            config: Some(format!(
                "[redis]\nurl = \"redis://:{m}@127.0.0.1:1/0\"\npassword = \"{m}\"\n"
            )),
            ..case("a password in the URL and an unknown key")
        },
        Case {
            config: Some(format!("[worker]\nconcurrency = \"{m}\"\n")),
            ..case("a secret where a number goes")
        },
        Case {
            config: Some(format!("[isolation]\nmode = \"{m}\"\n")),
            ..case("a secret where an enum goes")
        },
        Case {
            config: Some(format!("[redis]\nurl = \"{m}\n")),
            ..case("an unterminated string")
        },
        Case {
            config: Some(format!("[redis]\n{m} = 1\n")),
            ..case("a secret as a key")
        },
        Case {
            config: Some(format!("[security]\nallow_unsigned = [\"[{m}\"]\n")),
            ..case("a secret in a bad glob")
        },
        Case {
            config: Some(format!(
                "[[cron]]\nname = \"n\"\nschedule = \"{m}\"\nclass = \"Echo\"\n"
            )),
            ..case("a secret as a cron schedule")
        },
        Case {
            config: Some(format!(
                "[[cron]]\nname = \"n\"\nschedule = \"@daily\"\nclass = \"Echo\"\ntime_zone = \"{m}\"\n"
            )),
            ..case("a secret as a time zone")
        },
        Case {
            config: Some(format!(
                "[[cron]]\nname = \"n\"\nschedule = \"@daily\"\nclass = \"{m}.x\"\n"
            )),
            ..case("a secret as a cron class")
        },
        Case {
            config: Some(format!(
                "[[cron]]\nname = \"n\"\nschedule = \"@daily\"\nclass = \"Sleep\"\nargs = {{ ms = \"{m}\" }}\n"
            )),
            args: Some(&["worker", "--burst"]),
            ..case("a secret as a cron argument of the wrong type")
        },
        Case {
            env: vec![("RESQ_CONCURRENCY", m.to_string())],
            ..case("a secret in a number variable")
        },
        Case {
            env: vec![("RESQ_ISOLATION", m.to_string())],
            ..case("a secret in an enum variable")
        },
        url_case("userinfo", format!("redis://user:{m}@127.0.0.1:1/0")),
        url_case("password only", format!("redis://:{m}@127.0.0.1:1/0")),
        url_case("TLS", format!("rediss://:{m}@127.0.0.1:1/0")),
        url_case(
            "unix socket, pass=",
            format!("redis+unix:///nonexistent/r.sock?db=0&pass={m}"),
        ),
        url_case("unix:, password=", format!("unix:///nonexistent/r.sock?password={m}")),
        url_case("query password", format!("redis://127.0.0.1:1/0?password={m}")),
        url_case("no scheme", format!(":{m}@127.0.0.1:1")),
        url_case("the secret as the URL", m.to_string()),
        url_case("a slash in the password", format!("redis://u:{m}/x@127.0.0.1:1/0")),
        Case {
            config: Some(format!("[redis]\nmode = \"{m}\"\n")),
            ..case("a secret as the Redis mode")
        },
        Case {
            env: vec![("RESQ_REDIS_MODE", m.to_string())],
            ..case("a secret in RESQ_REDIS_MODE")
        },
        Case {
            env: vec![
                ("RESQ_REDIS_MODE", "sentinel".to_string()),
                ("RESQ_REDIS_MASTER_NAME", "mymaster".to_string()),
                ("RESQ_REDIS_SENTINELS", format!("127.0.0.1:1,{m}")),
            ],
            ..case("a secret as a sentinel")
        },
        Case {
            config: Some(format!(
                "[redis]\nmode = \"sentinel\"\nmaster_name = \"m\"\nsentinels = [\"127.0.0.1:1\"]\n\
                 url = \"redis+unix:///run/r.sock?pass={m}\"\n"
            )),
            ..case("a unix socket URL with a password in sentinel mode")
        },
        Case {
            env: vec![("RESQ_REDIS_SENTINEL_PASSWORD", m.to_string())],
            ..case("a sentinel password in standalone mode")
        },
        Case {
            env: vec![
                ("RESQ_REDIS_MODE", "sentinel".to_string()),
                ("RESQ_REDIS_MASTER_NAME", "mymaster".to_string()),
                ("RESQ_REDIS_SENTINELS", "127.0.0.1:1".to_string()),
                ("RESQ_REDIS_SENTINEL_PASSWORD", m.to_string()),
                ("RESQ_REDIS_URL", format!("redis://:{m}@mymaster/0")),
            ],
            ..case("no sentinel listening, with a sentinel password and a data password")
        },
        Case {
            keys: Some(key_file(format!("secret = \"{good_key}\"")).replace("HS256", m)),
            ..case("a secret as the alg")
        },
        Case {
            keys: Some(key_file(format!("secret = \"{m}!!\""))),
            ..case("a secret that is not base64url")
        },
        Case {
            keys: Some(key_file(format!("secret = \"{good_key}\"\n{m} = 1"))),
            ..case("a secret as a key of the keys file")
        },
        Case {
            keys: Some(key_file(format!("secret = \"{good_key}\"")).replacen("\"k\"", &format!("\"{m}\""), 1)),
            ..case("a secret as the signing key's id")
        },
        Case {
            keys: Some(format!(
                "[[encryption_keys]]\nkid = \"e\"\nalg = \"{m}\"\nsecret = \"{m}\"\n"
            )),
            ..case("a secret as the encryption alg")
        },
    ];
    let mut runs = 0;
    for c in &cases {
        let commands: Vec<&[&str]> = match c.args {
            Some(args) => vec![args],
            // `stats` reads no keys file.
            None if c.keys.is_some() => COMMANDS[1..].to_vec(),
            None => COMMANDS.to_vec(),
        };
        for args in commands {
            let o = run(dir.path(), c, args, &redis.url());
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(!o.status.success(), "{} ({args:?}) should fail: {all}", c.what);
            assert!(
                stderr(&o).contains("error: "),
                "{} ({args:?}): no message: {all}",
                c.what
            );
            assert!(
                !all.contains(&MARKER[..10]),
                "{} ({args:?}) printed (part of) the secret:\n{all}",
                c.what
            );
            runs += 1;
        }
    }
    let key_cases = cases.iter().filter(|c| c.keys.is_some()).count();
    assert_eq!(runs, 3 * cases.len() - 2 - key_cases);
}
