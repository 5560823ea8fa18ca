//! A fault-injecting TCP proxy between resq's processes and Redis: each
//! client connection gets its own upstream connection, pumped both ways,
//! and the harness can stall a connection (hold its bytes for a while, both
//! ways), drop it (close both sides) or reset it (close with RST).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a connection is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Run,
    /// Hold every byte, both ways, until then.
    Stall(Instant),
    /// Close both sides (FIN).
    Drop,
    /// Close both sides with RST.
    Reset,
}

#[derive(Default)]
struct Shared {
    conns: Mutex<HashMap<u64, watch::Sender<Ctl>>>,
    next: AtomicU64,
    accepted: AtomicU64,
}

/// Counts of what the proxy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    pub accepted: u64,
    pub stalls: u64,
    pub drops: u64,
    pub resets: u64,
    pub partitions: u64,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
    pub stats: ProxyStats,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for tx in self.lock().values() {
            let _ = tx.send(Ctl::Drop);
        }
    }
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                s.accepted.fetch_add(1, Ordering::Relaxed);
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    // Redis down: the client sees its connection closed, as it would.
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let id = s.next.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(Ctl::Run);
                    s.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx.clone());
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pump(cr, sw, rx.clone(), tx.clone()));
                    let down = tokio::spawn(pump(sr, cw, rx, tx));
                    let _ = up.await;
                    let _ = down.await;
                    s.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                });
            }
        });
        Ok(Proxy {
            port,
            shared,
            accept,
            stats: ProxyStats::default(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, watch::Sender<Ctl>>> {
        self.shared.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self, r: u64) -> Option<watch::Sender<Ctl>> {
        let conns = self.lock();
        if conns.is_empty() {
            return None;
        }
        let mut ids: Vec<&u64> = conns.keys().collect();
        ids.sort();
        let id = ids[(r % ids.len() as u64) as usize];
        conns.get(id).cloned()
    }

    /// Stalls one connection (chosen by `r`) for `d`.
    pub fn stall_one(&mut self, r: u64, d: Duration) {
        if let Some(tx) = self.pick(r) {
            let _ = tx.send(Ctl::Stall(Instant::now() + d));
            self.stats.stalls += 1;
        }
    }

    /// Stalls every open connection for `d` (a partition that heals).
    pub fn stall_all(&mut self, d: Duration) {
        let until = Instant::now() + d;
        for tx in self.lock().values() {
            let _ = tx.send(Ctl::Stall(until));
        }
        self.stats.partitions += 1;
    }

    /// Closes one connection, with RST when `reset`.
    pub fn cut_one(&mut self, r: u64, reset: bool) {
        if let Some(tx) = self.pick(r) {
            let _ = tx.send(if reset { Ctl::Reset } else { Ctl::Drop });
            if reset {
                self.stats.resets += 1;
            } else {
                self.stats.drops += 1;
            }
        }
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            ..self.stats
        }
    }
}

/// Copies `from` to `to` until either side ends or the connection is cut;
/// holds the bytes while stalled. Whichever direction ends first ends the
/// other (a closed connection is closed both ways).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut ctl: watch::Receiver<Ctl>, tx: watch::Sender<Ctl>) {
    let mut buf = vec![0u8; 32 * 1024];
    let end = loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Ctl::Drop,
                Ok(n) => n,
            },
            changed = ctl.changed() => {
                if changed.is_err() {
                    break Ctl::Drop;
                }
                match *ctl.borrow_and_update() {
                    c @ (Ctl::Drop | Ctl::Reset) => break c,
                    _ => continue,
                }
            }
        };
        // Held while stalled; a cut ends the wait.
        let cut = loop {
            let now = *ctl.borrow_and_update();
            match now {
                Ctl::Stall(until) if Instant::now() < until => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        changed = ctl.changed() => if changed.is_err() { break Some(Ctl::Drop) },
                    }
                }
                Ctl::Drop | Ctl::Reset => break Some(now),
                _ => break None,
            }
        };
        if let Some(c) = cut {
            break c;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break Ctl::Drop;
        }
    };
    if end == Ctl::Reset {
        // Linger 0: the close sends RST instead of FIN, to both peers.
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
    } else {
        let _ = to.shutdown().await;
    }
    // Tell the other direction (a no-op when it told us).
    tx.send_if_modified(|c| match c {
        Ctl::Drop | Ctl::Reset => false,
        _ => {
            *c = end;
            true
        }
    });
}
