//! The authority side of the ingest protocol: sign a CAP document and submit
//! it over QUIC, returning the receipt. Used by `tocsin send`, the demo and
//! the integration tests.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;

use crate::ingest::protocol::{Receipt, MAX_RECEIPT_BYTES};

/// Client errors (transport; a rejection is a `Receipt`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("receipt is not valid JSON: {0}")]
    Receipt(String),
}

/// A QUIC connection to a tocsin ingest endpoint.
pub struct IngestClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl IngestClient {
    /// Connect to `server` (TLS name `server_name`) with a rustls client config.
    pub async fn connect(
        server: SocketAddr,
        server_name: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| ClientError::Connect(e.to_string()))?;
        let bind: SocketAddr = if server.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|_| ClientError::Connect("bind".into()))?
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(server, server_name)
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self { endpoint, conn })
    }

    /// Submit one envelope on a new stream and read its receipt.
    pub async fn submit(&self, envelope: &[u8]) -> Result<Receipt, ClientError> {
        let (mut send, mut recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Stream(e.to_string()))?;
        // The server may stop reading early (oversize); the receipt still comes.
        let _ = send.write_all(envelope).await;
        let _ = send.finish();
        let line = recv
            .read_to_end(MAX_RECEIPT_BYTES)
            .await
            .map_err(|e| ClientError::Stream(e.to_string()))?;
        serde_json::from_slice(&line).map_err(|e| ClientError::Receipt(e.to_string()))
    }

    /// The connection's transport figures so far (packets sent and lost,
    /// congestion events, RTT): what a slow receipt cost in QUIC terms.
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    /// Close the connection politely.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
