//! The only source of randomness in this crate: the operating system CSPRNG.
//!
//! Everything secret (identity seeds, ephemeral X25519 scalars, nonces, codes,
//! token ids) comes from [`getrandom::SysRng`]. A failing OS RNG is reported as
//! an error instead of a panic so a service can refuse the request and log it.

use getrandom::SysRng;
use rand_core::TryRng;
use zeroize::Zeroizing;

/// The OS random number generator failed (no entropy source, sandbox denial…).
#[derive(Debug, thiserror::Error)]
#[error("OS random number generator failed: {0}")]
pub struct RngError(#[from] getrandom::Error);

/// Fills `dest` from the OS CSPRNG.
pub fn fill_random(dest: &mut [u8]) -> Result<(), RngError> {
    SysRng.try_fill_bytes(dest)?;
    Ok(())
}

/// Returns `N` fresh random bytes (public values: nonces, ids).
pub fn random_array<const N: usize>() -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// Returns `N` fresh random bytes that are secret and wiped on drop.
pub fn random_secret<const N: usize>() -> Result<Zeroizing<[u8; N]>, RngError> {
    let mut out = Zeroizing::new([0u8; N]);
    fill_random(out.as_mut_slice())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn two_draws_differ() {
        let a: [u8; 32] = random_array().unwrap();
        let b: [u8; 32] = random_array().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
