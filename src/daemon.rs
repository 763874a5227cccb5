//! Wiring: builds every stage from `Settings` and runs them: journal, geocodes,
//! authorities, audience, channels, dispatcher, pipeline, the QUIC ingest and
//! the admin HTTP server. Tests and the demo start it in-process on port 0;
//! `tocsin serve` starts it and waits for a signal. Signals systemd READY
//! once both listeners are bound and live alerts have resumed. `reload`
//! swaps in the authorities of a re-read config (SIGHUP) without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alert::envelope::key_id_for;
use crate::authority::{Coverage, Registry, ReloadReport, SharedRegistry, Verifier};
use crate::channel::apns::ApnsChannel;
use crate::channel::email::EmailChannel;
use crate::channel::fcm::FcmChannel;
use crate::channel::feed::FeedChannel;
use crate::channel::label::deliver::LabelChannel;
use crate::channel::sms::http::HttpTransport;
use crate::channel::sms::smpp::SmppTransport;
use crate::channel::sms::{SmsChannel, SmsTransport};
use crate::channel::Channel;
use crate::config::SmsTransportKind;
use crate::config::{AuthoritySettings, KeySettings, Settings};
use crate::dispatch::{ChannelLimits, Dispatcher, Partner};
use crate::http::{router, AdminState};
use crate::ingest::quic::{self, IngestLimits};
use crate::ingest::Pipeline;
use crate::journal::{GroupCommitter, Journal};
use crate::metrics::Metrics;
use crate::runtime::Dedicated;
use crate::subscribers::Audience;
use crate::target::geocode::GeocodeTable;

/// Start-up failures (each names what to fix).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Quic(#[from] quic::QuicError),
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    #[error(transparent)]
    Registry(#[from] crate::authority::RegistryError),
    #[error("admin listener {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the embedding code adds to a daemon (the demo's stand-in channels,
/// a prebuilt audience).
#[derive(Default)]
pub struct Extras {
    pub channels: Vec<(Arc<dyn Channel>, ChannelLimits)>,
    pub audience: Option<Arc<Audience>>,
}

/// A running daemon.
pub struct Daemon {
    pub ingest_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub pipeline: Arc<Pipeline>,
    pub metrics: Metrics,
    /// Dev-mode files, when dev mode is on.
    pub dev: Option<crate::dev::DevFiles>,
    /// The authorities the verifier uses now (swapped by `reload`).
    registry: SharedRegistry,
    geocodes: Arc<GeocodeTable>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ingest_rt: Dedicated,
    fanout_rt: Dedicated,
}

fn dev_authority(files: &crate::dev::DevFiles) -> Result<AuthoritySettings, DaemonError> {
    let k = crate::dev::read_signing_key(&files.authority_key)?;
    Ok(AuthoritySettings {
        id: "dev".into(),
        name: "Development authority (dev mode only)".into(),
        senders: vec![],
        keys: vec![KeySettings {
            kid: key_id_for(&k.verifying_key()),
            public_key: None,
            public_key_file: Some(files.authority_pub.clone()),
            not_before: None,
            not_after: None,
            revoked: false,
        }],
        jurisdiction: crate::config::AreaSettings {
            everywhere: true,
            ..Default::default()
        },
        events: vec!["CAE".into(), "MCA".into(), "CDW".into(), "EVI".into()],
        statuses: vec![
            "Actual".into(),
            "Exercise".into(),
            "Test".into(),
            "System".into(),
        ],
        rate_per_minute: 600,
        cosigners: vec![],
        max_area_km2: None,
        widen: vec![],
    })
}

fn partners(settings: &Settings, geocodes: &GeocodeTable) -> Result<Vec<Partner>, DaemonError> {
    let mut out = Vec::with_capacity(settings.partners.len());
    for p in &settings.partners {
        let secret = match (&p.secret, &p.secret_file) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(f)) => std::fs::read(f)
                .map_err(|e| {
                    DaemonError::Config(format!("partner {:?}: {}: {e}", p.name, f.display()))
                })?
                .trim_ascii()
                .to_vec(),
            (None, None) => {
                return Err(DaemonError::Config(format!(
                    "partner {:?}: no secret",
                    p.name
                )))
            }
        };
        out.push(Partner {
            name: p.name.clone(),
            endpoint: p.endpoint.clone(),
            secret,
            coverage: Coverage::from_settings(
                &p.coverage,
                geocodes,
                &format!("partner {}", p.name),
            )?,
            tests: p.tests,
            feed: p.feed,
            label: p.label.clone(),
        });
    }
    Ok(out)
}

