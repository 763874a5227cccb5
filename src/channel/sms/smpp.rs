//! SMPP 3.4 transport: hands SMS parts to SMS centres as `submit_sm`, on the `rusmppc`
//! client. Each configured SMSC gets several binds (sessions); each bind is a task that
//! connects, binds (transmitter, or transceiver to receive delivery receipts), answers
//! the SMSC's `deliver_sm`/`unbind`, keeps the link alive with `enquire_link`, and
//! reconnects with exponential backoff when the link drops. Sending picks the next bind
//! that is up (round robin over all SMSCs), waits for that SMSC's rate limit and a slot
//! in the bind's window of outstanding requests, then maps the `command_status` of every
//! part to one [`Outcome`]. Numbers and passwords are never logged.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::text::Part;
use super::{SmsMessage, SmsTransport};
use crate::channel::Outcome;
use crate::config::SmscSettings;
use crate::dispatch::rate::TokenBucket;
use crate::metrics::{GatewayLabel, Metrics, ReceiptLabel};

/// `esm_class` bit: the short message starts with a user data header.
const ESM_UDHI: u8 = 0x40;
/// `esm_class` bits 2..5 of a `deliver_sm` that is a delivery receipt.
const ESM_RECEIPT: u8 = 0x04;
/// A later part answered with a transient status is tried again this many times, so
/// the parts already accepted are not sent twice by a retry of the whole message.
const PART_TRIES: u32 = 3;

/// Why the SMPP transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmppError {
    #[error("channels.sms.smsc is empty: at least one SMSC is needed for transport = \"smpp\"")]
    NoSmsc,
    #[error("smsc {name:?}: {what}")]
    Invalid { name: String, what: String },
    #[error("smsc {name:?}: TLS: {source}")]
    Tls {
        name: String,
        source: crate::tls::TlsError,
    },
}

/// One SMSC: its settings, rate limit and metric labels.
struct Smsc {
    settings: SmscSettings,
    password: String,
    tls: Option<rustls::ClientConfig>,
    source_addr: String,
    rate: TokenBucket,
    label: GatewayLabel,
}

/// One bind (session) to an SMSC.
struct Bind {
    smsc: Arc<Smsc>,
    client: Mutex<Option<Client>>,
    up: AtomicBool,
    window: Semaphore,
    /// Requests outstanding on the current session (see [`Driven`]).
    busy: Arc<Outstanding>,
}

impl Bind {
    fn client(&self) -> Option<Client> {
        self.client.lock().clone()
    }
}

/// SMS over SMPP 3.4 to one or more SMS centres.
pub struct SmppTransport {
    binds: Vec<Arc<Bind>>,
    next: AtomicUsize,
    bound: Arc<Notify>,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    metrics: Metrics,
}

/// What one `submit_sm` came back with.
enum PartResult {
    Accepted,
    /// Transient: another try may succeed.
    Transient {
        reason: &'static str,
        after: Option<Duration>,
    },
    /// Final for this message.
    Final(Outcome),
}

