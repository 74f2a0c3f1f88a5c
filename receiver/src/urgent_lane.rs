//! The urgent lane: one thread of its own (`urgent-export`), with its own
//! current-thread runtime, raised to nice -10 where `CAP_SYS_NICE` allows,
//! on which exporters send urgent requests (OOM kills) and keep the
//! connection those go on.
//!
//! Why: on the shared runtime an urgent export waits for a worker, and the
//! workers run bulk work in polls of up to ~10 ms (a batch of 8,192 records
//! encoded and gzip-compressed in one poll). `bench/kill_storm.sh` saw the
//! agent's part of a kill's delivery (record built until its bytes left on
//! the socket) reach 12.5 ms at the p99 with a median of 1.4 ms; raising the
//! whole agent's priority did not help, since its own bulk work was what
//! the urgent export waited behind. Here it waits for nothing but the lane's
//! other urgent work.
//!
//! The lane is started by the first gRPC exporter client made (its urgent
//! channel is created on the lane; exporters are built before the service
//! drops its start-up capabilities, so the raise can take effect) and lives
//! as long as the process: parked, it costs a thread and no CPU. Should the
//! thread fail to start, [`handle`] is `None` and urgent requests take the
//! ordinary path.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

/// The lane's nice value: the OOM kill thread's, so that a kill goes from
/// its read to the socket at one priority.
pub const URGENT_NICE: i32 = -10;

/// The lane thread's name.
pub const THREAD_NAME: &str = "urgent-export";

/// Its blocking threads' name.
const BLOCKING_THREAD_NAME: &str = "urgent-blocking";

static LANE: OnceLock<Option<Handle>> = OnceLock::new();

/// The lane's runtime, started at the first call; `None` if its thread
/// could not start (logged once).
pub fn handle() -> Option<&'static Handle> {
    LANE.get_or_init(start).as_ref()
}

fn start() -> Option<Handle> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Its blocking pool's (DNS lookups of the urgent connection), which
        // inherit the lane's priority. At most 15 bytes show (`comm`).
        .thread_name(BLOCKING_THREAD_NAME)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, "no urgent export lane (runtime); urgent requests share the workers");
            return None;
        }
    };
    let handle = runtime.handle().clone();
    let runtime = BackgroundShutdown(Some(runtime));
    let (raised, wait_raised) = std::sync::mpsc::channel::<()>();
    let started = std::thread::Builder::new()
        .name(THREAD_NAME.to_string())
        .spawn(move || {
            crate::privileges::raise_thread_priority(URGENT_NICE, THREAD_NAME);
            let _ = raised.send(());
            let mut runtime = runtime;
            if let Some(runtime) = runtime.0.take() {
                // Parks between urgent requests; never returns.
                runtime.block_on(std::future::pending::<()>());
            }
        });
    match started {
        Ok(_) => {
            // Started means running at its priority: the service drops
            // CAP_SYS_NICE once everything has started. A thread start, once
            // per process.
            if wait_raised.recv().is_err() {
                // The thread ended first (a panic): its runtime is gone.
                tracing::warn!(
                    "no urgent export lane (its thread ended); urgent requests share the workers"
                );
                return None;
            }
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no urgent export lane (thread); urgent requests share the workers");
            None
        }
    }
}

/// The runtime of a thread of its own (the lane, the OOM kill thread) until
/// the thread takes it. Dropped unused (the thread failed to start, on a
/// worker of the shared runtime), it shuts down without blocking: a runtime
/// dropped there would block the worker, which tokio forbids.
pub(crate) struct BackgroundShutdown(pub(crate) Option<Runtime>);

impl Drop for BackgroundShutdown {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs the tasks of a connection (tonic's buffer worker, hyper's
/// connection and body tasks) on the lane, or on the current runtime
/// without one.
#[derive(Clone, Copy, Debug, Default)]
pub struct LaneExecutor;

impl<F> hyper::rt::Executor<F> for LaneExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        match handle() {
            Some(lane) => drop(lane.spawn(future)),
            None => drop(tokio::spawn(future)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work spawned on the lane runs on its own thread, at the raised
    /// priority when the process may raise it (root in CI).
    #[tokio::test]
    async fn the_lane_runs_on_its_own_raised_thread() {
        let lane = handle().expect("the lane starts");
        let (name, nice) = lane
            .spawn(async {
                let tid = libc::id_t::try_from(crate::privileges::gettid()).expect("tid");
                // SAFETY: getpriority has no memory preconditions.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
                (std::thread::current().name().map(str::to_owned), nice)
            })
            .await
            .expect("the task ends");
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        // Whether this process may raise a thread: tried on a scratch one.
        let may_raise = std::thread::spawn(|| {
            let tid = libc::id_t::try_from(crate::privileges::gettid()).expect("tid");
            // SAFETY: as above; it sets this scratch thread's nice value.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, URGENT_NICE) == 0 }
        })
        .join()
        .expect("the scratch thread ends");
        if may_raise {
            assert_eq!(nice, URGENT_NICE, "the lane is raised where allowed");
        } else {
            eprintln!("raising a thread is not allowed here: the lane's priority is not checked (nice {nice})");
        }
        assert!(
            std::ptr::eq(lane, handle().expect("still there")),
            "one lane per process"
        );
    }

    /// The executor puts a connection's tasks on the lane.
    #[tokio::test]
    async fn the_executor_spawns_on_the_lane() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        hyper::rt::Executor::execute(&LaneExecutor, async move {
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        });
        assert_eq!(rx.await.expect("ran").as_deref(), Some(THREAD_NAME));
    }
}
