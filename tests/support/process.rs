//! The real `tocsin` binary as a child process, for the tests that kill,
//! starve or signal it: free ports, `tocsin serve --config`, and waiting for
//! `/readyz`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free UDP port on loopback (the QUIC ingest); TCP ports: `peers::free_port`.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// `tocsin serve --config <config>`, logging warnings to the test's stderr.
pub fn spawn_serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(config)
        .env("TOCSIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tocsin serve")
}

/// Wait until `/readyz` on `admin` answers 200 and return how long it took.
/// Panics, naming `what`, when `child` exits first or 20 s pass.
pub async fn wait_ready(admin: SocketAddr, mut child: Option<&mut Child>, what: &str) -> Duration {
    let t0 = Instant::now();
    let url = format!("http://{admin}/readyz");
    while t0.elapsed() < Duration::from_secs(20) {
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait().expect("child status") {
                panic!("{what}: the daemon exited at start ({status}): the journal did not open");
            }
        }
        if let Ok(r) = reqwest::get(&url).await {
            if r.status().is_success() {
                return t0.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: the daemon did not become ready within 20 s");
}
