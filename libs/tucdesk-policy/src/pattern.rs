//! Compiling `commands` patterns under a per-pattern and a per-document memory bound.
//!
//! The regex crate cannot report how large a compiled program is, only refuse to exceed a
//! `size_limit`. So each pattern is compiled with growing limits ([`PROGRAM_SIZE_STEPS`]) and
//! charged the first limit it fits under: the charge is at most 4x its real size, a failed step
//! costs no more than its own limit, and typical patterns (`^rm\b`) fit the smallest step.
//! Identical sources (repeated in many rules, or via YAML aliases) compile and are charged once.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use crate::limits::{
    MAX_DOCUMENT_PATTERN_PROGRAM_BYTES, MAX_PATTERN_BYTES, MAX_PATTERN_DFA_CACHE_BYTES,
    MAX_PATTERN_NESTING, MAX_PATTERN_PROGRAM_BYTES,
};

/// Compile size limits tried in turn, ending at the per-pattern maximum.
const PROGRAM_SIZE_STEPS: [usize; 4] = [
    MAX_PATTERN_PROGRAM_BYTES / 64,
    MAX_PATTERN_PROGRAM_BYTES / 16,
    MAX_PATTERN_PROGRAM_BYTES / 4,
    MAX_PATTERN_PROGRAM_BYTES,
];

/// Compiles the patterns of one document, sharing identical ones.
#[derive(Debug, Default)]
pub(crate) struct PatternCompiler {
    compiled: HashMap<String, Regex>,
    charged_bytes: usize,
}

impl PatternCompiler {
    /// Compiles one pattern, or explains why it is refused.
    pub(crate) fn compile(&mut self, source: &str) -> Result<Regex, String> {
        if let Some(regex) = self.compiled.get(source) {
            return Ok(regex.clone());
        }
        if source.is_empty() {
            return Err("empty command pattern (it would match every command)".to_owned());
        }
        if source.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "command pattern is longer than {MAX_PATTERN_BYTES} bytes"
            ));
        }
        for limit in PROGRAM_SIZE_STEPS {
            // Charged before trying: a failed attempt costs work up to its limit too, so the
            // budget bounds the compile time of a document as well as its memory.
            self.charged_bytes = self
                .charged_bytes
                .checked_add(limit)
                .filter(|charged| *charged <= MAX_DOCUMENT_PATTERN_PROGRAM_BYTES)
                .ok_or_else(|| {
                    format!(
                        "the document's command patterns together compile to more than {} KiB; use fewer or simpler patterns (large Unicode classes like \\w are the usual cause)",
                        MAX_DOCUMENT_PATTERN_PROGRAM_BYTES / 1024
                    )
                })?;
            let built = RegexBuilder::new(source)
                .size_limit(limit)
                .dfa_size_limit(MAX_PATTERN_DFA_CACHE_BYTES)
                .nest_limit(MAX_PATTERN_NESTING)
                .build();
            match built {
                Ok(regex) => {
                    self.compiled.insert(source.to_owned(), regex.clone());
                    return Ok(regex);
                }
                Err(regex::Error::CompiledTooBig(_)) => continue,
                Err(error) => {
                    return Err(format!(
                        "invalid command pattern: {}",
                        bounded_message(&error.to_string())
                    ));
                }
            }
        }
        Err(format!(
            "command pattern compiles to more than {} KiB; simplify it (bounded repetitions of Unicode classes such as \\w{{50}} grow very large)",
            MAX_PATTERN_PROGRAM_BYTES / 1024
        ))
    }
}

/// regex syntax errors draw an ASCII-art caret diagram over several lines; keep it, but bounded,
/// since the pattern itself can be 1 KiB.
fn bounded_message(message: &str) -> String {
    /// Most characters of a regex error kept in an issue message.
    const MAX_REGEX_ERROR_CHARS: usize = 2048;
    message.chars().take(MAX_REGEX_ERROR_CHARS).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn compile_alone(source: &str) -> (Result<Regex, String>, usize) {
        let mut compiler = PatternCompiler::default();
        let result = compiler.compile(source);
        (result, compiler.charged_bytes)
    }

    #[test]
    fn ordinary_patterns_fit_the_smallest_step() {
        let (regex, charged) = compile_alone(r"^rm\b");
        assert!(regex.unwrap().is_match("rm -rf /"));
        assert_eq!(charged, PROGRAM_SIZE_STEPS[0]);
        let (regex, charged) = compile_alone(r"\w+");
        assert!(regex.is_ok());
        // The ASCII spelling docs/policy.md recommends stays small even when repeated.
        let (regex, ascii_charged) = compile_alone(r"(?-u:\w){50}");
        assert!(regex.is_ok());
        assert!(ascii_charged < MAX_PATTERN_PROGRAM_BYTES);
        assert!(charged > PROGRAM_SIZE_STEPS[0] && charged <= 2 * MAX_PATTERN_PROGRAM_BYTES);
    }

    #[test]
    fn huge_programs_are_refused() {
        let error = compile_alone(r"\w{50}").0.unwrap_err();
        assert!(error.contains("compiles to more than 256 KiB"), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        let error = compile_alone(&deep).0.unwrap_err();
        assert!(error.contains("invalid command pattern"), "{error}");
    }

    #[test]
    fn syntax_errors_are_explained() {
        let error = compile_alone("rm (").0.unwrap_err();
        assert!(error.contains("unclosed group"), "{error}");
    }

    #[test]
    fn empty_and_overlong_sources_are_refused() {
        assert!(compile_alone("").0.is_err());
        assert!(compile_alone(&"a".repeat(MAX_PATTERN_BYTES)).0.is_ok());
        assert!(compile_alone(&"a".repeat(MAX_PATTERN_BYTES + 1)).0.is_err());
    }

    #[test]
    fn repeated_sources_are_charged_once() {
        let mut compiler = PatternCompiler::default();
        for _ in 0..10_000 {
            compiler.compile(r"\w+").unwrap();
        }
        assert_eq!(compiler.compiled.len(), 1);
        assert!(compiler.charged_bytes <= 2 * MAX_PATTERN_PROGRAM_BYTES);
    }

    #[test]
    fn the_document_budget_bounds_work_and_memory() {
        let mut compiler = PatternCompiler::default();
        // Distinct sources too big to compile: each costs its attempts, then the budget stops
        // further compiling altogether.
        let refusals: Vec<String> = (0..1_000)
            .filter_map(|i| compiler.compile(&format!("{i}\\w{{50}}")).err())
            .collect();
        assert_eq!(refusals.len(), 1_000);
        assert!(
            refusals
                .last()
                .unwrap()
                .contains("together compile to more than")
        );
        assert!(compiler.charged_bytes <= MAX_DOCUMENT_PATTERN_PROGRAM_BYTES);
        // Once spent, even a tiny new pattern is refused.
        assert!(compiler.compile("^ls$").is_err());
    }
}
