//! Finding and running the protocol peers the project did not write (Kannel, the
//! smpp34 SMSC, aiosmtpd). `scripts/test` installs them; a missing peer fails the test
//! with the command that installs it, never skips it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// The python of the peers' virtual environment (smpp34, aiosmtpd).
pub fn peer_python() -> PathBuf {
    let p = std::env::var_os("TOCSIN_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers/bin/python")
        });
    assert!(
        p.exists(),
        "peer python {} is missing: run scripts/test, which installs smpp34 and aiosmtpd \
         from PyPI into target/peers (or set TOCSIN_PEER_PYTHON)",
        p.display()
    );
    p
}

/// A Debian-packaged executable a test needs; fails naming the package when absent.
pub fn debian_exe(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run scripts/test, or `apt-get install {package}`"
    );
    p
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Wait until something listens on `127.0.0.1:port`.
pub fn wait_listening(port: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed (and reaped) when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
