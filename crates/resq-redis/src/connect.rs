//! Connecting to Redis: `redis://` and `rediss://` URLs, an ACL user and a
//! password that never appears in any output, TLS with a private CA and an
//! optional client certificate, and a connection manager that reconnects with
//! backoff when Redis goes away.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};

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
            .finish()
    }
}

/// Why a connection could not be set up. Messages never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Redis URL {url} is not valid (expected redis://host:port/db or rediss://...): {reason}")]
    BadUrl { url: String, reason: String },
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
}

/// Strips `user:password@` from a URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
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
    let bad_url = |reason: String| ConnectError::BadUrl {
        url: config.redacted_url(),
        reason,
    };
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad_url(format!("{:?}", e.kind())))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose_secret());
    }
    info = info.set_redis_settings(settings);

    let wants_custom_tls =
        config.ca_file.is_some() || config.client_cert_file.is_some() || config.client_key_file.is_some();
    let built = if wants_custom_tls {
        let client_tls = match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("client certificate", cert)?,
                client_key: read("client key", key)?,
            }),
            (None, None) => None,
            _ => return Err(ConnectError::HalfClientCert),
        };
        let root_cert = config.ca_file.as_ref().map(|p| read("CA file", p)).transpose()?;
        redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert })
    } else {
        redis::Client::open(info)
    };
    built.map_err(|e| bad_url(e.to_string()))
}

/// Connects and returns a manager that reconnects with exponential backoff,
/// and the client (for dedicated connections such as pub/sub).
pub async fn connect(config: &RedisConfig) -> Result<(ConnectionManager, redis::Client), ConnectError> {
    let client = client(config)?;
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
        .map_err(|e| ConnectError::Connect {
            url: config.redacted_url(),
            reason: e.to_string(),
        })?;
    Ok((manager, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://<redacted>@h:1/0");
        assert_eq!(redact_url("rediss://:secret@h"), "rediss://<redacted>@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut c = RedisConfig::new("redis://u:urlsecret@h:1");
        c.password = Some(SecretString::from("hunter2"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("urlsecret"), "{shown}");
    }
}
