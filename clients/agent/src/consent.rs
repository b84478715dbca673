//! Attended mode: the person at the host sees who wants in and must accept before anything
//! is shown (SPEC §4). Prompts go to the controlling terminal (`/dev/tty`), one at a time.

use std::io::{BufRead as _, Read as _, Write as _};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tucdesk_proto::v1::{PrincipalKind, SessionKind};
use tucdesk_transport::ws::printable;

use crate::offer::VerifiedOffer;

/// Longest line read from the terminal.
const MAX_ANSWER_LEN: usize = 64;

/// How consent is obtained.
#[derive(Debug)]
pub enum Consent {
    /// Nobody is at the host (a service without a terminal): attended sessions are refused.
    Unavailable,
    /// Ask on the controlling terminal.
    Terminal(TerminalPrompt),
}

/// Lines typed on `/dev/tty`, read by one thread for the agent's lifetime, so a prompt that
/// timed out leaves no reader behind to swallow the next answer.
#[derive(Debug)]
pub struct TerminalPrompt {
    lines: Mutex<mpsc::Receiver<String>>,
    tty: StdMutex<std::fs::File>,
}

impl TerminalPrompt {
    /// Opens the controlling terminal; `None` when there is none.
    pub fn open() -> Option<Self> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let reader = tty.try_clone().ok()?;
        let (lines_tx, lines) = mpsc::channel(4);
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(reader);
            loop {
                let mut line = String::new();
                match (&mut reader)
                    .take(MAX_ANSWER_LEN as u64 * 4)
                    .read_line(&mut line)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if lines_tx.blocking_send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Some(Self {
            lines: Mutex::new(lines),
            tty: StdMutex::new(tty),
        })
    }

    fn say(&self, text: &str) {
        if let Ok(mut tty) = self.tty.lock() {
            let _ = tty.write_all(text.as_bytes());
            let _ = tty.flush();
        }
    }
}

/// The prompt text: everything the person needs to decide, from verified claims.
pub fn describe(offer: &VerifiedOffer) -> String {
    let operator = &offer.operator;
    let who = match PrincipalKind::try_from(operator.principal_kind) {
        Ok(PrincipalKind::Support) => "support technician",
        Ok(PrincipalKind::AiAgent) => "AI agent",
        _ => "operator",
    };
    let name = match (operator.display_name.is_empty(), operator.email.is_empty()) {
        (true, _) => printable(&operator.email),
        (false, true) => printable(&operator.display_name),
        (false, false) => format!(
            "{} <{}>",
            printable(&operator.display_name),
            printable(&operator.email)
        ),
    };
    let name = if operator.client_id.is_empty() {
        name
    } else {
        format!("{name} (code {})", printable(&operator.client_id))
    };
    let what = match (offer.kind, &offer.exec) {
        (SessionKind::Exec, Some(spec)) => {
            format!("run the command: {}", printable(&spec.argv.join(" ")))
        }
        _ => "open an interactive shell on this machine".to_owned(),
    };
    let mut text = format!(
        "\r\n=== TucDesk: a {who} asks for access ===\r\n  who:     {name}\r\n  wants:   {what}\r\n  device:  {}\r\n",
        printable(&operator.device_key_thumbprint)
    );
    if !offer.reason.is_empty() {
        text.push_str(&format!("  reason:  {}\r\n", printable(&offer.reason)));
    }
    text.push_str(&format!("  session: {}\r\n", offer.session_id));
    text
}

impl Consent {
    /// Asks for consent to `offer`, waiting at most `within`. `Err` says why not.
    pub async fn ask(&self, offer: &VerifiedOffer, within: Duration) -> Result<(), String> {
        let prompt = match self {
            Consent::Unavailable => {
                return Err(
                    "this host requires consent for every session and nobody is at its terminal"
                        .into(),
                );
            }
            Consent::Terminal(prompt) => prompt,
        };
        // One prompt at a time; stale answers typed earlier are discarded.
        let mut lines = prompt.lines.lock().await;
        while lines.try_recv().is_ok() {}
        prompt.say(&describe(offer));
        prompt.say(&format!(
            "Allow? Type 'yes' within {} s to accept, anything else refuses: ",
            within.as_secs()
        ));
        match tokio::time::timeout(within, lines.recv()).await {
            Ok(Some(answer)) if answer.trim().eq_ignore_ascii_case("yes") => {
                prompt.say("Accepted.\r\n");
                Ok(())
            }
            Ok(Some(_)) => {
                prompt.say("Refused.\r\n");
                Err("the person at the host refused".into())
            }
            Ok(None) => Err("the host's terminal closed".into()),
            Err(_) => {
                prompt.say("\r\nNo answer in time: refused.\r\n");
                Err("nobody answered at the host in time".into())
            }
        }
    }
}
