//! A scripted SMS centre: an SMPP 3.4 server on the `rusmpp` codec for fault tests, the
//! SMS bench and `tocsin demo`. It accepts any bind, answers `enquire_link` and `unbind`,
//! records or counts every `submit_sm`, sends delivery receipts (`deliver_sm`) when asked,
//! and injects faults on command: `ESME_RTHROTTLED` or `ESME_RMSGQFUL` for the next n
//! submits, stalls (no answer), dropped connections after n submits, rejected binds and
//! late receipts. Destinations starting with `999` are refused as `ESME_RINVDSTADR`.
//! Stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rusmpp::pdus::{BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// One `submit_sm` as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub source: String,
    pub destination: String,
    pub dest_addr_ton: u8,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub short_message: Vec<u8>,
}

/// Shared state and fault knobs of a running SMSC.
#[derive(Default)]
pub struct SmscState {
    record: AtomicBool,
    submits: Mutex<Vec<Submit>>,
    /// Messages (single SMS or first parts) accepted per destination.
    messages: Mutex<std::collections::HashMap<String, u32>>,
    accepted: AtomicU64,
    received: AtomicU64,
    bound: AtomicUsize,
    binds_total: AtomicUsize,
    unbinds: AtomicUsize,
    enquire_links: AtomicU64,
    receipts_sent: AtomicU64,
    throttle_skip: AtomicU32,
    throttle_next: AtomicU32,
    queue_full_next: AtomicU32,
    drop_after: AtomicU64,
    stall: AtomicBool,
    reject_binds: AtomicBool,
    receipts: AtomicBool,
    receipt_delay_ms: AtomicU64,
    kill: Mutex<Option<CancellationToken>>,
}

impl SmscState {
    /// Every recorded submit (when started with `record`).
    pub fn submits(&self) -> Vec<Submit> {
        self.submits.lock().clone()
    }
    /// Messages accepted per destination (a concatenated SMS counts once, by its first part).
    pub fn messages_by_destination(&self) -> std::collections::HashMap<String, u32> {
        self.messages.lock().clone()
    }
    /// Submits answered `ESME_ROK`.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Submits received, whatever the answer.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Sessions bound right now.
    pub fn bound(&self) -> usize {
        self.bound.load(Ordering::Relaxed)
    }
    /// Binds accepted since start.
    pub fn binds_total(&self) -> usize {
        self.binds_total.load(Ordering::Relaxed)
    }
    /// `enquire_link`s received (keep-alives).
    pub fn enquire_links(&self) -> u64 {
        self.enquire_links.load(Ordering::Relaxed)
    }
    /// `unbind`s received.
    pub fn unbinds(&self) -> usize {
        self.unbinds.load(Ordering::Relaxed)
    }
    /// Delivery receipts sent.
    pub fn receipts_sent(&self) -> u64 {
        self.receipts_sent.load(Ordering::Relaxed)
    }
    /// Answer the next `n` submits with `ESME_RTHROTTLED`.
    pub fn throttle_next(&self, n: u32) {
        self.throttle_after(0, n);
    }
    /// Accept `skip` more submits, then answer the `n` after them with `ESME_RTHROTTLED`.
    pub fn throttle_after(&self, skip: u32, n: u32) {
        self.throttle_skip.store(skip, Ordering::Relaxed);
        self.throttle_next.store(n, Ordering::Relaxed);
    }
    /// Answer the next `n` submits with `ESME_RMSGQFUL`.
    pub fn queue_full_next(&self, n: u32) {
        self.queue_full_next.store(n, Ordering::Relaxed);
    }
    /// Drop the connection that receives the `n`th submit from now (0: off).
    pub fn drop_after(&self, n: u64) {
        self.drop_after.store(n, Ordering::Relaxed);
    }
    /// Stop answering submits (the link stays up).
    pub fn stall(&self, on: bool) {
        self.stall.store(on, Ordering::Relaxed);
    }
    /// Refuse binds with `ESME_RBINDFAIL`.
    pub fn reject_binds(&self, on: bool) {
        self.reject_binds.store(on, Ordering::Relaxed);
    }
    /// Send a receipt for every accepted submit that asks for one, after `delay`.
    pub fn receipts(&self, on: bool, delay: Duration) {
        self.receipts.store(on, Ordering::Relaxed);
        self.receipt_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
    /// Close every open session now.
    pub fn drop_all(&self) {
        let mut k = self.kill.lock();
        if let Some(t) = k.replace(CancellationToken::new()) {
            t.cancel();
        }
    }
    fn kill_token(&self) -> CancellationToken {
        self.kill
            .lock()
            .get_or_insert_with(CancellationToken::new)
            .clone()
    }
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A running SMSC on `127.0.0.1`.
pub struct SmscServer {
    addr: SocketAddr,
    state: Arc<SmscState>,
    stop: CancellationToken,
}

impl Drop for SmscServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.drop_all();
    }
}

