//! Identifiers of spec chapter 02: Space IDs, Collection names, Record IDs, Field names,
//! Client IDs and Op IDs.
//!
//! Each is a newtype over `String` that can only hold a valid value: deserializing or parsing
//! an invalid one fails, so code that holds an `OpId` never re-checks it. The JSON Schema of each
//! carries the same syntax as a `pattern`, so the schemas and the code cannot disagree.
//!
//! ```
//! use driftless_protocol::ids::{OpId, RecordId};
//! assert!("0b8f5a52-6d0c-4f3e-9a57-3c1d2e4f5a60".parse::<OpId>().is_ok());
//! assert!("has space".parse::<RecordId>().is_err());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// An identifier did not match its syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} does not match {pattern}")]
pub struct InvalidId {
    /// Which identifier was expected, e.g. `op ID`.
    pub kind: &'static str,
    /// The rejected text, truncated to 80 characters.
    pub value: String,
    /// The regular expression it had to match.
    pub pattern: &'static str,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// The syntax of one kind of identifier: a rule for the first byte, one for the rest, and bounds
/// on the length in bytes (all identifiers are ASCII).
pub(crate) struct Syntax {
    pub kind: &'static str,
    pub pattern: &'static str,
    pub first: fn(u8) -> bool,
    pub rest: fn(u8) -> bool,
    pub len_min: usize,
    pub len_max: usize,
}

impl Syntax {
    pub(crate) fn matches(&self, s: &str) -> bool {
        let b = s.as_bytes();
        (self.len_min..=self.len_max).contains(&b.len())
            && b.first().is_none_or(|&c| (self.first)(c))
            && b.iter().skip(1).all(|&c| (self.rest)(c))
    }

    pub(crate) fn check(&self, s: &str) -> Result<(), InvalidId> {
        if self.matches(s) {
            Ok(())
        } else {
            Err(InvalidId {
                kind: self.kind,
                value: s.chars().take(80).collect(),
                pattern: self.pattern,
            })
        }
    }
}

pub(crate) const NODE_SYNTAX: Syntax = Syntax {
    kind: "HLC node",
    pattern: "^[A-Za-z0-9._~-]{1,64}$",
    first: is_unreserved,
    rest: is_unreserved,
    len_min: 1,
    len_max: 64,
};

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $pattern:literal, $first:expr, $rest:expr, $min:literal, $max:literal, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub(crate) const SYNTAX: Syntax = Syntax {
                kind: $kind,
                pattern: $pattern,
                first: $first,
                rest: $rest,
                len_min: $min,
                len_max: $max,
            };

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::SYNTAX.check(&s)?;
                Ok(Self(s))
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}

identifier!(
    /// A Space ID (spec chapter 02).
    SpaceId, "space ID", "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    |b: u8| b.is_ascii_alphanumeric(),
    |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'),
    1, 64,
    "A Space ID: the unit of access control and of synchronisation."
);
identifier!(
    /// A Collection name (spec chapter 02).
    CollectionName, "collection name", "^[a-z][a-z0-9_]{0,63}$",
    |b: u8| b.is_ascii_lowercase(),
    |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
    1, 64,
    "A Collection name, unique within its Space."
);
identifier!(
    /// A Record ID chosen by the Client (spec chapter 02).
    RecordId, "record ID", "^[A-Za-z0-9._~-]{1,128}$",
    is_unreserved, is_unreserved, 1, 128,
    "A Record ID, chosen by the Client and unique within its Collection."
);
identifier!(
    /// A Field name: a top-level member of a Record (spec chapter 02).
    FieldName, "field name", "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
    |b: u8| b.is_ascii_alphabetic() || b == b'_',
    |b: u8| b.is_ascii_alphanumeric() || b == b'_',
    1, 64,
    "A Field name: a top-level member of a Record's value."
);
identifier!(
    /// A Client ID, chosen once per local store (spec chapter 02).
    ClientId, "client ID", "^[A-Za-z0-9._~-]{8,64}$",
    is_unreserved, is_unreserved, 8, 64,
    "A Client ID, generated once by the Client and kept for the lifetime of its local store."
);
identifier!(
    /// An Op ID naming one Mutation forever (spec chapter 02).
    OpId, "op ID", "^[A-Za-z0-9._~-]{8,128}$",
    is_unreserved, is_unreserved, 8, 128,
    "An Op ID, generated by the Client; it names exactly one Mutation body forever."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_bounds_are_enforced() {
        assert!("abcdefgh".parse::<ClientId>().is_ok());
        assert!("abcdefg".parse::<ClientId>().is_err());
        assert!("a".repeat(64).parse::<ClientId>().is_ok());
        assert!("a".repeat(65).parse::<ClientId>().is_err());
        assert!("tasks_2".parse::<CollectionName>().is_ok());
        assert!("Tasks".parse::<CollectionName>().is_err());
        assert!("2tasks".parse::<CollectionName>().is_err());
        assert!("_private".parse::<FieldName>().is_ok());
        assert!("a-b".parse::<FieldName>().is_err());
        assert!("-demo".parse::<SpaceId>().is_err());
        assert!("demo.space-1".parse::<SpaceId>().is_ok());
        assert!("".parse::<RecordId>().is_err());
        assert!("ü".parse::<RecordId>().is_err());
    }

    #[test]
    fn invalid_id_names_kind_and_pattern() {
        let err = "x y".parse::<RecordId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "record ID \"x y\" does not match ^[A-Za-z0-9._~-]{1,128}$"
        );
    }

    #[test]
    fn deserializing_checks_syntax() {
        assert!(serde_json::from_str::<OpId>("\"short\"").is_err());
        let id: OpId = serde_json::from_str("\"op-000001\"").unwrap();
        assert_eq!(id.as_str(), "op-000001");
    }
}
