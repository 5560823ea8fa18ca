//! The conformance suite of resq's store interface: every behaviour a store
//! promises ([`resq::store`]), tried through the traits alone, so each store
//! (Redis today, an embedded one later) is held to the same contract.
//!
//! A store's own tests call [`run`] once with a factory that makes a fresh,
//! empty store for each behaviour (and a guard that tears it down):
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! resq_store_tests::run(|| async {
//!     let store: Arc<dyn resq::Store> = todo!("a fresh store");
//!     resq_store_tests::Fresh::new(store, ())
//! })
//! .await;
//! # }
//! ```
//!
//! [`run`] tries every behaviour, prints one line each, and panics at the
//! end naming every one that failed. Facts of one backend (wire bytes,
//! scripts, TLS) stay in that store's own tests.

mod failures;
mod queues;
mod schedules;
mod support;
mod workers;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;

/// A fresh, empty store, and whatever keeps it alive (a server process, a
/// temporary directory); dropped after its behaviour ran.
pub struct Fresh {
    pub store: Arc<dyn resq::Store>,
    _guard: Box<dyn Any + Send>,
}

impl Fresh {
    pub fn new(store: Arc<dyn resq::Store>, guard: impl Any + Send) -> Fresh {
        Fresh {
            store,
            _guard: Box::new(guard),
        }
    }
}

type Check = fn(Arc<dyn resq::Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One behaviour of the interface.
pub struct Behaviour {
    pub name: &'static str,
    check: Check,
}

macro_rules! behaviours {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$(Behaviour {
            name: concat!(stringify!($module), "::", stringify!($name)),
            check: |store| Box::pin($module::$name(store)),
        }),*]
    };
}

/// Every behaviour the suite tries, by name.
pub fn behaviours() -> Vec<Behaviour> {
    behaviours![
        queues::enqueue_keeps_order_per_queue_and_lists_the_queues,
        queues::a_capped_queue_refuses_what_would_overflow_it,
        queues::a_unique_key_stores_one_job_whatever_the_races,
        queues::fetched_jobs_wait_in_flight_until_acked,
        queues::requeue_puts_jobs_back_at_the_head_in_order,
        queues::one_copy_claims_an_attempt_and_a_requeue_releases_it,
        queues::a_paused_queue_gives_no_jobs_until_resumed,
        queues::the_working_record_shows_the_job_that_runs,
        failures::a_failed_outcome_is_recorded_and_found_by_its_id,
        failures::a_retried_failure_runs_once_more_with_its_mark_released,
        failures::a_failure_retry_respects_the_queue_cap,
        failures::failures_are_removed_one_by_one_or_all_at_once,
        schedules::a_retry_outcome_waits_in_the_retry_schedule_until_due,
        schedules::scheduled_jobs_move_once_when_due_whoever_promotes,
        schedules::a_due_job_for_a_full_queue_waits_without_blocking_others,
        schedules::a_waiting_job_can_be_removed_or_run_now,
        schedules::the_sweep_removes_expired_jobs_once_per_turn_and_records_them,
        schedules::each_recurring_tick_fires_once,
        workers::a_worker_registers_pauses_and_unregisters,
        workers::a_dead_workers_jobs_come_back_in_order_with_claims_released,
        workers::a_job_taken_back_is_never_acked_twice,
        workers::no_one_is_judged_before_the_fleet_renewed_long_enough,
        workers::keep_alive_tells_a_lapse_and_repairs_it,
    ]
}

/// Runs every behaviour, each on a fresh store from `factory`; panics at
/// the end naming each one that failed.
pub async fn run<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    let mut failed = Vec::new();
    for behaviour in behaviours() {
        let fresh = factory().await;
        let outcome = AssertUnwindSafe((behaviour.check)(Arc::clone(&fresh.store)))
            .catch_unwind()
            .await;
        drop(fresh);
        match outcome {
            Ok(()) => println!("store conformance: {} ... ok", behaviour.name),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("store conformance: {} ... FAILED: {why}", behaviour.name);
                failed.push(behaviour.name);
            }
        }
    }
    assert!(failed.is_empty(), "the store breaks: {failed:?}");
}
