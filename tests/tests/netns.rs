//! Path selection across real NATs: a small Internet in network namespaces
//! (`tests/netns/topology.sh`), `tucdesk-standalone --turn` on its public subnet, the real
//! agent behind one NAT router and the real viewer behind another, and `tucdesk exec
//! --verbose` through each kind of NAT:
//!
//! | agent's NAT | viewer's NAT | path |
//! |---|---|---|
//! | endpoint-independent (MASQUERADE) | the same | direct (peer to peer) |
//! | symmetric (MASQUERADE --random-fully) | port-restricted (MASQUERADE) | TURN relay |
//! | UDP dropped | UDP dropped | WebSocket relay |
//!
//! Needs root, `ip` (iproute2), `iptables`, `turnserver` (coturn) and `openssl`; fails (never
//! skips) without them. Every namespace, interface and rule is made for this run and deleted
//! by a guard, also when the test panics; the namespaces have no link to the host, so no
//! packet leaves them. See docs/networking.md, "Testing NAT traversal".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_e2e-tucdesk-agent");
const VIEWER_BIN: &str = env!("CARGO_BIN_EXE_e2e-tucdesk");
const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/netns/topology.sh");

/// The server's address on the namespaces' "public" subnet (TEST-NET-3, namespaces only).
const PUBLIC_IP: &str = "203.0.113.1";
/// The agent's and the viewer's LAN addresses (ICE binds them only).
const AGENT_ICE_BIND: &str = "10.0.1.2:0";
const VIEWER_ICE_BIND: &str = "10.0.2.2:0";
/// tucdesk-standalone's base port inside the public namespace (its own network stack, so
/// the defaults cannot clash with anything): auth 7401, rendezvous 7410, relay 7420/7421,
/// coturn 7478/udp. The LANs forward these loopback TCP ports to the server.
const BASE_PORT: u16 = 7400;
const FORWARDED_PORTS: &str = "7400:7499";
/// The direct/TURN attempt's deadline on both sides before the WebSocket relay is used.
const P2P_TIMEOUT_SECS: &str = "6";
/// Bound on building tucdesk-standalone (a cold build on a busy 2-core machine).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Bound on the stack's start, an agent coming online, one short command.
const WAIT: Duration = Duration::from_secs(60);
/// Bound on one `tucdesk exec` (the WebSocket case waits out the P2P deadline first).
const EXEC_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);
/// How long the processes get to stop on SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_NAME: &str = "netns-agent";
const EMAIL: &str = "admin@tucdesk.local";
const PASSWORD: &str = "netns correct horse battery staple";

/// Runs `command` to completion within `timeout` (killed after it), capturing its output.
fn run_bounded(command: &mut Command, timeout: Duration, input: &[u8]) -> Output {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {described}: {err}"));
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("{described} did not finish within {timeout:?}; stderr:\n{err}");
        }
        std::thread::sleep(POLL);
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails with the install command when a tool is missing (this test never skips).
fn require_tools() {
    let tools: [(&str, &[&str], &str); 4] = [
        ("ip", &["-V"], "iproute2"),
        ("iptables", &["--version"], "iptables"),
        ("turnserver", &["--version"], "coturn"),
        ("openssl", &["version"], "openssl"),
    ];
    for (tool, args, package) in tools {
        let found = Command::new(tool)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "the netns test needs `{tool}`: apt-get install {package} (run as root)"
        );
    }
    let uid = run_bounded(Command::new("id").arg("-u"), WAIT, b"");
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "the netns test creates network namespaces: run it as root"
    );
}

/// `tucdesk-standalone`, built now (its binary is not one of this package's, so cargo does
/// not build it for this test; building here keeps it in step with the sources).
fn standalone_binary() -> PathBuf {
    let profile_dir = Path::new(VIEWER_BIN).parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--quiet", "-p", "tucdesk-standalone", "--bin"])
        .arg("tucdesk-standalone");
    // What cargo set for this test process: build scripts (ring's) track e.g.
    // CARGO_MANIFEST_DIR, so passing them on would rebuild half the tree on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_tests = ["CARGO_PKG_", "CARGO_BIN_", "CARGO_MANIFEST_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref());
        if set_for_tests {
            build.env_remove(key.as_ref());
        }
    }
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let out = run_bounded(&mut build, BUILD_TIMEOUT, b"");
    assert!(
        out.status.success(),
        "cargo build -p tucdesk-standalone failed:\n{}",
        text(&out.stderr)
    );
    let binary = profile_dir.join("tucdesk-standalone");
    assert!(
        binary.exists(),
        "{} missing after the build",
        binary.display()
    );
    binary
}

