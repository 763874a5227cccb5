//! The HTTP SMS transport against a real Kannel: bearerbox with a fake SMSC, smsbox
//! serving `sendsms`, and `fakesmsc` logging every SMS the "network" receives. Alerts go
//! through `SmsChannel` exactly as the dispatcher sends them; the test asserts what
//! reached the SMSC: coding, concatenation headers and text, byte for byte.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::peers::{debian_exe, free_port, wait_listening, Peer};
use tocsin::channel::sms::http::HttpTransport;
use tocsin::channel::sms::render;
use tocsin::channel::sms::text::{decode_ucs2, Coding};
use tocsin::channel::sms::{SmsChannel, SmsMessage};
use tocsin::channel::{AlertContent, Channel, Outcome, Recipient};
use tocsin::config::HttpSmsSettings;
use tocsin::demo::sample::{fresh_alert, remove_elements, set_elements};
use tocsin::metrics::Metrics;

const PUBLIC_URL: &str = "https://x";
const USERNAME: &str = "tocsin";
const PASSWORD: &str = "s3cret&pw";
const ADMIN_PASSWORD: &str = "adminpw";
const FROM: &str = "TOCSIN";

/// One Kannel installation in a temp dir; its three processes die with it.
struct Kannel {
    dir: tempfile::TempDir,
    conf: PathBuf,
    admin_port: u16,
    smsc_port: u16,
    sendsms_port: u16,
    bearerbox: Option<Peer>,
    smsbox: Option<Peer>,
    fakesmsc: Option<Peer>,
}

impl Kannel {
    fn new() -> Kannel {
        let dir = tempfile::tempdir().unwrap();
        let (admin_port, smsbox_port, smsc_port, sendsms_port) =
            (free_port(), free_port(), free_port(), free_port());
        let template = include_str!("peers/kannel/kannel.conf");
        let conf_text = template
            .replace("@ADMIN_PORT@", &admin_port.to_string())
            .replace("@SMSBOX_PORT@", &smsbox_port.to_string())
            .replace("@SMSC_PORT@", &smsc_port.to_string())
            .replace("@SENDSMS_PORT@", &sendsms_port.to_string())
            .replace("@ADMIN_PASSWORD@", ADMIN_PASSWORD)
            .replace("@USERNAME@", USERNAME)
            .replace("@PASSWORD@", PASSWORD)
            .replace("@DIR@", &dir.path().display().to_string());
        assert!(!conf_text.contains('@'), "unfilled placeholder");
        let conf = dir.path().join("kannel.conf");
        std::fs::write(&conf, conf_text).unwrap();
        Kannel {
            dir,
            conf,
            admin_port,
            smsc_port,
            sendsms_port,
            bearerbox: None,
            smsbox: None,
            fakesmsc: None,
        }
    }

