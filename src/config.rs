//! Typed settings: a `config/tocsin.toml` file overlaid with `TOCSIN__SECTION__KEY`
//! environment variables (config crate). Every struct denies unknown keys so a
//! typo is an error naming the key; defaults live here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub node: NodeSettings,
    pub ingest: IngestSettings,
    pub admin: AdminSettings,
    pub policy: PolicySettings,
    pub dispatch: DispatchSettings,
    pub channels: ChannelSettings,
    pub authorities: Vec<AuthoritySettings>,
    pub standards: Vec<StandardSettings>,
    pub partners: Vec<PartnerSettings>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Directory for the journal and dev-mode material (`/var/lib/tocsin` under systemd).
    pub state_dir: PathBuf,
    /// Dev mode: self-signed TLS and a dev authority key are created under `state_dir/dev`.
    pub dev_mode: bool,
    /// Geocode table (TOML); the embedded table when unset.
    pub geocodes: Option<PathBuf>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("var"),
            dev_mode: false,
            geocodes: None,
        }
    }
}

/// The QUIC ingest listener (DESIGN §3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    pub listen: SocketAddr,
    pub max_envelope_bytes: usize,
    /// PEM certificate chain and key; dev mode creates them when unset.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate issued by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
    pub max_concurrent_streams: u32,
    /// A stream must deliver its envelope within this time.
    pub read_timeout_ms: u64,
    /// Envelope bytes all streams being read may hold at once (at least
    /// `max_envelope_bytes`); a stream that finds it spent waits, inside its
    /// read timeout. Bounds the memory many stalled streams can take.
    pub max_buffered_bytes: usize,
    /// QUIC connections at once; more are refused. Each may also hold four
    /// envelopes' worth of unread data in quinn's buffers.
    pub max_connections: usize,
    /// Alerts per group commit at most.
    pub commit_batch: usize,
    /// Receive and send buffer of the ingest UDP socket. Bursts from many
    /// authorities overflow the kernel's default (≈ 208 KiB) and each drop
    /// costs a QUIC loss recovery (hundreds of ms); Linux caps the size at
    /// `net.core.rmem_max` / `wmem_max`.
    pub udp_buffer_bytes: usize,
    /// Authenticated submissions per second over all authorities (a token
    /// bucket, burst one second's worth); beyond it `rate_limited`. Unset: no
    /// global limit, only each authority's `rate_per_minute`.
    pub max_alerts_per_sec: Option<f64>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            max_envelope_bytes: 1 << 20,
            cert: None,
            key: None,
            client_ca: None,
            max_concurrent_streams: 256,
            read_timeout_ms: 10_000,
            max_buffered_bytes: 64 << 20,
            max_connections: 256,
            commit_batch: 256,
            udp_buffer_bytes: 8 << 20,
            max_alerts_per_sec: None,
        }
    }
}

/// The admin HTTP server: metrics, health, alert progress, public feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Base URL used in links of the Atom feed.
    pub public_url: String,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            public_url: "http://127.0.0.1:9464".into(),
        }
    }
}

/// Replay and sanity windows applied to every alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// `sent` may be at most this old.
    pub replay_window_secs: i64,
    /// `sent` may be at most this far in the future (clock skew).
    pub future_skew_secs: i64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            replay_window_secs: 3600,
            future_skew_secs: 300,
        }
    }
}

/// Dispatcher tuning (DESIGN §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// Deliveries handed to a channel at once.
    pub batch_size: usize,
    /// Batches of one job in flight at once.
    pub max_in_flight_batches: usize,
    /// Cursors are committed at least this often.
    pub cursor_commit_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    /// How fast time passes for widening steps: 1 in production; tests and
    /// `tocsin demo --speed` run hours in seconds.
    pub clock_speed: f64,
    /// How much lower than the process the fan-out threads run (a nice
    /// increment, 0–19; 0 leaves them alone), so that receipts are not
    /// starved when deliveries saturate the cores.
    pub nice: i32,
    /// Run the fan-out threads under `SCHED_IDLE`: they take only the CPU
    /// the rest of the process leaves (within the service's cgroup under
    /// systemd), and a waking ingest or journal thread preempts them at
    /// once.
    pub sched_idle: bool,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            batch_size: 512,
            max_in_flight_batches: 4,
            cursor_commit_ms: 100,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            max_attempts: 10,
            clock_speed: 1.0,
            nice: 10,
            sched_idle: true,
        }
    }
}

