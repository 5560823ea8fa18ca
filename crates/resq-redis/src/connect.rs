//! Connecting to Redis: `redis://` and `rediss://` URLs, an ACL user and a
//! password that never appears in any output, TLS with a private CA and an
//! optional client certificate, and a connection manager that reconnects with
//! backoff when Redis goes away; in sentinel mode, to the master the
//! sentinels name (see [`crate::sentinel`] and [`crate::Connection`]).

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};

use crate::cluster::{connect_cluster, ClusterConfig};
use crate::connection::Connection;
use crate::sentinel::{self, SentinelConfig};

/// Where and how to connect. `Debug` never shows the password, and the URL is
/// shown without its user-info part.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS).
    pub url: String,
    /// An ACL user; `None` uses the URL's or Redis's `default` user.
    pub username: Option<String>,
    /// The password, from a file or an environment variable, never the command line.
    pub password: Option<SecretString>,
    /// PEM CA bundle that signed the server's certificate (instead of the web roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require them.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// How long one command may wait for its answer.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Sentinel mode: the master is the one these sentinels name, and `url`
    /// only lends its scheme, user-info and database (its host and port are
    /// replaced by the master's). `None`: standalone, `url` is the server.
    pub sentinel: Option<SentinelConfig>,
    /// Cluster mode: the cluster these nodes belong to, and `url` only lends
    /// its scheme and user-info (each node's host and port replace its
    /// own). `None` (and no sentinels): standalone.
    pub cluster: Option<ClusterConfig>,
    /// Durable acknowledgements (`redis.wait_replicas`): the store sends
    /// `WAIT` after each write it acknowledges to someone. `None`: off, the
    /// acknowledgement is the master's alone (Redis replicates later).
    pub wait: Option<WaitReplicas>,
}

/// `WAIT <replicas> <timeout>` after each write that is acknowledged to
/// someone: an enqueue (to its producer), an ack and a requeue (to the
/// worker, which then forgets the job). The write returns only once that
/// many replicas confirmed they hold it, or with
/// [`resq::StoreError::NotReplicated`] when fewer did within `timeout`, so a
/// job acknowledged to its producer is on a replica when a failover promotes
/// one. It narrows Redis's asynchronous replication, it does not make Redis
/// consistent: see docs/operations.md, "Durable acknowledgements".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    /// How many replicas must hold the write (at least 1).
    pub replicas: u32,
    /// How long the master waits for them: `WAIT`'s own timeout, which must
    /// be shorter than the connection's response timeout (a reply that
    /// times out on the client would leave the write's fate unknown).
    /// Never zero (`WAIT n 0` blocks until the replicas answer, however long).
    pub timeout: Duration,
}

impl WaitReplicas {
    /// `WAIT`'s timeout argument in milliseconds (at least 1: 0 means forever).
    pub(crate) fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis().clamp(1, u128::from(u64::MAX)) as u64
    }
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            sentinel: None,
            cluster: None,
            wait: None,
        }
    }

    /// The URL with any `user:password@` part replaced, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .field("wait", &self.wait)
            .finish()
    }
}

/// Why a connection could not be set up. Messages never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "the Redis URL is not valid (expected redis://host:port/db, rediss://host:port/db or \
         redis+unix:///path?db=0): {reason}"
    )]
    BadUrl { reason: String },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("client_cert_file and client_key_file must be given together")]
    HalfClientCert,
    #[error("cannot connect to Redis at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot connect to Redis at {url}: connection refused (nothing listens there; is the URL right and Redis running?)")]
    Refused { url: String },
    #[error("cannot connect to Redis at {url}: no answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error(
        "cannot connect to Redis at {url}: TLS was refused: the server did not answer the TLS handshake \
         (a plain-text port? use redis:// for it, or the server's tls-port; a CA that is not the server's \
         fails differently)"
    )]
    TlsRefused { url: String },
    #[error(
        "cannot connect to Redis at {url}: the server closed the connection during the handshake \
         (if it serves TLS only, use rediss://)"
    )]
    ClosedInHandshake { url: String },
    #[error("cannot connect to Redis at {url}: TLS failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("cannot connect to Redis at {url}: the server's certificate is not trusted ({reason}): {ca}")]
    UntrustedServer { url: String, ca: String, reason: String },
    #[error("cannot connect to Redis at {url}: the server refused the client certificate {cert}: {reason}")]
    ClientCertRefused { url: String, cert: String, reason: String },
    #[error("Redis at {url} refused the credentials of {user}: {reason}")]
    Auth { url: String, user: String, reason: String },
    #[error("no sentinel named a master for {master} that answers as one: {reasons}")]
    NoMaster { master: String, reasons: String },
    #[error(
        "the replicas' wait ({wait_ms} ms) is not shorter than the response timeout ({response_ms} ms): a write \
         waiting for its replicas would time out on the client first, its outcome unknown"
    )]
    WaitOutlastsResponse { wait_ms: u64, response_ms: u64 },
}

