//! The OpenSSH side: a throwaway `sshd` on a free loopback port, with a host key and a user
//! key made for this run (the user key is the only authorized one), and `ssh -tt` as the
//! client. The bench needs the Debian packages `openssh-server` and `openssh-client`; CI does
//! not run it, so nothing installs them for it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpStream;

use super::output;
use crate::child::{Background, free_port};

/// Where Debian installs the server (it must be started by its absolute path).
const SSHD: &str = "/usr/sbin/sshd";
/// What to run when OpenSSH is missing.
const INSTALL_HINT: &str = "apt-get install openssh-server openssh-client";
/// How long `sshd` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between connection attempts while `sshd` starts.
const START_POLL: Duration = Duration::from_millis(50);
/// How long `ssh-keygen`, `id` and `sshd -t` may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The OpenSSH programs this run uses.
#[derive(Debug, Clone)]
pub struct Tools {
    ssh: PathBuf,
    keygen: PathBuf,
}

impl Tools {
    /// Finds `sshd`, `ssh` and `ssh-keygen`, or says how to install them.
    pub fn find() -> anyhow::Result<Self> {
        let missing = |what: &str| {
            anyhow::anyhow!(
                "{what} not found: this benchmark compares against OpenSSH on loopback; install \
                 it with `{INSTALL_HINT}` (as root)"
            )
        };
        if !Path::new(SSHD).is_file() {
            return Err(missing(SSHD));
        }
        Ok(Self {
            ssh: in_path("ssh").ok_or_else(|| missing("ssh"))?,
            keygen: in_path("ssh-keygen").ok_or_else(|| missing("ssh-keygen"))?,
        })
    }
}

fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A running throwaway `sshd`; killed on drop (the connections' own `sshd` processes end with
/// their clients).
#[derive(Debug)]
pub struct OpenSsh {
    sshd: Background,
    tools: Tools,
    user_key: PathBuf,
    user: String,
    pub port: u16,
}

impl OpenSsh {
    /// Makes the keys and the configuration in `dir` and starts `sshd` on 127.0.0.1. With
    /// `home`, sessions get `HOME` set to it (so the login shell reads no rc file of the user).
    pub async fn start(tools: &Tools, dir: &Path, home: Option<&Path>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host_key = dir.join("host_ed25519");
        let user_key = dir.join("user_ed25519");
        keygen(tools, &host_key).await?;
        keygen(tools, &user_key).await?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(user_key.with_extension("pub"), &authorized)
            .context("writing authorized_keys")?;
        let mut id = tokio::process::Command::new("id");
        id.arg("-un");
        let user = output(id, "id -un", None, TOOL_TIMEOUT)
            .await?
            .trim()
            .to_owned();
        let port = free_port()?.port();
        let config = dir.join("sshd_config");
        let mut text = sshd_config(port, &host_key, &authorized, &dir.join("sshd.pid"));
        if let Some(home) = home {
            text.push_str(&format!("SetEnv HOME={}\n", home.display()));
        }
        std::fs::write(&config, text).context("writing sshd_config")?;
        // `sshd -t` says what is wrong with the setup (e.g. a missing privilege-separation
        // directory when run as root) before anything is started.
        let mut check = tokio::process::Command::new(SSHD);
        check.arg("-t").arg("-f").arg(&config);
        output(
            check,
            "sshd -t (checking the throwaway configuration)",
            None,
            TOOL_TIMEOUT,
        )
        .await
        .map_err(|err| {
            if format!("{err:#}").contains("privilege separation") {
                err.context(
                    "sshd run as root needs its privilege-separation directory: `mkdir -p \
                         -m 0755 /run/sshd` (systemd makes it when the ssh service runs; a \
                         container may not have it)",
                )
            } else {
                err
            }
        })?;
        let mut command = Command::new(SSHD);
        command.args(["-D", "-e", "-f"]).arg(&config);
        let mut sshd = Background::spawn("sshd", command, &dir.join("sshd.log"))?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            sshd.check_alive()?;
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "sshd was not listening on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}",
                    sshd.log_tail()
                );
            }
            tokio::time::sleep(START_POLL).await;
        }
        Ok(Self {
            sshd,
            tools: tools.clone(),
            user_key,
            user,
            port,
        })
    }

    /// `ssh -tt` to this server as the current user, with nothing from the user's own
    /// configuration, agent or known hosts.
    pub fn client(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.tools.ssh);
        command
            .args(["-tt", "-F", "/dev/null", "-i"])
            .arg(&self.user_key)
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user))
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    /// The `sshd` processes serving connections (below the listener), for CPU accounting.
    pub fn connection_pids(&mut self) -> anyhow::Result<Vec<u32>> {
        self.sshd.check_alive()?;
        crate::probe::descendants_named(self.sshd.pid, "sshd")
    }
}

/// Loopback only, public-key login with the run's user key only, no PAM, no banner or motd
/// (so that the first byte a client sees is the shell's, as with TucDesk).
fn sshd_config(port: u16, host_key: &Path, authorized: &Path, pid_file: &Path) -> String {
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {}\n\
         PidFile {}\n\
         AuthorizedKeysFile {}\n\
         StrictModes no\n\
         UsePAM no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         X11Forwarding no\n\
         LogLevel INFO\n",
        host_key.display(),
        pid_file.display(),
        authorized.display()
    )
}

async fn keygen(tools: &Tools, path: &Path) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::new(&tools.keygen);
    command
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tucdesk-bench", "-f"])
        .arg(path);
    output(command, "ssh-keygen", None, TOOL_TIMEOUT)
        .await
        .map(drop)
}
