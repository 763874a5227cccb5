//! An SMTP sink for `tocsin demo` and the e-mail bench: a plain-text SMTP server
//! (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT) on
//! `127.0.0.1` that accepts every message and counts deliveries per recipient, so the
//! demo can check that each address got its mail exactly once. No TLS and no AUTH: the
//! tests use aiosmtpd for those. Stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Longest command line or DATA line accepted (RFC 5321 §4.5.3.1.6 allows 1000).
const MAX_LINE: usize = 4096;
/// Largest message accepted.
const MAX_MESSAGE: usize = 1 << 20;

/// What the sink has received.
#[derive(Default)]
pub struct SinkState {
    by_recipient: Mutex<HashMap<String, u32>>,
    messages: AtomicU64,
    sessions: AtomicU64,
}

impl SinkState {
    /// Messages accepted per recipient address.
    pub fn by_recipient(&self) -> HashMap<String, u32> {
        self.by_recipient.lock().clone()
    }
    /// Messages accepted (one per DATA).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
    /// SMTP sessions opened.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// A running SMTP sink.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    stop: CancellationToken,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SmtpSink {
    /// Start on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState::default());
        let stop = CancellationToken::new();
        let (st, stop2) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = stop2.cancelled() => return,
                    c = listener.accept() => c,
                };
                if let Ok((sock, _)) = conn {
                    st.sessions.fetch_add(1, Ordering::Relaxed);
                    let (st, stop) = (st.clone(), stop2.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = session(sock, st) => {}
                        }
                    });
                }
            }
        });
        Ok(Self { addr, state, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<SinkState> {
        self.state.clone()
    }
}

async fn session(sock: TcpStream, st: Arc<SinkState>) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 tocsin-sink ESMTP\r\n").await?;
    let mut line = Vec::with_capacity(256);
    let mut rcpts: Vec<String> = Vec::new();
    let mut mail = false;
    loop {
        line.clear();
        if read_line(&mut r, &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let cmd = text.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") {
            b"250-tocsin-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
        } else if cmd.starts_with("HELO") {
            b"250 tocsin-sink\r\n"
        } else if cmd.starts_with("MAIL FROM:") {
            mail = true;
            rcpts.clear();
            b"250 2.1.0 ok\r\n"
        } else if cmd.starts_with("RCPT TO:") {
            if !mail {
                b"503 5.5.1 MAIL first\r\n"
            } else {
                let arg = text.trim_end()[8..].trim();
                let addr = arg.trim_start_matches('<').split('>').next().unwrap_or("");
                rcpts.push(addr.to_string());
                b"250 2.1.5 ok\r\n"
            }
        } else if cmd == "DATA" {
            if rcpts.is_empty() {
                b"503 5.5.1 RCPT first\r\n"
            } else {
                w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut size = 0;
                loop {
                    line.clear();
                    if read_line(&mut r, &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    size += line.len();
                }
                if size > MAX_MESSAGE {
                    b"552 5.3.4 message too big\r\n"
                } else {
                    st.messages.fetch_add(1, Ordering::Relaxed);
                    let mut by = st.by_recipient.lock();
                    for a in rcpts.drain(..) {
                        *by.entry(a).or_default() += 1;
                    }
                    mail = false;
                    b"250 2.0.0 queued\r\n"
                }
            }
        } else if cmd == "RSET" {
            mail = false;
            rcpts.clear();
            b"250 2.0.0 ok\r\n"
        } else if cmd.starts_with("NOOP") {
            b"250 2.0.0 ok\r\n"
        } else if cmd == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 command not recognised\r\n"
        };
        w.write_all(reply).await?;
    }
}

/// One line including its terminator; longer lines are cut at [`MAX_LINE`] (the rest
/// is read as the next line, as a lenient server would).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut limited = tokio::io::AsyncReadExt::take(r, MAX_LINE as u64);
    limited.read_until(b'\n', out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn speaks_smtp_and_counts_recipients() {
        let sink = SmtpSink::start().await.unwrap();
        let mut c = TcpStream::connect(sink.addr()).await.unwrap();
        let script = b"EHLO t\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        c.write_all(script).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("220 "), "{out}");
        assert!(out.contains("354 "), "{out}");
        assert!(out.contains("250 2.0.0 queued"), "{out}");
        assert!(out.ends_with("221 2.0.0 bye\r\n"), "{out}");
        let by = sink.state().by_recipient();
        assert_eq!(by.get("b@y"), Some(&1));
        assert_eq!(by.get("c@y"), Some(&1));
        assert_eq!(sink.state().messages(), 1);
    }
}
