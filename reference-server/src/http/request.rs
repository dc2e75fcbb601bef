//! What is read from a request before a handler runs: its route ([`Route`]) with the path
//! parameters, its query parameters, and whether a JSON body nests too deep (`[LIM-14]`).

use super::*;

/// One endpoint of the protocol, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Discovery,
    Push(String),
    Manifest(String),
    Pull(String),
    Record(String, String, String),
    History(String, String, String),
    Checksums(String),
    Bucket(String, String),
    Schemas(String, String),
    Schema(String, String, String),
    Compact(String),
    /// The dashboard page (not part of the protocol; `crate::dashboard`).
    Dashboard,
    /// The dashboard's JSON, for Tokens with `admin` on some Space.
    DashboardStats,
}

impl Route {
    pub(super) fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.split('/').collect();
        let s = |i: usize| segments[i].to_owned();
        Some(match segments.as_slice() {
            ["", ".well-known", "driftless"] => Route::Discovery,
            ["", "v1", "spaces", _, "push"] => Route::Push(s(3)),
            ["", "v1", "spaces", _, "manifest"] => Route::Manifest(s(3)),
            ["", "v1", "spaces", _, "pull"] => Route::Pull(s(3)),
            ["", "v1", "spaces", _, "records", _, _] => Route::Record(s(3), s(5), s(6)),
            ["", "v1", "spaces", _, "records", _, _, "history"] => Route::History(s(3), s(5), s(6)),
            ["", "v1", "spaces", _, "checksums"] => Route::Checksums(s(3)),
            ["", "v1", "spaces", _, "buckets", _] => Route::Bucket(s(3), s(5)),
            ["", "v1", "spaces", _, "collections", _, "schemas"] => Route::Schemas(s(3), s(5)),
            ["", "v1", "spaces", _, "collections", _, "schemas", _] => {
                Route::Schema(s(3), s(5), s(7))
            }
            ["", "v1", "spaces", _, "compact"] => Route::Compact(s(3)),
            ["", "dashboard"] => Route::Dashboard,
            ["", "dashboard", "api", "stats"] => Route::DashboardStats,
            _ => return None,
        })
    }

    /// A fixed name for metrics and logs.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Route::Discovery => "discovery",
            Route::Push(_) => "push",
            Route::Manifest(_) => "manifest",
            Route::Pull(_) => "pull",
            Route::Record(..) => "record",
            Route::History(..) => "history",
            Route::Checksums(_) => "checksums",
            Route::Bucket(..) => "bucket",
            Route::Schemas(..) => "list_schemas",
            Route::Schema(..) => "put_schema",
            Route::Compact(_) => "compact",
            Route::Dashboard => "dashboard",
            Route::DashboardStats => "dashboard_stats",
        }
    }

    pub(super) fn method(&self) -> Method {
        match self {
            Route::Push(_) | Route::Manifest(_) | Route::Compact(_) => Method::POST,
            Route::Schema(..) => Method::PUT,
            _ => Method::GET,
        }
    }

    pub(super) fn has_body(&self) -> bool {
        matches!(
            self,
            Route::Push(_) | Route::Manifest(_) | Route::Schema(..)
        )
    }

    /// The Space and the Scope the endpoint needs on it.
    pub(super) fn access(&self) -> Option<(&str, Scope)> {
        Some(match self {
            Route::Discovery | Route::Dashboard | Route::DashboardStats => return None,
            Route::Push(s) | Route::Manifest(s) => (s, Scope::Write),
            Route::Pull(s)
            | Route::Record(s, ..)
            | Route::Checksums(s)
            | Route::Bucket(s, _)
            | Route::Schemas(s, _) => (s, Scope::Read),
            Route::History(s, ..) | Route::Schema(s, ..) | Route::Compact(s) => (s, Scope::Admin),
        })
    }
}

pub(super) fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(b) => {
                            out.push(b);
                            i += 3;
                            continue;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b'+' => out.push(b' '),
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether JSON text nests arrays and objects deeper than `max` (`[LIM-14]`): a container at the
/// top is depth 1, so a body of depth exactly `max` passes. Scans bytes without parsing, skipping
/// strings, so a hostile body cannot exhaust the stack.
pub(super) fn too_deep(body: &[u8], max: u32) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(!too_deep(br#"{"a": "[[[[[[[[[["}"#, 2));
        assert!(too_deep(b"[[[1]]]", 2));
        assert!(!too_deep(b"[[1]]", 2));
        assert!(!too_deep(br#"["\"[[[[" ]"#, 1));
    }

    #[test]
    fn routes_parse_their_parameters() {
        assert_eq!(
            Route::parse("/v1/spaces/demo/records/tasks/t1/history"),
            Some(Route::History("demo".into(), "tasks".into(), "t1".into()))
        );
        assert_eq!(Route::parse("/v1/spaces/demo/nope"), None);
        assert_eq!(
            Route::parse("/.well-known/driftless"),
            Some(Route::Discovery)
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = query_params(Some("cursor=c1.4.ab&after=tasks%2Ft1&x"));
        assert_eq!(q["after"], "tasks/t1");
        assert_eq!(q["x"], "");
    }
}
