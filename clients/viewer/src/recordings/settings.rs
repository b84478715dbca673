//! Edits of the team's recording settings (mode and age recipients), computed locally from
//! what `GetRecordingSettings` returned and sent back whole with compare-and-swap.

use tucdesk_proto::v1::{RecordingMode, RecordingRecipient, RecordingSettings};
use tucdesk_recording::keys::{self, MAX_RECIPIENTS};

/// Longest label (who holds the identity), as the server accepts it.
pub const MAX_LABEL_LEN: usize = 128;

/// Why an edit was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{recipient:?} is not a usable recipient: {reason}")]
    BadRecipient {
        recipient: String,
        reason: &'static str,
    },
    #[error("{0} is already a recipient")]
    Duplicate(String),
    #[error("{0} is not a recipient (see `tucdesk recordings recipients list`)")]
    Unknown(String),
    #[error("the team already has the maximum of {MAX_RECIPIENTS} recipients")]
    TooMany,
    #[error("the label must be at most {MAX_LABEL_LEN} bytes without control characters")]
    BadLabel,
    #[error(
        "recording is REQUIRED, which needs at least one recipient: add another recipient \
         first, or set `tucdesk recordings mode on` or `off`"
    )]
    RequiredNeedsRecipient,
    #[error("{0:?}: expected off, on or required")]
    BadMode(String),
}

/// `off`, `on` or `required`.
pub fn parse_mode(text: &str) -> Result<RecordingMode, SettingsError> {
    match text.to_ascii_lowercase().as_str() {
        "off" => Ok(RecordingMode::Off),
        "on" => Ok(RecordingMode::On),
        "required" => Ok(RecordingMode::Required),
        _ => Err(SettingsError::BadMode(text.to_owned())),
    }
}

/// The mode in words; never saved settings are `off`.
pub fn mode_name(mode: i32) -> &'static str {
    match RecordingMode::try_from(mode) {
        Ok(RecordingMode::On) => "on",
        Ok(RecordingMode::Required) => "required",
        Ok(RecordingMode::Off | RecordingMode::Unspecified) | Err(_) => "off",
    }
}

/// The stored mode as a value `PutRecordingSettings` accepts (never UNSPECIFIED).
pub fn effective_mode(settings: &RecordingSettings) -> RecordingMode {
    match RecordingMode::try_from(settings.mode) {
        Ok(RecordingMode::On) => RecordingMode::On,
        Ok(RecordingMode::Required) => RecordingMode::Required,
        _ => RecordingMode::Off,
    }
}

/// The recipients with `recipient` (checked, trimmed) added under `label`.
pub fn add_recipient(
    current: &[RecordingRecipient],
    recipient: &str,
    label: &str,
) -> Result<Vec<RecordingRecipient>, SettingsError> {
    let recipient = recipient.trim();
    keys::parse_recipient(recipient).map_err(|reason| SettingsError::BadRecipient {
        recipient: recipient.chars().take(MAX_LABEL_LEN).collect(),
        reason,
    })?;
    if label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        return Err(SettingsError::BadLabel);
    }
    if current.iter().any(|r| r.recipient == recipient) {
        return Err(SettingsError::Duplicate(recipient.to_owned()));
    }
    if current.len() >= MAX_RECIPIENTS {
        return Err(SettingsError::TooMany);
    }
    let mut next = current.to_vec();
    next.push(RecordingRecipient {
        recipient: recipient.to_owned(),
        label: label.to_owned(),
    });
    Ok(next)
}

/// The recipients without `recipient`. Refuses to remove the last one while recording is
/// required (the server would refuse too, less clearly).
pub fn remove_recipient(
    current: &[RecordingRecipient],
    mode: RecordingMode,
    recipient: &str,
) -> Result<Vec<RecordingRecipient>, SettingsError> {
    let recipient = recipient.trim();
    if !current.iter().any(|r| r.recipient == recipient) {
        return Err(SettingsError::Unknown(
            recipient.chars().take(MAX_LABEL_LEN).collect(),
        ));
    }
    let next: Vec<_> = current
        .iter()
        .filter(|r| r.recipient != recipient)
        .cloned()
        .collect();
    if next.is_empty() && mode == RecordingMode::Required {
        return Err(SettingsError::RequiredNeedsRecipient);
    }
    Ok(next)
}

