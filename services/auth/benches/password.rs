//! Password hashing benchmarks: what the chosen argon2id cost means in time and throughput.
//!
//! * `password/{hash,verify,verify_unknown_user}`: one call of the public async API at the
//!   production parameters (policy, NFC, salt, blocking-pool hop and semaphore included).
//! * `argon2id_raw/<m>MiB_t<t>`: the bare argon2id computation at our parameters and at the
//!   OWASP / RFC 9106 alternatives, measured in the same run, for the cost comparison.
//! * After criterion: hashes per second with [`MAX_CONCURRENT_HASHES`] callers in parallel,
//!   i.e. the login rate one auth process sustains on this box.
//!
//! Quick run: `cargo bench -p tucdesk-auth --bench password -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use criterion::Criterion;
use tucdesk_auth::password::{
    ARGON2_M_COST_KIB, ARGON2_OUTPUT_LEN, ARGON2_P_COST, ARGON2_T_COST, MAX_CONCURRENT_HASHES,
    Password, PasswordHasher,
};

/// A policy-conforming password of typical length.
const PASSWORD: &str = "correct horse battery staple";
/// Each iteration takes tens of milliseconds: ten samples keep a run short.
const SAMPLE_SIZE: usize = 10;
/// Duration of the parallel throughput loop.
const LOOP_TIME: Duration = Duration::from_secs(3);

/// (label, m KiB, t, p): ours first, then the alternatives it is compared with.
const RAW_PARAMS: [(&str, u32, u32, u32); 4] = [
    (
        "ours_32MiB_t2",
        ARGON2_M_COST_KIB,
        ARGON2_T_COST,
        ARGON2_P_COST,
    ),
    ("owasp_19MiB_t2", 19 * 1024, 2, 1),
    ("owasp_46MiB_t1", 46 * 1024, 1, 1),
    ("rfc9106_64MiB_t3", 64 * 1024, 3, 1),
];

fn password() -> Password {
    Password::new(PASSWORD.to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(MAX_CONCURRENT_HASHES)
        .enable_all()
        .build()
        .unwrap()
}

fn bench_api(c: &mut Criterion) {
    let rt = runtime();
    let hasher = PasswordHasher::new();
    let phc = rt.block_on(hasher.hash(&password())).unwrap();
    rt.block_on(hasher.warm_up()).unwrap();
    let candidate = password();

    let mut group = c.benchmark_group("password");
    group.sample_size(SAMPLE_SIZE);
    group.bench_function("hash", |b| {
        b.iter(|| rt.block_on(hasher.hash(black_box(&candidate))).unwrap());
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            assert!(
                rt.block_on(hasher.verify(Some(&phc), black_box(&candidate)))
                    .unwrap()
            );
        });
    });
    group.bench_function("verify_unknown_user", |b| {
        b.iter(|| {
            assert!(
                !rt.block_on(hasher.verify(None, black_box(&candidate)))
                    .unwrap()
            );
        });
    });
    group.finish();
}

fn bench_raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id_raw");
    group.sample_size(SAMPLE_SIZE);
    let salt = [0x5a; 16];
    for (label, m, t, p) in RAW_PARAMS {
        let params = Params::new(m, t, p, Some(ARGON2_OUTPUT_LEN)).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = [0u8; ARGON2_OUTPUT_LEN];
        group.bench_function(label, |b| {
            b.iter(|| {
                argon2
                    .hash_password_into(black_box(PASSWORD.as_bytes()), &salt, &mut out)
                    .unwrap();
            });
        });
    }
    group.finish();
}

/// Verifications per second with every hashing slot busy.
fn parallel_throughput() {
    let rt = runtime();
    let hasher = PasswordHasher::new();
    let phc = rt.block_on(hasher.hash(&password())).unwrap();
    let start = Instant::now();
    let done: usize = rt.block_on(async {
        let workers: Vec<_> = (0..MAX_CONCURRENT_HASHES)
            .map(|_| {
                let hasher = hasher.clone();
                let phc = phc.clone();
                tokio::spawn(async move {
                    let candidate = password();
                    let mut n = 0usize;
                    while start.elapsed() < LOOP_TIME {
                        assert!(hasher.verify(Some(&phc), &candidate).await.unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w.await.unwrap();
        }
        total
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parallel verify: {done} in {secs:.2} s with {MAX_CONCURRENT_HASHES} slots \
         = {:.1} verifications/s (m={ARGON2_M_COST_KIB} KiB, t={ARGON2_T_COST}, p={ARGON2_P_COST})",
        done as f64 / secs
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_api(&mut c);
    bench_raw(&mut c);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and only smoke-tests.
    if std::env::args().any(|a| a == "--bench") {
        parallel_throughput();
    }
}
