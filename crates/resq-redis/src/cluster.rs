//! Cluster mode's connection: redis-rs's cluster client over the seed nodes,
//! with the URL's scheme, login and TLS files, which routes each command to
//! the master of its key's slot and follows `MOVED`, `ASK` and a failover
//! by itself. Which keys share a slot is [`crate::keys`]' business.

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use crate::connect::{client, connect_direct, tls_certificates, ConnectError, RedisConfig};
use crate::sentinel::master_config;

/// `redis.mode = "cluster"`: the nodes to learn the cluster's layout from
/// (any of them will do; more than one in case some are down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub nodes: Vec<(String, u16)>,
}

/// True for a URL cluster mode can use as its template: `redis://` or
/// `rediss://` (or Valkey's), with no database but 0 (a cluster has only
/// database 0).
///
/// ```
/// use resq_redis::cluster::url_is_usable;
/// assert!(url_is_usable("rediss://user@any:1"));
/// assert!(url_is_usable("redis://h:1/0"));
/// assert!(!url_is_usable("redis://h:1/3"));
/// assert!(!url_is_usable("redis+unix:///run/redis.sock"));
/// ```
pub fn url_is_usable(url: &str) -> bool {
    let Some(at) = crate::sentinel::url_at(url, "h", 1) else {
        return false;
    };
    match client(&RedisConfig::new(at)) {
        Ok(c) => c.get_connection_info().redis_settings().db() == 0,
        Err(_) => false,
    }
}

/// Connects to the cluster. Each seed is tried first as a standalone server
/// (a `PING`), so a refused connection, a TLS mismatch or bad credentials are
/// named as in standalone mode; the first that answers stands for the
/// cluster in the error of a layout that cannot be read. Returns the
/// connection, a client for that seed, and one for each seed (that one
/// first) for dedicated connections.
pub(crate) async fn connect_cluster(
    config: &RedisConfig,
    cluster: &ClusterConfig,
) -> Result<(ClusterConnection, redis::Client, Vec<redis::Client>), ConnectError> {
    let unusable = || ConnectError::BadUrl {
        reason: "cluster mode needs a redis:// or rediss:// URL without a database (its host and port are \
                 replaced by each node's)"
            .into(),
    };
    let mut seeds = Vec::with_capacity(cluster.nodes.len());
    for (host, port) in &cluster.nodes {
        seeds.push(master_config(config, host, *port).ok_or_else(unusable)?);
    }
    let mut reachable = None;
    let mut first_error = None;
    for seed in &seeds {
        match connect_direct(seed).await {
            Ok((_, seed_client)) => {
                reachable = Some(seed_client);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some(seed_client) = reachable else {
        return Err(first_error.unwrap_or_else(unusable));
    };
    let infos = seeds
        .iter()
        .map(|seed| client(seed).map(|c| c.get_connection_info().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    if infos.iter().any(|info| info.redis_settings().db() != 0) {
        return Err(ConnectError::BadUrl {
            reason: "Redis Cluster has only database 0: remove the database from the URL".into(),
        });
    }
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout);
    if let Some(certificates) = tls_certificates(config)? {
        builder = builder.certs(certificates);
    }
    let url = config.redacted_url();
    let connection = builder
        .build()
        .map_err(|e| ConnectError::Connect {
            url: url.clone(),
            reason: e.to_string(),
        })?
        .get_async_connection()
        .await
        .map_err(|e| ConnectError::Connect {
            url,
            reason: format!("the cluster's layout could not be read: {e}"),
        })?;
    let mut clients = vec![seed_client.clone()];
    clients.extend(seeds.iter().filter_map(|seed| client(seed).ok()));
    Ok((connection, seed_client, clients))
}
