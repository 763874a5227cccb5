//! The daemon's own runtimes, so that receipts never wait behind the
//! fan-out (DESIGN §10: receipt p99 ≤ 5 ms at 1,000 alerts/s while a large
//! fan-out runs):
//!
//! - **ingest** (`tocsin-ingest`, one worker per core): QUIC,
//!   verification and receipts, at the process's priority;
//! - **fan-out** (`tocsin-fanout`, one worker per core): jobs, channels and
//!   their connections, with every thread (blocking ones too) at a higher
//!   nice value (`dispatch.nice`) and under `SCHED_IDLE`
//!   (`dispatch.sched_idle`), so that when the cores are saturated by
//!   deliveries the ingest and journal threads still run as soon as they
//!   wake. The fan-out still takes every cycle nobody else wants.
//!
//! The ingest and journal threads also ask for a short time slice
//! ([`short_slice`]), and idle-class threads offer the CPU back on their
//! hot paths, at most every 100 µs ([`cooperate`], `yield_cpu.rs`).
//!
//! Both are dropped from async code and so shut down in the background.

use std::future::Future;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime};

mod yield_cpu;

pub use yield_cpu::{cooperate, Cooperative, YIELD_EVERY};

/// A runtime of the daemon's own; shuts down in the background on drop.
pub struct Dedicated(Option<Runtime>);

impl Dedicated {
    /// The ingest runtime: one worker thread per core at normal priority,
    /// each with a short scheduler slice ([`short_slice`]). One worker alone
    /// made a queue: while it verified a few alerts in a row (~0.4 ms of CPU
    /// each, QUIC included) the next ones waited, though the other core was
    /// free for them.
    pub fn ingest() -> std::io::Result<Self> {
        Self::build("tocsin-ingest", None, short_slice)
    }

    /// The fan-out runtime: one worker per core, each thread `nice` steps
    /// below the process's priority (0 leaves it alone), under `SCHED_IDLE`
    /// when `idle`.
    pub fn fanout(nice: i32, idle: bool) -> std::io::Result<Self> {
        Self::new("tocsin-fanout", None, nice, idle)
    }

    /// A runtime of `workers` threads (one per core when `None`) named
    /// `name`, every thread `nice` steps below the process's priority and,
    /// when `idle`, under `SCHED_IDLE`.
    pub fn new(name: &str, workers: Option<usize>, nice: i32, idle: bool) -> std::io::Result<Self> {
        Self::build(name, workers, move || lower_priority(nice, idle))
    }

    /// A runtime of `workers` threads (one per core when `None`) named
    /// `name`, each running `on_start` first.
    fn build(
        name: &str,
        workers: Option<usize>,
        on_start: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let mut b = Builder::new_multi_thread();
        if let Some(n) = workers {
            b.worker_threads(n.max(1));
        }
        b.thread_name(name)
            .on_thread_start(on_start)
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
    }

    /// The runtime's handle.
    pub fn handle(&self) -> Option<&Handle> {
        self.0.as_ref().map(|rt| rt.handle())
    }

    /// Enter the runtime: what is spawned or bound under the guard (quinn's
    /// endpoint driver, the dispatcher's tasks) runs there.
    pub fn enter(&self) -> Option<EnterGuard<'_>> {
        self.handle().map(|h| h.enter())
    }

    /// Spawn a task on this runtime.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.handle() {
            Some(h) => h.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Ask the scheduler for a short time slice for the calling thread (100 µs
/// instead of a few ms; EEVDF, Linux 6.12 and later): a thread on the
/// receipt path (ingest, the journal writer) that wakes from I/O then runs
/// at once instead of waiting out a running thread's slice, with no change
/// of policy or priority, so no privilege is needed. Older kernels take the
/// value and ignore it; a failure only costs latency.
pub fn short_slice() {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` (include/uapi/linux/sched/types.h), version 1.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
            util_min: u32,
            util_max: u32,
        }
        // SAFETY: getpriority(2) reads the calling thread's nice value.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: 100_000,
            deadline: 0,
            period: 0,
            util_min: 0,
            util_max: 0,
        };
        // SAFETY: sched_setattr(2) on thread 0 (the caller) with a valid,
        // fully initialised attr of the size it declares; the kernel only
        // reads it.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "short scheduler slice refused");
        }
    }
}

/// Raise the calling thread's nice value by `nice` (on Linux nice is per
/// thread) and, when `idle`, move it to `SCHED_IDLE`, where [`cooperate`]
/// then offers the CPU back, at most every [`YIELD_EVERY`]. Lowering either needs
/// no privilege; a failure only costs latency.
pub fn lower_priority(nice: i32, idle: bool) {
    #[cfg(unix)]
    if nice > 0 {
        // SAFETY: nice(2) changes the calling thread's priority only; it has
        // no memory-safety preconditions. -1 is also a valid result, so
        // failures are not told apart (nothing to do about one anyway).
        let _ = unsafe { libc::nice(nice) };
    }
    #[cfg(target_os = "linux")]
    if idle {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) on thread 0 (the caller) with a
        // valid sched_param the kernel only reads.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_IDLE refused");
        } else {
            yield_cpu::mark_idle_class();
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = idle;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn fanout_threads_run_at_a_higher_nice_value_and_idle() {
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let probe = || {
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let policy = unsafe { libc::sched_getscheduler(0) };
            (
                nice,
                policy,
                std::thread::current().name().map(str::to_owned),
                yield_cpu::is_idle_class(),
            )
        };
        let rt = Dedicated::fanout(7, true).unwrap();
        let (nice, policy, name, yields) = rt
            .handle()
            .unwrap()
            .block_on(async { tokio::spawn(async move { probe() }).await })
            .unwrap();
        assert_eq!(nice, (own + 7).min(19));
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(name.as_deref(), Some("tocsin-fanout"));
        assert!(yields, "an idle-class thread gives the CPU back");
        let ingest = Dedicated::ingest().unwrap();
        let (nice, policy, name, yields) = ingest
            .handle()
            .unwrap()
            .block_on(async { tokio::spawn(async move { probe() }).await })
            .unwrap();
        assert_eq!((nice, policy, yields), (own, libc::SCHED_OTHER, false));
        assert_eq!(name.as_deref(), Some("tocsin-ingest"));
    }
}
