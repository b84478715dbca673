//! Measuring without new dependencies: process memory and CPU from `/proc` (Linux), a
//! Prometheus counter over a minimal HTTP/1.1 GET, and Redis's own CPU from `INFO cpu`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`. `sysconf(_SC_CLK_TCK)` is
/// 100 on every Linux architecture we run on (the kernel's USER_HZ ABI), and reading it would
/// need `libc`; `cpu_seconds` refuses to run elsewhere than Linux.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// Largest HTTP response or Redis reply read (the rendezvous `/metrics` page is a few KiB).
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// Bound on one probe round trip over loopback.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which process to read: ours or a child's.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    Current,
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Current => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// Resident and peak resident memory, in bytes (`VmRSS`, `VmHWM` of `/proc/<pid>/status`).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

pub fn memory(proc: Proc) -> anyhow::Result<Memory> {
    let path = proc.path("status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .with_context(|| format!("{path} has no {name}"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{path}: {name} {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// User + system CPU time the process has used so far, in seconds.
pub fn cpu_seconds(proc: Proc) -> anyhow::Result<f64> {
    if !cfg!(target_os = "linux") {
        bail!("CPU accounting reads /proc/<pid>/stat and needs Linux");
    }
    let path = proc.path("stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: fields are counted
    // after its closing parenthesis, where field 3 (state) comes first.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} is not a stat line"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .with_context(|| format!("{path} is too short"))?
            .parse()
            .with_context(|| format!("{path}: field {}", index + 3))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// The processes below `pid` (children, grandchildren, …) whose command name is `name`, from
/// the parent pid of every `/proc/<pid>/stat` (processes that vanish while scanning are skipped).
pub fn descendants_named(pid: u32, name: &str) -> anyhow::Result<Vec<u32>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Some(child) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may contain spaces and parentheses.
        let (Some((_, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else {
            continue;
        };
        let comm = stat
            .get(open + 1..stat.len() - rest.len() - 1)
            .unwrap_or_default();
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid, comm == name));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid, named) in &parents {
            if ppid == parent {
                frontier.push(child);
                if named {
                    found.push(child);
                }
            }
        }
    }
    Ok(found)
}

/// Every process on the machine whose command name is `name` (processes that vanish while
/// scanning are skipped).
pub fn processes_named(name: &str) -> anyhow::Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') == name {
            found.push(pid);
        }
    }
    Ok(found)
}

/// CPU a process used over a wall-clock window.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    pub cpu: f64,
    pub wall: Duration,
}

impl CpuWindow {
    /// Percent of one core (200 % is both cores of this machine).
    pub fn percent(self) -> f64 {
        self.cpu / self.wall.as_secs_f64() * 100.0
    }
}

/// Sleeps `window` and returns the CPU `proc` used meanwhile.
pub async fn cpu_window(proc: Proc, window: Duration) -> anyhow::Result<CpuWindow> {
    let (cpu, started) = (cpu_seconds(proc)?, Instant::now());
    tokio::time::sleep(window).await;
    Ok(CpuWindow {
        cpu: cpu_seconds(proc)? - cpu,
        wall: started.elapsed(),
    })
}

/// The soft limit on open files of this process (`/proc/self/limits`), `None` if unlimited.
pub fn open_files_limit() -> anyhow::Result<Option<u64>> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .context("/proc/self/limits has no 'Max open files'")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("/proc/self/limits: no soft limit")?;
    if soft == "unlimited" {
        return Ok(None);
    }
    Ok(Some(soft.parse().context("/proc/self/limits: soft limit")?))
}

/// `GET path` over HTTP/1.1 on loopback; the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = round_trip(addr, request.as_bytes()).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path}: bad status line"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("GET {path}: chunked responses are not supported by this probe");
    }
    Ok((status, body.to_owned()))
}

/// The sum of every series of metric `name` in a Prometheus text page (the service's registry
/// adds constant labels, so even a plain counter comes as `name{service="…",…} value`).
pub fn metric(page: &str, name: &str) -> anyhow::Result<f64> {
    let mut found = None;
    for line in page.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("metric line {line:?}"))?;
        found = Some(found.unwrap_or(0.0) + value);
    }
    found.with_context(|| format!("metric {name} not found on /metrics"))
}

/// The sum of the series of metric `name` whose labels include `label` (e.g. `event="paired"`),
/// or 0 when there is none: a labelled counter only appears once one of its series was
/// incremented.
pub fn labelled_metric(page: &str, name: &str, label: &str) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for line in page.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('{'))
        else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        if !labels.split(',').any(|pair| pair.trim() == label) {
            continue;
        }
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("metric line {line:?}"))?;
        sum += value;
    }
    Ok(sum)
}

/// One metric read from the ops endpoint.
pub async fn scrape(ops: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let (status, body) = http_get(ops, "/metrics").await?;
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    metric(&body, name)
}

/// Redis's own CPU time (`used_cpu_user + used_cpu_sys` of `INFO cpu`), in seconds, or `None`
/// when the server does not answer it (a password, another protocol).
pub async fn redis_cpu_seconds(redis_url: &str) -> Option<f64> {
    let rest = redis_url
        .strip_prefix("redis://")?
        .split('/')
        .next()
        .unwrap_or_default();
    // A URL with credentials needs AUTH first; this probe does not send secrets around.
    if rest.contains('@') {
        return None;
    }
    let addr = tokio::net::lookup_host(rest).await.ok()?.next()?;
    let reply = round_trip(addr, b"INFO cpu\r\nQUIT\r\n").await.ok()?;
    let field = |name: &str| -> Option<f64> {
        reply
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("used_cpu_user:")? + field("used_cpu_sys:")?)
}

/// Writes `request`, reads until the peer closes (bounded in size and time).
async fn round_trip(addr: SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{addr} did not answer within {PROBE_TIMEOUT:?}"))?
        .with_context(|| format!("talking to {addr}"))?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_the_series_of_that_name_only() {
        let page = "# HELP x y\n# TYPE x counter\nx_total{a=\"b c\"} 3\nx_total 42\nxy_total 7\n";
        assert!((metric(page, "x_total").unwrap_or_default() - 45.0).abs() < f64::EPSILON);
        assert!(metric(page, "missing").is_err());
    }

    #[test]
    fn labelled_metric_sums_the_series_with_that_label_only() {
        let page = "# TYPE s counter\ns_total{event=\"paired\",service=\"relay\"} 5\n\
                    s_total{event=\"peer_gone\",service=\"relay\"} 3\ns_totals{event=\"paired\"} 9\n";
        let paired = labelled_metric(page, "s_total", "event=\"paired\"").unwrap_or_default();
        assert!((paired - 5.0).abs() < f64::EPSILON);
        let none = labelled_metric(page, "s_total", "event=\"idle\"").unwrap_or(-1.0);
        assert!(none.abs() < f64::EPSILON);
    }

    #[test]
    fn our_own_process_is_measurable() {
        let own = memory(Proc::Current).unwrap_or(Memory { rss: 0, peak: 0 });
        assert!(own.rss > 0 && own.peak >= own.rss);
        assert!(cpu_seconds(Proc::Current).is_ok());
    }
}
