#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

const KEY: [u8; 32] = [0x11; 32];
const SID: &str = "0190f3a4-7c2e-7d1a-9b3c-5e6f7a8b9c0d";

fn pair() -> (FrameSealer, FrameOpener) {
    (
        FrameSealer::new(&KEY, SID, Direction::OperatorToAgent, 0),
        FrameOpener::new(&KEY, SID, Direction::OperatorToAgent),
    )
}

#[test]
fn frame_layout_is_counter_ciphertext_tag() {
    let (mut tx, _) = pair();
    let f0 = tx.seal(b"hello").unwrap();
    let f1 = tx.seal(b"hello").unwrap();
    assert_eq!(f0.len(), 8 + 5 + 16);
    assert_eq!(&f0[..8], &0u64.to_be_bytes());
    assert_eq!(&f1[..8], &1u64.to_be_bytes());
    assert_ne!(f0[8..], f1[8..], "same plaintext, different nonce");
}

#[test]
fn sealer_refuses_to_wrap() {
    let mut tx = FrameSealer::new(&KEY, SID, Direction::OperatorToAgent, MAX_COUNTER - 1);
    let mut rx = FrameOpener::new(&KEY, SID, Direction::OperatorToAgent);
    let a = tx.seal(b"a").unwrap();
    let b = tx.seal(b"b").unwrap();
    assert_eq!(&b[..8], &MAX_COUNTER.to_be_bytes());
    assert_eq!(tx.seal(b"c"), Err(FrameError::CounterExhausted));
    assert_eq!(tx.seal(b"c"), Err(FrameError::CounterExhausted));
    assert_eq!(tx.next_counter(), u64::MAX);
    assert_eq!(rx.open(&a).unwrap(), b"a");
    assert_eq!(rx.open(&b).unwrap(), b"b");
}

#[test]
fn wrong_direction_or_session_fails_authentication() {
    let (mut tx, _) = pair();
    let f = tx.seal(b"x").unwrap();
    let mut other_dir = FrameOpener::new(&KEY, SID, Direction::AgentToOperator);
    assert_eq!(other_dir.open(&f), Err(FrameError::Authentication));
    let mut other_sid = FrameOpener::new(&KEY, "other-session", Direction::OperatorToAgent);
    assert_eq!(other_sid.open(&f), Err(FrameError::Authentication));
}

#[test]
fn failed_frames_do_not_advance_state() {
    let (mut tx, mut rx) = pair();
    let f0 = tx.seal(b"0").unwrap();
    let mut forged = tx.seal(b"1").unwrap();
    forged[0] = 0x7f; // huge counter, invalid tag
    assert_eq!(rx.open(&forged), Err(FrameError::Authentication));
    assert_eq!(rx.last_counter(), None);
    assert_eq!(rx.open(&f0).unwrap(), b"0");
}

#[test]
fn empty_plaintext_and_max_plaintext_roundtrip() {
    let (mut tx, mut rx) = pair();
    assert_eq!(rx.open(&tx.seal(b"").unwrap()).unwrap(), b"");
    let big = vec![7u8; MAX_FRAME_PLAINTEXT_LEN];
    let f = tx.seal(&big).unwrap();
    assert_eq!(f.len(), MAX_FRAME_LEN);
    assert_eq!(rx.open(&f).unwrap(), big);
    assert_eq!(
        tx.seal(&vec![0u8; MAX_FRAME_PLAINTEXT_LEN + 1]),
        Err(FrameError::PlaintextTooLarge {
            len: MAX_FRAME_PLAINTEXT_LEN + 1
        })
    );
}

#[test]
fn seal_into_appends() {
    let (mut tx, mut rx) = pair();
    let mut buf = b"prefix".to_vec();
    tx.seal_into(b"abc", &mut buf).unwrap();
    assert_eq!(rx.open(&buf[6..]).unwrap(), b"abc");
}

proptest! {
    #[test]
    fn roundtrip(msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..8)) {
        let (mut tx, mut rx) = pair();
        for m in &msgs {
            let f = tx.seal(m).unwrap();
            prop_assert_eq!(&rx.open(&f).unwrap(), m);
        }
    }

    #[test]
    fn any_flipped_bit_fails(m in prop::collection::vec(any::<u8>(), 0..256), bit in any::<prop::sample::Index>()) {
        let (mut tx, mut rx) = pair();
        let mut f = tx.seal(&m).unwrap();
        let i = bit.index(f.len() * 8);
        f[i / 8] ^= 1 << (i % 8);
        prop_assert!(rx.open(&f).is_err());
        prop_assert_eq!(rx.last_counter(), None);
    }

    #[test]
    fn replay_is_rejected(m in prop::collection::vec(any::<u8>(), 0..64), n in 1usize..6) {
        let (mut tx, mut rx) = pair();
        let frames: Vec<_> = (0..n).map(|_| tx.seal(&m).unwrap()).collect();
        for f in &frames {
            rx.open(f).unwrap();
        }
        for (i, f) in frames.iter().enumerate() {
            prop_assert_eq!(
                rx.open(f),
                Err(FrameError::Replayed { counter: i as u64, last: (n - 1) as u64 })
            );
        }
    }

    #[test]
    fn reorder_is_rejected(a in prop::collection::vec(any::<u8>(), 0..64), b in prop::collection::vec(any::<u8>(), 0..64)) {
        let (mut tx, mut rx) = pair();
        let f0 = tx.seal(&a).unwrap();
        let f1 = tx.seal(&b).unwrap();
        prop_assert_eq!(rx.open(&f1).unwrap(), b);
        prop_assert_eq!(rx.open(&f0), Err(FrameError::Replayed { counter: 0, last: 1 }));
    }

    #[test]
    fn truncation_is_rejected(m in prop::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>()) {
        let (mut tx, mut rx) = pair();
        let f = tx.seal(&m).unwrap();
        let keep = cut.index(f.len());
        let r = rx.open(&f[..keep]);
        if keep < FRAME_OVERHEAD {
            prop_assert_eq!(r, Err(FrameError::Truncated { len: keep }));
        } else {
            prop_assert_eq!(r, Err(FrameError::Authentication));
        }
    }

    #[test]
    fn oversize_is_rejected_before_decryption(extra in 1usize..4096) {
        let (_, mut rx) = pair();
        let f = vec![0u8; MAX_FRAME_LEN + extra];
        prop_assert_eq!(rx.open(&f), Err(FrameError::TooLarge { len: MAX_FRAME_LEN + extra }));
    }

    #[test]
    fn opener_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let (_, mut rx) = pair();
        prop_assert!(rx.open(&bytes).is_err());
    }
}
