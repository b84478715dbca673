//! The output streamed in the throughput case: a file of base64 lines.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use base64::Engine as _;

/// Random bytes per line (76 base64 characters, as `base64` prints them).
const LINE_BYTES: usize = 57;
const MB: f64 = 1e6;

/// `bytes` of base64 text in 76-character lines, from a fast non-cryptographic generator
/// (nothing on either path compresses, so the content only has to be printable and free of
/// the marker).
pub fn write(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut state = u64::from(std::process::id()) << 32 | 0x9e37_79b9;
    let mut raw = [0u8; LINE_BYTES];
    let mut line = String::with_capacity(80);
    let mut written = 0u64;
    while written < bytes {
        for byte in &mut raw {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = (state >> 24) as u8;
        }
        line.clear();
        base64::engine::general_purpose::STANDARD.encode_string(raw, &mut line);
        line.push('\n');
        let take = usize::try_from(bytes - written)
            .unwrap_or(usize::MAX)
            .min(line.len());
        out.write_all(&line.as_bytes()[..take])?;
        written += take as u64;
    }
    out.flush()?;
    println!(
        "  payload: {:.0} MB of base64 lines written in {:.1} s",
        bytes as f64 / MB,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
