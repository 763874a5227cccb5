//! Fuzz target `envelope`: arbitrary bytes into the COSE envelope decoder
//! (`alert::envelope::Envelope::decode`), then, for what decodes, the signer
//! list, the payload and one strict verification against a fixed key. Must
//! never panic, whatever the bytes (truncated CBOR, huge length prefixes,
//! wrong tags, odd headers).
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use tocsin::alert::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let _ = env.payload().len();
    for s in env.signers() {
        assert!(!s.kid.is_empty() && s.kid.len() <= tocsin::alert::envelope::MAX_KID_BYTES);
        let _ = env.verify(s, &key);
    }
});
