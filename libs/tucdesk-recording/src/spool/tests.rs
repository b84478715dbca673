use super::*;
use crate::cast::{CastEvent, CastLimits};
use crate::keys::load_or_create_identity;

const SESSION: &str = "0190a5c1-7e2b-7cc0-8000-000000000001";

struct Fixture {
    dir: tempfile::TempDir,
    spool_key: age::x25519::Identity,
    spool_recipient: age::x25519::Recipient,
    team_key: age::x25519::Identity,
    meta: SpoolMeta,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (spool_key, spool_recipient) =
        load_or_create_identity(&dir.path().join("spool.key")).unwrap_or_else(|e| panic!("{e}"));
    let team_key = age::x25519::Identity::generate();
    let meta = SpoolMeta {
        session_id: SESSION.into(),
        agent_id: "A".repeat(43),
        team_id: "team-1".into(),
        operator_user_id: "user-1".into(),
        operator_display: "op@example.com".into(),
        kind: 1,
        started_at_ms: 1_700_000_000_000,
        recipients: vec![team_key.to_public().to_string()],
    };
    Fixture {
        dir,
        spool_key,
        spool_recipient,
        team_key,
        meta,
    }
}

fn header() -> CastHeader {
    CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: Some("xterm".into()),
        shell: None,
    }
}

fn outputs(cast: &crate::Cast) -> String {
    cast.events
        .iter()
        .filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        })
        .collect()
}

/// Every file in the spool directory, read raw.
fn spool_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        all.extend(fs::read(entry.path()).unwrap_or_default());
    }
    all
}

#[test]
fn spooled_output_is_never_plaintext_on_disk_and_finishes_into_one_age_file() {
    let f = fixture();
    let root = f.dir.path().join("spool");
    let mut spool = Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header())
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = "TOPSECRET-terminal-output";
    for i in 0..50u64 {
        spool
            .output(Duration::from_millis(i * 100), secret.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    spool
        .resize(Duration::from_secs(6), 100, 40)
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = spool.dir().to_path_buf();
    let on_disk = spool_bytes(&dir);
    assert!(!on_disk.is_empty());
    assert!(
        !on_disk
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "terminal output reached the disk in plaintext"
    );
    let out = f.dir.path().join("out.cast.age");
    let finished = spool
        .finish(&f.spool_key, &out)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!dir.exists(), "the spool is deleted after finishing");
    let ciphertext = fs::read(&out).unwrap_or_default();
    assert_eq!(finished.ciphertext_size, ciphertext.len() as u64);
    assert_eq!(
        finished.ciphertext_sha256,
        crate::crypt::sha256(&ciphertext)
    );
    assert!(ciphertext.starts_with(b"age-encryption.org/v1\n"));
    let plaintext =
        crate::crypt::decrypt_bytes(&ciphertext, std::slice::from_ref(&f.team_key), 1 << 20)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(finished.plaintext_size, plaintext.len() as u64);
    assert_eq!(finished.plaintext_sha256, crate::crypt::sha256(&plaintext));
    let cast = crate::read_cast(
        ciphertext.as_slice(),
        std::slice::from_ref(&f.team_key),
        CastLimits::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cast.header, header());
    assert_eq!(outputs(&cast), secret.repeat(50));
    assert!(cast.events.contains(&CastEvent::Resize {
        time: Duration::from_secs(6),
        cols: 100,
        rows: 40
    }));
    // The spool key cannot read the final file: it is for the team only.
    assert!(
        crate::crypt::decrypt_bytes(&ciphertext, std::slice::from_ref(&f.spool_key), 1 << 20)
            .is_err()
    );
}

#[test]
fn segments_close_by_age_and_by_size() {
    let f = fixture();
    let root = f.dir.path().join("spool");
    let mut spool = Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header())
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = spool.dir().to_path_buf();
    assert_eq!(
        segment_numbers(&dir).unwrap_or_default(),
        vec![0],
        "header sealed at once"
    );
    spool
        .output(Duration::from_millis(100), b"x")
        .unwrap_or_else(|e| panic!("{e}"));
    spool
        .tick(Duration::from_millis(2000))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        segment_numbers(&dir).unwrap_or_default().len(),
        1,
        "not yet 2 s old"
    );
    spool
        .tick(Duration::from_millis(2100))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        segment_numbers(&dir).unwrap_or_default().len(),
        2,
        "sealed at 2 s"
    );
    let big = vec![b'y'; SEGMENT_MAX_BYTES];
    spool
        .output(Duration::from_millis(2200), &big)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        segment_numbers(&dir).unwrap_or_default().len(),
        3,
        "sealed at 64 KiB"
    );
    spool
        .tick(Duration::from_secs(100))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        segment_numbers(&dir).unwrap_or_default().len(),
        3,
        "empty segments are not written"
    );
}

#[test]
fn a_crashed_spool_is_recovered_up_to_the_first_damaged_segment() {
    let f = fixture();
    let root = f.dir.path().join("spool");
    let mut spool = Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header())
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let t = Duration::from_secs(3 * i as u64);
        spool
            .output(t, text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        spool
            .tick(t + Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Unsealed output at the crash is lost; so is a segment damaged on disk.
    spool
        .output(Duration::from_secs(10), b"lost-in-memory")
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = spool.dir().to_path_buf();
    drop(spool);
    let third = dir.join(segment_name(3));
    let mut damaged = fs::read(&third).unwrap_or_default();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    fs::write(&third, damaged).unwrap_or_default();
    assert_eq!(list_spools(&root).unwrap_or_default(), vec![dir.clone()]);
    let out = f.dir.path().join("recovered.cast.age");
    let recovered = recover(&dir, &f.spool_key, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recovered.meta, f.meta);
    assert_eq!((recovered.segments_used, recovered.segments_lost), (3, 1));
    let cast = crate::read_cast(
        fs::File::open(&out).unwrap_or_else(|e| panic!("{e}")),
        std::slice::from_ref(&f.team_key),
        CastLimits::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outputs(&cast), "onetwo");
    assert!(!dir.exists());
}

#[test]
fn finish_refuses_a_damaged_spool_and_leaves_no_output() {
    let f = fixture();
    let root = f.dir.path().join("spool");
    let mut spool = Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header())
        .unwrap_or_else(|e| panic!("{e}"));
    spool
        .output(Duration::ZERO, b"abc")
        .unwrap_or_else(|e| panic!("{e}"));
    fs::write(spool.dir().join(segment_name(0)), b"garbage").unwrap_or_default();
    let out = f.dir.path().join("out.cast.age");
    assert!(spool.finish(&f.spool_key, &out).is_err());
    assert!(!out.exists());
}

#[test]
fn a_spool_for_a_session_is_created_once_and_the_output_never_overwritten() {
    let f = fixture();
    let root = f.dir.path().join("spool");
    let spool = Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header());
    assert!(spool.is_ok());
    assert!(Spool::create(&root, f.meta.clone(), &f.spool_recipient, &header()).is_err());
    let mut bad = f.meta.clone();
    bad.session_id = "../escape".into();
    assert!(Spool::create(&root, bad, &f.spool_recipient, &header()).is_err());
    let out = f.dir.path().join("exists.cast.age");
    fs::write(&out, b"keep").unwrap_or_default();
    let spool = spool.unwrap_or_else(|e| panic!("{e}"));
    assert!(spool.finish(&f.spool_key, &out).is_err());
    assert_eq!(fs::read(&out).unwrap_or_default(), b"keep");
}
