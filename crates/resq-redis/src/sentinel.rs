//! Sentinel mode: asking Redis Sentinel where the master is.
//!
//! Two commands, spoken over short-lived connections: `SENTINEL
//! get-master-addr-by-name` to each sentinel in turn, and `ROLE` to the
//! address it names, which must answer `master` (a sentinel that has not yet
//! heard of a failover names the old master; a demoted one answers `slave`).
//! The sentinels are reached the way the data connection is (plain, or TLS
//! with the same CA and client certificate) but with their own login; the
//! master with the data connection's login. Nothing here holds a connection:
//! [`crate::Connection`] keeps the one to the master and asks again when it
//! fails.

use std::time::Duration;

use redis::Value;
use secrecy::SecretString;

use crate::connect::{client, RedisConfig};

/// Where the sentinels are and how to log in to them.
#[derive(Clone)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the master by (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// Each sentinel's host and port, asked in this order.
    pub sentinels: Vec<(String, u16)>,
    /// An ACL user on the sentinels; `None` uses their `default` user.
    pub username: Option<String>,
    /// The sentinels' password (their `requirepass`), never the data password.
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("master_name", &self.master_name)
            .field(
                "sentinels",
                &self.sentinels.iter().map(|(h, p)| address(h, *p)).collect::<Vec<_>>(),
            )
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A sentinel's `host:port` (`[v6]:port` for IPv6), or `None` when it is not
/// one: a host of letters, digits, `.`, `-` and `_` (or a bracketed IPv6
/// address) and a port from 1 to 65535.
///
/// ```
/// use resq_redis::sentinel::parse_address;
/// assert_eq!(parse_address("10.0.0.5:26379"), Some(("10.0.0.5".to_string(), 26379)));
/// assert_eq!(parse_address("[::1]:26379"), Some(("::1".to_string(), 26379)));
/// assert_eq!(parse_address("sentinel-a"), None);
/// ```
pub fn parse_address(text: &str) -> Option<(String, u16)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        let v6_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (v6_ok.then_some(host)?, port)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        (ok.then_some(host)?, port)
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    Some((host.to_string(), port))
}

/// The data connection's URL pointed at `host:port`: its scheme, user-info,
/// database and query kept, its host and port replaced. `None` for a URL
/// that is not `redis://`, `rediss://`, `valkey://` or `valkeys://`.
pub(crate) fn url_at(template: &str, host: &str, port: u16) -> Option<String> {
    let (scheme, rest) = template.split_once("://")?;
    if !matches!(scheme, "redis" | "rediss" | "valkey" | "valkeys") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    Some(format!("{scheme}://{userinfo}{}{tail}", address(host, port)))
}

/// True for a URL sentinel mode can use as its template.
pub fn url_is_usable(url: &str) -> bool {
    url_at(url, "h", 1).is_some()
}

/// The data connection's settings pointed at the master `host:port`.
pub(crate) fn master_config(config: &RedisConfig, host: &str, port: u16) -> Option<RedisConfig> {
    let mut at = config.clone();
    at.url = url_at(&config.url, host, port)?;
    at.sentinel = None;
    Some(at)
}

/// The settings to reach one sentinel: the data connection's scheme and TLS
/// files, the sentinels' login, no database.
pub(crate) fn sentinel_config(
    config: &RedisConfig,
    sentinel: &SentinelConfig,
    host: &str,
    port: u16,
) -> Option<RedisConfig> {
    let (scheme, _) = config.url.split_once("://")?;
    let mut at = config.clone();
    at.url = format!("{scheme}://{}", address(host, port));
    at.username = sentinel.username.clone();
    at.password = sentinel.password.clone();
    at.sentinel = None;
    Some(at)
}

/// Why no master was found: one line per sentinel asked, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMaster {
    pub reasons: Vec<String>,
}

impl std::fmt::Display for NoMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reasons.join("; "))
    }
}

/// Asks each sentinel in turn for the master and returns the first address
/// that answers `ROLE` as a master.
pub(crate) async fn find_master(config: &RedisConfig, sentinel: &SentinelConfig) -> Result<(String, u16), NoMaster> {
    let mut reasons = Vec::new();
    for (host, port) in &sentinel.sentinels {
        let at = address(host, *port);
        let named = match ask(config, sentinel, host, *port).await {
            Ok(Some(named)) => named,
            Ok(None) => {
                reasons.push(format!(
                    "sentinel {at} does not monitor a master named {}",
                    sentinel.master_name
                ));
                continue;
            }
            Err(why) => {
                reasons.push(format!("sentinel {at}: {why}"));
                continue;
            }
        };
        match check_master(config, &named.0, named.1).await {
            Ok(()) => return Ok(named),
            Err(why) => reasons.push(format!(
                "sentinel {at} names {} as the master, but {why}",
                address(&named.0, named.1)
            )),
        }
    }
    Err(NoMaster { reasons })
}

