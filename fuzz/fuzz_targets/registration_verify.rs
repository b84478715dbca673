//! Registration proofs (SPEC §2) as rendezvous receives them: an encoded
//! `RegistrationProof` (from `Register` or `EnrollRequest`), converted field by
//! field the way a server must (exact lengths, valid key) and verified.
//!
//! Input: `flags ‖ offset (i16 BE) ‖ encoded RegistrationProof`. The
//! verifier's clock is the proof's timestamp plus `offset × 16 ms` (±524 s,
//! so both sides of the ±30 s window are reachable).
//! - flags bit 0: the verifier expects the proof's own audience (else the
//!   vectors' deployment id).
//! - flags bit 1: the harness signs the fuzzed fields with the vectors' agent
//!   key, so the signature is good and the result must be exactly what the
//!   rules say, in their order (audience, clock, audience length, signature).
//!
//! Without bit 1 the fuzzer cannot sign: the only proof that may verify is
//! the one in vectors.json, and the cheap checks must still come first.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tucdesk_crypto::registration::{MAX_AUDIENCE_LEN, NONCE_LEN};
use tucdesk_crypto::{Identity, PublicKey, RegistrationError, RegistrationProof, Signature};
use tucdesk_fuzz::{vector_array, vector_str};
use tucdesk_proto::v1;
use zeroize::Zeroizing;

/// Granularity of the fuzzed clock offset.
const OFFSET_UNIT_MS: i64 = 16;
/// SPEC §2: ±30 s, restated here so the harness does not trust the library.
const SKEW_MS: i128 = 30_000;

struct Fixture {
    agent: Identity,
    proof: RegistrationProof,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let agent = Identity::from_seed(&Zeroizing::new(vector_array(
            "/registration/agent_seed_hex",
        )));
        let proof = RegistrationProof {
            audience: vector_str("/registration/audience").to_owned(),
            agent_key: agent.public_key(),
            nonce: vector_array("/registration/nonce_hex"),
            timestamp_ms: tucdesk_fuzz::vector("/registration/timestamp_ms")
                .as_u64()
                .expect("timestamp"),
            signature: Signature::from_bytes(vector_array("/registration/signature_hex")),
        };
        Fixture { agent, proof }
    })
}

/// What a server does with the wire message before verifying: every fixed
/// length is exact and the key is a valid, non-weak Ed25519 point.
fn from_wire(p: &v1::RegistrationProof) -> Option<RegistrationProof> {
    Some(RegistrationProof {
        audience: p.audience.clone(),
        agent_key: PublicKey::from_slice(&p.agent_pubkey).ok()?,
        nonce: <[u8; NONCE_LEN]>::try_from(p.nonce.as_slice()).ok()?,
        timestamp_ms: p.timestamp_ms,
        signature: Signature::from_slice(&p.signature)?,
    })
}

/// The rules of SPEC §2 in the documented order, computed independently.
fn expected(
    proof: &RegistrationProof,
    audience: &str,
    now_ms: u64,
    signature_ok: bool,
) -> Result<(), RegistrationError> {
    if proof.audience != audience {
        return Err(RegistrationError::WrongAudience);
    }
    let (ts, now) = (i128::from(proof.timestamp_ms), i128::from(now_ms));
    if ts < now - SKEW_MS {
        return Err(RegistrationError::Expired);
    }
    if ts > now + SKEW_MS {
        return Err(RegistrationError::FromTheFuture);
    }
    if proof.audience.is_empty() || proof.audience.len() > MAX_AUDIENCE_LEN {
        return Err(RegistrationError::BadAudience);
    }
    if signature_ok {
        Ok(())
    } else {
        Err(RegistrationError::BadSignature)
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, o1, o2, body @ ..] = data else {
        return;
    };
    let Ok(wire) = v1::RegistrationProof::decode(body) else {
        return;
    };
    let Some(mut proof) = from_wire(&wire) else {
        return;
    };
    let fx = fixture();
    let audience = if flags & 1 != 0 {
        proof.audience.clone()
    } else {
        fx.proof.audience.clone()
    };
    let offset = i64::from(i16::from_be_bytes([*o1, *o2])) * OFFSET_UNIT_MS;
    let now_ms = proof.timestamp_ms.wrapping_add_signed(offset);

    if flags & 2 != 0 {
        // Honest signer, fuzzed fields.
        proof.agent_key = fx.agent.public_key();
        let signed = RegistrationProof::create_with_nonce(
            &fx.agent,
            &proof.audience,
            proof.nonce,
            proof.timestamp_ms,
        );
        let signature_ok = match signed {
            Ok(signed) => {
                proof.signature = signed.signature;
                assert_eq!(signed, proof, "create_with_nonce changed a field");
                true
            }
            Err(e) => {
                assert_eq!(e, RegistrationError::BadAudience);
                assert!(proof.audience.is_empty() || proof.audience.len() > MAX_AUDIENCE_LEN);
                false
            }
        };
        assert_eq!(
            proof.verify(&audience, now_ms),
            expected(&proof, &audience, now_ms, signature_ok)
        );
    } else {
        let result = proof.verify(&audience, now_ms);
        if result.is_ok() {
            assert_eq!(proof, fx.proof, "a proof the fuzzer made up verified");
        }
        // Cheap checks first: the outcome of everything before the signature
        // is fixed whatever the signature is.
        match expected(&proof, &audience, now_ms, true) {
            Ok(()) => assert!(matches!(
                result,
                Ok(()) | Err(RegistrationError::BadSignature)
            )),
            Err(e) => assert_eq!(result, Err(e)),
        }
    }
});