/// Per-channel settings; one field per channel kind.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelSettings {
    pub feed: FeedSettings,
    pub apns: ApnsSettings,
    pub fcm: FcmSettings,
    pub sms: SmsSettings,
    pub email: EmailSettings,
    pub label: LabelSettings,
}

/// Print jobs to parcel-label partners (`[[partners]]` with a `[partners.label]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelSettings {
    /// On by default: the channel runs when some partner prints labels.
    pub enabled: bool,
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout_ms: u64,
    /// Extra CA certificate (PEM) trusted for HTTPS print services.
    pub ca: Option<PathBuf>,
    /// Fetch the child's photo from the CAP resource `uri` when the alert does not
    /// embed it (`derefUri`); http(s) only, at most 2 MiB, within `timeout_ms`.
    pub fetch_photos: bool,
}

impl Default for LabelSettings {
    fn default() -> Self {
        Self {
            fetch_photos: false,
            enabled: true,
            concurrency: 16,
            rate_per_sec: 100.0,
            burst: 20,
            timeout_ms: 10_000,
            ca: None,
        }
    }
}

/// Apple Push Notification service (HTTP/2, token auth).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsSettings {
    pub enabled: bool,
    /// `https://api.push.apple.com`, `https://api.sandbox.push.apple.com`, or a test server.
    pub base_url: String,
    /// Apple developer team id (JWT `iss`).
    pub team_id: String,
    /// Key id of the p8 key (JWT `kid`).
    pub key_id: String,
    /// The p8 (PKCS#8 PEM, P-256) signing key.
    pub key_file: Option<PathBuf>,
    /// `apns-topic`: the app's bundle id.
    pub topic: String,
    /// HTTP/2 connections in the pool.
    pub connections: usize,
    /// Requests in flight at once over all connections.
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout_ms: u64,
    /// Send `interruption-level: critical` (needs Apple's entitlement).
    pub critical: bool,
    /// Extra CA certificate (PEM) to trust (test servers).
    pub ca: Option<PathBuf>,
}

impl Default for ApnsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.push.apple.com".into(),
            team_id: String::new(),
            key_id: String::new(),
            key_file: None,
            topic: String::new(),
            connections: 4,
            concurrency: 4000,
            rate_per_sec: 100_000.0,
            burst: 10_000,
            timeout_ms: 10_000,
            critical: false,
            ca: None,
        }
    }
}

/// Firebase Cloud Messaging, HTTP v1 API with a service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmSettings {
    pub enabled: bool,
    /// `https://fcm.googleapis.com` or a test server.
    pub base_url: String,
    pub project_id: String,
    /// Service-account JSON (client_email, private_key, token_uri).
    pub service_account_file: Option<PathBuf>,
    /// Overrides the service account's `token_uri` (tests).
    pub token_url: Option<String>,
    pub connections: usize,
    pub concurrency: usize,
    /// Default project quota: 600,000 messages/minute.
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout_ms: u64,
    pub ca: Option<PathBuf>,
}

impl Default for FcmSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://fcm.googleapis.com".into(),
            project_id: String::new(),
            service_account_file: None,
            token_url: None,
            connections: 4,
            concurrency: 2000,
            rate_per_sec: 10_000.0,
            burst: 1000,
            timeout_ms: 10_000,
            ca: None,
        }
    }
}