/// Checks a mode change against the recipients.
pub fn check_mode(
    recipients: &[RecordingRecipient],
    mode: RecordingMode,
) -> Result<(), SettingsError> {
    if mode == RecordingMode::Required && recipients.is_empty() {
        return Err(SettingsError::RequiredNeedsRecipient);
    }
    Ok(())
}

/// The device-proof binding of a put (`tucdesk_crypto::proof_scopes`).
pub fn binding(
    expected_version: u64,
    mode: RecordingMode,
    recipients: &[RecordingRecipient],
) -> Vec<u8> {
    let (texts, labels): (Vec<String>, Vec<String>) = recipients
        .iter()
        .map(|r| (r.recipient.clone(), r.label.clone()))
        .unzip();
    tucdesk_crypto::proof_scopes::put_recording_settings_binding(
        expected_version,
        mode as i32,
        &texts,
        &labels,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn recipient() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    #[test]
    fn add_checks_the_recipient_and_refuses_duplicates() {
        let a = recipient();
        let list = add_recipient(&[], &format!(" {a}\n"), "security team").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].recipient, a);
        assert_eq!(list[0].label, "security team");
        assert_eq!(
            add_recipient(&list, &a, "again"),
            Err(SettingsError::Duplicate(a.clone()))
        );
        assert!(matches!(
            add_recipient(&list, "ssh-ed25519 AAAA", ""),
            Err(SettingsError::BadRecipient { .. })
        ));
        assert!(matches!(
            add_recipient(&list, "age1notvalid", ""),
            Err(SettingsError::BadRecipient { .. })
        ));
        assert_eq!(
            add_recipient(&list, &recipient(), "bad\nlabel"),
            Err(SettingsError::BadLabel)
        );
        let two = add_recipient(&list, &recipient(), "").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0], list[0], "the order is kept");
    }

    #[test]
    fn add_stops_at_the_maximum() {
        let mut list = Vec::new();
        for _ in 0..MAX_RECIPIENTS {
            list = add_recipient(&list, &recipient(), "").unwrap();
        }
        assert_eq!(
            add_recipient(&list, &recipient(), ""),
            Err(SettingsError::TooMany)
        );
    }

    #[test]
    fn remove_refuses_unknown_recipients_and_the_last_one_when_required() {
        let (a, b) = (recipient(), recipient());
        let list = add_recipient(&add_recipient(&[], &a, "x").unwrap(), &b, "y").unwrap();
        assert!(matches!(
            remove_recipient(&list, RecordingMode::On, "age1other"),
            Err(SettingsError::Unknown(_))
        ));
        let one = remove_recipient(&list, RecordingMode::Required, &a).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].recipient, b);
        assert_eq!(
            remove_recipient(&one, RecordingMode::Required, &b),
            Err(SettingsError::RequiredNeedsRecipient)
        );
        assert!(
            remove_recipient(&one, RecordingMode::On, &b)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn modes_parse_and_required_needs_a_recipient() {
        assert_eq!(parse_mode("ON"), Ok(RecordingMode::On));
        assert_eq!(parse_mode("off"), Ok(RecordingMode::Off));
        assert_eq!(parse_mode("required"), Ok(RecordingMode::Required));
        assert!(matches!(
            parse_mode("always"),
            Err(SettingsError::BadMode(_))
        ));
        assert_eq!(
            check_mode(&[], RecordingMode::Required),
            Err(SettingsError::RequiredNeedsRecipient)
        );
        assert!(check_mode(&[], RecordingMode::On).is_ok());
        assert_eq!(mode_name(RecordingMode::Unspecified as i32), "off");
        let never_saved = RecordingSettings::default();
        assert_eq!(effective_mode(&never_saved), RecordingMode::Off);
    }

    #[test]
    fn the_binding_covers_mode_version_and_every_recipient() {
        let list = add_recipient(&[], &recipient(), "a").unwrap();
        let base = binding(3, RecordingMode::On, &list);
        assert_ne!(base, binding(4, RecordingMode::On, &list));
        assert_ne!(base, binding(3, RecordingMode::Required, &list));
        let mut relabelled = list.clone();
        relabelled[0].label = "b".into();
        assert_ne!(base, binding(3, RecordingMode::On, &relabelled));
    }
}
