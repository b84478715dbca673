//! The figures of one client and the printed comparison: metric, tucdesk, ssh, ratio, goal,
//! met?

use std::time::Duration;

use super::client::Streamed;

/// Goal of the issue for session setup: at most half of ssh's (p50).
const GOAL_SETUP_RATIO: f64 = 0.5;
const MB: f64 = 1e6;

/// One client's figures.
#[derive(Debug, Default)]
pub struct Figures {
    pub setups: Vec<Duration>,
    /// TucDesk only: spawn to "connected" (the session is open, before the shell's output).
    pub opened: Vec<Duration>,
    pub echoes: Vec<Duration>,
    pub streams: Vec<Streamed>,
    /// CPU seconds over all streams: the client process, and each server-side part.
    pub client_cpu: f64,
    pub server_cpu: Vec<(&'static str, f64)>,
}

impl Figures {
    pub fn add_server_cpu(&mut self, part: &'static str, seconds: f64) {
        match self.server_cpu.iter_mut().find(|(name, _)| *name == part) {
            Some((_, total)) => *total += seconds,
            None => self.server_cpu.push((part, seconds)),
        }
    }

    /// MB/s of each stream of `file_bytes`, sorted.
    fn rates(&self, file_bytes: u64) -> Vec<f64> {
        let mut rates: Vec<f64> = self
            .streams
            .iter()
            .map(|s| file_bytes as f64 / MB / s.elapsed.as_secs_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    /// The median stream's MB/s (the lower middle one for an even count).
    fn rate(&self, file_bytes: u64) -> f64 {
        let rates = self.rates(file_bytes);
        rates
            .get(rates.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or_default()
    }
}

/// The `q` quantile (nearest rank below) of `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(samples: &[Duration], q: f64) -> f64 {
    quantile(samples, q).as_secs_f64() * 1e3
}

fn us(samples: &[Duration], q: f64) -> f64 {
    quantile(samples, q).as_secs_f64() * 1e6
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub fn print(client: &str, tucdesk: &Figures, ssh: &Figures, file_bytes: u64) {
    let (t, s) = (tucdesk, ssh);
    let setup = (ms(&t.setups, 0.5), ms(&s.setups, 0.5));
    let echo = (us(&t.echoes, 0.99), us(&s.echoes, 0.99));
    let rate = (t.rate(file_bytes), s.rate(file_bytes));
    let rows: [(&str, (f64, f64), &str, &str); 6] = [
        (
            "session setup p50 (ms)",
            setup,
            "≤ 0.5× ssh",
            met(setup.0 / setup.1 <= GOAL_SETUP_RATIO),
        ),
        (
            "session setup p99 (ms)",
            (ms(&t.setups, 0.99), ms(&s.setups, 0.99)),
            "—",
            "",
        ),
        (
            "keystroke echo p50 (µs)",
            (us(&t.echoes, 0.5), us(&s.echoes, 0.5)),
            "—",
            "",
        ),
        (
            "keystroke echo p90 (µs)",
            (us(&t.echoes, 0.9), us(&s.echoes, 0.9)),
            "—",
            "",
        ),
        (
            "keystroke echo p99 (µs)",
            echo,
            "≤ ssh",
            met(echo.0 <= echo.1),
        ),
        (
            "output throughput (MB/s)",
            rate,
            "≥ ssh",
            met(rate.0 >= rate.1),
        ),
    ];
    println!("results, {client} (ratio = tucdesk / ssh):");
    println!(
        "  {:<26}  {:>10}  {:>10}  {:>6}  {:<11}  met?",
        "metric", "tucdesk", "ssh", "ratio", "goal"
    );
    for (metric, (ours, theirs), goal, verdict) in rows {
        println!(
            "  {metric:<26}  {ours:>10.1}  {theirs:>10.1}  {:>6.2}  {goal:<11}  {verdict}",
            ours / theirs
        );
    }
    println!(
        "  samples per client: {} setups, {} echoes, {} streams (throughput: the median stream)",
        t.setups.len(),
        t.echoes.len(),
        t.streams.len()
    );
    if !t.opened.is_empty() {
        let opened = ms(&t.opened, 0.5);
        println!(
            "  tucdesk setup, p50: {opened:.1} ms to \"connected\" (API calls, offer and answer, \
             path, key exchange), then {:.1} ms to the first byte (shell start)",
            (setup.0 - opened).max(0.0)
        );
    }
    for (name, f) in [("tucdesk", t), ("ssh", s)] {
        let rates: Vec<String> = f
            .rates(file_bytes)
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect();
        let mb = f.streams.len() as f64 * file_bytes as f64 / MB;
        let server: Vec<String> = f
            .server_cpu
            .iter()
            .map(|(part, cpu)| format!("{:.1} ms {part}", cpu * 1e3 / mb))
            .collect();
        println!(
            "  {name} streams: {} MB/s; {} bytes on stdout per stream; CPU per MB: {:.1} ms \
             client, {}",
            rates.join(", "),
            f.streams.first().map_or(0, |s| s.stdout_bytes),
            f.client_cpu * 1e3 / mb,
            server.join(", "),
        );
    }
}
