//! OperatorService recording settings: the team's recording mode (off, on, required) and the
//! age X25519 recipients agents encrypt recordings to. Get: operator and up. Put: admin,
//! device proof, compare-and-swap on the version, audited. Session negotiation reads the
//! settings in force ([`Rendezvous::recording_config`]) for every offer.

use std::collections::HashSet;

use tonic::Request;
use tucdesk_proto::v1::{
    GetRecordingSettingsRequest, PutRecordingSettingsRequest, RecordingConfig, RecordingMode,
    RecordingRecipient, RecordingSettings,
};
use tucdesk_svc::sql::now_ms;
use tucdesk_token::Role;

use crate::agents_api::ADMINS;
use crate::caller::ProofScope;
use crate::error::RendezvousError;
use crate::service::Rendezvous;
use crate::sessions::user_event;
use crate::store::recording::{self, SettingsRow, StoredRecipient};
use crate::store::timestamp;

pub use tucdesk_crypto::proof_scopes::{
    PUT_RECORDING_SETTINGS as PUT_METHOD, PUT_RECORDING_SETTINGS_TARGET as PUT_TARGET,
    put_recording_settings_binding as put_binding,
};

/// Roles that may read the settings (operators see whether their sessions are recorded).
const READERS: &[Role] = &[Role::Owner, Role::Admin, Role::Operator, Role::Auditor];

/// Most recipients per team (RecordingConfig allows 16).
pub const MAX_RECIPIENTS: usize = 16;
/// Longest recipient string and label, in bytes.
pub const MAX_RECIPIENT_LEN: usize = 128;
pub const MAX_LABEL_LEN: usize = 128;

/// The bech32 alphabet (BIP 173), which age recipients use.
const BECH32_CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Whether `recipient` is a well-formed age X25519 recipient: `age1` + bech32 data carrying
/// 32 bytes, valid checksum, lower case. Catches typos and pasted identities (secret keys
/// start with `AGE-SECRET-KEY-1` and are refused here, so one never gets stored).
pub fn check_recipient(recipient: &str) -> Result<(), String> {
    if recipient.len() > MAX_RECIPIENT_LEN {
        return Err(format!(
            "a recipient is longer than {MAX_RECIPIENT_LEN} bytes"
        ));
    }
    if recipient
        .to_ascii_uppercase()
        .starts_with("AGE-SECRET-KEY-")
    {
        return Err(
            "that is an age identity (secret key), not a recipient: give its public \"age1…\" line"
                .into(),
        );
    }
    let Some(data) = recipient.strip_prefix("age1") else {
        return Err(format!(
            "{recipient:?} is not an age X25519 recipient (they start with \"age1\")"
        ));
    };
    let mut values = Vec::with_capacity(data.len());
    for byte in data.bytes() {
        let value = BECH32_CHARSET
            .iter()
            .position(|&c| c == byte)
            .ok_or_else(|| format!("{recipient:?} has a character outside bech32"))?;
        values.push(value as u8);
    }
    // 32 bytes = 52 five-bit groups, plus the 6-group checksum.
    if values.len() != 52 + 6 {
        return Err(format!("{recipient:?} does not carry a 32-byte X25519 key"));
    }
    if bech32_polymod(b"age", &values) != 1 {
        return Err(format!("{recipient:?} has a bad checksum (a typo?)"));
    }
    Ok(())
}

/// The BIP 173 checksum over the human-readable part and the data (1 when valid).
fn bech32_polymod(hrp: &[u8], data: &[u8]) -> u32 {
    const GENERATOR: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let expanded = hrp
        .iter()
        .map(|c| c >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.iter().map(|c| c & 31))
        .chain(data.iter().copied());
    let mut checksum: u32 = 1;
    for value in expanded {
        let top = checksum >> 25;
        checksum = ((checksum & 0x01ff_ffff) << 5) ^ u32::from(value);
        for (bit, generator) in GENERATOR.iter().enumerate() {
            if (top >> bit) & 1 == 1 {
                checksum ^= generator;
            }
        }
    }
    checksum
}

