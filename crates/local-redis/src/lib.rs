//! A private, throwaway `redis-server` on a free loopback port.
//!
//! `resq demo` uses it when no Redis is configured, tests use it with the
//! configuration they need (a password, ACL users, TLS), and benchmarks use it
//! so every figure comes from a server nobody else touches. The server keeps
//! nothing on disk, listens on 127.0.0.1 only, and is killed when dropped.
//! It can also run as a replica (`--replicaof` in [`Options::extra_args`])
//! or as a sentinel ([`Options::sentinel`]), for sentinel mode's tests.

mod cluster;

pub use cluster::LocalCluster;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS files for the server (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Require client certificates (`tls-auth-clients yes`).
    pub require_client_cert: bool,
}

/// How the server is configured.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `requirepass` for the default user.
    pub requirepass: Option<String>,
    /// ACL rules, one `user ...` line each, e.g. `user w on >pw ~* +@all`.
    pub acl_users: Vec<String>,
    /// Serve TLS only (the plain port is off).
    pub tls: Option<TlsFiles>,
    /// Any other `--name value` arguments.
    pub extra_args: Vec<String>,
    /// Run as a Redis Sentinel with this configuration (`sentinel monitor
    /// ...` lines and the like): written to `sentinel.conf` in the server's
    /// directory once, which the sentinel then rewrites as it learns (a
    /// restart keeps what it learnt). `requirepass` is the sentinel's own.
    pub sentinel: Option<String>,
    /// Run as a Redis Cluster node (`cluster-enabled yes`); its port is
    /// drawn so the cluster bus port (+10000) is free too. [`LocalCluster`]
    /// starts several and joins them.
    pub cluster: bool,
}

/// Why the server could not be started.
#[derive(Debug)]
pub enum Error {
    /// `redis-server` is not on the PATH.
    NotInstalled,
    Io(io::Error),
    /// It started but never accepted connections, or exited.
    NotReady(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotInstalled => write!(
                f,
                "redis-server is not installed. On Debian/Ubuntu run: \
                 sudo apt-get update && sudo apt-get install -y redis-server \
                 (or point resq at a Redis with RESQ_REDIS_URL)"
            ),
            Error::Io(e) => write!(f, "could not start redis-server: {e}"),
            Error::NotReady(why) => write!(f, "redis-server did not become ready: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A running private server; killed on drop.
#[derive(Debug)]
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
    options: Options,
    dir: tempfile::TempDir,
}

/// Ports are drawn from below the kernel's ephemeral range (32768 and up
/// on Linux), so a port freed by a restart is not handed to another
/// program's `bind(0)` meanwhile; two servers of ours drawing the same port
/// within a restart is caught by [`LocalRedis::owns_port`].
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A cluster node's ports: its own, and its bus port 10000 above it, both
/// below the ephemeral range.
const CLUSTER_PORTS: std::ops::Range<u16> = 20_000..22_700;

/// What Redis adds to a cluster node's port for its cluster bus.
const BUS_OFFSET: u16 = 10_000;

fn free_port(cluster: bool) -> io::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let range = if cluster { CLUSTER_PORTS } else { PORTS };
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for attempt in 0u64..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        let span = u64::from(range.end - range.start);
        let port = range.start + (h.finish() % span) as u16;
        if free(port) && (!cluster || free(port + BUS_OFFSET)) {
            return Ok(port);
        }
    }
    if cluster {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free port pair for a cluster node",
        ));
    }
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// True when process `pid` holds the socket listening on 127.0.0.1:`port`.
fn owns(pid: u32, port: u16) -> bool {
    let Some(inode) = listening_inode(port) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == wanted))
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listening_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, ..., st (0A = LISTEN), ..., inode (field 9)
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|s| s.to_string()))?
    })
}