/// SMS through SMS centres over SMPP 3.4, or through an HTTP gateway (Kannel `sendsms`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    pub enabled: bool,
    /// `smpp` (the `smsc` list) or `http` (the `http` gateway).
    pub transport: SmsTransportKind,
    /// Sender address shown on handsets (short code or alphanumeric id).
    pub source_addr: String,
    /// Most concatenated parts one alert SMS may take (1..=10).
    pub max_parts: usize,
    /// Deliveries (numbers) in flight at once over all gateways.
    pub concurrency: usize,
    /// Channel-wide token bucket (numbers/s) and burst.
    pub rate_per_sec: f64,
    pub burst: u32,
    /// SMS centres reached over SMPP; numbers are spread over all binds of all of them.
    pub smsc: Vec<SmscSettings>,
    pub http: HttpSmsSettings,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            transport: SmsTransportKind::Smpp,
            source_addr: "TOCSIN".into(),
            max_parts: 2,
            concurrency: 256,
            rate_per_sec: 500.0,
            burst: 100,
            smsc: Vec::new(),
            http: HttpSmsSettings::default(),
        }
    }
}

/// Which SMS transport the channel uses.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmsTransportKind {
    Smpp,
    Http,
}

/// One SMS centre (SMPP 3.4 server).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmscSettings {
    /// Label for metrics and logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// SMPP over TLS (`smpps`).
    pub tls: bool,
    /// Extra CA certificate (PEM) trusted for `tls`.
    pub ca: Option<PathBuf>,
    pub system_id: String,
    pub password: Option<String>,
    /// File holding the password (systemd credentials); exclusive with `password`.
    pub password_file: Option<PathBuf>,
    pub system_type: String,
    /// Bind as transceiver to receive delivery receipts (else transmitter).
    pub transceiver: bool,
    /// Ask the SMSC for delivery receipts (`registered_delivery`).
    pub delivery_receipts: bool,
    /// Concurrent binds (sessions) to this SMSC.
    pub binds: usize,
    /// Outstanding `submit_sm` without a response, per bind.
    pub window: usize,
    /// This SMSC's own limit, in `submit_sm`/s over all its binds.
    pub rate_per_sec: f64,
    pub enquire_link_secs: u64,
    pub response_timeout_ms: u64,
    /// Reconnect backoff: first and longest delay.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Send GSM-7 packed (8 septets in 7 octets) instead of one septet per octet.
    pub gsm7_packed: bool,
}

impl Default for SmscSettings {
    fn default() -> Self {
        Self {
            name: "smsc".into(),
            host: "127.0.0.1".into(),
            port: 2775,
            tls: false,
            ca: None,
            system_id: String::new(),
            password: None,
            password_file: None,
            system_type: String::new(),
            transceiver: true,
            delivery_receipts: true,
            binds: 2,
            window: 32,
            rate_per_sec: 200.0,
            enquire_link_secs: 30,
            response_timeout_ms: 10_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
            gsm7_packed: false,
        }
    }
}

/// An HTTP SMS gateway speaking Kannel's `sendsms` interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSmsSettings {
    /// The `sendsms` URL, e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub url: String,
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Kannel `smsc` routing id (optional).
    pub smsc_id: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests/s to this gateway.
    pub rate_per_sec: f64,
    pub timeout_ms: u64,
    /// Extra CA certificate (PEM) for an HTTPS gateway.
    pub ca: Option<PathBuf>,
    /// `dlr-url` Kannel calls back with delivery reports (optional).
    pub dlr_url: Option<String>,
}

impl Default for HttpSmsSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:13013/cgi-bin/sendsms".into(),
            username: String::new(),
            password: None,
            password_file: None,
            smsc_id: None,
            concurrency: 32,
            rate_per_sec: 200.0,
            timeout_ms: 10_000,
            ca: None,
            dlr_url: None,
        }
    }
}

