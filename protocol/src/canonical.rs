//! Canonical JSON: the JSON Canonicalization Scheme of RFC 8785 (spec chapter 06).
//!
//! Object members are sorted by their names as UTF-16 code units, strings are escaped as
//! ECMAScript's `JSON.stringify` does, and every number is written as ECMAScript's
//! `Number.prototype.toString` writes the IEEE 754 double nearest to it.
//!
//! ```
//! use driftless_protocol::canonical::to_canonical_string;
//! let v = serde_json::json!({"b": [1.0, 1e21, 0.000001], "a": "é\n"});
//! assert_eq!(to_canonical_string(&v), r#"{"a":"é\n","b":[1,1e+21,0.000001]}"#);
//! ```

use serde_json::{Map, Number, Value};

/// The canonical form of `value` as a string.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// The canonical form of `value` as UTF-8 bytes: what digests are computed over.
pub fn to_canonical_bytes(value: &Value) -> Vec<u8> {
    to_canonical_string(value).into_bytes()
}

/// The canonical form of `{"collection": collection, "id": id, "value": value}`, the document a
/// Record digest hashes (spec chapter 06, `[INT-4]`), written without building that document
/// (which would copy the whole value first).
pub fn record_document(collection: &str, id: &str, value: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(64 + collection.len() + id.len());
    // The member names are ASCII, so this is their UTF-16 order.
    out.push_str("{\"collection\":");
    write_string(&mut out, collection);
    out.push_str(",\"id\":");
    write_string(&mut out, id);
    out.push_str(",\"value\":");
    write_object(&mut out, value);
    out.push('}');
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match n.as_i64().filter(|i| i.unsigned_abs() <= SAFE_INTEGER) {
            // What format_number gives, without a String of its own.
            Some(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            None => out.push_str(&format_number(n)),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    if in_utf16_order(map.keys()) {
        write_members(out, map.iter());
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
        write_members(out, members.into_iter());
    }
    out.push('}');
}

fn write_members<'a>(out: &mut String, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    for (i, (name, item)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, item);
    }
}

/// Whether names already come in UTF-16 code-unit order, as they do from a map sorted by bytes
/// whose names are all in the Basic Multilingual Plane (there, UTF-8 byte order, code point
/// order and UTF-16 order agree; only surrogate pairs sort differently). Saves sorting a copy
/// of every object.
fn in_utf16_order<'a>(names: impl Iterator<Item = &'a String> + Clone) -> bool {
    let sorted = names.clone().zip(names.clone().skip(1)).all(|(a, b)| a < b);
    // In UTF-8, exactly the characters beyond the BMP start with a byte of 0xF0 or more.
    sorted && names.flat_map(|n| n.bytes()).all(|b| b < 0xf0)
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether a JSON number literal (RFC 8259 grammar) has the same decimal value as the canonical
/// form (chapter 06: the shortest text that round-trips) of the IEEE 754 double nearest to it
/// (`[PUSH-12]`): then every replica, in any language, stores and serves that very value. `7`,
/// `0.1`, `1e20`, `-0` and `9007199254740992` are exact; `18446744073709551617`,
/// `18446744073709551616` (written back as `18446744073709552000`), `9007199254740993`,
/// `1.00000000000000000001`, `1e-400` and `1e400` are not. Compares decimal values, so `1e2`
/// and `100` are the same number.
pub fn number_literal_is_exact(literal: &str) -> bool {
    let Ok(x) = literal.parse::<f64>() else {
        return false;
    };
    x.is_finite() && decimal_value(literal) == decimal_value(&format!("{x:e}"))
}

/// The first number literal in the JSON text `json` whose value a double cannot hold exactly
/// ([`number_literal_is_exact`]), if any. Scans the text without parsing it; strings are skipped.
pub fn first_inexact_number(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = &json[start..i];
                if !number_literal_is_exact(literal) {
                    return Some(literal);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The first member name that one object of the JSON text `json` holds twice, if any (I-JSON,
/// RFC 7493 §2.3; `[PUSH-14]`). Names are compared after unescaping, so `"a"` and `"\u0061"` are
/// the same name. Text that is not JSON has none (its parse fails elsewhere).
pub fn first_duplicate_member(json: &str) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Find<'a>(&'a mut Option<String>);

    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Find<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let found = self.0;
            while seq.next_element_seed(Find(&mut *found))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let found = self.0;
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                if found.is_none() && seen.contains(&name) {
                    *found = Some(name.clone());
                }
                seen.insert(name);
                map.next_value_seed(Find(&mut *found))?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut de = serde_json::Deserializer::from_str(json);
    Find(&mut found).deserialize(&mut de).ok()?;
    found
}

/// A decimal number as (negative, significant digits without leading or trailing zeros,
/// exponent) with value `0.DIGITS × 10^exponent`; zero is `(false, "", 0)` whatever its sign.
fn decimal_value(literal: &str) -> (bool, String, i64) {
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, literal),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, "0"),
    };
    // An exponent too long for i64 only matters for a non-zero mantissa, which then cannot be a
    // finite nonzero double anyway; saturate.
    let exponent: i64 =
        exponent
            .trim_start_matches('+')
            .parse()
            .unwrap_or(if exponent.starts_with('-') {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            });
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_owned();
    if digits.is_empty() {
        return (false, String::new(), 0);
    }
    let point = int.len() as i64 - leading as i64;
    (negative, digits, point.saturating_add(exponent))
}

/// The largest integer an IEEE 754 double and every integer below it hold exactly.
const SAFE_INTEGER: u64 = 9_007_199_254_740_991;

