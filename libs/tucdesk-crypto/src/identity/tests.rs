#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn seed(hex_str: &str) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hex::decode(hex_str).unwrap().try_into().unwrap())
}

/// RFC 8032 §7.1 TEST 1–3: (secret, public, message, signature).
const RFC8032: [(&str, &str, &str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
];

#[test]
fn rfc8032_vectors_sign_and_verify_through_identity() {
    for (sk, pk, msg, sig) in RFC8032 {
        let id = Identity::from_seed(&seed(sk));
        assert_eq!(hex::encode(id.public_key().as_bytes()), pk);
        let msg = hex::decode(msg).unwrap();
        let got = id.sign_raw(&msg);
        assert_eq!(hex::encode(got.to_bytes()), sig);
        id.public_key().verify_raw(&msg, &got).unwrap();
        let mut other = msg.clone();
        other.push(0);
        assert!(id.public_key().verify_raw(&other, &got).is_err());
    }
}

#[test]
fn rfc8037_jwk_thumbprint_matches_appendix_a3() {
    // RFC 8037 A.1/A.3 uses the RFC 8032 TEST 1 key.
    let id = Identity::from_seed(&seed(RFC8032[0].0));
    assert_eq!(
        id.public_key().jwk_x(),
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    );
    assert_eq!(
        id.public_key().jwk_thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn agent_id_and_fingerprint_formats() {
    let id = Identity::from_seed(&seed(RFC8032[0].0));
    let agent_id = id.agent_id();
    assert_eq!(agent_id.len(), AGENT_ID_LEN);
    assert_eq!(agent_id, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(
        PublicKey::from_agent_id(&agent_id).unwrap(),
        id.public_key()
    );
    let fp = id.fingerprint();
    assert!(fp.starts_with("SHA256:"));
    assert!(!fp.ends_with('='));
    // 32 bytes in unpadded standard base64 = 43 chars.
    assert_eq!(fp.len(), "SHA256:".len() + 43);
}

#[test]
fn agent_id_parsing_is_canonical() {
    let id = Identity::generate().unwrap();
    let agent_id = id.agent_id();
    assert!(PublicKey::from_agent_id(&format!("{agent_id}=")).is_err());
    assert!(PublicKey::from_agent_id(&agent_id[..42]).is_err());
    let std_alphabet = agent_id.replace('-', "+").replace('_', "/");
    if std_alphabet != agent_id {
        assert!(PublicKey::from_agent_id(&std_alphabet).is_err());
    }
    // Last char of 43 carries 2 unused bits; flipping them must be rejected.
    let mut bad: Vec<u8> = agent_id.clone().into_bytes();
    let last = bad[42];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|c| *c == last).unwrap();
    bad[42] = alphabet[idx ^ 1];
    assert!(PublicKey::from_agent_id(std::str::from_utf8(&bad).unwrap()).is_err());
}

#[test]
fn small_order_public_keys_are_rejected() {
    // The identity point (y = 1) has order 1: a signature by it proves nothing.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    assert!(matches!(
        PublicKey::from_bytes(&identity_point),
        Err(IdentityError::InvalidPublicKey)
    ));
}

#[test]
fn debug_never_prints_the_secret_seed() {
    let s = seed(RFC8032[0].0);
    let id = Identity::from_seed(&s);
    let dbg = format!("{id:?} {:#?}", id);
    assert!(dbg.contains(&id.agent_id()));
    let seed_hex = hex::encode(*s);
    let seed_b64 = URL_SAFE_NO_PAD.encode(*s);
    let seed_std = STANDARD_NO_PAD.encode(*s);
    assert!(!dbg.contains(&seed_hex));
    assert!(!dbg.contains(&seed_b64));
    assert!(!dbg.contains(&seed_std));
    assert!(!dbg.contains(&format!("{:?}", *s)));
}

#[test]
fn generated_identities_are_distinct() {
    let a = Identity::generate().unwrap();
    let b = Identity::generate().unwrap();
    assert_ne!(a.public_key(), b.public_key());
}
