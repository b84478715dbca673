//! Crypto core benchmarks.
//!
//! * `frame_seal_open/{tucdesk,raw_aes_gcm}/{64,1024,16384}`: one seal plus
//!   one open of a frame, against bare AES-256-GCM encrypt+decrypt with the
//!   same key, nonce layout and AAD, measured in the same run. The overhead
//!   ratio (ours / raw) is printed at the end from criterion's saved
//!   estimates, with a simple timed loop as a cross-check.
//! * `registration_verify`: verifications of a registration proof per second
//!   (what one rendezvous core can admit).
//!
//! Quick run: `cargo bench -p tucdesk-crypto --bench crypto -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _};
use criterion::{BenchmarkId, Criterion, Throughput};
use tucdesk_crypto::frame::Direction;
use tucdesk_crypto::{Identity, RegistrationProof, hazmat};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const KEY: [u8; 32] = [0x42; 32];
const SESSION_ID: &str = "0190f3a4-7c2e-7d1a-9b3c-5e6f7a8b9c0d";
const GROUP: &str = "frame_seal_open";
/// Per-variant duration of the cross-check loop.
const LOOP_TIME: Duration = Duration::from_millis(500);

fn aad() -> Vec<u8> {
    let mut aad = SESSION_ID.as_bytes().to_vec();
    aad.push(Direction::OperatorToAgent.as_byte());
    aad
}

/// Returns a closure doing one seal+open with our frame layer.
fn ours() -> impl FnMut(&[u8]) -> usize {
    let mut tx = hazmat::frame_sealer(&KEY, SESSION_ID, Direction::OperatorToAgent, 0);
    let mut rx = hazmat::frame_opener(&KEY, SESSION_ID, Direction::OperatorToAgent);
    move |pt| {
        let frame = tx.seal(pt).unwrap();
        rx.open(&frame).unwrap().len()
    }
}

/// Returns a closure doing one raw AES-256-GCM encrypt+decrypt.
fn raw() -> impl FnMut(&[u8]) -> usize {
    let cipher = Aes256Gcm::new(&KEY.into());
    let aad = aad();
    let mut counter = 0u64;
    move |pt| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        counter += 1;
        let ct = cipher
            .encrypt(&nonce.into(), Payload { msg: pt, aad: &aad })
            .unwrap();
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .unwrap()
            .len()
    }
}

fn bench_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for size in SIZES {
        let pt = vec![0xabu8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("tucdesk", size), &pt, |b, pt| {
            let mut f = ours();
            b.iter(|| f(black_box(pt)))
        });
        group.bench_with_input(BenchmarkId::new("raw_aes_gcm", size), &pt, |b, pt| {
            let mut f = raw();
            b.iter(|| f(black_box(pt)))
        });
    }
    group.finish();
}

fn registration_fixture() -> (RegistrationProof, u64) {
    let id = Identity::generate().unwrap();
    let now = 1_767_225_600_000;
    (
        RegistrationProof::create(&id, "rdv.bench", now).unwrap(),
        now,
    )
}

fn bench_registration(c: &mut Criterion) {
    let (proof, now) = registration_fixture();
    let mut group = c.benchmark_group("registration_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&proof).verify("rdv.bench", now).unwrap())
    });
    group.finish();
}

/// Time per iteration from criterion's saved estimates, if present.
fn criterion_mean_ns(function: &str, size: usize) -> Option<f64> {
    let base = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    let path = base
        .join(GROUP)
        .join(function)
        .join(size.to_string())
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    // Criterion reports the slope estimate when it has one, else the mean.
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}

/// Nanoseconds per call of `f` over roughly [`LOOP_TIME`].
fn time_loop(mut f: impl FnMut() -> usize) -> f64 {
    for _ in 0..100 {
        black_box(f());
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < LOOP_TIME {
        for _ in 0..64 {
            black_box(f());
        }
        n += 64;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn print_summary() {
    println!("\n== frame seal+open overhead vs raw AES-256-GCM (ours / raw) ==");
    println!(
        "{:>7} | {:>12} {:>12} {:>7} | {:>12} {:>12} {:>7}",
        "size", "crit ours", "crit raw", "ratio", "loop ours", "loop raw", "ratio"
    );
    for size in SIZES {
        let pt = vec![0xabu8; size];
        let crit = criterion_mean_ns("tucdesk", size).zip(criterion_mean_ns("raw_aes_gcm", size));
        let mut o = ours();
        let lo = time_loop(|| o(black_box(&pt)));
        let mut r = raw();
        let lr = time_loop(|| r(black_box(&pt)));
        let (co, cr, cratio) = match crit {
            Some((o, r)) => (
                format!("{o:.0} ns"),
                format!("{r:.0} ns"),
                format!("{:.3}", o / r),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        println!(
            "{size:>7} | {co:>12} {cr:>12} {cratio:>7} | {:>9.0} ns {:>9.0} ns {:>7.3}",
            lo,
            lr,
            lo / lr
        );
    }
    let (proof, now) = registration_fixture();
    let ns = time_loop(|| {
        proof.verify("rdv.bench", now).unwrap();
        1
    });
    println!(
        "registration verify: {:.1} µs each, {:.0} verifications/s on one core",
        ns / 1000.0,
        1e9 / ns
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_frames(&mut c);
    bench_registration(&mut c);
    c.final_summary();
    // `cargo test --benches` runs us without `--bench`: skip the timed loop.
    if std::env::args().any(|a| a == "--bench") {
        print_summary();
    }
}
