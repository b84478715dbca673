//! Canonical JSON for the event context, following RFC 8785 (JCS):
//! object members sorted by the UTF-16 code units of their names, no
//! whitespace, strings with the minimal JSON escapes (`\"`, `\\`, `\b`,
//! `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`, everything else
//! literal UTF-8), numbers as ECMAScript `Number.prototype.toString`.
//!
//! Stricter than RFC 8785 where a difference could let two different
//! stored values hash the same: integers must be exact in an IEEE double
//! (|n| ≤ 2^53 − 1, the I-JSON range), non-finite numbers are errors, and
//! depth and size are capped.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Largest integer magnitude every JSON implementation reads exactly
/// (2^53 − 1, RFC 7493 §2.2). Larger integers would be silently rounded
/// by JavaScript verifiers, so they are refused rather than hashed.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    #[error("non-finite number (NaN or infinity)")]
    NonFinite,
    #[error("integer outside ±(2^53 − 1)")]
    IntegerOutOfRange,
    #[error("nesting deeper than {max}")]
    TooDeep { max: usize },
    #[error("canonical form longer than {max} bytes")]
    TooLarge { max: usize },
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("context must be a JSON object")]
    NotAnObject,
    #[error("invalid JSON: {0}")]
    Syntax(String),
}

struct Writer {
    out: String,
    max_len: usize,
    max_depth: usize,
}

impl Writer {
    fn push(&mut self, s: &str) -> Result<(), CanonicalJsonError> {
        if self.out.len() + s.len() > self.max_len {
            return Err(CanonicalJsonError::TooLarge { max: self.max_len });
        }
        self.out.push_str(s);
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), CanonicalJsonError> {
        // Escaping only grows a string: refuse early, before copying.
        if self.out.len() + s.len() + 2 > self.max_len {
            return Err(CanonicalJsonError::TooLarge { max: self.max_len });
        }
        self.push("\"")?;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let esc: Option<String> = match c {
                '"' => Some("\\\"".into()),
                '\\' => Some("\\\\".into()),
                '\u{08}' => Some("\\b".into()),
                '\u{0c}' => Some("\\f".into()),
                '\n' => Some("\\n".into()),
                '\r' => Some("\\r".into()),
                '\t' => Some("\\t".into()),
                c if u32::from(c) < 0x20 => Some(format!("\\u{:04x}", u32::from(c))),
                _ => None,
            };
            if let Some(esc) = esc {
                self.push(&s[start..i])?;
                self.push(&esc)?;
                start = i + c.len_utf8();
            }
        }
        self.push(&s[start..])?;
        self.push("\"")
    }

    fn value(&mut self, v: &Value, depth: usize) -> Result<(), CanonicalJsonError> {
        match v {
            Value::Null => self.push("null"),
            Value::Bool(true) => self.push("true"),
            Value::Bool(false) => self.push("false"),
            Value::Number(n) => self.push(&number(n)?),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.enter(depth)?;
                self.push("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.value(item, depth + 1)?;
                }
                self.push("]")
            }
            Value::Object(map) => self.object(map, depth),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), CanonicalJsonError> {
        if depth > self.max_depth {
            Err(CanonicalJsonError::TooDeep {
                max: self.max_depth,
            })
        } else {
            Ok(())
        }
    }

    fn object(&mut self, map: &Map<String, Value>, depth: usize) -> Result<(), CanonicalJsonError> {
        self.enter(depth)?;
        // RFC 8785 §3.2.3 orders by UTF-16 code units, which differs from
        // Rust's byte order for characters above U+FFFF.
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        self.push("{")?;
        for (i, (k, v)) in members.into_iter().enumerate() {
            if i > 0 {
                self.push(",")?;
            }
            self.string(k)?;
            self.push(":")?;
            self.value(v, depth + 1)?;
        }
        self.push("}")
    }
}

/// ECMAScript writes doubles below this magnitude without an exponent.
const PLAIN_FORM_LIMIT: f64 = 1e21;

fn number(n: &Number) -> Result<String, CanonicalJsonError> {
    if let Some(i) = n.as_i64() {
        return if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            Ok(i.to_string())
        } else {
            Err(CanonicalJsonError::IntegerOutOfRange)
        };
    }
    if n.is_u64() {
        // Not an i64, so above i64::MAX: far outside the safe range.
        return Err(CanonicalJsonError::IntegerOutOfRange);
    }
    let x = n.as_f64().ok_or(CanonicalJsonError::NonFinite)?;
    // A whole-number double between 2^53 and 1e21 is written (RFC 8785 / ECMAScript) as a plain
    // integer, which this very parser and any JavaScript verifier then refuse or round: refuse
    // it like that integer. From 1e21 up the exponent form (`1e+21`) reads back as a double.
    if x.fract() == 0.0 && x.abs() > MAX_SAFE_INTEGER as f64 && x.abs() < PLAIN_FORM_LIMIT {
        return Err(CanonicalJsonError::IntegerOutOfRange);
    }
    format_f64(x)
}

/// Significant digits that always hold the exact decimal expansion of a
/// double (the longest, of the smallest subnormal, has 767).
const EXACT_DIGITS: usize = 780;

