//! Every bound of the policy language in one place, so docs/policy.md and the code cannot drift
//! apart silently. A policy is written by a team admin but evaluated by a shared service, so each
//! bound also caps what one admin can make the service spend on parsing, memory and evaluation.

use std::time::Duration;

/// Largest accepted document, checked before the YAML parser sees a byte: parsing cost and the
/// parser's event buffer grow with the input.
pub const MAX_DOCUMENT_BYTES: usize = 262_144;

/// Most rules in one document. Evaluation walks the rules in order, so this bounds its cost.
pub const MAX_RULES: usize = 256;

/// Most entries in one list (`users`, `roles`, `agents`, `tags`, `days`, `approvers`, ...).
pub const MAX_LIST_ENTRIES: usize = 256;

/// Most regular expressions in one rule's `commands`.
pub const MAX_COMMAND_PATTERNS_PER_RULE: usize = 64;

/// Longest list entry (user id, email, agent id or name, tag, time zone name), in bytes.
pub const MAX_ENTRY_BYTES: usize = 512;

/// Longest `commands` pattern source, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Longest rule `reason`, in bytes; the reason travels in every decision and audit record.
pub const MAX_REASON_BYTES: usize = 512;

/// Longest rule `name`, in characters (all ASCII, so also bytes).
pub const MAX_RULE_NAME_CHARS: usize = 128;

/// Largest compiled program of one `commands` pattern (`RegexBuilder::size_limit`). Short
/// sources can compile to huge automata (`\w{50}` needs ~16 MiB), so the source bound alone is
/// not enough.
pub const MAX_PATTERN_PROGRAM_BYTES: usize = 256 * 1024;

/// Largest lazy-DFA cache of one pattern (`RegexBuilder::dfa_size_limit`), bounding the memory a
/// search may grow at evaluation time.
pub const MAX_PATTERN_DFA_CACHE_BYTES: usize = 256 * 1024;

/// Deepest nesting of groups and repetitions in a pattern (`RegexBuilder::nest_limit`); the
/// regex parser recurses on nesting.
pub const MAX_PATTERN_NESTING: u32 = 32;

/// Sum of the compiled-program allowances of all distinct patterns of one document. Without it,
/// 256 rules x 64 patterns could pin gigabytes per team and make every exec evaluation slow;
/// see `pattern.rs` for how it is charged. Room for about 1000 simple patterns.
pub const MAX_DOCUMENT_PATTERN_PROGRAM_BYTES: usize = 4 * 1024 * 1024;

/// Longest issue message in bytes (the limit of `PolicyIssue.message` in the API). yaml_serde
/// echoes offending keys and values in full, and regex errors draw the whole pattern.
pub const MAX_ISSUE_MESSAGE_BYTES: usize = 512;

/// Most errors (and, separately, warnings) returned for one document; the rest are counted in
/// a final "more problems" entry. Keeps a response readable and its cost bounded.
pub const MAX_REPORTED_ISSUES: usize = 100;

/// Budget for the document after YAML alias expansion, in units of one per list entry plus one
/// per string plus the string's bytes. An alias-free document charges at most 1.5x its size
/// (a one-byte list entry costs 3 units for 2 source bytes; escapes like `"\L"` expand 2 bytes
/// to 3), so twice the document bound never rejects one, while a billion-laughs document stops
/// here after a bounded amount of work and memory.
pub const MAX_EXPANDED_UNITS: usize = 2 * MAX_DOCUMENT_BYTES;

/// Default `approval.timeout`.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Shortest accepted `approval.timeout`: anything shorter expires before a person can react.
pub const MIN_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest accepted `approval.timeout`: a pending approval holds a session slot open.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
