//! A private Redis Cluster: several [`LocalRedis`] nodes with
//! `cluster-enabled yes`, joined by `redis-cli --cluster create` (each master
//! given its replicas), ready once every node reports `cluster_state:ok` and
//! knows every other node.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, LocalRedis, Options};

/// A running cluster; every node is killed on drop.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalRedis>,
    options: Options,
    /// Replicas each master was given.
    replicas: usize,
}

impl LocalCluster {
    /// Starts `masters` masters with `replicas` replicas each, all
    /// configured by `options` (`cluster` is set). Three masters or more
    /// are joined by `redis-cli --cluster create`; fewer (which it refuses,
    /// and benchmarks use) by hand: the slots split evenly, the nodes meet.
    pub fn start(masters: usize, replicas: usize, options: Options) -> Result<Self, Error> {
        if masters == 0 {
            return Err(Error::NotReady("a cluster needs a master".into()));
        }
        let options = Options {
            cluster: true,
            ..options
        };
        let nodes = (0..masters * (1 + replicas))
            .map(|_| LocalRedis::start_with(options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = LocalCluster {
            nodes,
            options,
            replicas,
        };
        if masters >= 3 {
            let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
            args.extend(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
            args.extend([
                "--cluster-replicas".into(),
                replicas.to_string(),
                "--cluster-yes".into(),
            ]);
            let out = cluster.cli(&args)?;
            if !out.status.success() {
                return Err(Error::NotReady(format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        } else {
            cluster.join_by_hand(masters)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.is_ready() {
            if Instant::now() > deadline {
                return Err(Error::NotReady(
                    "the cluster did not reach cluster_state:ok within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// Gives the first `masters` nodes the slots in even ranges, has every
    /// node meet the first, and makes each other node a replica of a master
    /// in turn.
    fn join_by_hand(&self, masters: usize) -> Result<(), Error> {
        const SLOTS: usize = 16_384;
        let expect_ok = |port: u16, command: &[&str]| -> Result<(), Error> {
            let answer = self.ask(port, command)?;
            if answer.trim() == "OK" {
                Ok(())
            } else {
                Err(Error::NotReady(format!("{command:?} on {port}: {}", answer.trim())))
            }
        };
        for (i, node) in self.nodes.iter().take(masters).enumerate() {
            let (first, last) = (i * SLOTS / masters, (i + 1) * SLOTS / masters - 1);
            expect_ok(
                node.port(),
                &["CLUSTER", "ADDSLOTSRANGE", &first.to_string(), &last.to_string()],
            )?;
        }
        let Some(first) = self.nodes.first() else {
            return Ok(());
        };
        for node in self.nodes.iter().skip(1) {
            expect_ok(
                node.port(),
                &["CLUSTER", "MEET", "127.0.0.1", &first.port().to_string()],
            )?;
        }
        let ids = self
            .nodes
            .iter()
            .take(masters)
            .map(|n| self.ask(n.port(), &["CLUSTER", "MYID"]).map(|id| id.trim().to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, node) in self.nodes.iter().enumerate().skip(masters) {
            let master = &ids[i % masters];
            // A node must know its master before it can replicate it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.ask(node.port(), &["CLUSTER", "NODES"])?.contains(master.as_str()) {
                if Instant::now() > deadline {
                    return Err(Error::NotReady("a node never learnt of its master".into()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            expect_ok(node.port(), &["CLUSTER", "REPLICATE", master])?;
        }
        Ok(())
    }

    /// Runs `redis-cli` with the connection options (password, TLS) the
    /// nodes need, then `args`.
    fn cli(&self, args: &[String]) -> Result<std::process::Output, Error> {
        let mut cmd = Command::new("redis-cli");
        if let Some(tls) = &self.options.tls {
            cmd.args(["--tls", "--cacert"]).arg(&tls.ca);
            if tls.require_client_cert {
                cmd.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
            }
        }
        if let Some(pass) = &self.options.requirepass {
            cmd.env("REDISCLI_AUTH", pass);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotInstalled
                } else {
                    Error::Io(e)
                }
            })?;
        // `redis-cli --cluster create` waits without end for nodes whose bus
        // cannot connect (a TLS bus without a client certificate, say).
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().map_err(Error::Io)?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::NotReady(format!(
                    "redis-cli {args:?} did not finish within 60 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait_with_output().map_err(Error::Io)
    }

    /// Asks node `port` one command and returns its answer as text.
    pub fn ask(&self, port: u16, command: &[&str]) -> Result<String, Error> {
        let mut args = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        args.extend(command.iter().map(|s| s.to_string()));
        let out = self.cli(&args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every running node says `cluster_state:ok` and knows all the
    /// others, and every master has its replicas in sync (as many as it was
    /// given, or as run).
    pub fn is_ready(&self) -> bool {
        let running: Vec<&LocalRedis> = self.nodes.iter().filter(|n| n.pid().is_some()).collect();
        let agreed = running.iter().all(|n| {
            let info = self.ask(n.port(), &["CLUSTER", "INFO"]).unwrap_or_default();
            info.contains("cluster_state:ok")
                && info
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("cluster_known_nodes:"))
                    .and_then(|k| k.parse::<usize>().ok())
                    .is_some_and(|k| k >= self.nodes.len())
        });
        let masters = self.master_ports();
        let want = self
            .replicas
            .min(running.len().saturating_sub(masters.len()) / masters.len().max(1));
        agreed
            && masters.iter().all(|&port| {
                let info = self.ask(port, &["INFO", "replication"]).unwrap_or_default();
                info.lines().filter(|l| l.contains("state=online")).count() >= want
            })
    }

    /// The nodes, in the order they were started.
    pub fn nodes(&self) -> &[LocalRedis] {
        &self.nodes
    }

    /// Node `i`, to kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut LocalRedis> {
        self.nodes.get_mut(i)
    }

    /// The ports of the nodes that are masters now (by `ROLE`).
    pub fn master_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(LocalRedis::port)
            .filter(|&p| self.ask(p, &["ROLE"]).unwrap_or_default().starts_with("master"))
            .collect()
    }

    /// Seed addresses for a client: `127.0.0.1:<port>` of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect()
    }

    /// The same seeds as (host, port) pairs, as a client's cluster
    /// configuration takes them.
    pub fn seed_addrs(&self) -> Vec<(String, u16)> {
        self.nodes.iter().map(|n| ("127.0.0.1".to_string(), n.port())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only when redis-server is installed (the test suite installs it).
    #[test]
    fn one_or_two_masters_form_a_cluster_by_hand() {
        if LocalRedis::start().is_err() {
            return;
        }
        for (masters, replicas) in [(1, 0), (2, 1)] {
            let cluster = LocalCluster::start(masters, replicas, Options::default()).unwrap();
            assert_eq!(cluster.nodes().len(), masters * (1 + replicas));
            assert_eq!(cluster.master_ports().len(), masters);
        }
    }

    #[test]
    fn three_masters_with_a_replica_each_form_a_cluster() {
        if LocalRedis::start().is_err() {
            return;
        }
        let cluster = LocalCluster::start(3, 1, Options::default()).unwrap();
        assert_eq!(cluster.nodes().len(), 6);
        assert!(cluster.is_ready());
        assert_eq!(cluster.master_ports().len(), 3);
        for node in cluster.nodes() {
            assert!(node.owns_port());
        }
    }
}
