//! Sealed session frames (SPEC §5 step 4).
//!
//! ```text
//! frame = counter (u64 BE, 8 bytes) ‖ ciphertext ‖ tag (16 bytes)
//! ciphertext ‖ tag = AES-256-GCM(key_dir,
//!                                nonce = 0u32 BE ‖ counter u64 BE   (12 bytes),
//!                                aad   = session_id (UTF-8) ‖ direction (1 byte),
//!                                plaintext)
//! direction: 0x01 operator→agent, 0x02 agent→operator
//! ```
//!
//! Each direction has its own key, so a nonce is never used twice under a
//! key as long as a sealer never repeats a counter: counters start at 0,
//! only increase, and the sealer refuses to go past [`MAX_COUNTER`] instead of
//! wrapping (rekey or close first). The direction byte in the AAD is defence
//! in depth against a reflected frame; the session id needs no length prefix
//! because it is fixed for the lifetime of the keys.
//!
//! The opener accepts a frame only if its counter is strictly greater than
//! the last accepted one (replay and reorder rejected), and checks the
//! length against [`MAX_FRAME_LEN`] before allocating or decrypting. State
//! changes only after a frame authenticates, so junk cannot advance it.

use std::fmt;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut as _, Aes256Gcm, KeyInit as _, Nonce, Tag};

/// Length of the big-endian counter prefix.
pub const COUNTER_LEN: usize = 8;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = COUNTER_LEN + TAG_LEN;
/// Largest plaintext one frame may carry (64 KiB). Terminal traffic is small;
/// the cap bounds per-frame memory on both ends and on relays.
pub const MAX_FRAME_PLAINTEXT_LEN: usize = 64 * 1024;
/// Largest frame on the wire; anything longer is rejected unread.
pub const MAX_FRAME_LEN: usize = MAX_FRAME_PLAINTEXT_LEN + FRAME_OVERHEAD;
/// Highest counter a sealer will use. `u64::MAX` itself is never sent, so
/// the sealer fails before any wrap could happen.
pub const MAX_COUNTER: u64 = u64::MAX - 1;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;

/// Which way a frame travels; part of the AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// Viewer to agent (input, resize, …).
    OperatorToAgent = 0x01,
    /// Agent to viewer (output, exit, …).
    AgentToOperator = 0x02,
}

impl Direction {
    /// The byte placed after the session id in the AAD.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// Frame errors. Any of them should close the session (SPEC §5.6).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Frame longer than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge {
        /// Received length.
        len: usize,
    },
    /// Plaintext longer than [`MAX_FRAME_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes exceeds the {MAX_FRAME_PLAINTEXT_LEN}-byte limit")]
    PlaintextTooLarge {
        /// Offered length.
        len: usize,
    },
    /// Frame shorter than counter + tag.
    #[error("frame of {len} bytes is shorter than the {FRAME_OVERHEAD}-byte minimum")]
    Truncated {
        /// Received length.
        len: usize,
    },
    /// Counter not greater than the last accepted one.
    #[error("frame counter {counter} replayed or reordered (last accepted {last})")]
    Replayed {
        /// Counter in the frame.
        counter: u64,
        /// Last counter accepted.
        last: u64,
    },
    /// The sealer reached [`MAX_COUNTER`]: rekey or close the session.
    #[error("frame counter exhausted; the session must be rekeyed or closed")]
    CounterExhausted,
    /// Tag check failed (wrong key, direction, session or tampered bytes).
    #[error("frame failed authentication")]
    Authentication,
}

fn nonce_for(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

fn aad_for(session_id: &str, direction: Direction) -> Vec<u8> {
    let mut aad = Vec::with_capacity(session_id.len() + 1);
    aad.extend_from_slice(session_id.as_bytes());
    aad.push(direction.as_byte());
    aad
}

/// Seals frames for one direction. Not `Clone`: two sealers with one key
/// would reuse nonces.
pub struct FrameSealer {
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    direction: Direction,
    next: u64,
}

impl FrameSealer {
    pub(crate) fn new(
        key: &[u8; 32],
        session_id: &str,
        direction: Direction,
        start_counter: u64,
    ) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            aad: aad_for(session_id, direction),
            direction,
            next: start_counter,
        }
    }

    /// Seals `plaintext` into a new frame and advances the counter.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.seal_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`FrameSealer::seal`], appending the frame to `out` so callers
    /// can reuse a buffer.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if plaintext.len() > MAX_FRAME_PLAINTEXT_LEN {
            return Err(FrameError::PlaintextTooLarge {
                len: plaintext.len(),
            });
        }
        let counter = self.next;
        if counter > MAX_COUNTER {
            return Err(FrameError::CounterExhausted);
        }
        let start = out.len();
        out.reserve(plaintext.len() + FRAME_OVERHEAD);
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(plaintext);
        let body = &mut out[start + COUNTER_LEN..];
        let tag =
            match self
                .cipher
                .encrypt_inout_detached(&nonce_for(counter), &self.aad, body.into())
            {
                Ok(tag) => tag,
                Err(_) => {
                    out.truncate(start);
                    return Err(FrameError::Authentication);
                }
            };
        out.extend_from_slice(&tag);
        self.next = counter + 1;
        Ok(())
    }

    /// The counter the next frame will carry.
    pub fn next_counter(&self) -> u64 {
        self.next
    }

    /// The direction this sealer writes.
    pub fn direction(&self) -> Direction {
        self.direction
    }
}

impl fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSealer")
            .field("direction", &self.direction)
            .field("next_counter", &self.next)
            .finish_non_exhaustive()
    }
}

/// Opens frames for one direction, enforcing strictly increasing counters.
pub struct FrameOpener {
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    direction: Direction,
    last: Option<u64>,
}

impl FrameOpener {
    pub(crate) fn new(key: &[u8; 32], session_id: &str, direction: Direction) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            aad: aad_for(session_id, direction),
            direction,
            last: None,
        }
    }

    /// Authenticates and decrypts one frame.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        // Bounds first: nothing is allocated or decrypted for an oversize
        // or runt frame.
        if frame.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len: frame.len() });
        }
        if frame.len() < FRAME_OVERHEAD {
            return Err(FrameError::Truncated { len: frame.len() });
        }
        let (counter_bytes, rest) = frame.split_at(COUNTER_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut cb = [0u8; COUNTER_LEN];
        cb.copy_from_slice(counter_bytes);
        let counter = u64::from_be_bytes(cb);
        // Cheap replay/reorder check before the tag check; a forged high
        // counter still has to authenticate before it moves `last`.
        if let Some(last) = self.last
            && counter <= last
        {
            return Err(FrameError::Replayed { counter, last });
        }
        let tag = Tag::<aes_gcm::aead::consts::U16>::try_from(tag)
            .map_err(|_| FrameError::Truncated { len: frame.len() })?;
        let mut plaintext = vec![0u8; ciphertext.len()];
        let buf =
            InOutBuf::new(ciphertext, &mut plaintext).map_err(|_| FrameError::Authentication)?;
        self.cipher
            .decrypt_inout_detached(&nonce_for(counter), &self.aad, buf, &tag)
            .map_err(|_| FrameError::Authentication)?;
        self.last = Some(counter);
        Ok(plaintext)
    }

    /// The last accepted counter, if any frame was accepted.
    pub fn last_counter(&self) -> Option<u64> {
        self.last
    }

    /// The direction this opener reads.
    pub fn direction(&self) -> Direction {
        self.direction
    }
}

impl fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameOpener")
            .field("direction", &self.direction)
            .field("last_counter", &self.last)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
