//! Validation and compilation of a parsed document into a [`Policy`]. Every problem is collected
//! (with its best-effort position) before failing, so an admin fixes a document in one round.

use std::str::FromStr;
use std::time::Duration;

use crate::document::{RawApproval, RawDocument, TextList};
use crate::duration::parse_duration;
use crate::limits::{
    DEFAULT_APPROVAL_TIMEOUT, MAX_APPROVAL_TIMEOUT, MAX_ENTRY_BYTES, MAX_REPORTED_ISSUES,
    MIN_APPROVAL_TIMEOUT,
};
use crate::locate::{Position, SourceMap};
use crate::names::{Mode, Role, UnknownName, clip};
use crate::pattern::PatternCompiler;
use crate::rule::compile_rule;
use crate::{Issue, Policy};

/// The only document version this crate understands.
const SUPPORTED_VERSION: &str = "1";

/// Approver roles when the document names none.
pub(crate) const DEFAULT_APPROVERS: [Role; 2] = [Role::Owner, Role::Admin];

/// Collects errors, each placed with the source map, up to [`MAX_REPORTED_ISSUES`].
#[derive(Debug)]
pub(crate) struct Reporter<'m> {
    map: &'m SourceMap<'m>,
    rule_names: &'m [&'m str],
    errors: Vec<Issue>,
    /// Errors found beyond the reporting cap (not located, only counted).
    unreported: usize,
}

impl<'m> Reporter<'m> {
    pub(crate) fn new(map: &'m SourceMap<'m>, rule_names: &'m [&'m str]) -> Self {
        Reporter {
            map,
            rule_names,
            errors: Vec::new(),
            unreported: 0,
        }
    }

    /// Records an error; `locate` runs only while under the cap, since it scans the text.
    fn push(&mut self, locate: impl FnOnce(&SourceMap<'_>) -> Position, message: String) {
        if self.errors.len() >= MAX_REPORTED_ISSUES {
            self.unreported += 1;
            return;
        }
        let position = locate(self.map);
        self.errors
            .push(Issue::new(position.line, position.column, &message));
    }

    pub(crate) fn top(&mut self, keys: &[&str], message: String) {
        self.push(|map| map.top_level_key(keys), message);
    }

    /// All errors, with the count of unreported ones as a last entry.
    pub(crate) fn into_errors(self) -> Vec<Issue> {
        let mut errors = self.errors;
        append_unreported(&mut errors, self.unreported);
        errors
    }

    /// An error in rule `index` at the given keys (and value, when one entry is at fault). The
    /// message is prefixed with the rule, since positions are best effort.
    pub(crate) fn rule(
        &mut self,
        index: usize,
        keys: &[&str],
        value: Option<&str>,
        message: String,
    ) {
        let rule = match self.rule_names.get(index) {
            Some(name) if !name.is_empty() => format!("rule `{}`", clip(name)),
            _ => format!("rule #{}", index + 1),
        };
        self.push(
            |map| map.rule_value(index, keys, value),
            format!("{rule}: {message}"),
        );
    }
}

/// Appends the "and N more" entry that stands for issues beyond [`MAX_REPORTED_ISSUES`].
pub(crate) fn append_unreported(issues: &mut Vec<Issue>, unreported: usize) {
    if unreported > 0 {
        issues.push(Issue::new(
            0,
            0,
            &format!("{unreported} more problem(s) not listed"),
        ));
    }
}

/// Where a list sits, to place its problems.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ListSite {
    /// Under a top-level key path.
    Top(&'static [&'static str]),
    /// Under a key of rule `index`.
    Rule(usize, &'static str),
}

