//! A bare hyper client for the test servers: one TLS connection (ring
//! provider, trusting only the server's PEM) with HTTP/2 (ALPN `h2`) or
//! HTTP/1.1. The unit tests drive the servers with it, and the push bench
//! uses it as the "bare client" baseline. It has no pool, no retries and no
//! timeouts: the caller decides.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls;

async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let cfg = tls::client_config(ca_pem, &[alpn]).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::from(addr.ip());
    TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
}

/// An HTTP/2 connection to `addr`; the connection task runs on the current
/// runtime until the server or the last sender drops it.
pub async fn connect_h2(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> std::io::Result<http2::SendRequest<Full<Bytes>>> {
    let io = tls_connect(addr, ca_pem, b"h2").await?;
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// An HTTP/1.1 connection to `addr` (ALPN `http/1.1`).
pub async fn connect_h1(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> std::io::Result<http1::SendRequest<Full<Bytes>>> {
    let io = tls_connect(addr, ca_pem, b"http/1.1").await?;
    let (send, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}