fn check_request(body: &PutRecordingSettingsRequest) -> Result<RecordingMode, RendezvousError> {
    let invalid = |message: String| RendezvousError::InvalidArgument(message);
    let mode = match RecordingMode::try_from(body.mode) {
        Ok(mode @ (RecordingMode::Off | RecordingMode::On | RecordingMode::Required)) => mode,
        _ => return Err(invalid("mode must be off, on or required".into())),
    };
    if body.recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "at most {MAX_RECIPIENTS} recording recipients"
        )));
    }
    let mut seen = HashSet::new();
    for entry in &body.recipients {
        check_recipient(&entry.recipient).map_err(invalid)?;
        if entry.label.len() > MAX_LABEL_LEN || entry.label.chars().any(char::is_control) {
            return Err(invalid(format!(
                "a recipient label is longer than {MAX_LABEL_LEN} bytes or has control characters"
            )));
        }
        if !seen.insert(entry.recipient.as_str()) {
            return Err(invalid(format!("{} is listed twice", entry.recipient)));
        }
    }
    if mode == RecordingMode::Required && body.recipients.is_empty() {
        return Err(invalid(
            "recording cannot be required without a recipient: every session would be refused"
                .into(),
        ));
    }
    Ok(mode)
}

fn to_wire(row: Option<&SettingsRow>) -> Result<RecordingSettings, RendezvousError> {
    let Some(row) = row else {
        return Ok(RecordingSettings {
            mode: RecordingMode::Off as i32,
            ..RecordingSettings::default()
        });
    };
    Ok(RecordingSettings {
        mode: row.mode,
        recipients: row
            .recipients()?
            .into_iter()
            .map(|r| RecordingRecipient {
                recipient: r.recipient,
                label: r.label,
            })
            .collect(),
        version: u64::try_from(row.version).unwrap_or(0),
        updated_at: Some(timestamp(row.updated_at_ms)),
        updated_by: row.updated_by.clone(),
    })
}

impl Rendezvous {
    pub async fn get_recording_settings(
        &self,
        request: &Request<GetRecordingSettingsRequest>,
    ) -> Result<RecordingSettings, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(READERS)?;
        to_wire(
            recording::current(self.db(), caller.team_id())
                .await?
                .as_ref(),
        )
    }

    pub async fn put_recording_settings(
        &self,
        request: &Request<PutRecordingSettingsRequest>,
    ) -> Result<RecordingSettings, RendezvousError> {
        let body = request.get_ref();
        let mode = check_request(body)?;
        let recipients: Vec<String> = body
            .recipients
            .iter()
            .map(|r| r.recipient.clone())
            .collect();
        let labels: Vec<String> = body.recipients.iter().map(|r| r.label.clone()).collect();
        let binding = put_binding(body.expected_version, body.mode, &recipients, &labels);
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: PUT_METHOD,
                    target: PUT_TARGET,
                    session_id: "",
                    binding: &binding,
                },
            )
            .await?;
        caller.require(ADMINS)?;

        let mut tx = self.db().begin().await?;
        let previous = recording::current_in(&mut tx, caller.team_id()).await?;
        let current = previous.as_ref().map_or(0, |row| row.version);
        let current_u64 = u64::try_from(current).unwrap_or(0);
        if current_u64 != body.expected_version {
            return Err(RendezvousError::VersionConflict {
                current: current_u64,
            });
        }
        let stored: Vec<StoredRecipient> = body
            .recipients
            .iter()
            .map(|r| StoredRecipient {
                recipient: r.recipient.clone(),
                label: r.label.clone(),
            })
            .collect();
        let row = SettingsRow {
            team_id: caller.team_id().to_owned(),
            version: current + 1,
            mode: mode as i32,
            recipients_json: serde_json::to_string(&stored)
                .map_err(|err| RendezvousError::internal("encoding recording recipients", err))?,
            updated_at_ms: now_ms(),
            updated_by: caller.user_id().to_owned(),
        };
        if !recording::insert(&mut tx, &row).await? {
            return Err(RendezvousError::VersionConflict {
                current: current_u64 + 1,
            });
        }
        let before: HashSet<String> = match &previous {
            Some(row) => row.recipients()?.into_iter().map(|r| r.recipient).collect(),
            None => HashSet::new(),
        };
        let after: HashSet<String> = recipients.iter().cloned().collect();
        let mut added: Vec<String> = after.difference(&before).cloned().collect();
        let mut removed: Vec<String> = before.difference(&after).cloned().collect();
        added.sort();
        removed.sort();
        let previous_mode = previous
            .as_ref()
            .map_or(RecordingMode::Off as i32, |row| row.mode);
        let record = user_event(&caller, "recording.settings.updated")
            .target("recording-settings")
            .context("outcome", "success")
            .context("settings_version", row.version)
            .context("mode", mode_name(mode as i32))
            .context("previous_mode", mode_name(previous_mode))
            .context("recipients_added", added)
            .context("recipients_removed", removed)
            .context("recipients", recipients.len());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        to_wire(Some(&row))
    }

    /// What an offer tells the agent about recording this session, from the team's settings
    /// in force; refuses the session when the team requires recording but has no recipient
    /// (settings saved before that rule, or a mode changed behind the API).
    pub(crate) async fn recording_config(
        &self,
        team_id: &str,
    ) -> Result<RecordingConfig, RendezvousError> {
        let Some(row) = recording::current(self.db(), team_id).await? else {
            return Ok(RecordingConfig {
                mode: RecordingMode::Off as i32,
                ..RecordingConfig::default()
            });
        };
        let age_recipients: Vec<String> =
            row.recipients()?.into_iter().map(|r| r.recipient).collect();
        if row.mode == RecordingMode::Required as i32 && age_recipients.is_empty() {
            return Err(RendezvousError::refused(
                tucdesk_proto::v1::RejectReason::RecordingUnavailable,
                "this team requires session recording but has no recording recipient; an admin \
                 must add one (tucdesk recordings recipients add)",
            ));
        }
        Ok(RecordingConfig {
            mode: row.mode,
            age_recipients,
            recorder_url: self.config().recorder_url.clone().unwrap_or_default(),
        })
    }
}

