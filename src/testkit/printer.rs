//! A raw print port, as label printers listen on TCP 9100: every connection's bytes
//! are one print job. `tocsin demo` and the label tests stand it in for a parcel
//! partner's printer. Stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Largest job kept (a label with a photo is a few hundred KB of ZPL).
const MAX_JOB: u64 = 8 << 20;

/// A listening raw print port.
pub struct RawPrinter {
    addr: SocketAddr,
    jobs: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
}

impl Drop for RawPrinter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RawPrinter {
    /// Listen on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let jobs = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (j, st) = (jobs.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = st.cancelled() => return,
                    c = listener.accept() => c,
                };
                let Ok((sock, _)) = conn else { continue };
                let j = j.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    if sock.take(MAX_JOB).read_to_end(&mut buf).await.is_ok() {
                        j.lock().push(buf);
                    }
                });
            }
        });
        Ok(Self { addr, jobs, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every job received so far, in order.
    pub fn jobs(&self) -> Vec<Vec<u8>> {
        self.jobs.lock().clone()
    }
}
