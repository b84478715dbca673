//! Validation and compilation of one rule.

use crate::compile::{ListSite, Reporter};
use crate::document::{RawRule, RawWindow};
use crate::evaluate::{DEFAULT_RULE, Rule, generated_reason};
use crate::limits::{
    MAX_COMMAND_PATTERNS_PER_RULE, MAX_PATTERN_BYTES, MAX_REASON_BYTES, MAX_RULE_NAME_CHARS,
};
use crate::matcher::{AgentRef, Matchers, UserRef, WindowMatcher, WindowSense};
use crate::names::{Effect, Principal, Role, SessionKind, is_display_control};
use crate::pattern::PatternCompiler;
use crate::window::TimeWindow;

/// Validates rule `index` and compiles it; `None` only if its name or effect is unusable (the
/// errors are in `reporter` either way, and any error fails the whole document).
pub(crate) fn compile_rule(
    index: usize,
    raw: &RawRule,
    all_names: &[&str],
    patterns: &mut PatternCompiler,
    reporter: &mut Reporter<'_>,
) -> Option<Rule> {
    let name = raw.name.as_str();
    let name_ok = check_name(index, name, all_names, reporter);
    let effect = raw.effect.as_str().parse::<Effect>().map_err(|error| {
        reporter.rule(index, &["effect"], None, format!("`effect`: {error}"));
    });
    let reason = raw
        .reason
        .as_ref()
        .map(|reason| check_reason(index, reason.as_str(), reporter));

    let site = |key| ListSite::Rule(index, key);
    let matchers = Matchers {
        users: reporter
            .entries(site("users"), "users", raw.users.as_ref())
            .map(|users| users.into_iter().map(UserRef::new).collect()),
        roles: reporter.names::<Role>(site("roles"), "roles", raw.roles.as_ref()),
        principals: reporter.names::<Principal>(
            site("principals"),
            "principals",
            raw.principals.as_ref(),
        ),
        agents: reporter
            .entries(site("agents"), "agents", raw.agents.as_ref())
            .map(|agents| {
                agents
                    .into_iter()
                    .map(|agent| AgentRef(agent.to_owned()))
                    .collect()
            }),
        tags: reporter
            .entries(site("tags"), "tags", raw.tags.as_ref())
            .map(|tags| tags.into_iter().map(str::to_owned).collect()),
        kinds: reporter.names::<SessionKind>(site("kinds"), "kinds", raw.kinds.as_ref()),
        commands: compile_commands(index, raw, patterns, reporter),
        window: compile_window(index, raw, reporter),
    };

    let approvers = reporter.approvers(site("approvers"), raw.approvers.as_ref());
    if approvers.is_some() && effect.is_ok_and(|effect| effect != Effect::RequireApproval) {
        reporter.rule(
            index,
            &["approvers"],
            None,
            "`approvers` only applies to `effect: require_approval` rules".to_owned(),
        );
    }

    let effect = effect.ok()?;
    name_ok.then(|| Rule {
        name: name.to_owned(),
        effect,
        reason: reason
            .flatten()
            .unwrap_or_else(|| generated_reason(effect, name)),
        matchers,
        approvers,
    })
}

/// Names identify the deciding rule in decisions and audit logs, so they are short, plain and
/// unique, and never the name reserved for the mode's decision.
fn check_name(index: usize, name: &str, all_names: &[&str], reporter: &mut Reporter<'_>) -> bool {
    let allowed_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
    let problem = if name.is_empty() || name.len() > MAX_RULE_NAME_CHARS {
        Some(format!(
            "`name` must be 1 to {MAX_RULE_NAME_CHARS} characters long"
        ))
    } else if !name.chars().all(allowed_char) {
        Some("`name` may only contain a-z, 0-9, `_`, `.` and `-`".to_owned())
    } else if name == DEFAULT_RULE {
        Some(format!(
            "`name` `{DEFAULT_RULE}` is reserved for decisions made by the mode"
        ))
    } else {
        all_names[..index]
            .iter()
            .position(|earlier| *earlier == name)
            .map(|first| format!("duplicate `name` (also used by rule #{})", first + 1))
    };
    match problem {
        Some(message) => {
            reporter.rule(index, &["name"], None, message);
            false
        }
        None => true,
    }
}

/// A reason is shown to the person whose session was refused, often in a terminal, so it must
/// not carry control characters (escape sequences could rewrite their screen) or bidi
/// formatting characters (which can make it read as something else).
fn check_reason(index: usize, reason: &str, reporter: &mut Reporter<'_>) -> Option<String> {
    // Block scalars (`reason: |`) end in a newline; that is layout, not content.
    let reason = reason.trim();
    let problem = if reason.is_empty() {
        Some("`reason` is empty; remove it to get the generated reason".to_owned())
    } else if reason.len() > MAX_REASON_BYTES {
        Some(format!("`reason` is longer than {MAX_REASON_BYTES} bytes"))
    } else if reason.chars().any(is_display_control) {
        Some(
            "`reason` contains control characters (line breaks, escapes or bidi overrides)"
                .to_owned(),
        )
    } else {
        None
    };
    match problem {
        Some(message) => {
            reporter.rule(index, &["reason"], None, message);
            None
        }
        None => Some(reason.to_owned()),
    }
}

fn compile_commands(
    index: usize,
    raw: &RawRule,
    patterns: &mut PatternCompiler,
    reporter: &mut Reporter<'_>,
) -> Option<Vec<regex::Regex>> {
    let sources = reporter.entries_up_to(
        ListSite::Rule(index, "commands"),
        "commands",
        raw.commands.as_ref(),
        MAX_PATTERN_BYTES,
    )?;
    if sources.len() > MAX_COMMAND_PATTERNS_PER_RULE {
        reporter.rule(index, &["commands"], None, format!("`commands` has more than {MAX_COMMAND_PATTERNS_PER_RULE} patterns; combine them with `|`"));
        return Some(Vec::new());
    }
    let mut compiled = Vec::with_capacity(sources.len());
    for source in sources {
        match patterns.compile(source) {
            Ok(regex) => compiled.push(regex),
            Err(message) => reporter.rule(
                index,
                &["commands"],
                Some(source),
                format!("`commands`: {message}"),
            ),
        }
    }
    Some(compiled)
}

fn compile_window(
    index: usize,
    raw: &RawRule,
    reporter: &mut Reporter<'_>,
) -> Option<WindowMatcher> {
    let (sense, window) = match (&raw.during, &raw.outside) {
        (None, None) => return None,
        (Some(during), None) => (WindowSense::During, during),
        (None, Some(outside)) => (WindowSense::Outside, outside),
        (Some(_), Some(_)) => {
            reporter.rule(
                index,
                &["outside"],
                None,
                "a rule may have `during` or `outside`, not both; split it into two rules"
                    .to_owned(),
            );
            return None;
        }
    };
    let RawWindow {
        days,
        hours,
        timezone,
    } = window;
    let days: Option<Vec<&str>> = days
        .as_ref()
        .map(|days| days.0.iter().map(|day| day.as_str()).collect());
    match TimeWindow::parse(
        days.as_deref(),
        hours.as_ref().map(|hours| hours.as_str()),
        timezone.as_str(),
    ) {
        Ok(window) => Some(WindowMatcher { sense, window }),
        Err(problems) => {
            for problem in problems {
                let message = format!("`{}.{}`: {}", sense.key(), problem.field, problem.message);
                reporter.rule(
                    index,
                    &[sense.key(), problem.field],
                    problem.value.as_deref(),
                    message,
                );
            }
            None
        }
    }
}