    fn spawn(&self, exe: &Path, args: &[&str], log: &str) -> Peer {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(log))
            .unwrap();
        let child = Command::new(exe)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Peer(child)
    }

    /// Starts bearerbox, the fake SMSC client and smsbox, and waits until Kannel reports
    /// both the SMSC and smsbox connected.
    fn start(&mut self) {
        let bearerbox = debian_exe("/usr/sbin/bearerbox", "kannel");
        let smsbox = debian_exe("/usr/sbin/smsbox", "kannel");
        let fakesmsc = debian_exe("/usr/lib/kannel/test/fakesmsc", "kannel-extras");
        let conf = self.conf.display().to_string();
        self.bearerbox = Some(self.spawn(&bearerbox, &[&conf], "bearerbox.err"));
        let within = Duration::from_secs(10);
        assert!(wait_listening(self.admin_port, within), "bearerbox admin");
        assert!(
            wait_listening(self.smsc_port, within),
            "bearerbox fake SMSC"
        );
        // -m 0: send nothing (it wants one message template all the same), log what it gets.
        let port = self.smsc_port.to_string();
        let args = [
            "-H",
            "127.0.0.1",
            "-r",
            &port,
            "-m",
            "0",
            "-i",
            "0",
            "0 0 text x",
        ];
        self.fakesmsc = Some(self.spawn(&fakesmsc, &args, "fakesmsc.log"));
        self.smsbox = Some(self.spawn(&smsbox, &[&conf], "smsbox.err"));
        assert!(wait_listening(self.sendsms_port, within), "smsbox sendsms");
        let start = Instant::now();
        loop {
            let status = self.status();
            let smsc_online = status.contains(&format!("FAKE:{} (online", self.smsc_port));
            let smsbox_up = status
                .split("Box connections:")
                .nth(1)
                .is_some_and(|boxes| boxes.contains("smsbox:"));
            if smsc_online && smsbox_up {
                return;
            }
            assert!(start.elapsed() < within, "Kannel not ready:\n{status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills bearerbox (smsbox and fakesmsc lose it and exit) and waits until nothing
    /// serves `sendsms` any more.
    fn crash(&mut self) {
        self.bearerbox = None;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.sendsms_port)).is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10), "smsbox lives on");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.smsbox = None;
        self.fakesmsc = None;
    }

    /// bearerbox's `status.txt`, or "" while it does not answer.
    fn status(&self) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.admin_port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /status.txt?password={ADMIN_PASSWORD} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        );
        let mut out = String::new();
        if s.write_all(req.as_bytes()).is_ok() {
            let _ = s.read_to_string(&mut out);
        }
        out
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.sendsms_port)
    }

    /// Every SMS fakesmsc received so far, in order.
    fn received(&self) -> Vec<Sms> {
        let log = std::fs::read(self.dir.path().join("fakesmsc.log")).unwrap_or_default();
        parse_fakesmsc_log(&String::from_utf8_lossy(&log))
    }

    /// The SMS received for `to`, once there are `n` of them.
    fn wait_received(&self, to: &str, n: usize) -> Vec<Sms> {
        let get = || -> Vec<Sms> { self.received().into_iter().filter(|s| s.to == to).collect() };
        // fakesmsc logs a text SMS line by line: wait until the log stops growing, so a
        // text with line breaks is not read half written.
        let mut got = wait_for_n(to, n, get);
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let again = get();
            if again == got {
                return got;
            }
            got = again;
        }
    }

    /// bearerbox's access-log lines for `to` (what it handed the SMSC): coding, length of
    /// the message data in octets (UTF-8 for coding 0, UTF-16BE for 2) and UDH in hex.
    fn access_log(&self, to: &str, n: usize) -> Vec<(u8, usize, String)> {
        wait_for_n(to, n, || self.access_log_now(to))
    }

    fn access_log_now(&self, to: &str) -> Vec<(u8, usize, String)> {
        let log = std::fs::read(self.dir.path().join("access.log")).unwrap_or_default();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.contains("Sent SMS") && l.contains(&format!("[to:{to}]")))
            .map(|l| {
                let field = |name: &str, from_end: bool| {
                    let key = format!("[{name}:");
                    let at = if from_end {
                        l.rfind(&key)
                    } else {
                        l.find(&key)
                    };
                    &l[at.unwrap() + key.len()..]
                };
                let flags = field("flags", false);
                let coding = flags.split(':').nth(1).unwrap().parse().unwrap();
                let msg = field("msg", false);
                let len = msg[..msg.find(':').unwrap()].parse().unwrap();
                let udh = field("udh", true);
                let udh = &udh[udh.find(':').unwrap() + 1..udh.find(']').unwrap()];
                (coding, len, udh.to_string())
            })
            .collect()
    }
}

