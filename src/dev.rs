//! Dev mode: on first start, create a self-signed TLS certificate for
//! `localhost`/`127.0.0.1` and a dev authority Ed25519 key under
//! `state_dir/dev/`, so `tocsin serve` and `tocsin send` work with nothing
//! configured. Never enabled by `config/production.example.toml`.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;

/// Paths of the dev-mode material.
#[derive(Debug, Clone)]
pub struct DevFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub authority_key: PathBuf,
    pub authority_pub: PathBuf,
}

impl DevFiles {
    /// The files under `state_dir/dev`.
    pub fn under(state_dir: &Path) -> Self {
        let d = state_dir.join("dev");
        Self {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
            authority_key: d.join("authority.key"),
            authority_pub: d.join("authority.pub"),
        }
    }
}

/// Errors creating dev material.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("dev mode: {0}")]
    Io(#[from] std::io::Error),
    #[error("dev mode: {0}")]
    Other(String),
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), DevError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(data)?;
    Ok(())
}

/// Create whatever dev material is missing; returns the paths.
pub fn ensure(state_dir: &Path) -> Result<DevFiles, DevError> {
    let f = DevFiles::under(state_dir);
    if let Some(dir) = f.cert.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !f.cert.exists() || !f.key.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| DevError::Other(e.to_string()))?;
        std::fs::write(&f.cert, ck.cert.pem())?;
        write_private(&f.key, ck.signing_key.serialize_pem().as_bytes())?;
    }
    if !f.authority_key.exists() {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        write_signing_key(&f.authority_key, &k)?;
        write_public_key(&f.authority_pub, &k)?;
    } else if !f.authority_pub.exists() {
        let k = read_signing_key(&f.authority_key)?;
        write_public_key(&f.authority_pub, &k)?;
    }
    Ok(f)
}

/// Write an Ed25519 key as PKCS#8 PEM (mode 0600).
pub fn write_signing_key(path: &Path, k: &SigningKey) -> Result<(), DevError> {
    let pem = k
        .to_pkcs8_pem(Default::default())
        .map_err(|e| DevError::Other(e.to_string()))?;
    write_private(path, pem.as_bytes())
}

/// Write the public half as SPKI PEM.
pub fn write_public_key(path: &Path, k: &SigningKey) -> Result<(), DevError> {
    let pem = k
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| DevError::Other(e.to_string()))?;
    std::fs::write(path, pem)?;
    Ok(())
}

/// Read a PKCS#8 PEM Ed25519 key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, DevError> {
    let text = std::fs::read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| DevError::Other(format!("{}: {e}", path.display())))
}