impl SmppTransport {
    /// Start binding to every SMSC in `smscs` (passwords resolved by the caller, in the
    /// same order). Returns at once; sends wait for the first bind.
    pub fn start(
        smscs: &[(SmscSettings, String)],
        source_addr: &str,
        ca_pems: &[Option<Vec<u8>>],
        metrics: Metrics,
    ) -> Result<Self, SmppError> {
        if smscs.is_empty() {
            return Err(SmppError::NoSmsc);
        }
        let stop = CancellationToken::new();
        let bound = Arc::new(Notify::new());
        let mut binds = Vec::new();
        for (i, (s, password)) in smscs.iter().enumerate() {
            let invalid = |what: &str| SmppError::Invalid {
                name: s.name.clone(),
                what: what.to_string(),
            };
            if s.binds == 0 || s.window == 0 {
                return Err(invalid("binds and window must be > 0"));
            }
            if !(s.rate_per_sec.is_finite() && s.rate_per_sec > 0.0) {
                return Err(invalid("rate_per_sec must be > 0"));
            }
            if s.system_id.is_empty() || s.system_id.len() > 15 {
                return Err(invalid("system_id must be 1 to 15 characters"));
            }
            if password.len() > 8 {
                return Err(invalid("an SMPP 3.4 password is at most 8 characters"));
            }
            if source_addr.is_empty() || source_addr.len() > 20 {
                return Err(invalid("source_addr must be 1 to 20 characters"));
            }
            let tls = if s.tls {
                let pem = ca_pems.get(i).and_then(|c| c.as_deref());
                Some(tls_config(pem).map_err(|source| SmppError::Tls {
                    name: s.name.clone(),
                    source,
                })?)
            } else {
                None
            };
            let smsc = Arc::new(Smsc {
                settings: s.clone(),
                password: password.clone(),
                tls,
                source_addr: source_addr.to_string(),
                // A burst of a tenth of a second's worth keeps the SMSC's own limit.
                rate: TokenBucket::new(s.rate_per_sec, (s.rate_per_sec / 10.0).ceil() as u32),
                label: GatewayLabel {
                    channel: "sms",
                    gateway: s.name.clone(),
                },
            });
            metrics.gateway_sessions.get_or_create(&smsc.label).set(0);
            for _ in 0..s.binds {
                binds.push(Arc::new(Bind {
                    smsc: smsc.clone(),
                    client: Mutex::new(None),
                    up: AtomicBool::new(false),
                    window: Semaphore::new(s.window),
                    busy: Arc::new(Outstanding::default()),
                }));
            }
        }
        let tasks = binds
            .iter()
            .map(|b| {
                tokio::spawn(run_bind(
                    b.clone(),
                    bound.clone(),
                    stop.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        Ok(Self {
            binds,
            next: AtomicUsize::new(0),
            bound,
            stop,
            tasks: Mutex::new(tasks),
            metrics,
        })
    }

    /// Binds up right now.
    pub fn binds_up(&self) -> usize {
        self.binds
            .iter()
            .filter(|b| b.up.load(Ordering::Relaxed))
            .count()
    }

    /// The next bind that is up, waiting up to `patience` for one.
    async fn pick(&self, patience: Duration) -> Option<Arc<Bind>> {
        let deadline = Instant::now() + patience;
        loop {
            let notified = self.bound.notified();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let n = self.binds.len();
            if let Some(b) = (0..n)
                .map(|k| &self.binds[(start + k) % n])
                .find(|b| b.up.load(Ordering::Relaxed))
            {
                return Some(b.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.is_cancelled() {
                return None;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Submit one part over `bind`.
    async fn submit(&self, bind: &Bind, number: &str, part: &Part) -> PartResult {
        let smsc = &bind.smsc;
        let wait = smsc.rate.take_or_wait(1);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Ok(_slot) = bind.window.acquire().await else {
            return PartResult::Transient {
                reason: "smsc_unavailable",
                after: None,
            };
        };
        let Some(client) = bind.client() else {
            return PartResult::Transient {
                reason: "smsc_unavailable",
                after: None,
            };
        };
        let pdu = match submit_pdu(smsc, number, part) {
            Ok(p) => p,
            Err(outcome) => return PartResult::Final(outcome),
        };
        let started = Instant::now();
        let result = {
            let _busy = Busy::new(&bind.busy);
            client.submit_sm(pdu).await
        };
        self.metrics
            .gateway_request_seconds
            .get_or_create(&smsc.label)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => {
                self.metrics.sms_parts.get_or_create(&smsc.label).inc();
                PartResult::Accepted
            }
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                classify(response.status())
            }
            Err(rusmppc::error::Error::ResponseTimeout { .. }) => PartResult::Transient {
                reason: "smsc_timeout",
                after: None,
            },
            Err(_) => PartResult::Transient {
                reason: "smsc_connection",
                after: None,
            },
        }
    }
}

/// The `submit_sm` of one part; an unusable number or part is a final outcome.
fn submit_pdu(smsc: &Smsc, number: &str, part: &Part) -> Result<SubmitSm, Outcome> {
    let invalid = Outcome::Rejected {
        reason: "invalid_number",
        drop: true,
    };
    let (ton, digits) = match number.strip_prefix('+') {
        Some(d) => (Ton::International, d),
        None => (Ton::Unknown, number),
    };
    let destination = COctetString::from_str(digits).map_err(|_| invalid)?;
    let source_ton = if smsc.source_addr.bytes().all(|b| b.is_ascii_digit()) {
        Ton::Unknown
    } else {
        Ton::Alphanumeric
    };
    let too_long = Outcome::Rejected {
        reason: "text_too_long",
        drop: false,
    };
    let source = COctetString::from_str(&smsc.source_addr).map_err(|_| too_long)?;
    let data = if smsc.settings.gsm7_packed {
        part.user_data()
    } else {
        part.user_data_unpacked()
    };
    let short_message = OctetString::from_vec(data).map_err(|_| too_long)?;
    let esm = if part.udh.is_some() { ESM_UDHI } else { 0 };
    let receipts = u8::from(smsc.settings.delivery_receipts);
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(source_ton)
        .source_addr_npi(Npi::Unknown)
        .source_addr(source)
        .dest_addr_ton(ton)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(destination)
        .esm_class(EsmClass::from(esm))
        .registered_delivery(RegisteredDelivery::from(receipts))
        .data_coding(DataCoding::from(part.coding.data_coding()))
        .short_message(short_message)
        .build())
}

/// Map an SMSC's `command_status` for a `submit_sm`.
fn classify(status: CommandStatus) -> PartResult {
    match status {
        CommandStatus::EsmeRok => PartResult::Accepted,
        CommandStatus::EsmeRthrottled => PartResult::Transient {
            reason: "throttled",
            after: Some(Duration::from_secs(1)),
        },
        CommandStatus::EsmeRmsgqful => PartResult::Transient {
            reason: "queue_full",
            after: Some(Duration::from_secs(2)),
        },
        CommandStatus::EsmeRsyserr | CommandStatus::EsmeRxTAppn => PartResult::Transient {
            reason: "smsc_error",
            after: None,
        },
        CommandStatus::EsmeRinvdstadr
        | CommandStatus::EsmeRinvdstton
        | CommandStatus::EsmeRinvdstnpi => PartResult::Final(Outcome::Rejected {
            reason: "invalid_number",
            drop: true,
        }),
        _ => PartResult::Final(Outcome::Rejected {
            reason: "smsc_rejected",
            drop: false,
        }),
    }
}

#[async_trait]
impl SmsTransport for SmppTransport {
    async fn send(&self, number: &str, message: &SmsMessage) -> Outcome {
        let patience = Duration::from_millis(
            self.binds
                .first()
                .map_or(1000, |b| b.smsc.settings.response_timeout_ms),
        );
        for (index, part) in message.parts.iter().enumerate() {
            let mut tries = 0;
            loop {
                let Some(bind) = self.pick(patience).await else {
                    return Outcome::Retry {
                        after: None,
                        reason: "smsc_unavailable",
                    };
                };
                match self.submit(&bind, number, part).await {
                    PartResult::Accepted => break,
                    PartResult::Final(outcome) => return outcome,
                    PartResult::Transient { reason, after } => {
                        // Before any part went out, the dispatcher's retry (which
                        // frees the slot meanwhile) is the better place to wait.
                        tries += 1;
                        if index == 0 || tries >= PART_TRIES || self.stop.is_cancelled() {
                            return Outcome::Retry { after, reason };
                        }
                        let pause = after
                            .unwrap_or(Duration::from_millis(100))
                            .min(Duration::from_secs(1))
                            * tries;
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
        Outcome::Delivered
    }

    async fn close(&self) {
        self.stop.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A bind's life: connect, bind, serve until the link drops, back off, again.
async fn run_bind(bind: Arc<Bind>, bound: Arc<Notify>, stop: CancellationToken, metrics: Metrics) {
    let s = &bind.smsc.settings;
    let min = Duration::from_millis(s.reconnect_min_ms.max(10));
    let max = Duration::from_millis(s.reconnect_max_ms.max(s.reconnect_min_ms.max(10)));
    let mut backoff = min;
    loop {
        if stop.is_cancelled() {
            return;
        }
        match connect_and_bind(&bind.smsc, &bind.busy).await {
            Ok((client, events)) => {
                backoff = min;
                *bind.client.lock() = Some(client.clone());
                bind.up.store(true, Ordering::Relaxed);
                metrics
                    .gateway_sessions
                    .get_or_create(&bind.smsc.label)
                    .inc();
                tracing::info!(smsc = %s.name, "smpp bound");
                bound.notify_waiters();
                serve(&bind, &client, events, &stop, &metrics).await;
                bind.up.store(false, Ordering::Relaxed);
                *bind.client.lock() = None;
                metrics
                    .gateway_sessions
                    .get_or_create(&bind.smsc.label)
                    .dec();
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(smsc = %s.name, "smpp session ended; reconnecting");
            }
            Err(e) => {
                tracing::warn!(smsc = %s.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "smpp bind failed");
            }
        }
        // Jitter keeps a fleet of binds from reconnecting in step.
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

type Events = Box<dyn futures::Stream<Item = Event> + Unpin + Send>;

/// Our own TCP (Nagle off: SMPP is request/response) and, for `smpps`, TLS.
async fn open_stream(smsc: &Smsc) -> std::io::Result<Box<dyn Stream>> {
    let s = &smsc.settings;
    let within = Duration::from_millis(s.response_timeout_ms.max(100));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((s.host.as_str(), s.port)).await?;
        tcp.set_nodelay(true)?;
        let Some(cfg) = &smsc.tls else {
            return Ok(Box::new(tcp) as Box<dyn Stream>);
        };
        let name = rustls::pki_types::ServerName::try_from(s.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg.clone()))
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls) as Box<dyn Stream>)
    };
    tokio::time::timeout(within, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// A byte stream rusmppc can run a session over.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn connect_and_bind(
    smsc: &Smsc,
    busy: &Arc<Outstanding>,
) -> Result<(Client, Events), rusmppc::error::Error> {
    let s = &smsc.settings;
    let stream = open_stream(smsc)
        .await
        .map_err(rusmppc::error::Error::Connect)?;
    let (client, events, connection) = ConnectionBuilder::new()
        .enquire_link_interval(Duration::from_secs(s.enquire_link_secs.max(1)))
        .response_timeout(Duration::from_millis(s.response_timeout_ms.max(100)))
        .enable_auto_enquire_link_response()
        .disable_interface_version_check()
        .no_spawn()
        .connected(stream);
    tokio::spawn(Driven {
        inner: Box::pin(connection),
        busy: busy.clone(),
        tick: None,
    });
    let _busy = Busy::new(busy);
    let (system_id, password, system_type) = (
        c_field(&s.system_id)?,
        c_field(&smsc.password)?,
        c_field(&s.system_type)?,
    );
    let result = if s.transceiver {
        client
            .bind_transceiver(
                BindTransceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .build(),
            )
            .await
            .map(|_| ())
    } else {
        client
            .bind_transmitter(
                BindTransmitter::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .build(),
            )
            .await
            .map(|_| ())
    };
    if let Err(e) = result {
        let _ = client.close().await;
        return Err(e);
    }
    Ok((client, Box::new(events)))
}

/// A bind field as a C-octet string of at most `N` octets (NUL included).
fn c_field<const N: usize>(v: &str) -> Result<COctetString<1, N>, rusmppc::error::Error> {
    COctetString::from_str(v).map_err(|e| {
        rusmppc::error::Error::Connect(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })
}

/// Runs rusmppc's connection future. rusmppc 0.4.0 handles at most five queued
/// requests and five writes per poll and then waits on the socket without waking itself
/// again, so a burst larger than that (a window of 64) would sit unsent until the next
/// `enquire_link` timer, tens of seconds later. While a request of ours is outstanding
/// this re-polls it every millisecond; idle, it costs nothing.
struct Driven<F> {
    inner: std::pin::Pin<Box<F>>,
    busy: Arc<Outstanding>,
    tick: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Driven<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        loop {
            // Registered before polling, so a request queued from now on wakes us.
            self.busy.waker.register(cx.waker());
            if self.inner.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if self.busy.count.load(Ordering::Relaxed) == 0 {
                self.tick = None;
                return Poll::Pending;
            }
            let tick = self
                .tick
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(1))));
            if tick.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.tick = None;
        }
    }
}

/// Requests outstanding on a session, and the waker of its [`Driven`] task.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    waker: futures::task::AtomicWaker,
}

/// Counts a request outstanding on a bind for as long as it lives. Starting one wakes
/// the session's [`Driven`] task: rusmppc may be parked with requests it will not look
/// at on its own (an earlier request dropped mid-flight leaves no tick running).
struct Busy<'a>(&'a Outstanding);

impl<'a> Busy<'a> {
    fn new(outstanding: &'a Outstanding) -> Self {
        outstanding.count.fetch_add(1, Ordering::Relaxed);
        outstanding.waker.wake();
        Self(outstanding)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answer the SMSC until the link drops or the daemon stops (then `unbind`).
async fn serve(
    bind: &Bind,
    client: &Client,
    mut events: Events,
    stop: &CancellationToken,
    metrics: &Metrics,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => {
                // Let outstanding submits finish before unbinding.
                let window = bind.smsc.settings.window as u32;
                let _ = tokio::time::timeout(Duration::from_secs(5), bind.window.acquire_many(window)).await;
                let _busy = Busy::new(&bind.busy);
                let _ = tokio::time::timeout(Duration::from_secs(2), client.unbind()).await;
                let _ = client.close().await;
                return;
            }
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Event::Incoming(command)) => match command.id() {
                CommandId::DeliverSm => {
                    if let Some(Pdu::DeliverSm(d)) = command.pdu() {
                        if u8::from(d.esm_class) & 0x3C == ESM_RECEIPT {
                            let status = receipt_status(d.short_message().as_ref());
                            metrics
                                .sms_receipts
                                .get_or_create(&ReceiptLabel {
                                    gateway: bind.smsc.settings.name.clone(),
                                    status,
                                })
                                .inc();
                        }
                    }
                    let _busy = Busy::new(&bind.busy);
                    let _ = client
                        .deliver_sm_resp(command.sequence_number(), DeliverSmResp::default())
                        .await;
                }
                CommandId::Unbind => {
                    let _ = client.unbind_resp(command.sequence_number()).await;
                    let _ = client.close().await;
                    return;
                }
                _ => {}
            },
            Some(Event::Error(e)) => {
                tracing::debug!(smsc = %bind.smsc.settings.name, error = %e, "smpp link event");
                if client.is_closed() {
                    return;
                }
            }
        }
    }
}

/// The final state in a delivery receipt's text (`… stat:DELIVRD …`).
pub fn receipt_status(text: &[u8]) -> &'static str {
    const STATES: [(&[u8], &str); 7] = [
        (b"DELIVRD", "delivered"),
        (b"EXPIRED", "expired"),
        (b"DELETED", "deleted"),
        (b"UNDELIV", "undeliverable"),
        (b"ACCEPTD", "accepted"),
        (b"REJECTD", "rejected"),
        (b"UNKNOWN", "unknown"),
    ];
    let lower = text.to_ascii_lowercase();
    let Some(at) = lower.windows(5).position(|w| w == b"stat:") else {
        return "unknown";
    };
    let rest = &text[at + 5..];
    STATES
        .iter()
        .find(|(code, _)| rest.len() >= code.len() && rest[..code.len()].eq_ignore_ascii_case(code))
        .map_or("unknown", |(_, name)| name)
}

/// Client TLS for `smpps`: the extra CA when given, else the system's bundle.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, crate::tls::TlsError> {
    let pem = match ca_pem {
        Some(p) => p.to_vec(),
        None => std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default(),
    };
    let roots: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_states_are_read_from_the_text() {
        let r = b"id:abc sub:001 dlvrd:001 submit date:2611290400 done date:2611290401 stat:DELIVRD err:000 text:Missing";
        assert_eq!(receipt_status(r), "delivered");
        assert_eq!(
            receipt_status(b"id:1 stat:undeliv err:001"),
            "undeliverable"
        );
        assert_eq!(receipt_status(b"garbage"), "unknown");
        assert_eq!(receipt_status(b"stat:"), "unknown");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert!(matches!(
            classify(CommandStatus::EsmeRthrottled),
            PartResult::Transient {
                reason: "throttled",
                ..
            }
        ));
        assert!(matches!(
            classify(CommandStatus::EsmeRmsgqful),
            PartResult::Transient {
                reason: "queue_full",
                ..
            }
        ));
        assert!(matches!(
            classify(CommandStatus::EsmeRinvdstadr),
            PartResult::Final(Outcome::Rejected { drop: true, .. })
        ));
        assert!(matches!(
            classify(CommandStatus::EsmeRinvmsglen),
            PartResult::Final(Outcome::Rejected { drop: false, .. })
        ));
    }
}