fn read_text(what: &str, path: Option<&PathBuf>) -> Result<String, DaemonError> {
    let p = path.ok_or_else(|| {
        DaemonError::Config(format!("{what} is required when the channel is enabled"))
    })?;
    std::fs::read_to_string(p)
        .map_err(|e| DaemonError::Config(format!("{what} {}: {e}", p.display())))
}

fn read_ca(what: &str, path: Option<&PathBuf>) -> Result<Option<Vec<u8>>, DaemonError> {
    path.map(|p| {
        std::fs::read(p).map_err(|e| DaemonError::Config(format!("{what} {}: {e}", p.display())))
    })
    .transpose()
}

/// Build the APNs and FCM channels that are enabled.
fn push_channels(
    settings: &Settings,
    metrics: &Metrics,
    out: &mut Vec<(Arc<dyn Channel>, ChannelLimits)>,
) -> Result<(), DaemonError> {
    let a = &settings.channels.apns;
    if a.enabled {
        let pem = read_text("channels.apns.key_file", a.key_file.as_ref())?;
        let ca = read_ca("channels.apns.ca", a.ca.as_ref())?;
        let ch = ApnsChannel::new(a, &pem, ca.as_deref(), metrics.clone())
            .map_err(|e| DaemonError::Config(format!("channels.apns: {e}")))?;
        let limits = ChannelLimits {
            concurrency: a.concurrency,
            rate_per_sec: a.rate_per_sec,
            burst: a.burst,
        };
        out.push((Arc::new(ch), limits));
    }
    let f = &settings.channels.fcm;
    if f.enabled {
        let sa = read_text(
            "channels.fcm.service_account_file",
            f.service_account_file.as_ref(),
        )?;
        let ca = read_ca("channels.fcm.ca", f.ca.as_ref())?;
        let ch = FcmChannel::new(f, &sa, ca.as_deref(), metrics.clone())
            .map_err(|e| DaemonError::Config(format!("channels.fcm: {e}")))?;
        let limits = ChannelLimits {
            concurrency: f.concurrency,
            rate_per_sec: f.rate_per_sec,
            burst: f.burst,
        };
        out.push((Arc::new(ch), limits));
    }
    Ok(())
}

/// A secret given inline or in a file (systemd credentials), at most one of the two.
fn secret(
    what: &str,
    inline: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, DaemonError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(DaemonError::Config(format!(
            "{what}: set at most one of password, password_file"
        ))),
        (Some(p), None) => Ok(Some(p.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| DaemonError::Config(format!("{what} {}: {e}", f.display()))),
        (None, None) => Ok(None),
    }
}

/// Build the SMS channel when enabled, on the configured transport.
fn sms_channel(
    settings: &Settings,
    metrics: &Metrics,
    out: &mut Vec<(Arc<dyn Channel>, ChannelLimits)>,
) -> Result<(), DaemonError> {
    let s = &settings.channels.sms;
    if !s.enabled {
        return Ok(());
    }
    let transport: Arc<dyn SmsTransport> = match s.transport {
        SmsTransportKind::Smpp => {
            let mut smscs = Vec::with_capacity(s.smsc.len());
            let mut cas = Vec::with_capacity(s.smsc.len());
            for c in &s.smsc {
                let what = format!("channels.sms.smsc {:?}", c.name);
                let password = secret(&what, c.password.as_ref(), c.password_file.as_ref())?;
                smscs.push((c.clone(), password.unwrap_or_default()));
                cas.push(read_ca(&what, c.ca.as_ref())?);
            }
            Arc::new(
                SmppTransport::start(&smscs, &s.source_addr, &cas, metrics.clone())
                    .map_err(|e| DaemonError::Config(format!("channels.sms: {e}")))?,
            )
        }
        SmsTransportKind::Http => {
            let h = &s.http;
            let password = secret(
                "channels.sms.http",
                h.password.as_ref(),
                h.password_file.as_ref(),
            )?;
            let ca = read_ca("channels.sms.http.ca", h.ca.as_ref())?;
            Arc::new(
                HttpTransport::new(h, &s.source_addr, password, ca.as_deref(), metrics.clone())
                    .map_err(|e| DaemonError::Config(format!("channels.sms.http: {e}")))?,
            )
        }
    };
    let channel = SmsChannel::new(transport, &settings.admin.public_url, s.max_parts);
    let limits = ChannelLimits {
        concurrency: s.concurrency,
        rate_per_sec: s.rate_per_sec,
        burst: s.burst,
    };
    out.push((Arc::new(channel), limits));
    Ok(())
}

