//! Faults on a schedule: a cycle of timed phases (healthy, 503s, throttling
//! with `Retry-After`, slow answers, answers slower than the client's
//! timeout, connection resets, half-open connections) played against a
//! running [`ApnsServer`](super::apns_server::ApnsServer) through the fault
//! switches of its [`ApnsState`]. It only flips switches; the server decides
//! per request. Tests use it to prove delivery survives a hostile provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::apns_server::ApnsState;

/// "For the rest of this phase": a count no test run exhausts.
const ALWAYS: u32 = u32::MAX / 2;
/// How often a reset phase drops the connection of the next request.
const RESET_EVERY: Duration = Duration::from_millis(150);

/// One kind of provider misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request answered normally.
    Healthy,
    /// Every request answered 503 `ServiceUnavailable`.
    Unavailable,
    /// Every request answered 429 `TooManyRequests` with this `Retry-After` (s).
    Throttle { retry_after_secs: u64 },
    /// Every answer held this long (still within the client's timeout).
    Slow(Duration),
    /// Every answer held this long: set it above the client's timeout.
    Timeout(Duration),
    /// The connection of a request is dropped (RST) every 150 ms.
    Reset,
    /// The connection of the next request freezes (half-open) for good.
    HalfOpen,
}

impl Fault {
    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unavailable => "503",
            Self::Throttle { .. } => "429",
            Self::Slow(_) => "slow",
            Self::Timeout(_) => "timeout",
            Self::Reset => "reset",
            Self::HalfOpen => "half-open",
        }
    }
}

/// A fault and how long it lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub fault: Fault,
    pub lasting: Duration,
}

impl Phase {
    /// `fault` for `ms` milliseconds.
    pub fn new(fault: Fault, ms: u64) -> Self {
        Self {
            fault,
            lasting: Duration::from_millis(ms),
        }
    }
}

/// A schedule being played; stops (leaving the server healthy) when
/// dropped or [`stop`](Self::stop)ped.
pub struct FaultRun {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// Phases started so far.
    pub phases_played: Arc<AtomicU64>,
}

impl FaultRun {
    /// Stop the schedule and wait until the server is healthy again.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FaultRun {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Play `phases` in order, `cycles` times (then healthy), on the current
/// tokio runtime.
pub fn play(state: Arc<ApnsState>, phases: Vec<Phase>, cycles: u32) -> FaultRun {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let played = Arc::new(AtomicU64::new(0));
    let count = played.clone();
    let task = tokio::spawn(async move {
        'outer: for _ in 0..cycles {
            for p in &phases {
                count.fetch_add(1, Ordering::Relaxed);
                apply(&state, p.fault);
                let end = tokio::time::Instant::now() + p.lasting;
                loop {
                    if p.fault == Fault::Reset {
                        state.close_after_next(1);
                    }
                    let tick = if p.fault == Fault::Reset {
                        RESET_EVERY
                    } else {
                        p.lasting
                    };
                    let wake = (tokio::time::Instant::now() + tick).min(end);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = stop.cancelled() => break 'outer,
                    }
                    if tokio::time::Instant::now() >= end {
                        break;
                    }
                }
            }
        }
        apply(&state, Fault::Healthy);
    });
    FaultRun {
        cancel,
        task,
        phases_played: played,
    }
}

/// Set the server's switches for `fault` (clearing the others).
fn apply(st: &ApnsState, fault: Fault) {
    st.fail_next.store(0, Ordering::SeqCst);
    st.throttle_next.store(0, Ordering::SeqCst);
    st.delay_ms.store(0, Ordering::SeqCst);
    st.close_after.store(0, Ordering::SeqCst);
    st.freeze_next.store(0, Ordering::SeqCst);
    match fault {
        Fault::Healthy | Fault::Reset => {}
        Fault::Unavailable => st.fail_next.store(ALWAYS, Ordering::SeqCst),
        Fault::Throttle { retry_after_secs } => {
            st.retry_after_secs
                .store(retry_after_secs, Ordering::SeqCst);
            st.throttle_next.store(ALWAYS, Ordering::SeqCst);
        }
        Fault::Slow(d) | Fault::Timeout(d) => st.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        ),
        Fault::HalfOpen => st.freeze_next.store(1, Ordering::SeqCst),
    }
}