/// One sentinel's answer to `SENTINEL get-master-addr-by-name`.
async fn ask(
    config: &RedisConfig,
    sentinel: &SentinelConfig,
    host: &str,
    port: u16,
) -> Result<Option<(String, u16)>, String> {
    let at = sentinel_config(config, sentinel, host, port).ok_or("the Redis URL's scheme is not usable")?;
    let reply: Option<(String, String)> = query(
        &at,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&sentinel.master_name),
    )
    .await
    .map_err(|e| why(&e, "sentinel"))?;
    match reply {
        None => Ok(None),
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) if !host.is_empty() => Ok(Some((host, port))),
            _ => Err("its answer is not an address".to_string()),
        },
    }
}

/// `ROLE` at `host:port`, with the data connection's login: `Ok` when it is
/// a master. A user not allowed `ROLE` (an ACL user made before sentinel
/// mode) cannot tell: the sentinels' word is taken.
pub(crate) async fn check_master(config: &RedisConfig, host: &str, port: u16) -> Result<(), String> {
    let at = master_config(config, host, port).ok_or("the Redis URL's scheme is not usable")?;
    match query::<Vec<Value>>(&at, &redis::cmd("ROLE")).await {
        Ok(reply) => match reply.into_iter().next().map(redis::from_redis_value::<String>) {
            Some(Ok(role)) if role == "master" => Ok(()),
            Some(Ok(role)) => Err(format!(
                "it says it is a {}",
                if role == "slave" { "replica" } else { &role }
            )),
            _ => Err("its answer to ROLE is not understood".to_string()),
        },
        Err(e) if e.code() == Some("NOPERM") => {
            tracing::debug!("this Redis user may not run ROLE: the sentinels' answer is taken unchecked");
            Ok(())
        }
        Err(e) => Err(why(&e, "master")),
    }
}

/// One command over a connection of its own, within the connect timeout.
async fn query<T: redis::FromRedisValue>(config: &RedisConfig, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = client(config)
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad settings", e.to_string())))?;
    let timeout = config.connect_timeout;
    let setup = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection_with_config(&setup).await?;
        cmd.query_async(&mut conn).await
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), attempt).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

/// A failed ask, in a few words (Redis's own error text holds no secret).
fn why(e: &redis::RedisError, whose: &str) -> String {
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") {
        return format!("it refused the {whose} login ({text})");
    }
    if e.is_connection_refusal() && text.contains("refused") {
        return "connection refused".to_string();
    }
    if e.is_timeout() || text.contains("timed out") {
        return "no answer in time".to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        let cases: [(&str, Option<(&str, u16)>); 12] = [
            ("127.0.0.1:26379", Some(("127.0.0.1", 26379))),
            (" sentinel-a.internal:5000 ", Some(("sentinel-a.internal", 5000))),
            ("[::1]:26379", Some(("::1", 26379))),
            ("[fe80::1]:1", Some(("fe80::1", 1))),
            ("h:0", None),
            ("h:65536", None),
            ("h:+1", None),
            ("h", None),
            (":26379", None),
            ("::1:26379", None),
            ("user@h:1", None),
            ("[h]:1", None),
        ];
        for (text, want) in cases {
            let got = parse_address(text);
            assert_eq!(got, want.map(|(h, p)| (h.to_string(), p)), "{text}");
        }
    }

    #[test]
    fn the_master_url_keeps_all_but_host_and_port() {
        let cases = [
            ("redis://mymaster/0", Some("redis://10.0.0.7:6380/0")),
            (
                "rediss://u:pw@old:1/3?protocol=resp3",
                Some("rediss://u:pw@10.0.0.7:6380/3?protocol=resp3"),
            ),
            ("redis://:pw@x", Some("redis://:pw@10.0.0.7:6380")),
            ("valkeys://h:9#f", Some("valkeys://10.0.0.7:6380#f")),
            ("redis+unix:///tmp/r.sock", None),
            ("unix:///tmp/r.sock", None),
            ("127.0.0.1:6379", None),
        ];
        for (template, want) in cases {
            assert_eq!(url_at(template, "10.0.0.7", 6380).as_deref(), want, "{template}");
        }
        assert_eq!(url_at("redis://m/0", "::1", 7).as_deref(), Some("redis://[::1]:7/0"));
    }

    #[test]
    fn a_sentinel_gets_its_own_login_and_no_database() {
        let mut config = RedisConfig::new("rediss://data:datapw@m/2");
        config.username = Some("data".into());
        config.password = Some(SecretString::from("datapw"));
        let sentinel = SentinelConfig {
            master_name: "m".into(),
            sentinels: vec![("s1".into(), 26379)],
            username: None,
            password: Some(SecretString::from("sentinelpw")),
        };
        let at = sentinel_config(&config, &sentinel, "s1", 26379).unwrap();
        assert_eq!(at.url, "rediss://s1:26379");
        assert_eq!(at.username, None);
        use secrecy::ExposeSecret;
        assert_eq!(at.password.unwrap().expose_secret(), "sentinelpw");
        let shown = format!("{sentinel:?}");
        assert!(!shown.contains("sentinelpw") && shown.contains("s1:26379"), "{shown}");
    }
}
