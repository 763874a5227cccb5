//! The plumbing both provider servers share: a TCP listener on
//! `127.0.0.1:0`, the TLS handshake, one task per connection, a per-connection
//! kill switch that drops the socket with an RST (no GOAWAY, no answers for
//! in-flight streams, as a crashed load balancer would), and shutdown. It
//! knows nothing about HTTP; each server hands in its own connection driver.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Fired by a request handler to drop its connection abruptly, or to
/// freeze it (half-open: the socket stays open, nothing is read or written).
#[derive(Clone, Default)]
pub(crate) struct ConnKill(Arc<Notify>, Arc<Notify>);

impl ConnKill {
    /// Drop the connection this handler's request arrived on.
    pub(crate) fn fire(&self) {
        self.0.notify_one();
    }

    /// Stop serving the connection without closing it, as a peer that
    /// vanished without a FIN: no answers, no PING replies, until shutdown.
    pub(crate) fn freeze(&self) {
        self.1.notify_one();
    }
}

/// A running listener: its address and the token that stops it.
pub(crate) struct Listening {
    pub(crate) addr: SocketAddr,
    pub(crate) cancel: CancellationToken,
}

/// Bind `127.0.0.1:0` (the caller may need the port before serving).
pub(crate) fn bind() -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
}

/// Serve every TLS connection on `std_listener` with `drive`, on the
/// current tokio runtime.
pub(crate) fn listen<F, Fut>(
    std_listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    drive: F,
) -> std::io::Result<Listening>
where
    F: Fn(TlsStream<TcpStream>, ConnKill) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| std::io::Error::other(format!("test server needs a tokio runtime: {e}")))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = {
        let _guard = handle.enter();
        TcpListener::from_std(std_listener)?
    };
    let cancel = CancellationToken::new();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let drive = Arc::new(drive);
    let stop = cancel.clone();
    handle.spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    // EMFILE and friends: back off a little and keep serving.
                    Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
                },
            };
            let acceptor = acceptor.clone();
            let drive = drive.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                // A second descriptor for the same socket, so the kill switch
                // can set SO_LINGER 0 after hyper owns the stream.
                let Ok((tcp, dup)) = split_dup(tcp) else {
                    return;
                };
                let tls = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    },
                };
                let kill = ConnKill::default();
                let killed = kill.0.clone();
                let frozen = kill.1.clone();
                let conn = drive(tls, kill);
                tokio::pin!(conn);
                tokio::select! {
                    _ = &mut conn => {}
                    _ = killed.notified() => {
                        if let Ok(s) = TcpStream::from_std(dup) {
                            let _ = s.set_zero_linger();
                        }
                    }
                    _ = frozen.notified() => {
                        // Keep the connection (and its socket) alive but never
                        // poll it again: half-open until the server stops.
                        stop.cancelled().await;
                    }
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(Listening { addr, cancel })
}

fn split_dup(tcp: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = tcp.into_std()?;
    let dup = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, dup))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Take one from a "next N" fault counter; true if there was one.
pub(crate) fn take(n: &AtomicU32) -> bool {
    n.load(Ordering::Relaxed) != 0
        && n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
}

/// Has request number `n` reached the `close_after` switch? Fires once: the
/// switch is reset to 0 by whichever request wins.
pub(crate) fn close_due(n: u64, close_after: &AtomicU64) -> bool {
    let at = close_after.load(Ordering::SeqCst);
    at != 0
        && n >= at
        && close_after
            .compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}
