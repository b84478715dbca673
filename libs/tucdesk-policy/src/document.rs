//! The document as written: serde types for the YAML shape only. Every field is a string or a
//! list of strings here; vocabularies, bounds and cross-field rules are checked by `compile.rs`
//! so that all semantic problems are reported together, each with its line.
//!
//! `deny_unknown_fields` everywhere: a misspelt matcher (`user:` for `users:`) would otherwise be
//! ignored and the rule would match everyone. serde's derive also refuses duplicate keys, which
//! YAML parsers commonly resolve by letting the last one win.

use serde::Deserialize;

use crate::bounded::{BoundedVec, Text, present};
use crate::limits::{MAX_LIST_ENTRIES, MAX_RULES};

/// Any list of names or patterns.
pub(crate) type TextList = BoundedVec<Text, MAX_LIST_ENTRIES>;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a policy document (a mapping with version and mode)"
)]
pub(crate) struct RawDocument {
    pub version: Text,
    pub mode: Text,
    #[serde(default, deserialize_with = "present")]
    pub approval: Option<RawApproval>,
    #[serde(default, deserialize_with = "present")]
    pub rules: Option<BoundedVec<RawRule, MAX_RULES>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an approval mapping (timeout, approvers)"
)]
pub(crate) struct RawApproval {
    #[serde(default, deserialize_with = "present")]
    pub timeout: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub approvers: Option<TextList>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rule (a mapping with name and effect)"
)]
pub(crate) struct RawRule {
    pub name: Text,
    pub effect: Text,
    #[serde(default, deserialize_with = "present")]
    pub reason: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub users: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub roles: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub principals: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub agents: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub tags: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub kinds: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub commands: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub during: Option<RawWindow>,
    #[serde(default, deserialize_with = "present")]
    pub outside: Option<RawWindow>,
    #[serde(default, deserialize_with = "present")]
    pub approvers: Option<TextList>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a time window (days, hours, timezone)"
)]
pub(crate) struct RawWindow {
    #[serde(default, deserialize_with = "present")]
    pub days: Option<TextList>,
    #[serde(default, deserialize_with = "present")]
    pub hours: Option<Text>,
    pub timezone: Text,
}

/// Parses the YAML shape. yaml_serde refuses multi-document streams, and nesting beyond its
/// recursion limit (128) fails before our types are reached.
pub(crate) fn parse_raw(yaml: &str) -> Result<RawDocument, yaml_serde::Error> {
    crate::bounded::with_expansion_budget(crate::limits::MAX_EXPANDED_UNITS, || {
        yaml_serde::from_str(yaml)
    })
}
