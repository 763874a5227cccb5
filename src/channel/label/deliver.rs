//! Print jobs for parcel-label partners: every label partner whose coverage touches the
//! alert gets the label in its language — rendered once per language per batch, off the
//! async threads — either as raw ZPL over TCP to the printer's raw port (9100) or as an
//! HTTPS POST to its print service (`Content-Type: application/vnd.zebra.zpl`, signed like
//! the feed: `Idempotency-Key`, `Tocsin-Signature`, `Tocsin-Alert-Id`, `Tocsin-Job`).
//! A Cancel sends a withdrawal job, so the partner stops printing the notice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::photo::MAX_PHOTO_BYTES;
use super::{photo_bytes, render, render_withdrawal, Label, LabelOptions};
use crate::alert::cap::MsgType;
use crate::channel::feed::{classify, idempotency_key, signature_header};
use crate::channel::{settle_each, AlertContent, Channel, Outcome, PartnerRole, Reach, Recipient};
use crate::config::LabelTransportKind;
use crate::dispatch::Partner;

/// Run CPU-bound `f` without stalling the tasks queued on this worker: through
/// `block_in_place` on a multi-threaded runtime, inline elsewhere (where that panics).
fn cpu_work<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// ZPL's media type for the HTTPS print service.
pub const ZPL_CONTENT_TYPE: &str = "application/vnd.zebra.zpl";

/// The `label` channel.
pub struct LabelChannel {
    partners: Arc<Vec<Partner>>,
    public_url: String,
    client: reqwest::Client,
    timeout: Duration,
    fetch_photos: bool,
}

/// Errors building the channel.
#[derive(Debug, thiserror::Error)]
pub enum LabelChannelError {
    #[error("label channel: {0}")]
    Client(String),
}

impl LabelChannel {
    pub fn new(
        partners: Arc<Vec<Partner>>,
        public_url: &str,
        timeout: Duration,
        extra_ca_pem: Option<&[u8]>,
        fetch_photos: bool,
    ) -> Result<Self, LabelChannelError> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| LabelChannelError::Client(format!("CA: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Self {
            partners,
            public_url: public_url.to_string(),
            client: b
                .build()
                .map_err(|e| LabelChannelError::Client(e.to_string()))?,
            timeout,
            fetch_photos,
        })
    }

    /// The photo of `info`: embedded (`derefUri`), else fetched from the first image
    /// resource's `uri` when enabled: http(s) only, no redirects, at most
    /// [`MAX_PHOTO_BYTES`] read, within the channel's timeout.
    async fn photo(&self, info: Option<&crate::alert::cap::Info>) -> Option<Vec<u8>> {
        let info = info?;
        if let Some(p) = photo_bytes(info) {
            return Some(p);
        }
        if !self.fetch_photos {
            return None;
        }
        let uri = info
            .resources
            .iter()
            .filter(|r| {
                r.mime_type
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("image/")
            })
            .find_map(|r| r.uri.as_deref())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))?;
        let mut resp = self.client.get(uri).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            if bytes.len() + chunk.len() > MAX_PHOTO_BYTES {
                return None;
            }
            bytes.extend_from_slice(&chunk);
        }
        Some(bytes)
    }

    async fn send(&self, alert: &AlertContent, partner: &Partner, label: &Label) -> Outcome {
        let Some(target) = &partner.label else {
            return Outcome::Rejected {
                reason: "not_a_label_partner",
                drop: false,
            };
        };
        let job = if alert.msg_type() == MsgType::Cancel {
            "withdraw"
        } else {
            "print"
        };
        match target.transport {
            LabelTransportKind::Raw => {
                let write = async {
                    let mut s = tokio::net::TcpStream::connect(target.address.as_str()).await?;
                    s.write_all(&label.zpl).await?;
                    s.shutdown().await
                };
                match tokio::time::timeout(self.timeout, write).await {
                    Ok(Ok(())) => Outcome::Delivered,
                    Ok(Err(_)) => Outcome::Retry {
                        after: None,
                        reason: "printer_unreachable",
                    },
                    Err(_) => Outcome::Retry {
                        after: None,
                        reason: "printer_timeout",
                    },
                }
            }
            LabelTransportKind::Https => {
                let t = chrono::Utc::now().timestamp();
                let r = self
                    .client
                    .post(&target.address)
                    .header("content-type", ZPL_CONTENT_TYPE)
                    .header(
                        "idempotency-key",
                        idempotency_key(&format!("{}#{job}", alert.alert_id), &partner.name),
                    )
                    .header(
                        "tocsin-signature",
                        signature_header(&partner.secret, t, &label.zpl),
                    )
                    .header("tocsin-job", job)
                    .body(label.zpl.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) => {
                        let after = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        classify(resp.status().as_u16(), after)
                    }
                    Err(e) if e.is_timeout() => Outcome::Retry {
                        after: None,
                        reason: "timeout",
                    },
                    Err(_) => Outcome::Retry {
                        after: None,
                        reason: "connect",
                    },
                }
            }
        }
    }
}

#[async_trait]
impl Channel for LabelChannel {
    fn name(&self) -> &'static str {
        "label"
    }

    fn reach(&self) -> Reach {
        Reach::Partners(PartnerRole::Label)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        // One label per distinct language. Rendering (font rasterizing, dithering) is
        // CPU work of milliseconds: on a multi-threaded runtime the worker hands its
        // other tasks off meanwhile.
        let mut languages: Vec<&str> = recipients.iter().map(|r| r.language).collect();
        languages.sort_unstable();
        languages.dedup();
        let mut labels: Vec<(&str, Option<Arc<Label>>)> = Vec::with_capacity(languages.len());
        for lang in languages {
            let opts = LabelOptions {
                public_url: self.public_url.clone(),
                language: lang.to_string(),
            };
            let rendered = if alert.msg_type() == MsgType::Cancel {
                cpu_work(|| render_withdrawal(alert, &opts))
            } else {
                let photo = self.photo(alert.info_for(lang)).await;
                cpu_work(|| match render(alert, photo.as_deref(), &opts) {
                    // A photo that does not decode: print the notice without it.
                    Err(e) if e.is_photo() => render(alert, None, &opts),
                    other => other,
                })
            };
            if let Err(e) = &rendered {
                tracing::error!(alert = %alert.alert_id, language = lang, error = %e, "label rendering failed");
            }
            labels.push((lang, rendered.ok().map(Arc::new)));
        }
        settle_each(recipients.len(), out, |i| {
            let r = &recipients[i];
            let label = labels
                .iter()
                .find(|(l, _)| *l == r.language)
                .and_then(|(_, l)| l.clone());
            let (Some(label), Some(partner)) = (label, self.partners.get(r.id as usize)) else {
                return Err(Outcome::Rejected {
                    reason: "label_unrenderable",
                    drop: false,
                });
            };
            Ok(async move { self.send(alert, partner, &label).await })
        })
        .await;
    }
}