/// The URL with every part that may hold a secret replaced: the user-info
/// (`user:password@`, whatever the scheme, with or without `//`), the values
/// of `pass`, `password` and similar query parameters (`redis+unix://` and
/// `unix://` carry the password there), and any fragment. When in doubt it
/// hides more: an `@` anywhere hides everything between the scheme and it.
///
/// ```
/// use resq_redis::redact_url;
/// assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://<redacted>@h:1/0");
/// assert_eq!(redact_url("redis+unix:///run/r.sock?db=0&pass=pw"), "redis+unix:///run/r.sock?db=0&pass=<redacted>");
/// ```
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((head, _)) => (head, "#<redacted>"),
        None => (url, ""),
    };
    let start = before_fragment.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = before_fragment.split_at(start);
    let rest = match rest.rfind('@') {
        Some(at) => format!("<redacted>@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query)),
        None => (rest, None),
    };
    let mut out = format!("{scheme}{path}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}=<redacted>"),
                Some(_) => param.to_string(),
                None if is_secret_param(param) => "<redacted>".to_string(),
                None => param.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out.push_str(fragment);
    out
}

/// Query parameter names that carry a password (redis-rs reads `pass` and
/// `password`; the rest are spellings someone may try).
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "password", "passwd", "pwd", "secret", "token", "auth"]
        .iter()
        .any(|secret| name == *secret || name.ends_with(&format!("_{secret}")) || name.contains("pass"))
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        what,
        path: path.clone(),
        source,
    })
}

/// Builds a client (does not connect yet).
pub fn client(config: &RedisConfig) -> Result<redis::Client, ConnectError> {
    // rustls needs one crypto provider chosen when several are linked; a second
    // call finds it installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The URL is not quoted back: one that does not parse may be anything,
    // a password pasted in the wrong place included.
    let bad_url = |reason: String| ConnectError::BadUrl { reason };
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|_| bad_url("it does not parse as one".into()))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose_secret());
    }
    info = info.set_redis_settings(settings);

    let built = match tls_certificates(config)? {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    };
    built.map_err(|e| bad_url(e.to_string()))
}

/// The private CA and client certificate the configuration names, read;
/// `None` when it names neither (TLS, if `rediss://`, then trusts the web's
/// roots).
pub(crate) fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, ConnectError> {
    let wants_custom_tls =
        config.ca_file.is_some() || config.client_cert_file.is_some() || config.client_key_file.is_some();
    if !wants_custom_tls {
        return Ok(None);
    }
    let client_tls = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("client certificate", cert)?,
            client_key: read("client key", key)?,
        }),
        (None, None) => None,
        _ => return Err(ConnectError::HalfClientCert),
    };
    let root_cert = config.ca_file.as_ref().map(|p| read("CA file", p)).transpose()?;
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

/// Connects and returns the connection to the master (which, in sentinel
/// mode, follows a failover), and a client for dedicated connections such
/// as pub/sub (in sentinel mode, to the first master:
/// [`Connection::master_client`] has the current one).
pub async fn connect(config: &RedisConfig) -> Result<(Connection, redis::Client), ConnectError> {
    if let Some(cluster) = &config.cluster {
        let (connection, seed, seeds) = connect_cluster(config, cluster).await?;
        return Ok((Connection::clustered(connection, seeds), seed));
    }
    let Some(sentinels) = &config.sentinel else {
        let (manager, client) = connect_direct(config).await?;
        return Ok((Connection::direct(manager), client));
    };
    let unusable = || ConnectError::BadUrl {
        reason: "sentinel mode needs a redis:// or rediss:// URL (its host and port are the master's)".into(),
    };
    if !sentinel::url_is_usable(&config.url) {
        return Err(unusable());
    }
    let (host, port) = sentinel::find_master(config, sentinels)
        .await
        .map_err(|no| ConnectError::NoMaster {
            master: sentinels.master_name.clone(),
            reasons: no.to_string(),
        })?;
    let at = sentinel::master_config(config, &host, port).ok_or_else(unusable)?;
    let (manager, client) = connect_direct(&at).await?;
    Ok((
        Connection::followed(config.clone(), (host, port), manager, client.clone()),
        client,
    ))
}

/// Connects to the server `config.url` names and returns a manager that
/// reconnects to it with exponential backoff, and the client.
pub(crate) async fn connect_direct(config: &RedisConfig) -> Result<(ConnectionManager, redis::Client), ConnectError> {
    let client = client(config)?;
    // One direct attempt first: a refused connection, a TLS mismatch or bad
    // credentials are reported in seconds and by name, not after the
    // manager's retries.
    let url = config.redacted_url();
    let probe = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.connect_timeout));
    // A PING too: a server that wants a password accepts the connection
    // and refuses the first command.
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection_with_config(&probe).await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    match tokio::time::timeout(config.connect_timeout + Duration::from_secs(1), attempt).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                url,
                seconds: config.connect_timeout.as_secs().max(1),
            })
        }
        Ok(Err(e)) => return Err(diagnose(config, e)),
        Ok(Ok(())) => {}
    }
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.response_timeout))
        .set_connection_timeout(Some(config.connect_timeout))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(5))
        .set_exponent_base(2.0)
        .set_number_of_retries(3);
    let manager = client
        .get_connection_manager_with_config(manager_config)
        .await
        .map_err(|e| diagnose(config, e))?;
    Ok((manager, client))
}

