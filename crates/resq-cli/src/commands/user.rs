//! `resq user`: the dashboard's users. A password is read from the
//! terminal (asked twice, not echoed) or, with `--password-stdin`, from the
//! first line of standard input; never from an argument, which other users
//! of the machine could read in the process list.

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;
use resq::UnixMs;
use resq_api::dashboard::password;
use resq_redis::web::{Role, UserRecord, WebStore};
use serde_json::json;

use crate::config::Settings;
use crate::{connect, Failure};

#[derive(Subcommand)]
pub enum UserAction {
    /// Add a user (the password is asked for).
    Add {
        name: String,
        /// viewer (reads), operator (also retries, removes, pauses), admin
        /// (also manages users and tokens).
        #[arg(long)]
        role: String,
        /// Read the password from standard input's first line.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every user and their role (never a hash).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user: their sessions end at their next request.
    Remove { name: String },
    /// A new password for a user: their sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role: their sessions end.
    Role { name: String, role: String },
}

pub async fn user(settings: &Settings, action: UserAction) -> Result<(), Failure> {
    let redis = connect(settings).await?;
    let store = WebStore::new(&redis);
    match action {
        UserAction::Add {
            name,
            role,
            password_stdin,
        } => {
            check_name(&name)?;
            let role: Role = role.parse().map_err(Failure::usage)?;
            let hash = password::hash(&read_password(password_stdin)?).map_err(Failure::usage)?;
            let now = UnixMs::now().0;
            let record = UserRecord {
                name: name.clone(),
                role,
                hash,
                created_at_ms: now,
                changed_at_ms: now,
            };
            if !store.create_user(&record).await.map_err(Failure::runtime)? {
                return Err(Failure::usage(format!(
                    "a user named {name} exists; use `resq user passwd` or `resq user role`"
                )));
            }
            super::audit_cli(
                settings,
                &redis,
                "user.add",
                &format!("{name} role={}", role.as_str()),
                "ok",
            )
            .await;
            println!("added {name} ({})", role.as_str());
        }
        UserAction::List { json } => {
            let users = store.users().await.map_err(Failure::runtime)?;
            for u in users {
                if json {
                    println!(
                        "{}",
                        json!({"name": u.name, "role": u.role.as_str(), "created_at": UnixMs(u.created_at_ms).to_string()})
                    );
                } else {
                    println!("{}  {}  since {}", u.name, u.role.as_str(), UnixMs(u.created_at_ms));
                }
            }
        }
        UserAction::Remove { name } => {
            if !store.remove_user(&name).await.map_err(Failure::runtime)? {
                return Err(Failure::usage(format!("no user named {}", crate::output::safe(&name))));
            }
            super::audit_cli(settings, &redis, "user.remove", &name, "ok").await;
            println!("removed {name}");
        }
        UserAction::Passwd { name, password_stdin } => {
            let mut record = existing(&store, &name).await?;
            record.hash = password::hash(&read_password(password_stdin)?).map_err(Failure::usage)?;
            record.changed_at_ms = UnixMs::now().0;
            store.save_user(&record).await.map_err(Failure::runtime)?;
            super::audit_cli(settings, &redis, "user.passwd", &name, "ok").await;
            println!("changed the password of {name}; their sessions have ended");
        }
        UserAction::Role { name, role } => {
            let mut record = existing(&store, &name).await?;
            record.role = role.parse().map_err(Failure::usage)?;
            record.changed_at_ms = UnixMs::now().0;
            store.save_user(&record).await.map_err(Failure::runtime)?;
            let target = format!("{name} role={}", record.role.as_str());
            super::audit_cli(settings, &redis, "user.role", &target, "ok").await;
            println!("{name} is now {}; their sessions have ended", record.role.as_str());
        }
    }
    Ok(())
}

async fn existing(store: &WebStore, name: &str) -> Result<UserRecord, Failure> {
    store
        .user(name)
        .await
        .map_err(Failure::runtime)?
        .ok_or_else(|| Failure::usage(format!("no user named {}", crate::output::safe(name))))
}

fn check_name(name: &str) -> Result<(), Failure> {
    if resq_redis::web::valid_user_name(name) {
        Ok(())
    } else {
        Err(Failure::usage(resq_redis::web::USER_NAME_RULE))
    }
}

fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("cannot read the password from standard input: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to ask the password on: pipe it in with --password-stdin",
        ));
    }
    let first = rpassword::prompt_password("Password (12 characters or more): ")
        .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?;
    let again =
        rpassword::prompt_password("Again: ").map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?;
    if first != again {
        return Err(Failure::usage("the two passwords differ"));
    }
    Ok(first)
}
