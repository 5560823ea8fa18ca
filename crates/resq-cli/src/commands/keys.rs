//! `resq keys generate|add|rotate`: keys files, written mode 0600, rotated
//! without hand-editing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use resq::{Keyring, SigAlg};

use crate::Failure;

#[derive(Subcommand)]
pub enum KeysAction {
    /// Write a new keys file (mode 0600): one signing key and one encryption key.
    Generate(GenerateArgs),
    /// Add a key to a keys file, not used yet (workers learn it before
    /// producers sign with it); `rotate` makes a new key the active one.
    Add(EditArgs),
    /// Add a key and make it the one that signs (or, with --encryption,
    /// encrypts); the old one stays to verify (decrypt) the jobs made before.
    Rotate(EditArgs),
}

#[derive(Args)]
pub struct EditArgs {
    /// The keys file to change (rewritten whole, atomically, mode 0600).
    #[arg(long)]
    file: PathBuf,
    /// The new signing key's algorithm.
    #[arg(long, value_enum, default_value = "hs256", conflicts_with = "encryption")]
    alg: Alg,
    /// An encryption key instead of a signing key.
    #[arg(long)]
    encryption: bool,
    /// For an Ed25519 key: the workers' verify-only file, to which its
    /// public part is added.
    #[arg(long)]
    worker_file: Option<PathBuf>,
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
    /// For Ed25519: where to write the workers' file (the public key, and
    /// the encryption key for encrypted arguments; default: next to --out).
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
                println!(
                    "wrote {} (mode 0600): give this file to workers. It verifies the producers' \
                     signatures (public key only) and holds the encryption key that opens encrypted \
                     arguments, so keep it secret too",
                    path.display()
                );
            }
            Ok(())
        }
        KeysAction::Add(a) => edit(a, false),
        KeysAction::Rotate(a) => edit(a, true),
    }
}

/// `keys add` and `keys rotate`.
fn edit(a: EditArgs, activate: bool) -> Result<(), Failure> {
    // Loading checks the file's permissions and validity first.
    Keyring::load(&a.file).map_err(Failure::usage)?;
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", a.file.display())))?;
    let alg = (!a.encryption).then_some(match a.alg {
        Alg::Hs256 => SigAlg::Hs256,
        Alg::Ed25519 => SigAlg::EdDsa,
    });
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let added = Keyring::add_key(&text, alg, &suffix[suffix.len() - 12..], activate).map_err(Failure::usage)?;
    replace_file(&a.file, &added.text)?;
    let what = if a.encryption { "encryption" } else { "signing" };
    if activate {
        println!(
            "added {what} key {} to {} and made it the active one; the old key stays to verify \
             (decrypt) what it made until those jobs have expired (7 days by default), then remove it",
            added.kid,
            a.file.display()
        );
    } else {
        println!("added {what} key {} to {} (not active)", added.kid, a.file.display());
    }
    match (added.worker_entry, a.worker_file) {
        (Some(entry), Some(path)) => {
            let mut workers = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            workers.push_str(&format!("\n{entry}"));
            Keyring::from_toml(&workers).map_err(Failure::usage)?;
            replace_file(&path, &workers)?;
            println!("added its public key to the workers' file {}", path.display());
        }
        (Some(entry), None) => println!(
            "workers need its public key before producers sign with it: add this to their keys file \
             (or pass --worker-file):\n{entry}"
        ),
        (None, _) => {}
    }
    Ok(())
}

/// Replaces `path` with `text` atomically (a new file, mode 0600, renamed
/// over the old one), so a crash leaves the old file or the new one.
fn replace_file(path: &Path, text: &str) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Failure::runtime(format!("cannot write next to {}: {e}", path.display())))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| tmp.write_all(text.as_bytes()))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| Failure::runtime(format!("cannot replace {}: {}", path.display(), e.error)))?;
    Ok(())
}
