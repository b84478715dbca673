//! Deserialization building blocks that keep YAML alias expansion bounded.
//!
//! The YAML parser stores each anchored node once, but every `*alias` is replayed in full by the
//! deserializer, so a 1 KiB document of nested aliases can describe gigabytes ("billion laughs").
//! yaml_serde caps the number of alias jumps at 100x the event count, which still allows a
//! quadratic blow-up inside the size bound. So every string and list entry of the document is
//! charged against [`MAX_EXPANDED_UNITS`] while it is being deserialized, and deserialization
//! fails as soon as the budget is spent: the work and memory of a parse stay proportional to the
//! bound, whatever the aliases say.
//!
//! The budget lives in a thread-local because serde's derive has no way to thread state through
//! `Deserialize` impls; a parse runs synchronously on one thread, and [`with_expansion_budget`]
//! resets it on entry and exit.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use crate::limits::MAX_EXPANDED_UNITS;

thread_local! {
    static EXPANSION_BUDGET_LEFT: Cell<usize> = const { Cell::new(0) };
}

/// Runs a deserialization with a fresh expansion budget of `units`.
pub(crate) fn with_expansion_budget<T>(units: usize, deserialize: impl FnOnce() -> T) -> T {
    EXPANSION_BUDGET_LEFT.set(units);
    let result = deserialize();
    EXPANSION_BUDGET_LEFT.set(0);
    result
}

/// Message of the error raised when the budget is spent; tests look for it.
pub(crate) const EXPANSION_BUDGET_MESSAGE: &str =
    "the document expands (through YAML aliases) beyond the size limit";

fn charge<E: de::Error>(units: usize) -> Result<(), E> {
    let left = EXPANSION_BUDGET_LEFT.get();
    match left.checked_sub(units) {
        Some(rest) => {
            EXPANSION_BUDGET_LEFT.set(rest);
            Ok(())
        }
        None => Err(E::custom(format_args!(
            "{EXPANSION_BUDGET_MESSAGE} ({MAX_EXPANDED_UNITS} units)"
        ))),
    }
}

/// A string from the document, charged to the expansion budget. Any YAML scalar deserializes
/// into it (`1`, `true` and `null` become their text); validation decides what is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        charge(text.len().saturating_add(1))?;
        Ok(Text(text))
    }
}

/// A YAML sequence of at most `MAX` entries, each charged to the expansion budget. The length
/// bound is enforced while reading so an oversized list is never materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoundedVec<T, const MAX: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for BoundedVec<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T, const MAX: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVisitor<T, MAX> {
            type Value = BoundedVec<T, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} entries")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                loop {
                    charge::<A::Error>(1)?;
                    let Some(entry) = seq.next_element()? else {
                        break;
                    };
                    if entries.len() == MAX {
                        return Err(de::Error::custom(format_args!(
                            "a list has more than {MAX} entries"
                        )));
                    }
                    entries.push(entry);
                }
                Ok(BoundedVec(entries))
            }
        }

        deserializer.deserialize_seq(BoundedVisitor(PhantomData))
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on optional fields: an absent key is
/// `None`, but a key that is present must carry a value. Plain `Option` would read `roles:`
/// (left empty) as "no roles matcher", which matches everyone: a half-written rule would widen
/// access instead of failing.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    type Small = BoundedVec<Text, 3>;

    fn parse<T: for<'de> Deserialize<'de>>(yaml: &str, budget: usize) -> Result<T, String> {
        with_expansion_budget(budget, || yaml_serde::from_str::<T>(yaml)).map_err(|e| e.to_string())
    }

    #[test]
    fn lists_longer_than_the_bound_are_refused() {
        assert_eq!(parse::<Small>("[a, b, c]", 100).unwrap().0.len(), 3);
        let error = parse::<Small>("[a, b, c, d]", 100).unwrap_err();
        assert!(error.contains("more than 3 entries"), "{error}");
    }

    #[test]
    fn strings_and_entries_are_charged() {
        // Three entries of one byte: 3 x (1 entry + 1 string + 1 byte) plus the closing probe.
        assert!(parse::<Small>("[a, b, c]", 10).is_ok());
        let error = parse::<Small>("[a, b, c]", 9).unwrap_err();
        assert!(error.contains(EXPANSION_BUDGET_MESSAGE), "{error}");
    }

    #[test]
    fn scalars_of_any_type_read_as_text() {
        let texts = parse::<BoundedVec<Text, 8>>("[1, true, ~, x]", 100).unwrap();
        let texts: Vec<&str> = texts.0.iter().map(Text::as_str).collect();
        assert_eq!(texts, ["1", "true", "~", "x"]);
    }

    #[test]
    fn the_budget_does_not_leak_into_the_next_parse() {
        let _ = parse::<Small>("[a]", 1_000);
        // Outside a budgeted parse nothing is left to spend.
        assert!(yaml_serde::from_str::<Text>("a").is_err());
    }
}
