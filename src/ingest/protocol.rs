//! The ingest wire protocol (DESIGN §3): one signed envelope per
//! bidirectional stream, answered by one JSON receipt line.

use serde::{Deserialize, Serialize};

use crate::reject::Rejection;

/// Longest receipt a client reads.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;

/// The answer to one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Receipt {
    /// Durable and fanning out.
    Accepted {
        id: String,
        receipt: String,
        targeted: u64,
    },
    /// The same envelope was accepted before; same receipt as then.
    Duplicate {
        id: String,
        receipt: String,
        targeted: u64,
    },
    /// Refused; nothing was journaled.
    Rejected { code: String, message: String },
}

impl Receipt {
    /// A rejection receipt.
    pub fn rejected(r: &Rejection) -> Self {
        Self::Rejected {
            code: r.code.as_str().to_string(),
            message: r.message.clone(),
        }
    }

    /// The receipt as one JSON line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"status":"rejected","code":"internal_error","message":"receipt encoding"}"#
                .to_vec()
        });
        v.push(b'\n');
        v
    }

    /// True for accepted and duplicate.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// The rejection code, if rejected.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_design() {
        let r = Receipt::Accepted {
            id: "s,i,t".into(),
            receipt: "01J".into(),
            targeted: 3,
        };
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"status\":\"accepted\",\"id\":\"s,i,t\",\"receipt\":\"01J\",\"targeted\":3}\n"
        );
        let back: Receipt = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(back, r);
    }
}