fn format_number(n: &Number) -> String {
    // Integers within the IEEE 754 safe range print exactly as ECMAScript prints them; this
    // fast path skips float formatting for the common case.
    const SAFE: u64 = SAFE_INTEGER;
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= SAFE) {
        return if i == 0 {
            "0".to_owned()
        } else {
            i.to_string()
        };
    }
    if let Some(u) = n.as_u64().filter(|u| *u <= SAFE) {
        return u.to_string();
    }
    // serde_json only holds finite numbers (no arbitrary precision here), so as_f64 is total.
    let x = n.as_f64().expect("serde_json numbers convert to f64");
    format_f64(x)
}

/// Formats a finite double as ECMAScript's `Number.prototype.toString` does (ECMA-262,
/// Number::toString, radix 10).
pub fn format_f64(x: f64) -> String {
    assert!(x.is_finite(), "canonical JSON has no non-finite numbers");
    if x == 0.0 {
        return "0".to_owned(); // also -0
    }
    if x < 0.0 {
        return format!("-{}", format_f64(-x));
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, like ECMAScript requires.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} output has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let k = digits.len() as i32;
    let n = exponent + 1;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_number_literals_are_those_a_double_holds() {
        for exact in [
            "0",
            "-0",
            "7",
            "-7",
            "0.1",
            "0.30000000000000004",
            "1e20",
            "1E+20",
            "100e-2",
            "9007199254740991",
            "9007199254740992",
            "1.5",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            assert!(number_literal_is_exact(exact), "{exact} is exact");
        }
        for inexact in [
            "9007199254740993",
            "18446744073709551617",
            "1.00000000000000000001",
            "1e400",
            "-1e400",
            "1e-400",
            "0.1000000000000000055511151231257827",
            "123456789012345678901234567890",
            // 2^64 is a double, but canonical JSON writes that double as 18446744073709552000.
            "18446744073709551616",
        ] {
            assert!(!number_literal_is_exact(inexact), "{inexact} is not exact");
        }
    }

    #[test]
    fn duplicate_member_names_are_found_after_unescaping() {
        assert_eq!(
            first_duplicate_member(r#"{"a":1,"b":{"x":1,"\u0078":2}}"#),
            Some("x".to_owned())
        );
        assert_eq!(
            first_duplicate_member(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#),
            None
        );
        assert_eq!(
            first_duplicate_member(r#"[{"k":1,"k":1}]"#),
            Some("k".to_owned())
        );
    }

    #[test]
    fn the_first_inexact_number_is_found_outside_strings() {
        let text = r#"{"a":"9007199254740993","b":[1,2.5,{"c\"":9007199254740993}],"d":1e400}"#;
        assert_eq!(first_inexact_number(text), Some("9007199254740993"));
        assert_eq!(first_inexact_number(r#"{"s":"1e400","n":-0.5}"#), None);
    }

    /// Number vectors from RFC 8785 appendix B (IEEE 754 bit patterns and their forms).
    #[test]
    fn rfc8785_number_vectors() {
        let cases: [(u64, &str); 15] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
        ];
        for (bits, expected) in cases {
            assert_eq!(format_f64(f64::from_bits(bits)), expected, "bits {bits:#x}");
        }
        assert_eq!(
            format_f64(f64::from_bits(0x3eb0c6f7a0b5ed8c)),
            "9.999999999999997e-7"
        );
        assert_eq!(
            format_f64(f64::from_bits(0x41b3de4355555553)),
            "333333333.3333332"
        );
    }

    /// The structure example of RFC 8785 section 3.2.2.
    #[test]
    fn rfc8785_structure_example() {
        let input = r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#;
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            to_canonical_string(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// The integer fast path agrees with the float path for every safe integer it takes.
    #[test]
    fn integer_fast_path_matches_float_formatting() {
        for i in [
            0i64,
            1,
            -1,
            42,
            1_000_000,
            -9_007_199_254_740_991,
            9_007_199_254_740_991,
            123_456_789_012,
        ] {
            assert_eq!(format_number(&Number::from(i)), format_f64(i as f64), "{i}");
        }
        assert_eq!(
            format_number(&Number::from(9_007_199_254_740_993u64)),
            "9007199254740992"
        );
    }

    /// Member names sort by UTF-16 code units, not by UTF-8 bytes (RFC 8785 section 3.2.3).
    #[test]
    fn member_names_sort_by_utf16() {
        let value = serde_json::json!({"\u{20ac}": 1, "\r": 2, "\u{1f600}": 3, "1": 4, "\u{80}": 5, "\u{fb33}": 6});
        assert_eq!(
            to_canonical_string(&value),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":5,\"\u{20ac}\":1,\"\u{1f600}\":3,\"\u{fb33}\":6}"
        );
    }
    /// Around U+E000, where UTF-8 byte order and UTF-16 order part: every pair of names from
    /// either side comes out in UTF-16 order, whether the writer sorts or keeps the map's order.
    #[test]
    fn member_order_at_the_utf16_boundary() {
        let names = [
            "a",
            "\u{d7ff}",
            "\u{e000}",
            "\u{ffff}",
            "\u{10000}",
            "\u{10ffff}",
        ];
        for a in names {
            for b in names {
                let value = serde_json::json!({a: 1, b: 2});
                let mut sorted = vec![(a, 1), (b, 2)];
                sorted.sort_by(|x, y| x.0.encode_utf16().cmp(y.0.encode_utf16()));
                sorted.dedup_by(|x, y| x.0 == y.0);
                let members: Vec<String> = if a == b {
                    vec![format!("\"{a}\":2")]
                } else {
                    sorted.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect()
                };
                assert_eq!(
                    to_canonical_string(&value),
                    format!("{{{}}}", members.join(","))
                );
            }
        }
    }
}