/// Polls `get` until it returns `n` items (Kannel logs asynchronously), and no more.
fn wait_for_n<T: std::fmt::Debug>(to: &str, n: usize, get: impl Fn() -> Vec<T>) -> Vec<T> {
    let start = Instant::now();
    loop {
        let got = get();
        if got.len() >= n {
            assert_eq!(got.len(), n, "more than expected for {to}: {got:?}");
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{n} never arrived for {to}; got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One SMS as fakesmsc printed it: `from to text <raw>`, `from to ucs-2 <urlenc>`,
/// `from to data <urlenc>` or `from to udh <urlenc> data <urlenc>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sms {
    from: String,
    to: String,
    kind: String,
    udh: Option<Vec<u8>>,
    data: Vec<u8>,
}

/// fakesmsc logs `... DEBUG: Got message N: <line>` for each line bearerbox's fake SMSC
/// protocol sends. That protocol writes a `text` SMS raw, so a line break inside it starts
/// a new "message" that is not `FROM to kind ...`: such a line continues the text before.
fn parse_fakesmsc_log(log: &str) -> Vec<Sms> {
    let mut out: Vec<Sms> = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find("Got message ") else {
            continue;
        };
        let rest = &line[at..];
        let Some(body) = rest
            .find(": <")
            .and_then(|i| rest[i + 3..].strip_suffix('>'))
        else {
            continue;
        };
        let mut it = body.splitn(4, ' ');
        let fields = (it.next(), it.next(), it.next(), it.next());
        let (Some(FROM), Some(to), Some(kind), Some(rest)) = fields else {
            if let Some(last) = out.last_mut().filter(|s| s.kind == "text") {
                last.data.push(b'\n');
                last.data.extend_from_slice(body.as_bytes());
            }
            continue;
        };
        let (udh, kind, data) = match kind {
            "udh" => {
                let Some((udh, data)) = rest.split_once(" data ") else {
                    continue;
                };
                (Some(url_decode(udh)), "data", url_decode(data))
            }
            "text" => (None, "text", rest.as_bytes().to_vec()),
            other => (None, other, url_decode(rest)),
        };
        out.push(Sms {
            from: FROM.into(),
            to: to.into(),
            kind: kind.into(),
            udh,
            data,
        });
    }
    out
}

/// Kannel's URL decoding: `%XX` and `+` for a space.
fn url_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn alert(seq: u64, xml: &str) -> AlertContent {
    let a = tocsin::alert::cap::parse(xml.as_bytes(), &Default::default()).unwrap();
    AlertContent {
        seq,
        alert_id: a.alert_id(),
        receipt: "r".into(),
        envelope: Arc::from(&b""[..]),
        alert: a,
        accepted_at: Instant::now(),
        expires: None,
    }
}

/// What `SmsChannel` renders for `language` (the same call it makes).
fn expected(a: &AlertContent, language: &str) -> SmsMessage {
    render::render(a, a.info_for(language), PUBLIC_URL, render::reference(a), 2).unwrap()
}

fn transport(kannel: &Kannel, password: &str, metrics: &Metrics) -> HttpTransport {
    let settings = HttpSmsSettings {
        url: kannel.url(),
        username: USERNAME.into(),
        timeout_ms: 3_000,
        ..HttpSmsSettings::default()
    };
    HttpTransport::new(
        &settings,
        FROM,
        Some(password.to_string()),
        None,
        metrics.clone(),
    )
    .unwrap()
}

async fn deliver(channel: &SmsChannel, a: &AlertContent, to: &[(&str, &str)]) -> Vec<Outcome> {
    let recipients: Vec<Recipient<'_>> = to
        .iter()
        .enumerate()
        .map(|(i, (address, language))| Recipient {
            id: i as u32,
            address,
            language,
        })
        .collect();
    let mut out = Vec::new();
    channel.deliver(a, &recipients, &mut out).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_kannels_smsc_as_rendered() {
    let mut kannel = Kannel::new();
    kannel.start();
    let metrics = Metrics::new();
    let http = transport(&kannel, PASSWORD, &metrics);
    let gateway = http.gateway().to_string();
    let channel = SmsChannel::new(Arc::new(http), PUBLIC_URL, 2);
    let now = chrono::Utc::now();

    // English: two GSM-7 parts, each with its concatenation header, text intact, also
    // around characters of the GSM extension table (two septets each) and "@" (septet 0).
    let description = "Reward €5,000 {EUR}: Li Xiaoming, 6, about 115 cm, red jacket \
        [hood up], blue jeans | ask @ any police desk. "
        .repeat(4);
    let en = set_elements(&fresh_alert("kannel-1", now), "description", &description);
    let en = set_elements(&en, "instruction", "Call 110 now.");
    let en = alert(0x2A, &en);
    let want = expected(&en, "en");
    assert_eq!(want.parts.len(), 2);
    assert!(want.parts.iter().all(|p| p.coding == Coding::Gsm7));
    assert!(
        want.parts.iter().all(|p| p.text().contains('€')) && want.text.contains('@'),
        "{:?}",
        want.parts.iter().map(|p| p.text()).collect::<Vec<_>>()
    );
    let out = deliver(&channel, &en, &[("+15550000001", "en")]).await;
    assert_eq!(out, [Outcome::Delivered]);
    let got = kannel.wait_received("+15550000001", 2);
    let mut joined = String::new();
    for (i, sms) in got.iter().enumerate() {
        assert_eq!(sms.from, FROM);
        assert_eq!(
            sms.udh.as_deref(),
            Some(&[5, 0, 3, 0x2A, 2, i as u8 + 1][..])
        );
        let text = String::from_utf8(sms.data.clone()).unwrap();
        assert_eq!(text, want.parts[i].text(), "part {}", i + 1);
        joined.push_str(&text);
    }
    assert_eq!(joined, want.text);
    assert_eq!(
        kannel.access_log("+15550000001", 2),
        [
            (0, want.parts[0].text().len(), "0500032A0201".to_string()),
            (0, want.parts[1].text().len(), "0500032A0202".to_string())
        ],
        "GSM-7 (coding 0), our UDH, not re-split"
    );

    // Chinese: UCS-2 (coding 2), the UTF-16BE octets exactly as we coded them.
    let zh = alert(7, &fresh_alert("kannel-2", now));
    let want = expected(&zh, "zh-CN");
    assert_eq!(want.parts.len(), 2);
    assert!(want.parts.iter().all(|p| p.coding == Coding::Ucs2));
    let out = deliver(&channel, &zh, &[("+8613800000002", "zh-CN")]).await;
    assert_eq!(out, [Outcome::Delivered]);
    let got = kannel.wait_received("+8613800000002", 2);
    let mut octets = Vec::new();
    for (i, sms) in got.iter().enumerate() {
        assert_eq!(sms.udh.as_deref(), Some(&[5, 0, 3, 7, 2, i as u8 + 1][..]));
        assert_eq!(sms.data, want.parts[i].payload, "part {}", i + 1);
        octets.extend_from_slice(&sms.data);
    }
    assert_eq!(decode_ucs2(&octets), want.text);
    assert_eq!(
        kannel.access_log("+8613800000002", 2),
        [
            (2, want.parts[0].payload.len(), "050003070201".to_string()),
            (2, want.parts[1].payload.len(), "050003070202".to_string())
        ]
    );

    // A short message is one SMS without UDH; in the same batch an unroutable number is
    // rejected and dropped, and nothing reaches it.
    let short = set_elements(&fresh_alert("kannel-3", now), "description", "Boy, 6.");
    let short = set_elements(&short, "instruction", "Call 110.");
    let short = set_elements(&short, "headline", "Missing child: Li Xiaoming, 6");
    let short = alert(3, &short);
    let want = expected(&short, "en");
    assert_eq!(want.parts.len(), 1);
    assert!(want.text.contains('\n'));
    let out = deliver(&channel, &short, &[("+15550000003", "en"), ("+0123", "en")]).await;
    assert_eq!(
        out,
        [
            Outcome::Delivered,
            Outcome::Rejected {
                reason: "invalid_number",
                drop: true
            }
        ]
    );
    let got = kannel.wait_received("+15550000003", 1);
    assert_eq!(got[0].kind, "text");
    assert_eq!(got[0].udh, None);
    assert_eq!(String::from_utf8(got[0].data.clone()).unwrap(), want.text);
    assert_eq!(
        kannel.access_log("+15550000003", 1),
        [(0, want.text.len(), String::new())]
    );

    // A short Chinese message is one UCS-2 SMS without UDH.
    let short_zh = set_elements(&fresh_alert("kannel-4", now), "description", "男孩，6岁。");
    let short_zh = set_elements(&short_zh, "instruction", "请拨打110。");
    let short_zh = set_elements(&short_zh, "contact", "110");
    let short_zh = alert(4, &remove_elements(&short_zh, "web"));
    let want_zh = expected(&short_zh, "zh-CN");
    assert_eq!(want_zh.parts.len(), 1);
    assert_eq!(want_zh.parts[0].coding, Coding::Ucs2);
    let out = deliver(&channel, &short_zh, &[("+8613800000033", "zh-CN")]).await;
    assert_eq!(out, [Outcome::Delivered]);
    let got = kannel.wait_received("+8613800000033", 1);
    assert_eq!(got[0].kind, "ucs-2");
    assert_eq!(got[0].udh, None);
    assert_eq!(decode_ucs2(&got[0].data), want_zh.text);
    assert_eq!(
        kannel.access_log("+8613800000033", 1),
        [(2, want_zh.parts[0].payload.len(), String::new())]
    );
    assert!(kannel.received().iter().all(|s| s.to != "+0123"));

    // Wrong credentials: held for retry, never dropped.
    let wrong = SmsChannel::new(
        Arc::new(transport(&kannel, "wrong", &metrics)),
        PUBLIC_URL,
        2,
    );
    let out = deliver(&wrong, &short, &[("+15550000004", "en")]).await;
    assert_eq!(
        out,
        [Outcome::Retry {
            after: None,
            reason: "gateway_auth"
        }]
    );

    // Kannel down: retried; back up: delivered.
    kannel.crash();
    let out = deliver(&channel, &short, &[("+15550000005", "en")]).await;
    assert_eq!(
        out,
        [Outcome::Retry {
            after: None,
            reason: "gateway_unavailable"
        }]
    );
    kannel.start();
    let out = deliver(&channel, &short, &[("+15550000005", "en")]).await;
    assert_eq!(out, [Outcome::Delivered]);
    let got = kannel.wait_received("+15550000005", 1);
    assert_eq!(String::from_utf8(got[0].data.clone()).unwrap(), want.text);

    // Accepted parts are counted per gateway: 2 + 2 + 1 + 1 + 1.
    let m = metrics.encode();
    let line = format!("tocsin_sms_parts_total{{channel=\"sms\",gateway=\"{gateway}\"}} 7");
    assert!(m.contains(&line), "{line} missing from\n{m}");
    assert!(m.contains("tocsin_gateway_request_seconds_count{channel=\"sms\""));
    assert!(kannel.received().iter().all(|s| s.to != "+15550000004"));
}
