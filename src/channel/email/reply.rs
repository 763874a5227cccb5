//! What an SMTP relay's negative reply means for a delivery: the reply code and the
//! RFC 3463 enhanced status code at the start of its text map to an [`Outcome`]. Pure;
//! the reply text may quote the address, so nothing here logs it.

use crate::channel::Outcome;

/// The enhanced status code (RFC 3463) at the start of a reply text: `5.1.1 …` → (5, 1, 1).
pub fn enhanced_status(text: &str) -> Option<(u8, u16, u16)> {
    let word = text.split_whitespace().next()?;
    let mut it = word.split('.');
    let class = it.next()?.parse::<u8>().ok()?;
    let subject = it.next()?.parse::<u16>().ok()?;
    let detail = it.next()?.parse::<u16>().ok()?;
    (it.next().is_none() && matches!(class, 2 | 4 | 5)).then_some((class, subject, detail))
}

/// Map a negative SMTP reply (code and text after the code) to an outcome. 4xx is
/// transient; a 5xx drops the address only when it says the recipient's mailbox is bad:
/// an enhanced code 5.1.x (except 5.1.7/5.1.8, which are about the sender), or, without
/// an enhanced code, 550/551/553. Any other 5xx (a policy or content refusal such as
/// `550 5.7.1`) fails this delivery but keeps the subscriber.
pub fn reply_outcome(code: u16, text: &str) -> Outcome {
    match code / 100 {
        2 => Outcome::Delivered,
        4 => Outcome::Retry {
            after: None,
            reason: "smtp_4xx",
        },
        5 => {
            let drop = match enhanced_status(text) {
                Some((5, 1, detail)) => !matches!(detail, 7 | 8),
                Some(_) => false,
                None => matches!(code, 550 | 551 | 553),
            };
            Outcome::Rejected {
                reason: "smtp_5xx",
                drop,
            }
        }
        _ => Outcome::Retry {
            after: None,
            reason: "smtp_connection",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_outcomes() {
        let retry = |reason| Outcome::Retry {
            after: None,
            reason,
        };
        let rejected = |drop| Outcome::Rejected {
            reason: "smtp_5xx",
            drop,
        };
        assert_eq!(reply_outcome(451, "4.3.0 try later"), retry("smtp_4xx"));
        assert_eq!(reply_outcome(421, "shutting down"), retry("smtp_4xx"));
        assert_eq!(reply_outcome(452, "4.2.2 mailbox full"), retry("smtp_4xx"));
        for (code, text) in [
            (550, "5.1.1 <x@y>: Recipient address rejected"),
            (550, "No such user"),
            (551, "User not local"),
            (553, "Mailbox name not allowed"),
            (554, "5.1.2 bad destination system"),
            (550, "5.1.10 null MX"),
        ] {
            assert_eq!(reply_outcome(code, text), rejected(true), "{code} {text}");
        }
        for (code, text) in [
            (550, "5.7.1 Message refused by policy"),
            (554, "Transaction failed"),
            (552, "5.3.4 Message too big"),
            (553, "5.1.8 Bad sender's system address"),
            (535, "5.7.8 Authentication credentials invalid"),
        ] {
            assert_eq!(reply_outcome(code, text), rejected(false), "{code} {text}");
        }
    }

    #[test]
    fn enhanced_codes_parse() {
        assert_eq!(enhanced_status("5.1.1 <a@b> rejected"), Some((5, 1, 1)));
        assert_eq!(enhanced_status("4.7.0"), Some((4, 7, 0)));
        assert_eq!(enhanced_status("5.1.10 null MX"), Some((5, 1, 10)));
        assert_eq!(enhanced_status("Mailbox unavailable"), None);
        assert_eq!(enhanced_status("1.2.3 x"), None);
        assert_eq!(enhanced_status("5.1 x"), None);
        assert_eq!(enhanced_status(""), None);
    }
}
