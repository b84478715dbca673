//! Arbitrary bytes as a service assertion: strict parsing never panics and
//! nothing without a valid signature by the configured key is accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tucdesk_crypto::assertion::{MAX_ASSERTION_LEN, ServiceKeyring, ServiceSigner};
use tucdesk_crypto::{Identity, jws};
use zeroize::Zeroizing;

const NOW: u64 = 1_767_225_600;

fn ring() -> &'static (ServiceKeyring, String) {
    static RING: OnceLock<(ServiceKeyring, String)> = OnceLock::new();
    RING.get_or_init(|| {
        let id = Identity::from_seed(&Zeroizing::new([7u8; 32]));
        let mut ring = ServiceKeyring::new();
        ring.insert("k1", "rendezvous", id.public_key()).expect("insert");
        let signer = ServiceSigner::new("rendezvous", "k1", id).expect("signer");
        let good = signer.issue_with("auth", NOW, 30, "jti").expect("issue");
        (ring, good)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let (ring, good) = ring();
    let _ = jws::decode(token, MAX_ASSERTION_LEN);
    if ring.verify(token, "auth", NOW).is_ok() {
        // The only acceptable tokens are ones the key signed: ours.
        assert_eq!(token, good.as_str());
    }
});