impl Reporter<'_> {
    fn list_error(&mut self, site: ListSite, value: Option<&str>, message: String) {
        match site {
            ListSite::Top(keys) => self.top(keys, message),
            ListSite::Rule(index, key) => self.rule(index, &[key], value, message),
        }
    }

    /// The entries of a list that is present, checking it is not empty and each entry is a
    /// non-empty string of at most [`MAX_ENTRY_BYTES`]. `None` when the key is absent.
    pub(crate) fn entries<'r>(
        &mut self,
        site: ListSite,
        key: &str,
        list: Option<&'r TextList>,
    ) -> Option<Vec<&'r str>> {
        self.entries_up_to(site, key, list, MAX_ENTRY_BYTES)
    }

    /// [`Reporter::entries`] with another bound on entry length.
    pub(crate) fn entries_up_to<'r>(
        &mut self,
        site: ListSite,
        key: &str,
        list: Option<&'r TextList>,
        max_entry_bytes: usize,
    ) -> Option<Vec<&'r str>> {
        let list = list?;
        if list.0.is_empty() {
            self.list_error(site, None, format!("`{key}` is an empty list, which can never match; list at least one entry or remove `{key}`"));
        }
        let mut entries = Vec::with_capacity(list.0.len());
        for entry in &list.0 {
            let entry = entry.as_str();
            if entry.is_empty() {
                self.list_error(site, None, format!("`{key}` contains an empty entry"));
            } else if entry.len() > max_entry_bytes {
                self.list_error(
                    site,
                    None,
                    format!("`{key}` has an entry longer than {max_entry_bytes} bytes"),
                );
            } else {
                entries.push(entry);
            }
        }
        Some(entries)
    }

    /// A present list of vocabulary names (roles, principals, kinds), each parsed.
    pub(crate) fn names<T: FromStr<Err = UnknownName> + PartialEq>(
        &mut self,
        site: ListSite,
        key: &str,
        list: Option<&TextList>,
    ) -> Option<Vec<T>> {
        let entries = self.entries(site, key, list)?;
        let mut names: Vec<T> = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.parse::<T>() {
                // Duplicates are harmless but would repeat in approver lists; drop them.
                Ok(name) if names.contains(&name) => {}
                Ok(name) => names.push(name),
                Err(error) => self.list_error(site, Some(entry), format!("`{key}`: {error}")),
            }
        }
        Some(names)
    }

    /// A present `approvers` list: roles that may approve.
    pub(crate) fn approvers(
        &mut self,
        site: ListSite,
        list: Option<&TextList>,
    ) -> Option<Vec<Role>> {
        let roles = self.names::<Role>(site, "approvers", list)?;
        for role in roles.iter().filter(|role| !role.can_approve()) {
            self.list_error(site, Some(role.as_str()), format!("`approvers`: role `{role}` cannot approve sessions (use owner, admin or operator)"));
        }
        Some(roles)
    }
}

/// Validates and compiles the whole document, or returns every error found.
pub(crate) fn compile(text: &str, raw: RawDocument) -> Result<(Policy, Vec<Issue>), Vec<Issue>> {
    let raw_rules = raw.rules.map(|rules| rules.0).unwrap_or_default();
    let rule_names: Vec<&str> = raw_rules.iter().map(|rule| rule.name.as_str()).collect();
    let map = SourceMap::new(text, &rule_names);
    let mut reporter = Reporter::new(&map, &rule_names);

    if raw.version.as_str() != SUPPORTED_VERSION {
        reporter.top(
            &["version"],
            format!(
                "unsupported version `{}`; the only version is {SUPPORTED_VERSION}",
                clip(raw.version.as_str())
            ),
        );
    }
    let mode = raw.mode.as_str().parse::<Mode>().unwrap_or_else(|error| {
        reporter.top(&["mode"], format!("`mode`: {error}"));
        Mode::Deny
    });
    let (approval_timeout, default_approvers) =
        compile_approval(raw.approval.as_ref(), &mut reporter);

    let mut patterns = PatternCompiler::default();
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (index, raw_rule) in raw_rules.iter().enumerate() {
        if let Some(rule) = compile_rule(index, raw_rule, &rule_names, &mut patterns, &mut reporter)
        {
            rules.push(rule);
        }
    }

    let errors = reporter.into_errors();
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings = crate::warnings::lint(&rules, mode, &map);
    Ok((
        Policy {
            mode,
            approval_timeout,
            default_approvers,
            rules,
        },
        warnings,
    ))
}

fn compile_approval(
    approval: Option<&RawApproval>,
    reporter: &mut Reporter<'_>,
) -> (Duration, Vec<Role>) {
    let timeout = approval
        .and_then(|approval| approval.timeout.as_ref())
        .map_or(DEFAULT_APPROVAL_TIMEOUT, |text| {
            let checked = parse_duration(text.as_str())
                .map_err(|message| format!("`approval.timeout`: {message}"))
                .and_then(|timeout| {
                    if (MIN_APPROVAL_TIMEOUT..=MAX_APPROVAL_TIMEOUT).contains(&timeout) {
                        Ok(timeout)
                    } else {
                        Err(format!(
                            "`approval.timeout` {} is outside 1m..=24h",
                            clip(text.as_str())
                        ))
                    }
                });
            checked.unwrap_or_else(|message| {
                reporter.top(&["approval", "timeout"], message);
                DEFAULT_APPROVAL_TIMEOUT
            })
        });
    let approvers = reporter
        .approvers(
            ListSite::Top(&["approval", "approvers"]),
            approval.and_then(|approval| approval.approvers.as_ref()),
        )
        .unwrap_or_else(|| DEFAULT_APPROVERS.to_vec());
    (timeout, approvers)
}