impl SmscServer {
    /// Start on an ephemeral port; `record` keeps every submit (tests), else counts only.
    pub async fn start(record: bool) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            record,
        )
        .await
    }

    /// Start on `addr` (to come back on the same port after a restart).
    pub async fn start_on(addr: SocketAddr, record: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SmscState::default());
        state.record.store(record, Ordering::Relaxed);
        let stop = CancellationToken::new();
        let (st, stop2) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = stop2.cancelled() => return,
                    c = listener.accept() => c,
                };
                if let Ok((sock, _)) = conn {
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(session(sock, st.clone(), st.kill_token()));
                }
            }
        });
        Ok(Self { addr, state, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<SmscState> {
        self.state.clone()
    }
}

async fn session(sock: TcpStream, st: Arc<SmscState>, kill: CancellationToken) {
    let (mut sink, mut stream) = Framed::new(sock, CommandCodec::new()).split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let writer = tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if sink.send(c).await.is_err() {
                return;
            }
        }
    });
    let mut bound = false;
    let next_seq = Arc::new(AtomicU32::new(1));
    loop {
        let frame = tokio::select! {
            _ = kill.cancelled() => break,
            f = stream.next() => f,
        };
        let Some(Ok(cmd)) = frame else { break };
        let seq = cmd.sequence_number();
        let reply = |status, pdu: Pdu| Command::new(status, seq, pdu);
        match cmd.pdu() {
            Some(Pdu::BindTransceiver(_)) | Some(Pdu::BindTransmitter(_)) => {
                let ok = !st.reject_binds.load(Ordering::Relaxed);
                let status = if ok {
                    CommandStatus::EsmeRok
                } else {
                    CommandStatus::EsmeRbindfail
                };
                let id = COctetString::from_str_checked("TOCSIN-SMSC");
                let pdu: Pdu = if matches!(cmd.pdu(), Some(Pdu::BindTransceiver(_))) {
                    BindTransceiverResp::builder().system_id(id).build().into()
                } else {
                    BindTransmitterResp::builder().system_id(id).build().into()
                };
                let _ = tx.send(reply(status, pdu));
                if ok && !bound {
                    bound = true;
                    st.bound.fetch_add(1, Ordering::Relaxed);
                    st.binds_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Pdu::EnquireLink) => {
                st.enquire_links.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(reply(CommandStatus::EsmeRok, Pdu::EnquireLinkResp));
            }
            Some(Pdu::Unbind) => {
                st.unbinds.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(reply(CommandStatus::EsmeRok, Pdu::UnbindResp));
                break;
            }
            Some(Pdu::SubmitSm(sm)) => {
                let n = st.received.fetch_add(1, Ordering::Relaxed) + 1;
                let drop_at = st.drop_after.load(Ordering::Relaxed);
                if drop_at != 0 && n >= drop_at {
                    st.drop_after.store(0, Ordering::Relaxed);
                    break;
                }
                if st.stall.load(Ordering::Relaxed) {
                    continue;
                }
                let destination = String::from_utf8_lossy(sm.destination_addr.as_ref())
                    .trim_end_matches('\0')
                    .to_string();
                let status = if destination.starts_with("999") {
                    CommandStatus::EsmeRinvdstadr
                } else if st.throttle_next.load(Ordering::Relaxed) > 0
                    && !SmscState::take(&st.throttle_skip)
                    && SmscState::take(&st.throttle_next)
                {
                    CommandStatus::EsmeRthrottled
                } else if SmscState::take(&st.queue_full_next) {
                    CommandStatus::EsmeRmsgqful
                } else {
                    CommandStatus::EsmeRok
                };
                let message_id = format!("{n:x}");
                if status == CommandStatus::EsmeRok {
                    st.accepted.fetch_add(1, Ordering::Relaxed);
                    let data = sm.short_message().as_ref();
                    let udhi = u8::from(sm.esm_class) & 0x40 != 0;
                    // Concatenation IE `00 03 ref total seq` after the UDH length: seq at 5.
                    if !udhi || data.get(5) == Some(&1) {
                        *st.messages.lock().entry(destination.clone()).or_default() += 1;
                    }
                    if st.record.load(Ordering::Relaxed) {
                        st.submits.lock().push(Submit {
                            source: String::from_utf8_lossy(sm.source_addr.as_ref())
                                .trim_end_matches('\0')
                                .to_string(),
                            destination: destination.clone(),
                            dest_addr_ton: u8::from(sm.dest_addr_ton),
                            esm_class: u8::from(sm.esm_class),
                            data_coding: u8::from(sm.data_coding),
                            registered_delivery: u8::from(sm.registered_delivery),
                            short_message: sm.short_message().as_ref().to_vec(),
                        });
                    }
                    if st.receipts.load(Ordering::Relaxed)
                        && u8::from(sm.registered_delivery) & 1 == 1
                    {
                        let delay =
                            Duration::from_millis(st.receipt_delay_ms.load(Ordering::Relaxed));
                        let (tx, st, seq) = (tx.clone(), st.clone(), next_seq.clone());
                        let id = message_id.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let text = format!("id:{id} sub:001 dlvrd:001 submit date:2611290400 done date:2611290400 stat:DELIVRD err:000 text:");
                            let pdu = DeliverSm::builder()
                                .source_addr(COctetString::from_str_checked(&destination))
                                .destination_addr(COctetString::from_str_checked("TOCSIN"))
                                .esm_class(EsmClass::from(0x04))
                                .data_coding(DataCoding::from(0u8))
                                .short_message(
                                    OctetString::from_vec(text.into_bytes()).unwrap_or_default(),
                                )
                                .build();
                            let s = seq.fetch_add(1, Ordering::Relaxed);
                            if tx
                                .send(Command::new(CommandStatus::EsmeRok, s, pdu))
                                .is_ok()
                            {
                                st.receipts_sent.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                }
                let resp =
                    SubmitSmResp::new(COctetString::from_str_checked(&message_id), Vec::new());
                let _ = tx.send(reply(status, resp.into()));
            }
            Some(Pdu::DeliverSmResp(_)) | Some(Pdu::EnquireLinkResp) | Some(Pdu::UnbindResp) => {}
            _ => {
                let _ = tx.send(reply(CommandStatus::EsmeRinvcmdid, Pdu::GenericNack));
            }
        }
    }
    if bound {
        st.bound.fetch_sub(1, Ordering::Relaxed);
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// `COctetString` from text the server controls (ids, numbers already received): falls
/// back to an empty string instead of failing.
trait FromStrChecked: Sized {
    fn from_str_checked(s: &str) -> Self;
}

impl<const MIN: usize, const MAX: usize> FromStrChecked for COctetString<MIN, MAX> {
    fn from_str_checked(s: &str) -> Self {
        use std::str::FromStr;
        COctetString::from_str(s).unwrap_or_else(|_| COctetString::empty())
    }
}