/// E-mail over SMTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// `starttls` (required), `tls` (implicit TLS, port 465) or `none` (loopback relays only).
    pub security: SmtpSecurity,
    /// Extra CA certificate (PEM) trusted for the relay.
    pub ca: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `From:` address, e.g. `Missing-child alerts <alerts@example.org>`.
    pub from: String,
    /// `List-Unsubscribe` target; `{id}` is replaced by the subscriber id.
    pub unsubscribe_url: String,
    /// Domain for `Message-ID`s (`<hash@domain>`).
    pub message_id_domain: String,
    /// Pooled SMTP connections.
    pub connections: u32,
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout_ms: u64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 587,
            security: SmtpSecurity::Starttls,
            ca: None,
            username: None,
            password: None,
            password_file: None,
            from: "Missing-child alerts <alerts@localhost>".into(),
            unsubscribe_url: "https://alerts.example.org/unsubscribe/{id}".into(),
            message_id_domain: "tocsin.invalid".into(),
            connections: 8,
            concurrency: 64,
            rate_per_sec: 200.0,
            burst: 50,
            timeout_ms: 30_000,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

/// The partner-feed channel: HTTP POST of the signed envelope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    pub enabled: bool,
    /// Requests in flight at once over all partners.
    pub concurrency: usize,
    /// Token-bucket rate (requests/s) and burst.
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout_ms: u64,
    /// Extra CA certificate (PEM) trusted for partner HTTPS endpoints.
    pub ca: Option<PathBuf>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 64,
            rate_per_sec: 1000.0,
            burst: 100,
            timeout_ms: 10_000,
            ca: None,
        }
    }
}

/// An area in config: geocodes (`"CN-GB2260:440000"`), polygons and circles.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AreaSettings {
    /// Covers the whole globe (a partner that takes every alert).
    pub everywhere: bool,
    pub geocodes: Vec<String>,
    /// Rings of `[lat, lon]`, closed.
    pub polygons: Vec<Vec<[f64; 2]>>,
    pub circles: Vec<CircleSettings>,
}

/// A circle in config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircleSettings {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// An issuing authority (DESIGN §4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySettings {
    pub id: String,
    pub name: String,
    /// CAP `sender` values this authority may use; empty = any sender that
    /// no other authority lists. A sender belongs to one authority.
    #[serde(default)]
    pub senders: Vec<String>,
    pub keys: Vec<KeySettings>,
    pub jurisdiction: AreaSettings,
    /// Event codes (CAP eventCode values, e.g. SAME `CAE`) it may issue.
    pub events: Vec<String>,
    /// CAP statuses it may issue (Actual, Exercise, Test, System, Draft).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<String>,
    /// Submissions per minute.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// Authorities whose co-signature lifts the jurisdiction and size limits.
    #[serde(default)]
    pub cosigners: Vec<String>,
    /// Areas larger than this need a co-signature.
    #[serde(default)]
    pub max_area_km2: Option<f64>,
    /// Widening steps of this authority, replacing the standard's per event.
    #[serde(default)]
    pub widen: Vec<AuthorityWidenSettings>,
}

fn default_statuses() -> Vec<String> {
    vec!["Actual".into(), "Exercise".into(), "Test".into()]
}

fn default_rate() -> u32 {
    60
}

/// One Ed25519 public key of an authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub kid: String,
    /// Base64 of the 32-byte public key, or …
    #[serde(default)]
    pub public_key: Option<String>,
    /// … a PEM (SPKI) file holding it.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked: bool,
}

/// The issuing standard of one event code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardSettings {
    pub event_code: String,
    /// Fields every info block must carry: headline, description, instruction,
    /// contact, web, expires, area, resource.
    #[serde(default)]
    pub require: Vec<String>,
    /// `expires` at most this many hours after `sent`.
    #[serde(default)]
    pub max_expires_hours: Option<i64>,
    /// Whether an Update / a Cancel of this event also goes out by SMS and e-mail (push
    /// and partners always get both). Off unless set: every text costs and wakes people.
    #[serde(default)]
    pub sms_on_update: bool,
    #[serde(default)]
    pub email_on_update: bool,
    #[serde(default)]
    pub sms_on_cancel: bool,
    #[serde(default)]
    pub email_on_cancel: bool,
    /// Widening radius: circles round the last-seen point (the alert's first
    /// `<circle>`) that grow with time since the first alert. Empty: none.
    #[serde(default)]
    pub widen: Vec<WidenStepSettings>,
}

