//! The `tocsin` command line: parse arguments, load settings, call the
//! library. No behaviour lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Emergency-alert fan-out daemon (signed CAP 1.2 over QUIC)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Serve {
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
    /// Sign a CAP 1.2 file and submit it; prints the receipt JSON.
    Send {
        file: PathBuf,
        #[arg(long, default_value = "127.0.0.1:4433")]
        server: SocketAddr,
        /// Ed25519 private key (PKCS#8 PEM).
        #[arg(long, default_value = "var/dev/authority.key")]
        key: PathBuf,
        /// Key id; derived from the key when omitted.
        #[arg(long)]
        kid: Option<String>,
        /// CA certificate (PEM) that issued the server's certificate.
        #[arg(long, default_value = "var/dev/cert.pem")]
        ca: PathBuf,
        /// TLS server name.
        #[arg(long, default_value = "localhost")]
        server_name: String,
        /// Client certificate and key (PEM) for mutual TLS.
        #[arg(long, requires = "client_key")]
        client_cert: Option<PathBuf>,
        #[arg(long)]
        client_key: Option<PathBuf>,
        /// Rewrite <sent> to now and <expires> to now + 48 h before signing.
        #[arg(long)]
        now: bool,
    },
    /// Create an Ed25519 key; prints its key id and public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage subscribers (the daemon must be stopped: the journal is locked while it runs).
    Subscribers {
        #[command(subcommand)]
        cmd: SubCmd,
    },
    /// Render the parcel label (4×6 in, 203 dpi) of a CAP file as PNG and/or ZPL.
    #[command(group = clap::ArgGroup::new("out").required(true).multiple(true).args(["png", "zpl"]))]
    Label {
        file: PathBuf,
        /// Write the label as a PNG here.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Write the label as ZPL II here.
        #[arg(long)]
        zpl: Option<PathBuf>,
        /// Language of the info block to print (default: the first block's).
        #[arg(long)]
        lang: Option<String>,
        /// Photo of the child (JPEG or PNG); default: the one embedded in the alert, if any.
        #[arg(long)]
        photo: Option<PathBuf>,
        /// Base URL of the public alert pages, for the QR code when the alert has no <web>.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        public_url: String,
    },
    /// Show the whole flow on embedded defaults: daemon, 1 M synthetic
    /// subscribers, local receivers, a signed missing-child alert, a report.
    Demo {
        /// End after the report instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
        /// Synthetic subscribers.
        #[arg(long, default_value_t = 1_000_000)]
        subscribers: u32,
        /// Simulated clock speed for the widening radius (1200: an hour in 3 s).
        #[arg(long, default_value_t = 1200.0)]
        speed: f64,
    },
}

#[derive(Subcommand)]
enum SubCmd {
    /// Import a CSV: id,channel,address,lat,lon,language.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "config/tocsin.toml")]
        config: PathBuf,
    },
}

/// Crates whose debug/trace events can carry recipient addresses or
/// credentials (HTTP/2 and HTTP headers with device tokens in the path, SMTP
/// commands with mail addresses and AUTH, SMPP PDUs with phone numbers, TLS
/// records): capped at `info` unless the filter names the crate itself.
const CHATTY: [&str; 11] = [
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "lettre",
    "rusmpp",
    "rusmppc",
    "quinn",
    "quinn_proto",
];