/// Build the e-mail channel when it is enabled.
fn email_channel(
    settings: &Settings,
    metrics: &Metrics,
    out: &mut Vec<(Arc<dyn Channel>, ChannelLimits)>,
) -> Result<(), DaemonError> {
    let e = &settings.channels.email;
    if !e.enabled {
        return Ok(());
    }
    let password = secret(
        "channels.email",
        e.password.as_ref(),
        e.password_file.as_ref(),
    )?;
    let ca = read_ca("channels.email.ca", e.ca.as_ref())?;
    let ch = EmailChannel::new(
        e,
        &settings.admin.public_url,
        password,
        ca.as_deref(),
        metrics.clone(),
    )
    .map_err(|err| DaemonError::Config(format!("channels.email: {err}")))?;
    let limits = ChannelLimits {
        concurrency: e.concurrency,
        rate_per_sec: e.rate_per_sec,
        burst: e.burst,
    };
    out.push((Arc::new(ch), limits));
    Ok(())
}

/// Build the parcel-label channel when enabled and some partner prints labels.
fn label_channel(
    settings: &Settings,
    partners: &Arc<Vec<Partner>>,
    out: &mut Vec<(Arc<dyn Channel>, ChannelLimits)>,
) -> Result<(), DaemonError> {
    let l = &settings.channels.label;
    if !l.enabled || !partners.iter().any(|p| p.label.is_some()) {
        return Ok(());
    }
    let ca = read_ca("channels.label.ca", l.ca.as_ref())?;
    let ch = LabelChannel::new(
        partners.clone(),
        &settings.admin.public_url,
        Duration::from_millis(l.timeout_ms),
        ca.as_deref(),
        l.fetch_photos,
    )
    .map_err(|e| DaemonError::Config(e.to_string()))?;
    let limits = ChannelLimits {
        concurrency: l.concurrency,
        rate_per_sec: l.rate_per_sec,
        burst: l.burst,
    };
    out.push((Arc::new(ch), limits));
    Ok(())
}

