//! [`WorkerRegistry`] over Redis: Resque's registry (`workers`,
//! `worker:<id>:started`, heartbeats) kept by `renew.lua`, resq's liveness
//! marks, and the reaper's recovery (`recover.lua`, `forget_worker.lua`).

use async_trait::async_trait;
use redis::AsyncCommands;

use resq::clock::UnixMs;
use resq::store::{ReapReport, ReapRules, Registration, StoreError, WorkerRegistry};
use resq::WorkerId;

use super::{store_err, Recovery, RedisStore};
use crate::resque;

#[async_trait]
impl WorkerRegistry for RedisStore {
    async fn register_worker(&self, registration: &Registration<'_>) -> Result<(), StoreError> {
        let now = self.server_time().await?;
        self.renew(registration, now, true).await.map(|_| ())
    }

    async fn keep_alive(&self, registration: &Registration<'_>) -> Result<bool, StoreError> {
        // The heartbeat is only written here if something removed it; the
        // heartbeat loop writes it from the server's clock.
        self.renew(registration, UnixMs::now(), false).await
    }

    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let now = resque::time::iso8601(self.server_time().await?);
        self.conn
            .clone()
            .hset::<_, _, _, ()>(self.keys.heartbeats(), worker.as_str(), now)
            .await
            .map_err(store_err)
    }

    async fn set_paused(&self, worker: &WorkerId, paused: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if paused {
            conn.sadd::<_, _, ()>(self.keys.paused_workers(), worker.as_str()).await
        } else {
            conn.srem::<_, _, ()>(self.keys.paused_workers(), worker.as_str()).await
        }
        .map_err(store_err)
    }

    async fn unregister_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let rules = ReapRules::after(std::time::Duration::ZERO);
        self.recover_worker(worker.as_str(), true, rules).await.map(|_| ())
    }

    async fn reap_dead_workers(&self, rules: ReapRules) -> Result<ReapReport, StoreError> {
        let candidates: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.resq_workers())
            .await
            .map_err(store_err)?;
        let mut report = ReapReport::default();
        for worker in candidates {
            let alive: bool = self
                .conn
                .clone()
                .exists(self.keys.alive(&worker))
                .await
                .map_err(store_err)?;
            if alive {
                continue;
            }
            match self.recover_worker(&worker, false, rules).await? {
                Recovery::Recovered(requeued, poisoned) => {
                    report.requeued += requeued;
                    report.poisoned.extend(poisoned);
                    report.dead_workers.push(worker);
                }
                Recovery::Deferred => report.deferred.push(worker),
                Recovery::Alive => {}
            }
        }
        Ok(report)
    }
}
