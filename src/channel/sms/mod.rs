//! SMS channel: sends alerts as SMS through SMS centres (SMPP 3.4, [`smpp`]) or an HTTP
//! gateway (Kannel `sendsms`, [`http`]). [`text`] owns the pure coding, segmentation and
//! template rules and [`render`] the wording; this module renders once per language per
//! batch, checks numbers, and hands each recipient's message to the configured
//! [`SmsTransport`], which maps the gateway's answer to an [`Outcome`].

pub mod http;
pub mod render;
pub mod smpp;
pub mod text;

use std::sync::Arc;

use async_trait::async_trait;

use crate::channel::push::render::PerLanguage;
use crate::channel::{
    settle_each, AlertContent, Channel, Outcome, Reach, Recipient, SubscriberKind,
};

pub use render::SmsMessage;

/// A way to hand SMS to the network. Implementations hold their own sessions, windows and
/// per-gateway rate limits, and must be cheap to call concurrently.
#[async_trait]
pub trait SmsTransport: Send + Sync + 'static {
    /// Submit every part of `message` to `number` (digits, optional leading `+`) and
    /// return one outcome for the whole message: `Delivered` once the gateway accepted
    /// every part.
    async fn send(&self, number: &str, message: &SmsMessage) -> Outcome;

    /// Close sessions politely (SMPP `unbind`); called once at shutdown.
    async fn close(&self) {}
}

/// The `sms` channel over one transport.
pub struct SmsChannel {
    transport: Arc<dyn SmsTransport>,
    public_url: String,
    max_parts: usize,
}

impl SmsChannel {
    /// `public_url` is the base of the alert link used when an info block has no `<web>`.
    pub fn new(transport: Arc<dyn SmsTransport>, public_url: &str, max_parts: usize) -> Self {
        Self {
            transport,
            public_url: public_url.to_string(),
            max_parts: max_parts.clamp(1, text::MAX_PARTS),
        }
    }
}

/// A plausible MSISDN: an optional `+`, then 3 to 20 digits. Anything else is never sent.
pub fn valid_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl Channel for SmsChannel {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn reach(&self) -> Reach {
        Reach::Subscribers(SubscriberKind::Sms)
    }

    async fn deliver(
        &self,
        alert: &AlertContent,
        recipients: &[Recipient<'_>],
        out: &mut Vec<Outcome>,
    ) {
        let reference = render::reference(alert);
        let mut messages: PerLanguage<'_, Option<Arc<SmsMessage>>> = PerLanguage::default();
        settle_each(recipients.len(), out, |i| {
            let r = &recipients[i];
            if !valid_number(r.address) {
                return Err(Outcome::Rejected {
                    reason: "invalid_number",
                    drop: true,
                });
            }
            let message = messages
                .get(alert, r.language, |info| {
                    render::render(alert, info, &self.public_url, reference, self.max_parts)
                        .ok()
                        .map(Arc::new)
                })
                .clone()
                .ok_or(Outcome::Rejected {
                    reason: "text_too_long",
                    drop: false,
                })?;
            let transport = &self.transport;
            Ok(async move { transport.send(r.address, &message).await })
        })
        .await;
    }

    async fn close(&self) {
        self.transport.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_before_sending() {
        assert!(valid_number("+8613800138000"));
        assert!(valid_number("15551234567"));
        assert!(!valid_number("+"));
        assert!(!valid_number("12"));
        assert!(!valid_number("555-1234"));
        assert!(!valid_number("alice@example.org"));
        assert!(!valid_number(&"1".repeat(21)));
    }
}