/// One widening step: from `after_minutes` after the first alert on, the
/// circle has `radius_km`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidenStepSettings {
    pub after_minutes: u64,
    pub radius_km: f64,
}

/// An authority's own widening steps for one event code (empty: no widening).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityWidenSettings {
    pub event_code: String,
    pub steps: Vec<WidenStepSettings>,
}

/// The schedule a list of configured steps stands for.
pub fn widen_steps(list: &[WidenStepSettings]) -> Vec<crate::target::expand::Step> {
    list.iter()
        .map(|s| crate::target::expand::Step {
            after_secs: s.after_minutes.saturating_mul(60),
            radius_km: s.radius_km,
        })
        .collect()
}

/// A partner: a feed receiving the signed envelope by HTTP POST, a parcel-label
/// printer, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerSettings {
    pub name: String,
    /// Feed endpoint (HTTPS POST of the envelope); required when `feed` is on.
    #[serde(default)]
    pub endpoint: String,
    /// Receives the partner feed (default on).
    #[serde(default = "yes")]
    pub feed: bool,
    /// Prints missing-child notices on parcels.
    #[serde(default)]
    pub label: Option<LabelPartnerSettings>,
    /// HMAC-SHA256 key for the `Tocsin-Signature` header, or …
    #[serde(default)]
    pub secret: Option<String>,
    /// … a file holding it.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    pub coverage: AreaSettings,
    /// Receives Test and Exercise alerts too.
    #[serde(default)]
    pub tests: bool,
}

fn yes() -> bool {
    true
}

/// Where and how a label partner takes print jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelPartnerSettings {
    /// `raw`: ZPL over a TCP connection to the printer's raw port (9100); `https`: POST to
    /// the partner's print service.
    pub transport: LabelTransportKind,
    /// `host:port` for `raw`, the URL for `https`.
    pub address: String,
    /// Language of the label text (the alert's info block in this language).
    #[serde(default = "default_label_language")]
    pub language: String,
}

fn default_label_language() -> String {
    "zh-CN".into()
}

/// How print jobs reach a label partner.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LabelTransportKind {
    Raw,
    Https,
}

/// Lowest channel rate accepted (one message every 1000 s).
pub const MIN_RATE_PER_SEC: f64 = 0.001;
/// Longest replay window or clock skew accepted: 30 days.
pub const MAX_WINDOW_SECS: i64 = 30 * 24 * 3600;
/// Longest `max_expires_hours` accepted: a year.
pub const MAX_EXPIRES_HOURS: i64 = 366 * 24;