fn mode_name(mode: i32) -> &'static str {
    match RecordingMode::try_from(mode) {
        Ok(RecordingMode::On) => "on",
        Ok(RecordingMode::Required) => "required",
        _ => "off",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A recipient from age's own documentation set (public keys only).
    const GOOD: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn well_formed_recipients_pass_and_typos_fail() {
        check_recipient(GOOD).unwrap();
        let typo = GOOD.replace("ql3z", "ql3y");
        assert!(check_recipient(&typo).unwrap_err().contains("checksum"));
        assert!(
            check_recipient("ssh-ed25519 AAAA")
                .unwrap_err()
                .contains("age1")
        );
        assert!(check_recipient("age1qqq").unwrap_err().contains("32-byte"));
        assert!(check_recipient("age1QL3Z").is_err());
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        assert!(check_recipient(secret).unwrap_err().contains("identity"));
        assert!(check_recipient(&"a".repeat(129)).is_err());
    }

    fn request(mode: RecordingMode, recipients: &[&str]) -> PutRecordingSettingsRequest {
        PutRecordingSettingsRequest {
            mode: mode as i32,
            recipients: recipients
                .iter()
                .map(|r| RecordingRecipient {
                    recipient: (*r).to_owned(),
                    label: "security".into(),
                })
                .collect(),
            expected_version: 0,
            proof: None,
        }
    }

    #[test]
    fn requests_are_checked_before_anything_is_stored() {
        assert_eq!(
            check_request(&request(RecordingMode::On, &[GOOD])).unwrap(),
            RecordingMode::On
        );
        assert!(check_request(&request(RecordingMode::Unspecified, &[])).is_err());
        assert!(check_request(&request(RecordingMode::Required, &[])).is_err());
        assert!(check_request(&request(RecordingMode::On, &[GOOD, GOOD])).is_err());
        let mut labelled = request(RecordingMode::On, &[GOOD]);
        labelled.recipients[0].label = "a\u{1b}[2J".into();
        assert!(check_request(&labelled).is_err());
        let many: Vec<&str> = std::iter::repeat_n(GOOD, MAX_RECIPIENTS + 1).collect();
        assert!(check_request(&request(RecordingMode::On, &many)).is_err());
    }
}
