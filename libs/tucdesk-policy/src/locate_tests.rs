#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const BLOCK: &str = "\
version: 1
mode: deny
approval:
  timeout: 2m
rules:
  # first
  - name: a
    effect: allow
    roles: [operator]

  - effect: deny
    name: b
    during:
      days: [mon]
      timezone: UTC
    tags:
      - env=prod
      - team=db
-  name: not-a-rule-line
";

fn at(line: u32, column: u32) -> Position {
    Position { line, column }
}

#[test]
fn rules_are_found_as_sequence_items() {
    let map = SourceMap::new(BLOCK, &["a", "b"]);
    assert_eq!(map.rule(0), at(7, 3));
    assert_eq!(map.rule(1), at(11, 3));
    assert_eq!(map.rule(2), Position::default());
}

#[test]
fn keys_and_nested_keys_are_found_inside_their_rule() {
    let map = SourceMap::new(BLOCK, &["a", "b"]);
    assert_eq!(map.rule_key(0, &["roles"]), at(9, 5));
    assert_eq!(map.rule_key(1, &["name"]), at(12, 5));
    assert_eq!(map.rule_key(1, &["during", "timezone"]), at(15, 7));
    // Absent keys fall back to the deepest key found, then to the rule.
    assert_eq!(map.rule_key(1, &["during", "hours"]), at(13, 5));
    assert_eq!(map.rule_key(0, &["during"]), at(7, 3));
}

#[test]
fn values_are_found_after_their_key() {
    let map = SourceMap::new(BLOCK, &["a", "b"]);
    assert_eq!(map.rule_value(0, &["roles"], Some("operator")), at(9, 13));
    assert_eq!(map.rule_value(1, &["tags"], Some("team=db")), at(18, 9));
    assert_eq!(map.rule_value(1, &["tags"], Some("missing")), at(16, 5));
}

#[test]
fn top_level_keys_are_found() {
    let map = SourceMap::new(BLOCK, &["a", "b"]);
    assert_eq!(map.top_level_key(&["mode"]), at(2, 1));
    assert_eq!(map.top_level_key(&["approval", "timeout"]), at(4, 3));
    assert_eq!(map.top_level_key(&["approval", "approvers"]), at(3, 1));
    assert_eq!(map.top_level_key(&["nothing"]), Position::default());
}

#[test]
fn unindented_sequences_end_at_the_next_top_level_key() {
    let text =
        "rules:\n- name: a\n  effect: deny\n- name: b\n  effect: deny\nmode: deny\nversion: 1\n";
    let map = SourceMap::new(text, &["a", "b"]);
    assert_eq!(map.rule(0), at(2, 1));
    assert_eq!(map.rule(1), at(4, 1));
    assert_eq!(
        map.rule_key(1, &["mode"]),
        at(4, 1),
        "keys after the rules block are not the rule's"
    );
}

#[test]
fn flow_style_falls_back_to_name_lines() {
    let text = "version: 1\nmode: deny\nrules: [\n  {name: a, effect: deny},\n  {name: 'b', effect: deny},\n  {name: a, effect: deny}]\n";
    let map = SourceMap::new(text, &["a", "b", "a"]);
    assert_eq!(map.rule(0).line, 4);
    assert_eq!(map.rule(1).line, 5);
    assert_eq!(
        map.rule(2).line,
        6,
        "a repeated name maps to its own occurrence"
    );
}

#[test]
fn unrecognizable_layouts_give_unknown_positions() {
    let map = SourceMap::new(
        "{version: 1, mode: deny, rules: [{effect: deny, \"name\": a}]}",
        &["a"],
    );
    assert_eq!(map.rule(0), Position::default());
    assert_eq!(map.rule_key(0, &["effect"]), Position::default());
}
