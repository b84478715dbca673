//! `known_agents`: the agent keys this viewer has seen, like ssh's `known_hosts` (SPEC §2).
//! A lying rendezvous could answer "web-1" with a key of its own; the pin makes that a hard
//! error naming both fingerprints, and the session handshake is verified with the pinned key,
//! never with one the server sent alone.
//!
//! Format: one pin per line, `<team_id> <name> <agent_id>`; `#` starts a comment.

use std::path::PathBuf;

use tucdesk_crypto::PublicKey;

use crate::config::{ConfigError, io_err, write_private};

/// Largest known_agents file read.
const MAX_PINS_FILE_LEN: u64 = 4 * 1024 * 1024;

/// What the pin file says about an agent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// Pinned to this key.
    Match,
    /// Never seen.
    Unknown,
    /// Pinned to another key.
    Changed { pinned: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "THE KEY OF AGENT {name:?} HAS CHANGED.\n  pinned:  {pinned}\n  offered: {offered}\n\
         Someone may be impersonating the agent, or it was reinstalled. If you know it was \
         reinstalled, remove its line from {file} and connect again."
    )]
    Changed {
        name: String,
        pinned: String,
        offered: String,
        file: String,
    },
    #[error(
        "agent {name:?} is not in known_agents yet (fingerprint {fingerprint}); compare the \
         fingerprint with `tucdesk-agent fingerprint` on the host, then connect with \
         --accept-new"
    )]
    NotConfirmed { name: String, fingerprint: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The pin file.
#[derive(Debug, Clone)]
pub struct KnownAgents {
    path: PathBuf,
}

fn fingerprint_of(agent_id: &str) -> String {
    PublicKey::from_agent_id(agent_id)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| format!("(invalid key {agent_id})"))
}

impl KnownAgents {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn read(&self) -> Result<String, ConfigError> {
        if !self.path.exists() {
            return Ok(String::new());
        }
        let len = std::fs::metadata(&self.path)
            .map_err(io_err(&self.path))?
            .len();
        if len > MAX_PINS_FILE_LEN {
            return Err(ConfigError::Corrupt(
                self.path.display().to_string(),
                "too large".into(),
            ));
        }
        std::fs::read_to_string(&self.path).map_err(io_err(&self.path))
    }

    /// What the file says about `name` in `team_id` for key `agent_id`.
    pub fn check(
        &self,
        team_id: &str,
        name: &str,
        agent_id: &str,
    ) -> Result<PinCheck, ConfigError> {
        let text = self.read()?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut fields = line.split_whitespace();
            if let (Some(team), Some(pinned_name), Some(pinned_key)) =
                (fields.next(), fields.next(), fields.next())
                && team == team_id
                && pinned_name == name
            {
                return Ok(if pinned_key == agent_id {
                    PinCheck::Match
                } else {
                    PinCheck::Changed {
                        pinned: pinned_key.to_owned(),
                    }
                });
            }
        }
        Ok(PinCheck::Unknown)
    }

    /// Adds a pin (names are one token: whitespace is not allowed in agent names' pins).
    pub fn add(&self, team_id: &str, name: &str, agent_id: &str) -> Result<(), ConfigError> {
        let mut text = self.read()?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{team_id} {} {agent_id} # {}\n",
            pin_name(name),
            fingerprint_of(agent_id)
        ));
        write_private(&self.path, text.as_bytes())
    }

    /// Checks `name` → `agent_id`: a match passes, a changed key is a hard error, an unknown
    /// one is pinned when `accept_new` (or `confirm` says yes), refused otherwise.
    pub fn verify(
        &self,
        team_id: &str,
        name: &str,
        agent_id: &str,
        accept_new: bool,
        confirm: impl FnOnce(&str) -> bool,
    ) -> Result<bool, PinError> {
        let name = pin_name(name);
        match self.check(team_id, &name, agent_id)? {
            PinCheck::Match => Ok(false),
            PinCheck::Changed { pinned } => Err(PinError::Changed {
                name,
                pinned: fingerprint_of(&pinned),
                offered: fingerprint_of(agent_id),
                file: self.path.display().to_string(),
            }),
            PinCheck::Unknown => {
                let fingerprint = fingerprint_of(agent_id);
                if accept_new || confirm(&fingerprint) {
                    self.add(team_id, &name, agent_id)?;
                    Ok(true)
                } else {
                    Err(PinError::NotConfirmed { name, fingerprint })
                }
            }
        }
    }
}

/// Agent names may contain spaces; pins store them with spaces replaced.
fn pin_name(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join("_")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key() -> String {
        tucdesk_crypto::Identity::generate().unwrap().agent_id()
    }

    #[test]
    fn first_use_pins_and_a_changed_key_is_refused_naming_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let pins = KnownAgents::new(dir.path().join("known_agents"));
        let (real, fake) = (key(), key());
        assert!(matches!(
            pins.verify("team", "web 1", &real, false, |_| false),
            Err(PinError::NotConfirmed { .. })
        ));
        assert!(
            pins.verify("team", "web 1", &real, true, |_| false)
                .unwrap()
        );
        assert!(
            !pins
                .verify("team", "web 1", &real, false, |_| false)
                .unwrap()
        );
        let err = pins
            .verify("team", "web 1", &fake, true, |_| true)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&fingerprint_of(&real)), "{text}");
        assert!(text.contains(&fingerprint_of(&fake)), "{text}");
        // Another team's agent of the same name is a different pin.
        assert!(
            pins.verify("other", "web 1", &fake, true, |_| false)
                .unwrap()
        );
    }
}