/// Splits Rust's `{:e}` output (`d.ddde[-]x`) into digits and exponent.
fn sci_parts(sci: &str) -> Result<(String, i32), CanonicalJsonError> {
    let (mantissa, exp) = sci.split_once('e').ok_or(CanonicalJsonError::NonFinite)?;
    let exp = exp.parse().map_err(|_| CanonicalJsonError::NonFinite)?;
    Ok((mantissa.chars().filter(|c| *c != '.').collect(), exp))
}

/// Shortest round-trip digits of a finite `x > 0` and the exponent of
/// the first one, with ECMA-262's tie rule.
fn shortest_digits(x: f64) -> Result<(String, i32), CanonicalJsonError> {
    let (digits, exp) = sci_parts(&format!("{x:e}"))?;
    // When `x` lies exactly halfway between two shortest candidates, Rust
    // rounds up while ECMA-262 (and so RFC 8785) picks the even one.
    // Detect the tie from the exact decimal expansion of `x`.
    let (exact, exact_exp) = sci_parts(&format!("{:.*e}", EXACT_DIGITS, x))?;
    if exact_exp == exp && exact.len() > digits.len() {
        let (head, tail) = exact.split_at(digits.len());
        let head_even = head.bytes().last().is_some_and(|d| d % 2 == 0);
        if tail.trim_end_matches('0') == "5" && head != digits && head_even {
            let (first, rest) = head.split_at(1);
            if format!("{first}.{rest}e{exp}").parse::<f64>() == Ok(x) {
                return Ok((head.to_owned(), exp));
            }
        }
    }
    Ok((digits, exp))
}

/// ECMAScript `Number.prototype.toString(x)` for finite doubles
/// (ECMA-262 Number::toString), which RFC 8785 §3.2.2.3 mandates: the
/// shortest digits that round-trip, laid out in plain or exponent form.
pub fn format_f64(x: f64) -> Result<String, CanonicalJsonError> {
    if !x.is_finite() {
        return Err(CanonicalJsonError::NonFinite);
    }
    if x == 0.0 {
        return Ok("0".into()); // also -0
    }
    let (digits, exp) = shortest_digits(x.abs())?;
    let k = digits.len() as i32;
    let n = exp + 1; // value = 0.digits × 10^n
    let mut s = String::with_capacity(32);
    if x < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if n - 1 < 0 { '-' } else { '+' });
        s.push_str(&(n - 1).abs().to_string());
    }
    Ok(s)
}

/// Canonical JSON of an object, refusing output longer than `max_len`
/// bytes or nesting deeper than `max_depth` (the object itself is 1).
pub fn to_vec(
    map: &Map<String, Value>,
    max_len: usize,
    max_depth: usize,
) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut w = Writer {
        out: String::new(),
        max_len,
        max_depth,
    };
    w.object(map, 1)?;
    Ok(w.out.into_bytes())
}

/// Canonical JSON of any value with the audit context limits.
pub fn to_string(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut w = Writer {
        out: String::new(),
        max_len: super::MAX_CONTEXT_BYTES,
        max_depth: super::MAX_CONTEXT_DEPTH,
    };
    w.value(value, 1)?;
    Ok(w.out)
}

/// Parses a context object from JSON text strictly (see
/// [`deserialize_object`]).
pub fn parse_object(text: &str) -> Result<Map<String, Value>, CanonicalJsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let map = deserialize_object(&mut de).map_err(|e| classify(&e))?;
    de.end()
        .map_err(|e| CanonicalJsonError::Syntax(e.to_string()))?;
    Ok(map)
}

/// Recovers our error kind from serde's stringly error, so callers can
/// tell a policy refusal from malformed text.
fn classify(e: &serde_json::Error) -> CanonicalJsonError {
    let msg = e.to_string();
    let deep = CanonicalJsonError::TooDeep {
        max: super::MAX_CONTEXT_DEPTH,
    };
    if msg.starts_with(DUPLICATE_KEY_PREFIX) {
        CanonicalJsonError::DuplicateKey(msg)
    } else if msg.starts_with(&deep.to_string()) {
        deep
    } else if msg.starts_with(&CanonicalJsonError::NotAnObject.to_string()) {
        CanonicalJsonError::NotAnObject
    } else if msg.starts_with(&CanonicalJsonError::NonFinite.to_string()) {
        CanonicalJsonError::NonFinite
    } else {
        CanonicalJsonError::Syntax(msg)
    }
}

const DUPLICATE_KEY_PREFIX: &str = "duplicate object key";

/// Serde `deserialize_with` for the context: a JSON object, with
/// duplicate keys refused (a SIEM reading the first and a verifier
/// reading the last would see different events under one signature) and
/// nesting capped at [`super::MAX_CONTEXT_DEPTH`].
pub fn deserialize_object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match (StrictValue { depth: 1 }).deserialize(d)? {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom(CanonicalJsonError::NotAnObject)),
    }
}

struct StrictValue {
    depth: usize,
}

impl StrictValue {
    fn child<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= super::MAX_CONTEXT_DEPTH {
            return Err(E::custom(CanonicalJsonError::TooDeep {
                max: super::MAX_CONTEXT_DEPTH,
            }));
        }
        Ok(Self {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(CanonicalJsonError::NonFinite))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_KEY_PREFIX} {key:?}")));
            }
            let value = access.next_value_seed(self.child()?)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}
