//! The Redis store of resq: Resque's keyspace and formats, resq's reliable
//! fetch and recovery, every multi-step operation one Lua script run by SHA.

pub mod acl;
pub mod api;
pub mod cluster;
pub mod connect;
mod connection;
pub mod facts;
pub mod keys;
pub mod resque;
mod scripts;
pub mod sentinel;
pub mod store;
pub mod web;

pub use cluster::ClusterConfig;
pub use connect::{redact_url, ConnectError, RedisConfig, WaitReplicas};
pub use connection::Connection;
pub use keys::Keys;
pub use sentinel::SentinelConfig;
pub use store::{RedisStore, UNROUTABLE_QUEUE};
