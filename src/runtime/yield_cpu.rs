//! Giving the CPU back from `SCHED_IDLE` threads (departure 31).
//!
//! Under `SCHED_IDLE` the fan-out should take only what the receipt path
//! leaves, and a receipt thread that wakes should run at once. With the
//! EEVDF scheduler (Linux 6.6 and later; seen on 6.18) that does not always
//! hold: the kernel picks the
//! eligible thread with the earliest virtual deadline, and a woken receipt
//! thread that has run a little more than its share lately is not yet
//! eligible, so an idle-class thread is picked instead, and the next
//! decision comes only at that thread's next system call that blocks, or
//! at the next tick (4 ms at `HZ=250`). Traces of the load test showed the
//! journal thread waiting 1–4 ms this way behind fan-out threads busy in
//! user space.
//!
//! [`cooperate`] shortens that wait: called on the fan-out's hot paths
//! (each read, write and flush of a push connection, each batch cut), it
//! calls `sched_yield` when the thread is idle-class and [`YIELD_EVERY`]
//! has passed since it last did. The yield ends the thread's turn, and the
//! kernel decides again with the woken thread now eligible. How long a
//! woken thread can still wait is the gap between two such calls (one
//! poll, a TLS handshake, a batch being cut), not a tick. On other threads
//! it is one thread-local read.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often, at most, an idle-class thread offers the CPU again from
/// [`cooperate`]: often enough that a receipt thread woken behind it waits
/// about this long (plus the gap to the next call), not a scheduler tick.
pub const YIELD_EVERY: Duration = Duration::from_micros(100);

thread_local! {
    /// When this thread last gave the CPU back; `None` unless it is
    /// idle-class ([`mark_idle_class`]).
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Mark the calling thread idle-class: [`cooperate`] yields on it from now on.
pub(super) fn mark_idle_class() {
    LAST.with(|c| c.set(Some(Instant::now())));
}

/// Whether [`cooperate`] yields on the calling thread.
#[cfg(test)]
pub(super) fn is_idle_class() -> bool {
    LAST.with(|c| c.get().is_some())
}

/// On an idle-class thread that has run [`YIELD_EVERY`] since it last gave
/// the CPU back, give it back now (`sched_yield`); otherwise nothing.
#[inline]
pub fn cooperate() {
    LAST.with(|c| {
        let Some(last) = c.get() else { return };
        let now = Instant::now();
        if now.duration_since(last) >= YIELD_EVERY {
            #[cfg(unix)]
            // SAFETY: sched_yield(2) has no preconditions and touches no memory.
            unsafe {
                libc::sched_yield();
            }
            c.set(Some(Instant::now()));
        }
    });
}

/// An I/O stream that calls [`cooperate`] on each read, write and flush: the
/// fan-out's push connections, where most of its CPU goes.
pub struct Cooperative<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Cooperative<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        cooperate();
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Cooperative<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        cooperate();
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        cooperate();
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        cooperate();
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idle_class_threads_yield() {
        // A thread never marked does nothing (and keeps no clock).
        std::thread::spawn(|| {
            cooperate();
            assert!(LAST.with(Cell::get).is_none());
        })
        .join()
        .unwrap();
        // A marked thread that has run its turn yields and starts another.
        std::thread::spawn(|| {
            mark_idle_class();
            let t0 = LAST.with(Cell::get).unwrap();
            std::thread::sleep(YIELD_EVERY * 2);
            cooperate();
            assert!(LAST.with(Cell::get).unwrap() > t0 + YIELD_EVERY);
        })
        .join()
        .unwrap();
    }
}
