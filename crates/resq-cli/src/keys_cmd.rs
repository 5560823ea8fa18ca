//! `resq keys generate` and `resq jobs list|schema`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use resq::{Keyring, SigAlg};

use crate::{demo_jobs, Failure};

#[derive(Subcommand)]
pub enum KeysAction {
    /// Write a new keys file (mode 0600): one signing key and one encryption key.
    Generate(GenerateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Alg {
    /// HMAC-SHA256: producers and workers share the key.
    Hs256,
    /// Ed25519: producers sign with the private key; workers get a public-only file.
    Ed25519,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Where to write the keys file; it must not exist yet.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "hs256")]
    alg: Alg,
    /// For Ed25519: where to write the public-only file for workers.
    #[arg(long)]
    public_out: Option<PathBuf>,
}

/// Creates `path` with `mode`, refusing to overwrite a file.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<(), Failure> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            Failure::usage(format!(
                "cannot create {}: {e} (resq never overwrites a keys file)",
                path.display()
            ))
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))
}

pub fn keys(action: KeysAction) -> Result<(), Failure> {
    match action {
        KeysAction::Generate(a) => {
            let alg = match a.alg {
                Alg::Hs256 => SigAlg::Hs256,
                Alg::Ed25519 => SigAlg::EdDsa,
            };
            let suffix = uuid::Uuid::now_v7().simple().to_string();
            let (text, public) = Keyring::generate(alg, &suffix[suffix.len() - 12..]);
            write_new(&a.out, 0o600, &text)?;
            println!(
                "wrote {} (mode 0600); set RESQ_KEYS_FILE={}",
                a.out.display(),
                a.out.display()
            );
            if let Some(public) = public {
                let path = a.public_out.unwrap_or_else(|| a.out.with_extension("public.toml"));
                write_new(&path, 0o600, &public)?;
                println!("wrote {}: give this public-only file to workers", path.display());
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum JobsAction {
    /// The job classes this binary registers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A class's argument schema (JSON Schema), derived from its Rust type.
    Schema { class: String },
}

pub fn jobs(action: JobsAction) -> Result<(), Failure> {
    let registry = demo_jobs::registry();
    match action {
        JobsAction::List { json } => {
            let infos: Vec<resq::ClassInfo> = registry.classes().iter().filter_map(|c| registry.info(c)).collect();
            if json {
                let rows: Vec<serde_json::Value> = infos
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "class": i.class,
                            "queue": i.queue,
                            "encrypted": i.encrypt,
                            "max_attempts": i.max_attempts,
                            "timeout_ms": i.timeout.map(|t| t.as_millis() as u64),
                            "ttl_s": i.ttl.map(|t| t.as_secs()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            for i in infos {
                println!(
                    "{:<10} queue={} encrypted={} attempts={} timeout={}",
                    i.class,
                    i.queue,
                    i.encrypt,
                    i.max_attempts,
                    i.timeout
                        .map_or("none".to_string(), |t| format!("{} ms", t.as_millis()))
                );
            }
        }
        JobsAction::Schema { class } => {
            let schema = registry.schema(&class).ok_or_else(|| {
                Failure::usage(format!(
                    "class {:?} is not registered here (see `resq jobs list`)",
                    crate::output::clip(&class, 64)
                ))
            })?;
            println!("{}", serde_json::to_string_pretty(schema).map_err(Failure::runtime)?);
        }
    }
    Ok(())
}