/// What a failed first connection means, in the terms of the fix.
fn diagnose(config: &RedisConfig, e: redis::RedisError) -> ConnectError {
    let url = config.redacted_url();
    let text = e.to_string();
    let tls = config.url.starts_with("rediss://") || config.url.starts_with("valkeys://");
    if e.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") {
        return ConnectError::Auth {
            url,
            user: config
                .username
                .clone()
                .map_or_else(|| "the default user".to_string(), |u| format!("user {u:?}")),
            reason: text,
        };
    }
    if e.is_connection_refusal() && !tls && !text.contains("reset") {
        return ConnectError::Refused { url };
    }
    if tls {
        // A plain-text server either answers garbage to the TLS hello or
        // waits for the end of a line that never comes.
        let plain_answer = [
            "InvalidContentType",
            "corrupt message",
            "InvalidMessage",
            "record overflow",
        ]
        .iter()
        .any(|sign| text.contains(sign))
            || e.is_timeout()
            || text.contains("timed out");
        let cert_refused = [
            "CertificateRequired",
            "BadCertificate",
            "UnknownCA",
            "DecryptError",
            "certificate required",
        ]
        .iter()
        .any(|sign| text.contains(sign));
        return if let Some(at) = text.find("invalid peer certificate") {
            ConnectError::UntrustedServer {
                url,
                reason: text[at..].chars().take(120).collect(),
                ca: match &config.ca_file {
                    Some(ca) => format!("ca_file {} did not sign it", ca.display()),
                    None => "no ca_file is set, and no public root signed it".into(),
                },
            }
        } else if cert_refused {
            ConnectError::ClientCertRefused {
                url,
                cert: config
                    .client_cert_file
                    .as_ref()
                    .map_or_else(|| "(none was given)".to_string(), |p| p.display().to_string()),
                reason: text,
            }
        } else if plain_answer {
            ConnectError::TlsRefused { url }
        } else if e.is_connection_refusal() && text.contains("refused") {
            ConnectError::Refused { url }
        } else {
            ConnectError::Tls { url, reason: text }
        };
    }
    let closed = ["reset", "broken pipe", "end of file", "unexpected end", "closed"]
        .iter()
        .any(|sign| text.to_ascii_lowercase().contains(sign));
    if closed {
        return ConnectError::ClosedInHandshake { url };
    }
    ConnectError::Connect { url, reason: text }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form redis-rs accepts (and some it does not), each carrying a
    /// secret: none survives redaction; what is not secret stays.
    #[test]
    fn table_of_urls_are_redacted() {
        let s = "S3cr3tPa55";
        let cases = [
            (format!("redis://u:{s}@h:1/0"), "redis://<redacted>@h:1/0".to_string()),
            (format!("rediss://:{s}@h"), "rediss://<redacted>@h".to_string()),
            ("redis://h:1".to_string(), "redis://h:1".to_string()),
            (
                format!("redis://:{s}@h:1/0?password={s}"),
                "redis://<redacted>@h:1/0?password=<redacted>".to_string(),
            ),
            (
                format!("redis+unix:///tmp/r.sock?db=1&pass={s}"),
                "redis+unix:///tmp/r.sock?db=1&pass=<redacted>".to_string(),
            ),
            (
                format!("unix:///tmp/r.sock?pass={s}&user=u"),
                "unix:///tmp/r.sock?pass=<redacted>&user=u".to_string(),
            ),
            (format!(":{s}@h:6379"), "<redacted>@h:6379".to_string()),
            (format!("{s}@h"), "<redacted>@h".to_string()),
            (format!("redis://u:{s}/x@h:1/0"), "redis://<redacted>@h:1/0".to_string()),
            (format!("redis://u:p?{s}@h:1/0"), "redis://<redacted>@h:1/0".to_string()),
            (format!("valkeys://:{s}%40x@h"), "valkeys://<redacted>@h".to_string()),
            (
                format!("redis://h/0?PASSWORD={s}"),
                "redis://h/0?PASSWORD=<redacted>".to_string(),
            ),
            (format!("redis://h/0#{s}"), "redis://h/0#<redacted>".to_string()),
            (format!("redis://h/0?{s}pass"), "redis://h/0?<redacted>".to_string()),
        ];
        for (url, want) in cases {
            let got = redact_url(&url);
            assert!(!got.contains(s), "{url} -> {got}");
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut c = RedisConfig::new("redis://u:urlsecret@h:1");
        c.password = Some(SecretString::from("hunter2"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("urlsecret"), "{shown}");
    }
}