/// `TOCSIN_LOG`, else `RUST_LOG`, else `info`; see `CHATTY`.
fn init_logging() {
    let spec = std::env::var("TOCSIN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let mut filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("ignoring the log filter {spec:?}: {e}");
        EnvFilter::new("info")
    });
    for krate in CHATTY {
        let named = spec.split(',').any(|d| {
            d.split(['=', '['])
                .next()
                .is_some_and(|t| t.trim() == krate)
        });
        if !named {
            if let Ok(d) = format!("{krate}=info").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Serve { config } => {
            let settings = tocsin::config::Settings::load(&config)
                .with_context(|| format!("loading {}", config.display()))?;
            // Before start: READY=1 goes out inside `start`, and a SIGHUP from
            // `systemctl reload` must never hit the default (terminating) action.
            let mut signals = Signals::new()?;
            let d = tocsin::daemon::Daemon::start(settings, Default::default()).await?;
            while signals.next().await == Signal::Reload {
                reload(&d, &config);
            }
            tracing::info!("shutting down");
            d.shutdown().await;
            Ok(())
        }
        Cmd::Send {
            file,
            server,
            key,
            kid,
            ca,
            server_name,
            client_cert,
            client_key,
            now,
        } => {
            let mut xml =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if now {
                xml = tocsin::demo::refresh_times(&xml, chrono::Utc::now())?;
            }
            let sk = tocsin::dev::read_signing_key(&key)?;
            let kid =
                kid.unwrap_or_else(|| tocsin::alert::envelope::key_id_for(&sk.verifying_key()));
            let env = tocsin::alert::envelope::sign1(&xml, &kid, &sk)?;
            let roots = tocsin::tls::load_certs(&ca)?;
            let identity = match (client_cert, client_key) {
                (Some(c), Some(k)) => {
                    Some((tocsin::tls::load_certs(&c)?, tocsin::tls::load_key(&k)?))
                }
                _ => None,
            };
            let tls = tocsin::tls::client_config(roots, identity)?;
            let client = tocsin::client::IngestClient::connect(server, &server_name, tls).await?;
            let receipt = client.submit(&env).await?;
            client.close().await;
            println!(
                "{}",
                String::from_utf8_lossy(receipt.to_line().trim_ascii_end())
            );
            if !receipt.is_ok() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let k = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            tocsin::dev::write_signing_key(&out, &k)?;
            let pub_path = out.with_extension("pub");
            tocsin::dev::write_public_key(&pub_path, &k)?;
            use base64::Engine as _;
            println!(
                "kid        {}",
                tocsin::alert::envelope::key_id_for(&k.verifying_key())
            );
            println!(
                "public_key {}",
                base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
            );
            println!("private    {} (mode 0600)", out.display());
            println!("public     {}", pub_path.display());
            Ok(())
        }
        Cmd::Subscribers {
            cmd: SubCmd::Import { file, config },
        } => {
            let settings = tocsin::config::Settings::load(&config)?;
            let journal = tocsin::journal::Journal::open_for(
                &settings.node.state_dir,
                settings.ingest.max_envelope_bytes,
            )
            .context("opening the journal (is the daemon running? stop it first)")?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message("importing");
            let n =
                tocsin::subscribers::import_csv(std::io::BufReader::new(f), &journal, |done| {
                    bar.set_message(format!("{done} subscribers stored"));
                    bar.tick();
                })?;
            bar.finish_and_clear();
            println!(
                "imported {n} subscribers into {}",
                settings.node.state_dir.display()
            );
            Ok(())
        }
        Cmd::Label {
            file,
            png,
            zpl,
            lang,
            photo,
            public_url,
        } => label(file, png, zpl, lang, photo, public_url),
        Cmd::Demo {
            exit,
            subscribers,
            speed,
        } => Ok(tocsin::demo::run(tocsin::demo::DemoOptions {
            exit,
            subscribers,
            speed,
        })
        .await?),
    }
}

fn label(
    file: PathBuf,
    png: Option<PathBuf>,
    zpl: Option<PathBuf>,
    lang: Option<String>,
    photo: Option<PathBuf>,
    public_url: String,
) -> Result<()> {
    use tocsin::channel::label;
    let xml =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let alert = tocsin::channel::AlertContent::from_xml(0, &xml)
        .with_context(|| format!("parsing {} as CAP 1.2", file.display()))?;
    let language = lang
        .or_else(|| alert.alert.infos.first().map(|i| i.language.clone()))
        .unwrap_or_default();
    let photo = match photo {
        Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
        None => alert.info_for(&language).and_then(label::photo_bytes),
    };
    let opts = label::LabelOptions {
        public_url,
        language,
    };
    let l = label::render(&alert, photo.as_deref(), &opts).context("rendering the label")?;
    for (path, bytes) in [(png, &l.png), (zpl, &l.zpl)] {
        if let Some(path) = path {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(())
}

/// Re-read `config` and swap in its authorities; a bad config is refused and
/// the running authorities stay (logged either way, counts only).
fn reload(d: &tocsin::daemon::Daemon, config: &std::path::Path) {
    let t0 = std::time::Instant::now();
    let result = tocsin::config::Settings::load(config)
        .map_err(|e| e.to_string())
        .and_then(|s| d.reload(&s).map_err(|e| e.to_string()));
    match result {
        Ok(report) => tracing::info!(
            config = %config.display(),
            authorities = report.authorities,
            keys = report.keys,
            revoked = report.revoked,
            rates_kept = report.rates_kept,
            micros = t0.elapsed().as_micros() as u64,
            "reload: authorities swapped in ({report})"
        ),
        Err(e) => tracing::error!(
            config = %config.display(),
            "reload refused, the previous authorities stay in force: {e}"
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// SIGINT/SIGTERM stop the daemon; SIGHUP reloads the authorities.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
                hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = self.term.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
