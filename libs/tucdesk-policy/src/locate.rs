//! Best-effort source positions for semantic problems.
//!
//! serde hands `compile.rs` values without positions, so positions are recovered from the text:
//! the block-sequence items under the top-level `rules:` key give each rule a line range, and
//! keys and values are then searched inside that range. Documents written in flow style
//! (`rules: [{...}]`) fall back to the line of each rule's `name:`; failing that, the position is
//! 0 (unknown). A wrong guess only misplaces a message, never changes a decision.

use std::ops::Range;

/// A 1-based line and column; 0 means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    fn at(line_index: usize, byte_column: usize) -> Position {
        let one_based = |n: usize| u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
        Position {
            line: one_based(line_index),
            column: one_based(byte_column),
        }
    }
}

/// The document's lines and the line range of each rule.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    lines: Vec<&'a str>,
    /// Per rule (in document order), its lines; empty when the layout was not recognized.
    rule_lines: Vec<Range<usize>>,
}

impl<'a> SourceMap<'a> {
    /// Maps `text`, whose parsed `rules` have the given names (in order).
    pub(crate) fn new(text: &'a str, rule_names: &[&str]) -> SourceMap<'a> {
        let lines: Vec<&str> = text.lines().collect();
        let mut map = SourceMap {
            lines,
            rule_lines: Vec::new(),
        };
        let items = map.rule_items();
        map.rule_lines = if items.len() == rule_names.len() {
            items
        } else {
            map.rules_by_name(rule_names)
        };
        map
    }

    /// Position of a top-level key, or of a key nested under it (`["approval", "timeout"]`).
    pub(crate) fn top_level_key(&self, keys: &[&str]) -> Position {
        let Some((&first, nested)) = keys.split_first() else {
            return Position::default();
        };
        let Some(start) = self
            .lines
            .iter()
            .position(|line| key_column(line, first) == Some(0))
        else {
            return Position::default();
        };
        let end = (start + 1..self.lines.len())
            .find(|&index| is_content(self.lines[index]) && indent(self.lines[index]) == 0)
            .unwrap_or(self.lines.len());
        self.find_keys(start..end, nested, Position::at(start, 0)).0
    }

    /// Position of rule `index` (its first line).
    pub(crate) fn rule(&self, index: usize) -> Position {
        match self.rule_lines.get(index) {
            Some(range) => Position::at(range.start, indent(self.lines[range.start])),
            None => Position::default(),
        }
    }

    /// Position of a key inside rule `index`, following nested keys (`["during", "timezone"]`);
    /// the deepest key found, else the rule's own position.
    pub(crate) fn rule_key(&self, index: usize, keys: &[&str]) -> Position {
        self.rule_value(index, keys, None)
    }

    /// Position of `value` at or after the given keys of rule `index` (e.g. the bad entry of a
    /// list written one per line), else the deepest key found, else the rule's own position.
    pub(crate) fn rule_value(&self, index: usize, keys: &[&str], value: Option<&str>) -> Position {
        let Some(range) = self.rule_lines.get(index).cloned() else {
            return Position::default();
        };
        let (key_position, key_line) = self.find_keys(range.clone(), keys, self.rule(index));
        let Some(value) = value.filter(|value| !value.is_empty()) else {
            return key_position;
        };
        let Some((key_line, after_key)) = key_line else {
            return key_position;
        };
        // Search after the key on its own line (so `tags: [tag]` does not find `tag` in the
        // key), then on the following lines of the rule.
        (key_line..range.end)
            .find_map(|line_index| {
                let line = self.lines[line_index];
                let from = if line_index == key_line {
                    after_key.min(line.len())
                } else {
                    0
                };
                let found = line.get(from..)?.find(value)?;
                Some(Position::at(line_index, from + found))
            })
            .unwrap_or(key_position)
    }

    /// Follows `keys` one after another inside `range`; returns the deepest position found
    /// (or `fallback`) with its line index and the byte offset just past that key.
    fn find_keys(
        &self,
        range: Range<usize>,
        keys: &[&str],
        fallback: Position,
    ) -> (Position, Option<(usize, usize)>) {
        let mut found = (fallback, None);
        let mut from = range.start;
        for key in keys {
            let hit = (from..range.end)
                .find_map(|index| Some((index, key_column(self.lines[index], key)?)));
            let Some((line_index, column)) = hit else {
                break;
            };
            found = (
                Position::at(line_index, column),
                Some((line_index, column + key.len())),
            );
            from = line_index;
        }
        found
    }

    /// The line ranges of the block-sequence items under a top-level `rules:` key.
    fn rule_items(&self) -> Vec<Range<usize>> {
        let Some(rules_line) = self
            .lines
            .iter()
            .position(|line| key_column(line, "rules") == Some(0))
        else {
            return Vec::new();
        };
        let mut starts = Vec::new();
        let mut item_indent = None;
        let mut end = self.lines.len();
        for (index, line) in self.lines.iter().enumerate().skip(rules_line + 1) {
            if !is_content(line) {
                continue;
            }
            let this_indent = indent(line);
            let is_item = is_sequence_item(&line[this_indent..]);
            match item_indent {
                None if is_item => item_indent = Some(this_indent),
                None => break,
                Some(expected) if this_indent > expected => continue,
                Some(expected) if this_indent == expected && is_item => {}
                Some(_) => {
                    end = index;
                    break;
                }
            }
            starts.push(index);
        }
        let ends = starts.iter().skip(1).copied().chain(std::iter::once(end));
        starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| start..end)
            .collect()
    }

    /// Fallback: each rule's `name:` line (the nth occurrence for the nth rule of that name).
    fn rules_by_name(&self, rule_names: &[&str]) -> Vec<Range<usize>> {
        let mut ranges = Vec::with_capacity(rule_names.len());
        for (index, name) in rule_names.iter().enumerate() {
            let earlier_same_name = rule_names[..index]
                .iter()
                .filter(|earlier| *earlier == name)
                .count();
            let hit = self
                .lines
                .iter()
                .enumerate()
                .filter(|(_, line)| names_rule(line, name))
                .nth(earlier_same_name);
            match hit {
                Some((line_index, _)) => ranges.push(line_index..line_index + 1),
                None => return Vec::new(),
            }
        }
        ranges
    }
}

/// Whether `line` holds `name: <name>` (quoted or not), in block or flow style.
fn names_rule(line: &str, name: &str) -> bool {
    line.match_indices("name:").any(|(at, key)| {
        let value = line[at + key.len()..].trim_start();
        let value = value.trim_start_matches(['"', '\'']);
        value.strip_prefix(name).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with([' ', ',', '}', '"', '\'', '#'])
        })
    })
}

/// Column of `key:` on this line, allowing for indentation and a leading `- ` sequence marker.
fn key_column(line: &str, key: &str) -> Option<usize> {
    let mut column = indent(line);
    let mut rest = &line[column..];
    if is_sequence_item(rest) {
        let after_dash = rest[1..].len() - rest[1..].trim_start_matches(' ').len();
        column += 1 + after_dash;
        rest = &line[column..];
    }
    let after_key = rest.strip_prefix(key)?.trim_start_matches(' ');
    let after_colon = after_key.strip_prefix(':')?;
    (after_colon.is_empty() || after_colon.starts_with([' ', '\t'])).then_some(column)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

fn is_sequence_item(trimmed_start: &str) -> bool {
    trimmed_start == "-" || trimmed_start.starts_with("- ")
}

#[cfg(test)]
#[path = "locate_tests.rs"]
mod tests;
