//! Warnings: documents that are valid but contain rules that cannot do what they appear to.
//! They never fail a parse; the service shows them next to a saved or validated document.

use crate::Issue;
use crate::compile::append_unreported;
use crate::evaluate::Rule;
use crate::limits::MAX_REPORTED_ISSUES;
use crate::locate::SourceMap;
use crate::matcher::WindowSense;
use crate::names::{Effect, Mode, SessionKind};

/// Lints compiled rules; the document is already known to be valid.
pub(crate) fn lint(rules: &[Rule], mode: Mode, map: &SourceMap<'_>) -> Vec<Issue> {
    let mut warnings = Vec::new();
    let mut warn = |index: usize, keys: &[&str], message: String| {
        let position = map.rule_key(index, keys);
        let message = format!("rule `{}`: {message}", rules[index].name);
        warnings.push(Issue::new(position.line, position.column, &message));
    };
    let has_allow_rule = rules.iter().any(|rule| rule.effect == Effect::Allow);

    for (index, rule) in rules.iter().enumerate() {
        let matchers = &rule.matchers;
        if mode == Mode::Allow && rule.effect == Effect::Allow {
            warn(index, &["effect"], "`effect: allow` has no effect in `mode: allow`, which already allows every request no deny rule refuses".to_owned());
        }
        if mode == Mode::Deny && rule.effect == Effect::RequireApproval && !has_allow_rule {
            warn(index, &["effect"], "never takes effect: in `mode: deny` a request needs a matching allow rule before approval is asked, and there is none".to_owned());
        }
        if let Some(earlier) = rules[..index]
            .iter()
            .find(|earlier| earlier.effect == rule.effect && earlier.matchers.is_catch_all())
        {
            warn(
                index,
                &["name"],
                format!(
                    "can never be the deciding rule: the earlier rule `{}` has the same effect and no matchers, so it always matches first",
                    earlier.name
                ),
            );
        }
        if rule.effect == Effect::Deny && matchers.is_catch_all() {
            warn(index, &["name"], "has no matchers, so it denies every request (deny beats all other rules wherever they are)".to_owned());
        }
        if matchers.commands.is_some()
            && matchers
                .kinds
                .as_ref()
                .is_some_and(|kinds| !kinds.contains(&SessionKind::Exec))
        {
            warn(index, &["commands"], "has `commands`, which match only exec requests, but its `kinds` exclude exec: it never matches".to_owned());
        }
        if let Some(window) = matchers
            .window
            .as_ref()
            .filter(|window| window.window.covers_all_time())
        {
            let message = match window.sense {
                WindowSense::Outside => {
                    "its `outside` window covers all days and hours, so the rule never matches"
                }
                WindowSense::During => {
                    "its `during` window covers all days and hours, so it restricts nothing"
                }
            };
            warn(index, &[window.sense.key()], message.to_owned());
        }
    }
    let unreported = warnings.len().saturating_sub(MAX_REPORTED_ISSUES);
    warnings.truncate(MAX_REPORTED_ISSUES);
    append_unreported(&mut warnings, unreported);
    warnings
}
