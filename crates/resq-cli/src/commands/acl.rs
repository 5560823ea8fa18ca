//! `resq acl --role ROLE`: prints the `ACL SETUSER` rule that gives one
//! part of a deployment exactly what it needs in the namespace, with a new
//! password (shown once; Redis keeps its SHA-256) or one read from stdin.

use std::io::BufRead;

use clap::Args;
use resq_redis::acl::{rule, AclRole, Layout};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::Failure;

#[derive(Args)]
pub struct AclArgs {
    /// producer, worker, web, web-read-only or admin; or sentinel, for the
    /// user resq logs in to the sentinels with (Sentinel mode).
    #[arg(long)]
    role: String,
    /// The ACL user's name (default resq-ROLE).
    #[arg(long)]
    user: Option<String>,
    /// The key namespace (default: the config's, else resque).
    #[arg(long)]
    namespace: Option<String>,
    /// Read the password from standard input's first line (else one is made).
    #[arg(long)]
    password_stdin: bool,
}

pub fn acl(settings: &Settings, args: AclArgs) -> Result<(), Failure> {
    let role = AclRole::parse(&args.role)
        .ok_or_else(|| Failure::usage("--role is producer, worker, web, web-read-only, admin or sentinel"))?;
    let user = args.user.unwrap_or_else(|| format!("resq-{}", role.name()));
    let namespace = args.namespace.unwrap_or_else(|| settings.namespace.clone());
    let plain =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !plain(&user) || !plain(&namespace) {
        return Err(Failure::usage(
            "--user and --namespace are 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let (password, shown) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?;
        (line.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| Failure::runtime(format!("no randomness: {e}")))?;
        (bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(), true)
    };
    if password.len() < 16 {
        return Err(Failure::usage("a Redis password has at least 16 characters"));
    }
    let hash: String = Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cluster = settings.redis.as_ref().is_some_and(|r| r.cluster.is_some());
    let layout = if cluster { Layout::Cluster } else { Layout::Standalone };
    if role == AclRole::Sentinel {
        println!("# resq acl: role sentinel. On every sentinel, as its administrator, run this, then ACL SAVE (or add it to the sentinel's aclfile):");
    } else if cluster {
        println!(
            "# resq acl: role {}, namespace {namespace}, cluster mode. On every node of the cluster (each keeps its own users), as a Redis administrator, run this, then ACL SAVE (or add it to each aclfile):",
            role.name()
        );
    } else {
        println!(
            "# resq acl: role {}, namespace {namespace}. As a Redis administrator, run this, then ACL SAVE (or add it to the aclfile):",
            role.name()
        );
    }
    println!(
        "ACL SETUSER {user} reset on #{hash} {}",
        rule(role, &namespace, layout).join(" ")
    );
    if role == AclRole::Sentinel {
        println!("# resq then logs in to the sentinels with RESQ_REDIS_SENTINEL_USERNAME={user} and the password in RESQ_REDIS_SENTINEL_PASSWORD_FILE.");
    } else {
        println!("# resq then logs in with RESQ_REDIS_USERNAME={user} and the password in RESQ_REDIS_PASSWORD_FILE.");
    }
    if shown {
        println!("# password (shown once; Redis keeps only its SHA-256): {password}");
    }
    Ok(())
}
