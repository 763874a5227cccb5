//! The QUIC ingest server (quinn on tokio, rustls/ring, ALPN `tocsin/1`):
//! accepts connections, and on each bidirectional stream reads at most
//! `max_envelope_bytes`, runs the pipeline and writes one receipt line. Many
//! streams per connection run concurrently. Oversized or slow streams get a
//! rejection receipt and are stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::budget::{ReadBudget, ReadFailure};
use super::pipeline::Pipeline;
use super::protocol::Receipt;
use crate::metrics::Metrics;
use crate::reject::{RejectCode, Rejection};

/// Ingest limits.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    pub max_envelope_bytes: usize,
    pub max_concurrent_streams: u32,
    pub read_timeout: Duration,
    /// Receive and send buffer of the UDP socket (see `ingest.udp_buffer_bytes`).
    pub udp_buffer_bytes: usize,
    /// Envelope bytes held by all streams being read at once.
    pub max_buffered_bytes: usize,
    /// Connections at once; more are refused.
    pub max_connections: usize,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("quic: {0}")]
    Crypto(String),
    #[error("quic: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the ingest endpoint.
pub fn bind(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    limits: IngestLimits,
) -> Result<quinn::Endpoint, QuicError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(limits.max_concurrent_streams.into());
    transport.max_concurrent_uni_streams(0u8.into());
    // What quinn buffers unread: one envelope per stream, four per
    // connection (the read budget covers what the streams have read; two
    // per connection held 64 streams of 4 KB alerts on one connection to
    // 3.7 k/s in `cargo bench --bench ingest`, four give 4.5 k/s).
    let window = |n: usize| quinn::VarInt::from_u64(n as u64).unwrap_or(quinn::VarInt::MAX);
    transport.stream_receive_window(window(limits.max_envelope_bytes));
    transport.receive_window(window(limits.max_envelope_bytes.saturating_mul(4)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(60))
            .map_err(|e| QuicError::Crypto(e.to_string()))?,
    ));
    sc.transport_config(Arc::new(transport));
    let bind_err = |source| QuicError::Bind { addr, source };
    let socket = udp_socket(addr, limits.udp_buffer_bytes).map_err(bind_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| bind_err(std::io::Error::other("no async runtime")))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(sc), socket, runtime)
        .map_err(bind_err)
}

/// The ingest socket, with buffers for bursts: `buffer` bytes asked for,
/// what the kernel granted logged (and a warning when it is far less).
fn udp_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack when bound to [::].
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    // Linux reports twice what it grants (the doubling covers bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < buffer {
        tracing::warn!(
            asked = buffer,
            granted,
            "ingest UDP receive buffer smaller than configured; raise net.core.rmem_max"
        );
    } else {
        tracing::debug!(granted, "ingest UDP receive buffer");
    }
    Ok(socket.into())
}

/// Serve until `stop` is cancelled.
pub async fn serve(
    endpoint: quinn::Endpoint,
    pipeline: Arc<Pipeline>,
    limits: IngestLimits,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let budget = ReadBudget::new(
        limits.max_buffered_bytes,
        metrics.ingest_buffered_bytes.clone(),
    );
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stop.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        // One slot per connection, given back when its task ends.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "ingest connection refused: ingest.max_connections reached"
            );
            incoming.refuse();
            continue;
        };
        let (p, m, s) = (pipeline.clone(), metrics.clone(), stop.clone());
        let budget = budget.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "handshake failed");
                    return;
                }
            };
            loop {
                let stream = tokio::select! {
                    st = conn.accept_bi() => st,
                    _ = s.cancelled() => break,
                };
                let Ok((send, recv)) = stream else { break };
                let (p, m, b) = (p.clone(), m.clone(), budget.clone());
                tokio::spawn(handle_stream(send, recv, p, limits, m, b));
            }
        });
    }
    endpoint.close(0u32.into(), b"shutdown");
}

async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    pipeline: Arc<Pipeline>,
    limits: IngestLimits,
    metrics: Metrics,
    budget: ReadBudget,
) {
    let read = tokio::time::timeout(
        limits.read_timeout,
        budget.read(&mut recv, limits.max_envelope_bytes),
    )
    .await;
    let receipt = match read {
        Ok(Ok((bytes, _held))) => pipeline.submit(&bytes).await,
        Ok(Err(ReadFailure::TooLong)) => {
            let _ = recv.stop(0u32.into());
            let r = Rejection::new(
                RejectCode::EnvelopeTooLarge,
                format!("envelope exceeds {} bytes", limits.max_envelope_bytes),
            );
            metrics.alert_result(r.code.as_str());
            Receipt::rejected(&r)
        }
        Ok(Err(ReadFailure::Stream(e))) => {
            tracing::debug!(error = %e, "stream read failed");
            return;
        }
        Err(_) => {
            let _ = recv.stop(0u32.into());
            let r = Rejection::new(
                RejectCode::EnvelopeMalformed,
                "envelope not received in time",
            );
            metrics.alert_result(r.code.as_str());
            Receipt::rejected(&r)
        }
    };
    if send.write_all(&receipt.to_line()).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}