/// Errors loading settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Load `path` (TOML) and overlay `TOCSIN__SECTION__KEY` variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let c = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(env_source())
            .build()?;
        let s: Settings = c.try_deserialize()?;
        s.validate()?;
        Ok(s)
    }

    /// Parse settings from TOML text (and environment), for tests and the demo.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(env_source())
            .build()?;
        let s: Settings = c.try_deserialize()?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the type system cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.ingest.max_envelope_bytes < 1024 || self.ingest.max_envelope_bytes > 16 << 20 {
            return bad("ingest.max_envelope_bytes must be within 1 KiB..16 MiB".into());
        }
        if self.dispatch.batch_size == 0 || self.dispatch.max_in_flight_batches == 0 {
            return bad("dispatch.batch_size and max_in_flight_batches must be > 0".into());
        }
        if self.ingest.commit_batch == 0 {
            return bad("ingest.commit_batch must be > 0".into());
        }
        if !(1..=1_000_000).contains(&self.ingest.max_connections) {
            return bad("ingest.max_connections must be 1–1,000,000".into());
        }
        if self.ingest.max_buffered_bytes < self.ingest.max_envelope_bytes {
            return bad("ingest.max_buffered_bytes must be at least max_envelope_bytes".into());
        }
        if let Some(r) = self.ingest.max_alerts_per_sec {
            if !(r.is_finite() && r > 0.0) {
                return bad("ingest.max_alerts_per_sec must be > 0".into());
            }
        }
        if self.channels.feed.rate_per_sec.is_nan()
            || self.channels.feed.rate_per_sec <= 0.0
            || self.channels.feed.concurrency == 0
        {
            return bad("channels.feed.rate_per_sec and concurrency must be > 0".into());
        }
        // A NaN, infinite, negative or vanishing rate would stall a channel or
        // overflow its token bucket's wait; refuse it by name.
        let c = &self.channels;
        let mut rates = vec![
            (
                "channels.feed.rate_per_sec".to_string(),
                c.feed.rate_per_sec,
            ),
            ("channels.apns.rate_per_sec".into(), c.apns.rate_per_sec),
            ("channels.fcm.rate_per_sec".into(), c.fcm.rate_per_sec),
            ("channels.sms.rate_per_sec".into(), c.sms.rate_per_sec),
            (
                "channels.sms.http.rate_per_sec".into(),
                c.sms.http.rate_per_sec,
            ),
            ("channels.email.rate_per_sec".into(), c.email.rate_per_sec),
            ("channels.label.rate_per_sec".into(), c.label.rate_per_sec),
        ];
        for (i, smsc) in c.sms.smsc.iter().enumerate() {
            rates.push((
                format!("channels.sms.smsc[{i}].rate_per_sec"),
                smsc.rate_per_sec,
            ));
        }
        for (name, rate) in rates {
            if !(rate.is_finite() && rate >= MIN_RATE_PER_SEC) {
                return bad(format!(
                    "{name} must be a finite number of at least {MIN_RATE_PER_SEC}, not {rate}"
                ));
            }
        }
        // chrono panics on durations past ±i64::MAX ms; keep the windows sane.
        let p = &self.policy;
        if !(0..=MAX_WINDOW_SECS).contains(&p.replay_window_secs)
            || !(0..=MAX_WINDOW_SECS).contains(&p.future_skew_secs)
        {
            return bad(format!(
                "policy.replay_window_secs and future_skew_secs must be within 0..={MAX_WINDOW_SECS}"
            ));
        }
        for st in &self.standards {
            if st
                .max_expires_hours
                .is_some_and(|h| !(1..=MAX_EXPIRES_HOURS).contains(&h))
            {
                return bad(format!(
                    "standard {:?}: max_expires_hours must be within 1..={MAX_EXPIRES_HOURS}",
                    st.event_code
                ));
            }
        }
        for a in &self.authorities {
            // NaN would compare false and silently lift the co-signature rule.
            if a.max_area_km2.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
                return bad(format!(
                    "authority {:?}: max_area_km2 must be a finite number > 0",
                    a.id
                ));
            }
        }
        let sms = &self.channels.sms;
        if sms.enabled {
            if !(1..=10).contains(&sms.max_parts) {
                return bad("channels.sms.max_parts must be within 1..=10".into());
            }
            if !sms.rate_per_sec.is_finite() || sms.rate_per_sec <= 0.0 || sms.concurrency == 0 {
                return bad("channels.sms.rate_per_sec and concurrency must be > 0".into());
            }
            if sms.transport == SmsTransportKind::Smpp && sms.smsc.is_empty() {
                return bad(
                    "channels.sms.transport = \"smpp\" needs at least one [[channels.sms.smsc]]"
                        .into(),
                );
            }
        }
        if self.channels.email.enabled {
            if let Err(e) = crate::channel::email::check_settings(&self.channels.email) {
                return bad(format!("channels.email: {e}"));
            }
        }
        if !(self.dispatch.clock_speed.is_finite() && self.dispatch.clock_speed > 0.0) {
            return bad("dispatch.clock_speed must be > 0".into());
        }
        if !(0..=19).contains(&self.dispatch.nice) {
            return bad("dispatch.nice must be 0–19".into());
        }
        for st in &self.standards {
            if !st.widen.is_empty() {
                if let Err(e) = crate::target::expand::validate_steps(&widen_steps(&st.widen)) {
                    return bad(format!("standard {:?}: widen: {e}", st.event_code));
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        for a in &self.authorities {
            for w in &a.widen {
                if !w.steps.is_empty() {
                    if let Err(e) = crate::target::expand::validate_steps(&widen_steps(&w.steps)) {
                        return bad(format!(
                            "authority {:?}: widen {:?}: {e}",
                            a.id, w.event_code
                        ));
                    }
                }
            }
            if !ids.insert(a.id.as_str()) {
                return bad(format!("authority id {:?} appears twice", a.id));
            }
            for k in &a.keys {
                if k.public_key.is_some() == k.public_key_file.is_some() {
                    return bad(format!(
                        "authority {:?} key {:?}: set exactly one of public_key, public_key_file",
                        a.id, k.kid
                    ));
                }
            }
        }
        for p in &self.partners {
            if p.feed && p.endpoint.is_empty() {
                return bad(format!(
                    "partner {:?}: a feed partner needs an endpoint",
                    p.name
                ));
            }
            if !p.feed && p.label.is_none() {
                return bad(format!(
                    "partner {:?}: neither a feed (feed = true) nor a label printer ([partners.label])",
                    p.name
                ));
            }
            if p.secret.is_some() == p.secret_file.is_some() {
                return bad(format!(
                    "partner {:?}: set exactly one of secret, secret_file",
                    p.name
                ));
            }
        }
        Ok(())
    }
}

fn env_source() -> config::Environment {
    config::Environment::with_prefix("TOCSIN")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.ingest.listen.port(), 4433);
        assert_eq!(s.admin.listen.port(), 9464);
    }

    #[test]
    fn widening_steps_are_checked() {
        let base = "[[standards]]\nevent_code = \"CAE\"\n";
        let ok = format!(
            "{base}widen = [{{ after_minutes = 0, radius_km = 100.0 }}, {{ after_minutes = 60, radius_km = 200.0 }}]\n"
        );
        let s = Settings::from_toml(&ok).unwrap();
        let steps = widen_steps(&s.standards[0].widen);
        assert_eq!((steps[1].after_secs, steps[1].radius_km), (3600, 200.0));
        let shrinking = format!(
            "{base}widen = [{{ after_minutes = 0, radius_km = 100.0 }}, {{ after_minutes = 60, radius_km = 50.0 }}]\n"
        );
        let e = Settings::from_toml(&shrinking).unwrap_err().to_string();
        assert!(e.contains("widen") && e.contains("step 1"), "{e}");
        let e = Settings::from_toml("[dispatch]\nclock_speed = 0.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("clock_speed"), "{e}");
    }

    #[test]
    fn hostile_numbers_are_refused_by_name() {
        for (toml, needle) in [
            (
                "[channels.apns]\nrate_per_sec = nan\n",
                "channels.apns.rate_per_sec",
            ),
            (
                "[channels.label]\nrate_per_sec = -1.0\n",
                "channels.label.rate_per_sec",
            ),
            (
                "[channels.email]\nrate_per_sec = inf\n",
                "channels.email.rate_per_sec",
            ),
            (
                "[channels.fcm]\nrate_per_sec = 1e-300\n",
                "channels.fcm.rate_per_sec",
            ),
            (
                "[policy]\nreplay_window_secs = 9223372036854775807\n",
                "replay_window_secs",
            ),
            ("[policy]\nfuture_skew_secs = -5\n", "future_skew_secs"),
            (
                "[[standards]]\nevent_code = \"CAE\"\nmax_expires_hours = 9223372036854775807\n",
                "max_expires_hours",
            ),
        ] {
            let e = Settings::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(needle), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Settings::from_toml("[ingest]\nlisten_port = 1\n").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");
    }

    #[test]
    fn shipped_configs_parse() {
        for f in ["config/tocsin.toml", "config/production.example.toml"] {
            let text = std::fs::read_to_string(f).unwrap();
            Settings::from_toml(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}
