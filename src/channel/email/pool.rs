//! SMTP sessions to one relay: connect (implicit TLS, or STARTTLS which is then
//! required, or plain), AUTH, and a small pool of idle sessions reused for later
//! transactions. At most `connections` transactions run at once, and each one —
//! checkout, connect, MAIL/RCPT/DATA — is bounded by the timeout as a whole.
//!
//! Why not `lettre::AsyncSmtpTransport`: its async transport applies the timeout to
//! the TCP connect only, so a relay that stops answering holds a delivery (and a
//! dispatcher slot) until the relay's own idle timer fires; and a send cancelled from
//! outside hands its session back to lettre's pool in the middle of a transaction,
//! where the next checkout's NOOP reads the stale reply and every later command is
//! one reply off. Its pool also caps idle sessions, not open ones. The SMTP protocol
//! itself (EHLO, STARTTLS, AUTH, dot-stuffing, reply parsing) stays lettre's
//! `AsyncSmtpConnection`; this module only decides when a session is opened, reused
//! or thrown away: a session whose transaction failed, timed out or was cancelled is
//! never reused. Never logs an address.

use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::Error as SmtpError;
use tokio::sync::Semaphore;

/// How the session is secured.
#[derive(Clone)]
pub enum Security {
    /// Plain text (a relay on this host).
    None,
    /// `STARTTLS` right after EHLO; a relay that does not offer it is an error.
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS, port 465).
    Implicit(TlsParameters),
}

/// Why a transaction did not complete.
#[derive(Debug)]
pub enum Failure {
    /// The relay or the connection failed (a negative reply, I/O, TLS, AUTH …).
    Smtp(SmtpError),
    /// No answer within the timeout; the session was dropped.
    Timeout,
    /// The pool was closed.
    Closed,
}

/// Where and how to connect.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
    /// Bound on one whole transaction, connecting included.
    pub timeout: Duration,
}

/// Idle sessions older than this are closed instead of reused (relays commonly drop
/// idle clients after a minute or more).
const MAX_IDLE: Duration = Duration::from_secs(50);

/// A pool of SMTP sessions to one relay.
pub struct SmtpPool {
    endpoint: Endpoint,
    hello: ClientId,
    idle: parking_lot::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
}

impl SmtpPool {
    /// At most `connections` sessions are open (and transactions running) at once.
    pub fn new(endpoint: Endpoint, connections: usize) -> Self {
        Self {
            endpoint,
            hello: ClientId::default(),
            idle: parking_lot::Mutex::new(Vec::new()),
            slots: Semaphore::new(connections.max(1)),
        }
    }

    /// The relay's host name (metrics label).
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let e = &self.endpoint;
        let wrapper = match &e.security {
            Security::Implicit(p) => Some(p.clone()),
            _ => None,
        };
        let addr = (e.host.as_str(), e.port);
        let mut conn = match wrapper {
            Some(tls) => {
                AsyncSmtpConnection::connect_tokio1(
                    addr,
                    Some(e.timeout),
                    &self.hello,
                    Some(tls),
                    None,
                )
                .await?
            }
            None => {
                // Our own socket, to turn Nagle off: SMTP is request/response and lettre
                // writes a message body and its final dot separately, which Nagle plus
                // delayed ACKs would hold back ~40 ms per message.
                // The caller bounds the whole transaction, connecting included. On a
                // failed connect lettre's own connect runs, to report it in its terms.
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                            .await?
                    }
                    Err(_) => {
                        AsyncSmtpConnection::connect_tokio1(
                            addr,
                            Some(e.timeout),
                            &self.hello,
                            None,
                            None,
                        )
                        .await?
                    }
                }
            }
        };
        if let Security::StartTls(p) = &e.security {
            conn.starttls(p.clone(), &self.hello).await?;
        }
        if let Some(c) = &e.credentials {
            conn.auth(DEFAULT_MECHANISMS, c).await?;
        }
        Ok(conn)
    }

    /// A live idle session, else a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        loop {
            let parked = self.idle.lock().pop();
            let Some((mut conn, since)) = parked else {
                return self.connect().await;
            };
            if since.elapsed() < MAX_IDLE && conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    /// One transaction (MAIL, RCPT, DATA) for `envelope` with the RFC 5322 `message`.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), Failure> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(Failure::Closed);
        };
        let transaction = async {
            let mut conn = self.checkout().await?;
            let result = conn.send(envelope, message).await;
            // lettre marks a session broken (and sends QUIT) on any failure; only a
            // session whose transaction completed, either way, is reused.
            if !conn.has_broken() {
                self.idle.lock().push((conn, Instant::now()));
            }
            result.map(|_| ())
        };
        // On timeout the future, and with it the session, is dropped: the socket
        // closes and the session never returns to the pool.
        match tokio::time::timeout(self.endpoint.timeout, transaction).await {
            Ok(r) => r.map_err(Failure::Smtp),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Say QUIT on every idle session and refuse further transactions.
    pub async fn close(&self) {
        self.slots.close();
        let idle = std::mem::take(&mut *self.idle.lock());
        for (mut conn, _) in idle {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }
}