impl Daemon {
    /// Build and start everything.
    pub async fn start(mut settings: Settings, extras: Extras) -> Result<Self, DaemonError> {
        let metrics = Metrics::new();
        let state_dir = settings.node.state_dir.clone();
        let mut dev = None;
        if settings.node.dev_mode {
            let files = crate::dev::ensure(&state_dir)?;
            tracing::warn!(
                "DEV MODE IS ON: self-signed TLS and a dev authority that may alert ANYWHERE ({}). \
                 Never run dev mode in production.",
                files.authority_key.display()
            );
            if settings.ingest.cert.is_none() {
                settings.ingest.cert = Some(files.cert.clone());
                settings.ingest.key = Some(files.key.clone());
            }
            settings.authorities.push(dev_authority(&files)?);
            dev = Some(files);
        }
        let (Some(cert), Some(key)) = (&settings.ingest.cert, &settings.ingest.key) else {
            return Err(DaemonError::Config(
                "ingest.cert and ingest.key are required unless node.dev_mode = true".into(),
            ));
        };
        let certs = crate::tls::load_certs(cert)?;
        let key = crate::tls::load_key(key)?;
        let client_ca = match &settings.ingest.client_ca {
            Some(p) => Some(crate::tls::load_certs(p)?),
            None => None,
        };
        let tls = crate::tls::server_config(certs, key, client_ca)?;

        let geocodes = Arc::new(match &settings.node.geocodes {
            Some(p) => GeocodeTable::load(p)
                .map_err(|e| DaemonError::Config(format!("{}: {e}", p.display())))?,
            None => GeocodeTable::embedded(),
        });
        let base = PathBuf::from(".");
        let registry = Arc::new(Registry::from_settings(
            &settings.authorities,
            &geocodes,
            &base,
        )?);
        let mut verifier = Verifier::new(
            registry,
            geocodes.clone(),
            &settings.standards,
            settings.policy.clone(),
            settings.ingest.max_envelope_bytes,
        )
        .map_err(DaemonError::Config)?;
        if let Some(per_sec) = settings.ingest.max_alerts_per_sec {
            verifier = verifier.with_global_rate(per_sec);
        }
        let shared_registry = verifier.registry().clone();

        let journal = Arc::new(Journal::open_for(
            &state_dir,
            settings.ingest.max_envelope_bytes,
        )?);
        let audience = match extras.audience {
            Some(a) => a,
            None => {
                let j = journal.clone();
                let a = tokio::task::spawn_blocking(move || Audience::load(&j))
                    .await
                    .map_err(|e| DaemonError::Config(e.to_string()))??;
                tracing::info!(subscribers = a.len(), "audience index built");
                Arc::new(a)
            }
        };
        let partners = Arc::new(partners(&settings, &geocodes)?);
        let mut channels: Vec<(Arc<dyn Channel>, ChannelLimits)> = Vec::new();
        let f = &settings.channels.feed;
        if f.enabled {
            let ca = match &f.ca {
                Some(p) => Some(
                    std::fs::read(p)
                        .map_err(|e| DaemonError::Config(format!("{}: {e}", p.display())))?,
                ),
                None => None,
            };
            let feed = FeedChannel::new(
                partners.clone(),
                Duration::from_millis(f.timeout_ms),
                f.concurrency,
                ca.as_deref(),
            )
            .map_err(|e| DaemonError::Config(e.to_string()))?;
            channels.push((
                Arc::new(feed),
                ChannelLimits {
                    concurrency: f.concurrency,
                    rate_per_sec: f.rate_per_sec,
                    burst: f.burst,
                },
            ));
        }
        push_channels(&settings, &metrics, &mut channels)?;
        sms_channel(&settings, &metrics, &mut channels)?;
        label_channel(&settings, &partners, &mut channels)?;
        email_channel(&settings, &metrics, &mut channels)?;
        // The embedder's channels replace configured ones of the same name.
        channels.retain(|(c, _)| !extras.channels.iter().any(|(e, _)| e.name() == c.name()));
        channels.extend(extras.channels);
        let committer = GroupCommitter::start(
            journal.clone(),
            settings.ingest.commit_batch,
            metrics.clone(),
        );
        // Jobs, channels and their connections run on the fan-out runtime
        // (lower priority); ingest on its own thread (below).
        let fanout_rt = Dedicated::fanout(settings.dispatch.nice, settings.dispatch.sched_idle)
            .map_err(|e| DaemonError::Config(format!("fan-out runtime: {e}")))?;
        let dispatcher = {
            let _in_fanout = fanout_rt.enter();
            Dispatcher::new(
                channels,
                partners,
                audience,
                journal.clone(),
                committer.clone(),
                metrics.clone(),
                settings.dispatch.clone(),
            )
        };
        let pipeline = Arc::new(Pipeline::new(
            verifier,
            committer,
            dispatcher.clone(),
            journal.clone(),
            metrics.clone(),
            settings.dispatch.clock_speed,
        ));
        if settings.dispatch.clock_speed != 1.0 {
            tracing::warn!(
                speed = settings.dispatch.clock_speed,
                "widening steps run on a simulated clock (dispatch.clock_speed); keep it at 1 in production"
            );
        }

        let limits = IngestLimits {
            max_envelope_bytes: settings.ingest.max_envelope_bytes,
            max_concurrent_streams: settings.ingest.max_concurrent_streams,
            read_timeout: Duration::from_millis(settings.ingest.read_timeout_ms),
            udp_buffer_bytes: settings.ingest.udp_buffer_bytes,
            max_buffered_bytes: settings.ingest.max_buffered_bytes,
            max_connections: settings.ingest.max_connections,
        };
        // Ingest runs on a runtime thread of its own, so receipts never queue
        // behind the fan-out's tasks (DESIGN §10: receipt p99 ≤ 5 ms at
        // 1,000 alerts/s).
        let ingest_rt =
            Dedicated::ingest().map_err(|e| DaemonError::Config(format!("ingest runtime: {e}")))?;
        let endpoint = {
            let _in_ingest = ingest_rt.enter();
            quic::bind(settings.ingest.listen, tls, limits)?
        };
        let ingest_addr = endpoint
            .local_addr()
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(settings.admin.listen)
            .await
            .map_err(|source| DaemonError::Admin {
                addr: settings.admin.listen,
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(|source| DaemonError::Admin {
            addr: settings.admin.listen,
            source,
        })?;
        let stop = CancellationToken::new();
        let ready = Arc::new(AtomicBool::new(false));
        let state = AdminState {
            metrics: metrics.clone(),
            journal: journal.clone(),
            dispatcher: dispatcher.clone(),
            ready: ready.clone(),
            public_url: settings.admin.public_url.clone(),
        };
        let mut tasks = Vec::new();
        let s2 = stop.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { s2.cancelled().await })
                .await;
        }));
        tasks.push(ingest_rt.spawn(quic::serve(
            endpoint,
            pipeline.clone(),
            limits,
            metrics.clone(),
            stop.clone(),
        )));
        let resumed = pipeline.resume()?;
        if resumed > 0 {
            tracing::info!(resumed, "live alerts resumed from the journal");
        }
        ready.store(true, Ordering::Release);
        tracing::info!(%ingest_addr, %admin_addr, "tocsin ready");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        if let Some(every) = sd_notify::watchdog_enabled() {
            let s3 = stop.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every / 2) => {
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        }
                        _ = s3.cancelled() => break,
                    }
                }
            }));
        }
        Ok(Self {
            ingest_addr,
            admin_addr,
            pipeline,
            metrics,
            dev,
            registry: shared_registry,
            geocodes,
            stop,
            tasks,
            ingest_rt,
            fanout_rt,
        })
    }

    /// Swap in the authorities of `settings` (keys, revocations,
    /// jurisdictions, events, co-signers, widening steps, rates) while the
    /// daemon runs; each authority that stays keeps its rate bucket. On any
    /// error the running authorities stay as they were. Everything else in
    /// `settings` (listeners, channels, standards, policy, dev mode) needs a
    /// restart and is ignored here.
    pub fn reload(&self, settings: &Settings) -> Result<ReloadReport, DaemonError> {
        settings
            .validate()
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let mut authorities = settings.authorities.clone();
        if let Some(files) = &self.dev {
            authorities.push(dev_authority(files)?);
        }
        Ok(self
            .registry
            .reload(&authorities, &self.geocodes, &PathBuf::from("."))?)
    }

    /// The dispatcher (progress of alerts).
    pub fn dispatcher(&self) -> &Dispatcher {
        self.pipeline.dispatcher()
    }

    /// The journal (alerts, cursors, subscribers).
    pub fn journal(&self) -> &Arc<crate::journal::Journal> {
        self.pipeline.journal()
    }

    /// Stop listeners, drain jobs, commit cursors, and close the journal:
    /// when this returns, the state directory can be opened again (a restart
    /// in the same process, a `tocsin subscribers` command).
    pub async fn shutdown(self) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.stop.cancel();
        self.pipeline.dispatcher().shutdown().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        // Streams still open on the ingest runtime hold the pipeline.
        drop(self.ingest_rt);
        let journal = self.pipeline.journal().clone();
        drop(self.pipeline);
        drop(self.fanout_rt);
        // The group-commit thread lets go once the last pipeline handle is gone.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&journal) > 1 && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&journal) > 1 {
            tracing::warn!("the journal is still in use after shutdown");
        }
    }
}
