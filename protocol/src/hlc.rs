//! Hybrid logical clocks (spec chapter 02).
//!
//! An [`Hlc`] is written `PPPPPPPPPPPP-LLLL-NODE`: 12 hex digits of milliseconds since the Unix
//! epoch, 4 hex digits of logical counter, and the issuing node. The fixed widths make the text
//! sort exactly like the value, so a Server can index HLCs as plain strings.
//!
//! A [`Clock`] issues new values and merges remote ones. It never reads the wall clock itself:
//! the caller passes `wall_ms`, so tests and simulations decide what time it is.
//!
//! ```
//! use driftless_protocol::hlc::{Clock, Hlc};
//! let mut client = Clock::new("client-a").unwrap();
//! let first = client.issue(1_767_225_600_123);
//! assert_eq!(first.to_string(), "019b76daa87b-0000-client-a");
//! // The server's clock is ahead; merging it keeps our next stamp after it.
//! let server: Hlc = "019b76daa900-0007-server".parse().unwrap();
//! client.merge(&server, 1_767_225_600_124);
//! let next = client.issue(1_767_225_600_125);
//! assert!(next > server && next > first);
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::ids::NODE_SYNTAX;

/// The regular expression every HLC's text matches.
pub const HLC_PATTERN: &str = "^[0-9a-f]{12}-[0-9a-f]{4}-[A-Za-z0-9._~-]{1,64}$";

/// Largest physical component that fits in 12 hex digits.
pub const PHYSICAL_MS_MAX: u64 = (1 << 48) - 1;

/// A hybrid logical clock value. Ordered by physical component, then logical counter, then node
/// bytes, which is also the byte order of its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hlc {
    physical_ms: u64,
    logical: u16,
    node: String,
}

/// Text that is not an HLC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an HLC (expected {HLC_PATTERN})")]
pub struct InvalidHlc {
    /// The rejected text, truncated to 80 characters.
    pub text: String,
}

impl Hlc {
    /// Builds an HLC from its parts; fails when the node is not a valid node name or the
    /// physical component does not fit in 48 bits.
    pub fn new(physical_ms: u64, logical: u16, node: &str) -> Result<Self, InvalidHlc> {
        if physical_ms > PHYSICAL_MS_MAX || !NODE_SYNTAX.matches(node) {
            return Err(InvalidHlc {
                text: format!("{physical_ms:x}-{logical:04x}-{node}"),
            });
        }
        Ok(Self {
            physical_ms,
            logical,
            node: node.to_owned(),
        })
    }

    /// Milliseconds since the Unix epoch.
    pub fn physical_ms(&self) -> u64 {
        self.physical_ms
    }

    /// The logical counter.
    pub fn logical(&self) -> u16 {
        self.logical
    }

    /// The node that issued this value: a Client ID, or a Server's name.
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:012x}-{:04x}-{}",
            self.physical_ms, self.logical, self.node
        )
    }
}

impl FromStr for Hlc {
    type Err = InvalidHlc;
    fn from_str(s: &str) -> Result<Self, InvalidHlc> {
        let invalid = || InvalidHlc {
            text: s.chars().take(80).collect(),
        };
        let b = s.as_bytes();
        let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
        if b.len() < 19
            || !b[..12].iter().all(lower_hex)
            || b[12] != b'-'
            || !b[13..17].iter().all(lower_hex)
            || b[17] != b'-'
            || !NODE_SYNTAX.matches(&s[18..])
        {
            return Err(invalid());
        }
        let physical_ms = u64::from_str_radix(&s[..12], 16).map_err(|_| invalid())?;
        let logical = u16::from_str_radix(&s[13..17], 16).map_err(|_| invalid())?;
        Ok(Self {
            physical_ms,
            logical,
            node: s[18..].to_owned(),
        })
    }
}

impl TryFrom<String> for Hlc {
    type Error = InvalidHlc;
    fn try_from(s: String) -> Result<Self, InvalidHlc> {
        s.parse()
    }
}

impl From<Hlc> for String {
    fn from(h: Hlc) -> String {
        h.to_string()
    }
}

impl JsonSchema for Hlc {
    fn schema_name() -> Cow<'static, str> {
        "Hlc".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": HLC_PATTERN,
            "description": "A hybrid logical clock value: 12 hex digits of milliseconds since the Unix epoch, 4 hex digits of logical counter, and the issuing node (spec chapter 02).",
        })
    }
}

/// The clock of one node. Holds the latest (physical, logical) pair it issued or merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    node: String,
    physical_ms: u64,
    logical: u16,
}

impl Clock {
    /// A clock for `node` that has issued nothing yet.
    pub fn new(node: &str) -> Result<Self, InvalidHlc> {
        Hlc::new(0, 0, node).map(|h| Self::resume(&h))
    }

    /// A clock that continues after `last`, the latest value it issued or merged before a
    /// restart (spec `[HLC-11]`: never go back, even across restarts).
    pub fn resume(last: &Hlc) -> Self {
        Self {
            node: last.node.clone(),
            physical_ms: last.physical_ms,
            logical: last.logical,
        }
    }

    /// The latest value issued or merged.
    pub fn last(&self) -> Hlc {
        self.current()
    }

