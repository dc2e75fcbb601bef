//! Problem details (RFC 9457) and the catalogue of Problem types (spec chapter 07).
//!
//! [`ProblemType`] is the catalogue: each type's code, HTTP status, title and whether an unchanged
//! retry can succeed. A test checks this enum against the catalogue table in the spec, so the two
//! cannot drift apart.
//!
//! ```
//! use driftless_protocol::problem::{Problem, ProblemType};
//! let p = Problem::new(ProblemType::ClockSkew, "hlc is 3599877 ms ahead");
//! assert_eq!(p.problem_type, "urn:driftless:problem:clock-skew");
//! assert_eq!(p.status, 422);
//! assert!(!ProblemType::ClockSkew.retryable());
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The prefix of every Problem type URI.
pub const TYPE_PREFIX: &str = "urn:driftless:problem:";

macro_rules! catalogue {
    ($($variant:ident = $code:literal, $status:literal, $retry:literal, $title:literal;)*) => {
        /// A Problem type of the catalogue in spec chapter 07.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl ProblemType {
            /// Every Problem type, in catalogue order.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant),*];

            /// The stable code, e.g. `clock-skew`.
            pub fn code(self) -> &'static str {
                match self { $(ProblemType::$variant => $code,)* }
            }

            /// The HTTP status (422 for per-Mutation Problems inside push results).
            pub fn status(self) -> u16 {
                match self { $(ProblemType::$variant => $status,)* }
            }

            /// Whether sending the same request again, unchanged, can succeed.
            pub fn retryable(self) -> bool {
                match self { $(ProblemType::$variant => $retry,)* }
            }

            /// The `title` member.
            pub fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)* }
            }
        }
    };
}

catalogue! {
    InvalidJson = "invalid-json", 400, false, "Invalid JSON";
    InvalidRequest = "invalid-request", 400, false, "Invalid request";
    UnsupportedVersion = "unsupported-version", 400, false, "Unsupported protocol version";
    InvalidCursor = "invalid-cursor", 400, false, "Invalid cursor";
    Unauthorized = "unauthorized", 401, false, "Unauthorized";
    Forbidden = "forbidden", 403, false, "Forbidden";
    NotFound = "not-found", 404, false, "Not found";
    RecordNotFound = "record-not-found", 404, false, "Record not found";
    MethodNotAllowed = "method-not-allowed", 405, false, "Method not allowed";
    RequestTimeout = "request-timeout", 408, true, "Request timeout";
    SchemaConflict = "schema-conflict", 409, false, "Schema version conflict";
    SchemaVersionGap = "schema-version-gap", 409, false, "Schema version gap";
    CursorExpired = "cursor-expired", 410, false, "Cursor expired";
    PayloadTooLarge = "payload-too-large", 413, false, "Payload too large";
    BatchTooLarge = "batch-too-large", 413, false, "Batch too large";
    UriTooLong = "uri-too-long", 414, false, "URI too long";
    UnsupportedMediaType = "unsupported-media-type", 415, false, "Unsupported media type";
    InvalidSchema = "invalid-schema", 422, false, "Invalid collection schema";
    RateLimited = "rate-limited", 429, true, "Rate limited";
    HeadersTooLarge = "headers-too-large", 431, false, "Request headers too large";
    Internal = "internal", 500, true, "Internal server error";
    Unavailable = "unavailable", 503, true, "Service unavailable";
    InvalidMutation = "invalid-mutation", 422, false, "Invalid mutation";
    OpIdReused = "op-id-reused", 422, false, "Op ID reused";
    PolicyViolation = "policy-violation", 422, false, "Policy violation";
    SchemaViolation = "schema-violation", 422, false, "Schema violation";
    UnknownSchemaVersion = "unknown-schema-version", 422, false, "Unknown schema version";
    ClockSkew = "clock-skew", 422, false, "Clock skew too large";
    MutationTooOld = "mutation-too-old", 422, false, "Mutation too old";
}

impl ProblemType {
    /// The full `type` URI.
    pub fn uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.code())
    }

    /// The catalogue entry whose `type` URI is `uri`, if any.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let code = uri.strip_prefix(TYPE_PREFIX)?;
        Self::ALL.iter().copied().find(|t| t.code() == code)
    }

    /// Whether a Client may retry a Problem of this status whose type it does not know
    /// (spec `[ERR-7]`).
    pub fn unknown_is_retryable(status: u16) -> bool {
        status == 408 || status == 429 || status >= 500
    }
}

/// One offending request member of an `invalid-request` Problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the offending member of the request; path parameters are
    /// addressed as `/path/NAME` and query parameters as `/query/NAME`.
    pub pointer: String,
    /// What is wrong with it, for humans.
    pub message: String,
}

/// An RFC 9457 problem details object. Open: extension members may be added in minor versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Problem",
    description = "An RFC 9457 problem details object: the body of every error response, and the reason inside a rejected push result (spec chapter 07)."
)]
pub struct Problem {
    /// A URI of the form `urn:driftless:problem:CODE`, CODE from the catalogue of spec chapter 07.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^urn:driftless:problem:[a-z][a-z0-9-]*$"))]
    pub problem_type: String,
    /// A short, human-readable summary of the Problem type; the same for every occurrence.
    pub title: String,
    /// The HTTP status code of the response, or 422 inside a rejected push result.
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
    /// A human-readable explanation of this occurrence. Never holds Record values or Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A URI reference that identifies this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For `invalid-request`: the offending request members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For `unsupported-version`: the protocol versions the Server supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<String>>,
}

impl Problem {
    /// A Problem of catalogue type `t` with a `detail` sentence.
    pub fn new(t: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem_type: t.uri(),
            title: t.title().to_owned(),
            status: t.status(),
            detail: Some(detail.into()),
            instance: None,
            errors: None,
            supported_versions: None,
        }
    }

    /// Adds one offending member (for `invalid-request`).
    pub fn with_error(mut self, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.get_or_insert_with(Vec::new).push(FieldError {
            pointer: pointer.into(),
            message: message.into(),
        });
        self
    }

    /// The catalogue type, if the `type` is one this version knows.
    pub fn known_type(&self) -> Option<ProblemType> {
        ProblemType::from_uri(&self.problem_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_uri(&t.uri()), Some(*t));
        }
        let mut codes: Vec<_> = ProblemType::ALL.iter().map(|t| t.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ProblemType::ALL.len());
    }

    #[test]
    fn retryable_problems_are_server_side_or_rate_limits() {
        for t in ProblemType::ALL {
            assert_eq!(
                t.retryable(),
                ProblemType::unknown_is_retryable(t.status()),
                "{t:?}"
            );
        }
    }
}