/// The namespaces and the processes in them; Drop kills the processes, then deletes every
/// namespace (with its interfaces and rules), also when the test panics.
struct Topology {
    id: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        // SIGTERM first: tucdesk-standalone stops its coturn on the way out.
        for child in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then every namespace goes, with anything still running in it.
        let _ = Command::new("bash")
            .args([TOPOLOGY, "down", &self.id])
            .stdin(Stdio::null())
            .status();
    }
}

impl Topology {
    fn up() -> Self {
        let id = format!("td{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let topology = Self {
            id,
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let out = run_bounded(
            Command::new("bash").args([TOPOLOGY, "up", &topology.id, FORWARDED_PORTS]),
            WAIT,
            b"",
        );
        assert!(
            out.status.success(),
            "topology.sh up failed:\n{}",
            text(&out.stderr)
        );
        topology
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program ARGS` inside namespace `ns`.
    fn command(&self, ns: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(ns)])
            .arg(program)
            .env_remove("TUCDESK_PATH")
            .env_remove("TUCDESK_PASSWORD")
            .env("NO_COLOR", "1");
        command
    }

    fn nat(&self, side: &str, mode: &str) {
        let out = run_bounded(
            Command::new("bash").args([TOPOLOGY, "nat", &self.id, side, mode]),
            WAIT,
            b"",
        );
        assert!(
            out.status.success(),
            "topology.sh nat {side} {mode}:\n{}",
            text(&out.stderr)
        );
    }

    /// Starts a long-running process with its output in files; killed by Drop.
    fn spawn(&mut self, mut command: Command, log: &str) {
        let stdout = std::fs::File::create(self.path(&format!("{log}.out"))).unwrap();
        let stderr = std::fs::File::create(self.path(&format!("{log}.log"))).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `tucdesk ARGS` in the viewer's LAN.
    fn viewer(&self, args: &[&str], input: &[u8], timeout: Duration) -> Output {
        let mut command = self.command("lanb", Path::new(VIEWER_BIN));
        command
            .args(args)
            .env("TUCDESK_CONFIG_DIR", self.path("viewer"))
            .env("TUCDESK_ICE_BIND", VIEWER_ICE_BIND)
            .env("TUCDESK_P2P_TIMEOUT_SECS", P2P_TIMEOUT_SECS)
            .env("TUCDESK_RELAY_CA_FILE", self.path("cert.pem"));
        run_bounded(&mut command, timeout, input)
    }
}

/// Waits (bounded) until `ready` holds.
fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(POLL);
    }
}

/// A throwaway certificate for the relay's `wss://` listener on the public address (the
/// stack refuses plain WebSockets off loopback).
fn certificate(topology: &Topology) {
    let out = run_bounded(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .arg("-keyout")
            .arg(topology.path("key.pem"))
            .arg("-out")
            .arg(topology.path("cert.pem"))
            .args(["-subj", &format!("/CN={PUBLIC_IP}")])
            .args(["-addext", &format!("subjectAltName=IP:{PUBLIC_IP}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]),
        WAIT,
        b"",
    );
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
}

/// `tucdesk-standalone --turn` on the public address; waits for its first-start token.
fn start_server(topology: &mut Topology, binary: &Path) -> String {
    let mut server = topology.command("pub", binary);
    server
        .arg("--data-dir")
        .arg(topology.path("data"))
        .args(["--host", PUBLIC_IP, "--base-port", &BASE_PORT.to_string()])
        .arg("--relay-tls-cert")
        .arg(topology.path("cert.pem"))
        .arg("--relay-tls-key")
        .arg(topology.path("key.pem"))
        // coturn's deny list stays as it is: it only ever sees the NAT routers' public
        // addresses as peers.
        .arg("--turn")
        .env("RUST_LOG", "info");
    topology.spawn(server, "standalone");
    let token_file = topology.path("data/setup-token");
    wait_until("tucdesk-standalone bootstrapping", WAIT, || {
        let exited = topology.children[0].try_wait().unwrap();
        assert!(
            exited.is_none(),
            "tucdesk-standalone exited ({exited:?}):\n{}",
            topology.read("standalone.log")
        );
        token_file.exists()
            && topology
                .read("standalone.out")
                .contains("TURN (udp, coturn)")
    });
    let summary = topology.read("standalone.out");
    assert!(
        summary.contains(&format!(
            "turn:{PUBLIC_IP}:{}?transport=udp",
            BASE_PORT + 78
        )),
        "{summary}"
    );
    std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_owned()
}

/// Logs the viewer in, enrolls the agent and starts it; waits until it is online.
fn enroll_and_start_agent(topology: &mut Topology, setup_token: &str) {
    let (auth, rendezvous) = (
        format!("http://127.0.0.1:{}", BASE_PORT + 1),
        format!("http://127.0.0.1:{}", BASE_PORT + 10),
    );
    let login = topology.viewer(
        &[
            "login",
            "--auth",
            &auth,
            "--rendezvous",
            &rendezvous,
            "--email",
            EMAIL,
            "--setup-token",
            setup_token,
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
        WAIT,
    );
    assert!(login.status.success(), "login: {}", text(&login.stderr));
    let token = topology.viewer(&["enroll-token", "create"], b"", WAIT);
    assert!(
        token.status.success(),
        "enroll-token: {}",
        text(&token.stderr)
    );
    let token = text(&token.stdout).trim().to_owned();

    let state = topology.path("agent");
    let mut enroll = topology.command("lana", Path::new(AGENT_BIN));
    enroll
        .arg("--state-dir")
        .arg(&state)
        .args(["enroll", "--server", &rendezvous, "--token", &token])
        .args(["--name", AGENT_NAME]);
    let out = run_bounded(&mut enroll, WAIT, b"");
    assert!(out.status.success(), "agent enroll: {}", text(&out.stderr));

    let mut run = topology.command("lana", Path::new(AGENT_BIN));
    run.arg("--state-dir")
        .arg(&state)
        .arg("run")
        .env("RUST_LOG", "info")
        .env("TUCDESK_ICE_BIND", AGENT_ICE_BIND)
        .env("TUCDESK_P2P_TIMEOUT_SECS", P2P_TIMEOUT_SECS)
        // The agent trusts the platform roots for wss://; rustls-native-certs reads this.
        .env("SSL_CERT_FILE", topology.path("cert.pem"));
    topology.spawn(run, "agent");
    wait_until("the agent coming online", WAIT, || {
        let out = topology.viewer(&["agents", "--json"], b"", WAIT);
        let agents: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        agents.as_array().is_some_and(|agents| {
            agents
                .iter()
                .any(|a| a["name"] == AGENT_NAME && a["online"] == true)
        })
    });
}

/// `tucdesk exec <agent> --verbose -- echo <marker>` from the viewer's LAN: the marker comes
/// back, and the path on stderr is `expected`.
fn exec_takes_path(topology: &Topology, case: &str, expected: &str) {
    let marker = format!("netns-{case}-{}", uuid::Uuid::new_v4().simple());
    let out = topology.viewer(
        &[
            "exec",
            AGENT_NAME,
            "--accept-new",
            "--verbose",
            "--",
            "echo",
            &marker,
        ],
        b"",
        EXEC_TIMEOUT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let context = || {
        format!(
            "case {case}\nstdout:\n{stdout}\nstderr:\n{stderr}\nagent log (tail):\n{}",
            tail(&topology.read("agent.log"), 30)
        )
    };
    assert!(out.status.success(), "exec failed; {}", context());
    assert!(stdout.contains(&marker), "marker missing; {}", context());
    assert!(
        stderr.contains(&format!("via {expected}")),
        "expected the path `{expected}`; {}",
        context()
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn the_path_follows_the_nat_in_between() {
    let started = Instant::now();
    let phase = |what: &str| eprintln!("netns: {what} after {:.1?}", started.elapsed());
    require_tools();
    let standalone = standalone_binary();
    phase("tucdesk-standalone built");
    let mut topology = Topology::up();
    certificate(&topology);
    let setup_token = start_server(&mut topology, &standalone);
    phase("topology up, server started");
    enroll_and_start_agent(&mut topology, &setup_token);
    phase("agent online");

    // (a) Endpoint-independent NATs on both sides: the hole punch works.
    topology.nat("a", "cone");
    topology.nat("b", "cone");
    exec_takes_path(&topology, "cone", "direct (peer to peer)");
    phase("(a) direct");

    // (b) A symmetric NAT (a new port for every destination) in front of the agent and a
    // port-restricted one in front of the viewer: no hole punch, coturn relays.
    topology.nat("a", "symmetric");
    topology.nat("b", "cone");
    exec_takes_path(&topology, "symmetric", "TURN relay");
    phase("(b) TURN");

    // (c) No UDP out of either LAN: ICE fails at its deadline, the WebSocket relay carries it.
    topology.nat("a", "udp-blocked");
    topology.nat("b", "udp-blocked");
    exec_takes_path(&topology, "udp-blocked", "WebSocket relay");
    phase("(c) WebSocket");
    drop(topology);
    phase("cleaned up");
}