impl LocalRedis {
    /// Starts a plain server with no password.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Options::default())
    }

    /// Starts a server with `options` on a free loopback port.
    pub fn start_with(options: Options) -> Result<Self, Error> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(options.cluster).map_err(Error::Io)?;
            let dir = tempfile::tempdir().map_err(Error::Io)?;
            let mut server = LocalRedis {
                child: None,
                port,
                options: options.clone(),
                dir,
            };
            let path = server.dir.path().to_path_buf();
            match server.spawn(&path) {
                Ok(()) => return Ok(server),
                Err(Error::NotReady(why)) => last = why, // the port was taken meanwhile: try another
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotReady(last))
    }

    fn spawn(&mut self, dir: &Path) -> Result<(), Error> {
        let mut args: Vec<String> = Vec::new();
        if let Some(config) = &self.options.sentinel {
            let path = dir.join("sentinel.conf");
            if !path.exists() {
                std::fs::write(&path, format!("{}\n", config.trim_end())).map_err(Error::Io)?;
            }
            args.extend([path.display().to_string(), "--sentinel".into()]);
        }
        args.extend([
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
            "--logfile".into(),
            dir.join("redis.log").display().to_string(),
        ]);
        match &self.options.tls {
            None => args.extend(["--port".into(), self.port.to_string()]),
            Some(tls) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                if tls.require_client_cert { "yes" } else { "no" }.into(),
            ]),
        }
        if let Some(pass) = &self.options.requirepass {
            args.extend(["--requirepass".into(), pass.clone()]);
        }
        if self.options.cluster {
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                dir.join("nodes.conf").display().to_string(),
                // Seconds, not the default 15, before a master that stopped
                // answering is failed over: tests kill masters on purpose.
                "--cluster-node-timeout".into(),
                "2000".into(),
            ]);
            if self.options.tls.is_some() {
                args.extend([
                    "--tls-cluster".into(),
                    "yes".into(),
                    "--tls-replication".into(),
                    "yes".into(),
                ]);
            }
            if let Some(pass) = &self.options.requirepass {
                args.extend(["--masterauth".into(), pass.clone()]);
            }
        }
        if !self.options.acl_users.is_empty() {
            let acl = dir.join("users.acl");
            std::fs::write(&acl, self.options.acl_users.join("\n") + "\n").map_err(Error::Io)?;
            args.extend(["--aclfile".into(), acl.display().to_string()]);
        }
        args.extend(self.options.extra_args.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Error::NotInstalled
                } else {
                    Error::Io(e)
                }
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                    self.child = None;
                    return Err(Error::NotReady(format!("exited with {status}: {}", log.trim())));
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if self.owns_port() {
                    return Ok(());
                }
                // Another server holds the port (a race with another test):
                // this one cannot bind it; say so rather than pass silently.
                self.kill();
                return Err(Error::NotReady(format!(
                    "port {} answers, but not from this redis-server",
                    self.port
                )));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(Error::NotReady("no connection after 15 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// True when the socket listening on this server's port belongs to this
    /// server's own process: a test talks to its own server, never to
    /// another test's that took the port meanwhile.
    pub fn owns_port(&self) -> bool {
        self.pid().is_some_and(|pid| owns(pid, self.port))
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://` when TLS is on. No password in it.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The pid of the server process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port: empty, unless its options
    /// turned persistence on. Fails (after retries) if the port is not this
    /// server's once it is up.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        let dir = self.dir.path().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(&dir) {
                Ok(()) => return Ok(()),
                Err(Error::NotReady(_)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's own directory (its log is `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only when redis-server is installed (the test suite installs it).
    #[test]
    fn a_sentinel_watches_its_master() {
        let Ok(master) = LocalRedis::start() else { return };
        let sentinel = LocalRedis::start_with(Options {
            sentinel: Some(format!("sentinel monitor m 127.0.0.1 {} 1", master.port())),
            ..Options::default()
        })
        .unwrap();
        let text = std::fs::read_to_string(sentinel.dir().join("sentinel.conf")).unwrap();
        assert!(text.contains("sentinel monitor m 127.0.0.1"), "{text}");
        assert!(sentinel.owns_port());
    }

    #[test]
    fn a_server_owns_its_port_and_not_another_servers() {
        let Ok(mut a) = LocalRedis::start() else { return };
        let b = LocalRedis::start().unwrap();
        assert!(a.owns_port() && b.owns_port());
        assert!(PORTS.contains(&a.port()) && PORTS.contains(&b.port()));
        let (a_pid, b_pid) = (a.pid().unwrap(), b.pid().unwrap());
        assert!(!owns(a_pid, b.port()) && !owns(b_pid, a.port()));
        a.restart().unwrap();
        assert!(a.owns_port(), "after a restart on the same port");
    }
}