    fn current(&self) -> Hlc {
        Hlc {
            physical_ms: self.physical_ms,
            logical: self.logical,
            node: self.node.clone(),
        }
    }

    fn set(&mut self, physical_ms: u64, logical: Option<u16>) {
        // A logical counter that would pass 65535 moves the physical component on by one
        // millisecond instead, which keeps the clock strictly increasing.
        match logical {
            Some(l) => {
                self.physical_ms = physical_ms;
                self.logical = l;
            }
            None => {
                self.physical_ms = physical_ms.saturating_add(1).min(PHYSICAL_MS_MAX);
                self.logical = 0;
            }
        }
    }

    /// Issues a new value for a local event (stamping a Mutation or a response).
    pub fn issue(&mut self, wall_ms: u64) -> Hlc {
        let now = wall_ms.min(PHYSICAL_MS_MAX);
        if now > self.physical_ms {
            self.set(now, Some(0));
        } else {
            self.set(self.physical_ms, self.logical.checked_add(1));
        }
        self.current()
    }

    /// Merges a received value, so that everything issued afterwards is greater than it.
    /// Returns the merged value, which is greater than both the previous local value and `remote`.
    pub fn merge(&mut self, remote: &Hlc, wall_ms: u64) -> Hlc {
        let now = wall_ms.min(PHYSICAL_MS_MAX);
        let (p, l) = (self.physical_ms, self.logical);
        let (rp, rl) = (remote.physical_ms, remote.logical);
        let p_new = p.max(rp).max(now);
        let l_new = if p_new == p && p_new == rp {
            l.max(rl).checked_add(1)
        } else if p_new == p {
            l.checked_add(1)
        } else if p_new == rp {
            rl.checked_add(1)
        } else {
            Some(0)
        };
        self.set(p_new, l_new);
        self.current()
    }
}

/// Where a Client may set its clock back to after the rejection `clock-skew` (`[HLC-12]`): the
/// greatest of `server_clock` (the response's `Driftless-Clock`) and `counted` (the HLCs of the
/// Client's own Mutations that were applied or whose Outcome it does not know), compared with
/// the node of `current`, the Client's latest HLC, and written with that node. `None` when that
/// value would not move the physical component back: a step of logical ticks only changes
/// nothing the Server's skew check sees. The Client then resumes its [`Clock`] from the result.
pub fn step_back_target(current: &Hlc, server_clock: &Hlc, counted: &[Hlc]) -> Option<Hlc> {
    let ours = |h: &Hlc| Hlc {
        physical_ms: h.physical_ms,
        logical: h.logical,
        node: current.node.clone(),
    };
    let to = counted
        .iter()
        .map(ours)
        .fold(ours(server_clock), std::cmp::max);
    (to.physical_ms < current.physical_ms).then_some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let h: Hlc = "019b76daa87b-00ff-client-a".parse().unwrap();
        assert_eq!(h.physical_ms(), 1_767_225_600_123);
        assert_eq!(h.logical(), 255);
        assert_eq!(h.node(), "client-a");
        assert_eq!(h.to_string(), "019b76daa87b-00ff-client-a");
    }

    #[test]
    fn malformed_text_is_rejected() {
        for bad in [
            "",
            "019b76daa87b-0000-",
            "019B76DAA87B-0000-a",
            "19b76daa87b-0000-a",
            "019b76daa87b-000-a",
            "019b76daa87b_0000_a",
            "019b76daa87b-0000-a b",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn text_order_equals_value_order() {
        let a: Hlc = "019b76daa87b-0001-b".parse().unwrap();
        let b: Hlc = "019b76daa87b-0002-a".parse().unwrap();
        let c: Hlc = "019b76daa87c-0000-a".parse().unwrap();
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
    }

    #[test]
    fn issue_with_a_stalled_wall_clock_counts_up() {
        let mut c = Clock::new("node-1").unwrap();
        let a = c.issue(1000);
        let b = c.issue(1000);
        let d = c.issue(999);
        assert_eq!((a.physical_ms(), a.logical()), (1000, 0));
        assert_eq!((b.physical_ms(), b.logical()), (1000, 1));
        assert_eq!((d.physical_ms(), d.logical()), (1000, 2));
    }

    #[test]
    fn logical_overflow_advances_physical() {
        let mut c = Clock::resume(&Hlc::new(1000, u16::MAX, "n").unwrap());
        let h = c.issue(1000);
        assert_eq!((h.physical_ms(), h.logical()), (1001, 0));
    }

    #[test]
    fn merge_follows_the_spec_cases() {
        let remote = Hlc::new(2000, 5, "r").unwrap();
        let mut c = Clock::resume(&Hlc::new(2000, 9, "n").unwrap());
        let m = c.merge(&remote, 1500);
        assert_eq!((m.physical_ms(), m.logical()), (2000, 10));
        let mut c = Clock::resume(&Hlc::new(1000, 9, "n").unwrap());
        let m = c.merge(&remote, 1500);
        assert_eq!((m.physical_ms(), m.logical()), (2000, 6));
        let m = c.merge(&remote, 3000);
        assert_eq!((m.physical_ms(), m.logical()), (3000, 0));
    }
}
