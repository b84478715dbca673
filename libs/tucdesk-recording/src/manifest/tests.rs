use super::*;
use zeroize::Zeroizing;

const SESSION: &str = "0190a5c1-7e2b-7cc0-8000-000000000001";

fn identity(byte: u8) -> Identity {
    Identity::from_seed(&Zeroizing::new([byte; 32]))
}

fn manifest(agent: &Identity) -> RecordingManifest {
    let meta = SpoolMeta {
        session_id: SESSION.into(),
        agent_id: agent.agent_id(),
        team_id: "team-1".into(),
        operator_user_id: "user-1".into(),
        operator_display: "op".into(),
        kind: SessionKind::Shell as i32,
        started_at_ms: 1_700_000_000_000,
        recipients: vec![age::x25519::Identity::generate().to_public().to_string()],
    };
    let recording = FinishedRecording {
        path: "x".into(),
        plaintext_size: 10,
        plaintext_sha256: [1; 32],
        ciphertext_size: 200,
        ciphertext_sha256: [2; 32],
    };
    build_manifest(&meta, &recording, 1_700_000_100_000, "0.1.0")
}

#[test]
fn a_signed_manifest_verifies_against_its_agent_only() {
    let agent = identity(1);
    let m = manifest(&agent);
    let signed = sign_manifest(&agent, &m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verify_manifest(&signed, &agent.public_key()), Ok(m.clone()));
    // Another agent's key: the manifest names a different agent.
    assert_eq!(
        verify_manifest(&signed, &identity(2).public_key()),
        Err(ManifestError::WrongAgent)
    );
    // Another agent signing a manifest that names the first agent.
    let mut forged = signed.clone();
    forged.signature = tucdesk_crypto::recording::sign_manifest(&identity(2), &signed.manifest)
        .map(|s| s.to_bytes().to_vec())
        .unwrap_or_default();
    assert_eq!(
        verify_manifest(&forged, &agent.public_key()),
        Err(ManifestError::BadSignature)
    );
    // Any change to the signed bytes.
    let mut changed = m.clone();
    changed.team_id = "team-2".into();
    let tampered = SignedRecordingManifest {
        manifest: changed.encode_to_vec(),
        signature: signed.signature.clone(),
    };
    assert_eq!(
        verify_manifest(&tampered, &agent.public_key()),
        Err(ManifestError::BadSignature)
    );
    assert!(
        sign_manifest(&identity(2), &m).is_err(),
        "signing for another agent id"
    );
}

#[test]
fn manifests_are_checked_strictly() {
    let agent = identity(1);
    let good = manifest(&agent);
    type Change = Box<dyn Fn(&mut RecordingManifest)>;
    let cases: Vec<Change> = vec![
        Box::new(|m| m.format_version = 2),
        Box::new(|m| m.session_id = "nope".into()),
        Box::new(|m| m.agent_id = "short".into()),
        Box::new(|m| m.team_id = String::new()),
        Box::new(|m| m.operator_display = "x".repeat(129)),
        Box::new(|m| m.plaintext_sha256 = vec![0; 31]),
        Box::new(|m| m.ciphertext_sha256 = vec![0; 33]),
        Box::new(|m| m.ciphertext_size = 0),
        Box::new(|m| m.ciphertext_size = MAX_RECORDING_LEN + 1),
        Box::new(|m| m.age_recipients = vec![]),
        Box::new(|m| m.age_recipients = vec!["age1bad".into()]),
        Box::new(|m| m.cast_format = "ttyrec".into()),
        Box::new(|m| m.agent_version = "v".repeat(65)),
        Box::new(|m| m.ended_at_ms = m.started_at_ms - 1),
        Box::new(|m| m.kind = 99),
    ];
    for (i, change) in cases.iter().enumerate() {
        let mut m = good.clone();
        change(&mut m);
        assert!(check_manifest(&m).is_err(), "case {i} accepted");
        let signed = SignedRecordingManifest {
            manifest: m.encode_to_vec(),
            signature: vec![0; 64],
        };
        assert!(decode_manifest(&signed).is_err(), "case {i} decoded");
    }
    let oversized = SignedRecordingManifest {
        manifest: vec![0; MAX_MANIFEST_LEN + 1],
        signature: vec![0; 64],
    };
    assert!(decode_manifest(&oversized).is_err());
    let short_sig = SignedRecordingManifest {
        manifest: good.encode_to_vec(),
        signature: vec![0; 63],
    };
    assert!(decode_manifest(&short_sig).is_err());
}

#[test]
fn upload_proofs_are_bound_to_method_session_hash_offset_and_time() {
    let agent = identity(1);
    let key = agent.public_key();
    let hash = [5u8; 32];
    let now = 1_700_000_000_000u64;
    let proof = make_upload_proof(&agent, UPLOAD_METHOD, SESSION, &hash, 1024, now)
        .unwrap_or_else(|e| panic!("{e}"));
    let verify = |method: &str, session: &str, hash: &[u8], offset: u64, at: u64| {
        verify_upload_proof(&proof, &key, method, session, hash, offset, at)
    };
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &hash, 1024, now).map(|n| n.to_vec()),
        Ok(proof.nonce.clone())
    );
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &hash, 1024, now + 30_000).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &hash, 1024, now + 30_001),
        Err(ManifestError::ProofStale)
    );
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &hash, 1024, now - 30_001),
        Err(ManifestError::ProofStale)
    );
    assert_eq!(
        verify(UPLOAD_STATUS_METHOD, SESSION, &hash, 1024, now),
        Err(ManifestError::ProofBadSignature)
    );
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &hash, 0, now),
        Err(ManifestError::ProofBadSignature)
    );
    assert_eq!(
        verify(UPLOAD_METHOD, SESSION, &[6; 32], 1024, now),
        Err(ManifestError::ProofBadSignature)
    );
    assert!(verify(UPLOAD_METHOD, SESSION, &[6; 31], 1024, now).is_err());
    assert_eq!(
        verify_upload_proof(
            &proof,
            &identity(2).public_key(),
            UPLOAD_METHOD,
            SESSION,
            &hash,
            1024,
            now
        ),
        Err(ManifestError::ProofBadSignature)
    );
    let mut short = proof.clone();
    short.nonce.pop();
    assert!(verify_upload_proof(&short, &key, UPLOAD_METHOD, SESSION, &hash, 1024, now).is_err());
    let other = make_upload_proof(&agent, UPLOAD_METHOD, SESSION, &hash, 1024, now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(other.nonce, proof.nonce, "every proof has a fresh nonce");
}
