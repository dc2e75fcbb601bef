//! Content codings of bodies (spec chapter 01, `[HTTP-16]` to `[HTTP-18]`): responses are sent
//! gzip-compressed to Clients that accept it, and gzip request bodies are decoded, never past the
//! body limit (`[LIM-2]` applies to the decoded size).

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// Responses shorter than this many bytes are sent as they are: compressing them saves less
/// than the coding costs.
pub const GZIP_RESPONSE_BYTES_MIN: usize = 1024;

/// Whether an `Accept-Encoding` header value accepts `gzip` (RFC 9110 §12.5.3): named, or
/// covered by `*`, with a quality above zero.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        match coding.as_str() {
            "gzip" | "x-gzip" => return !refused,
            "*" => star = !refused,
            _ => {}
        }
    }
    star
}

/// `body` gzip-compressed at the fast level (pull pages are large and repetitive: speed matters
/// more than the last few percent).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("writing to a Vec cannot fail")
}

/// Why a gzip body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum GunzipError {
    /// It decodes to more than the limit: decoding stopped there.
    TooLarge,
    /// It is not a gzip stream.
    Corrupt,
}

/// Decodes a gzip body, reading at most `max` decoded bytes (and one more to tell that it is
/// over): a small body that inflates without bound costs no more than `max` bytes of memory.
pub fn gunzip_limited(body: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity((body.len() * 4).min(max));
    GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| GunzipError::Corrupt)?;
    if out.len() > max {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_as_rfc_9110_says() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("*, gzip;q=0"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn gzip_round_trips_and_stops_at_the_limit() {
        let body = br#"{"records":[]}"#.repeat(100);
        let packed = gzip(&body);
        assert!(packed.len() < body.len());
        assert_eq!(gunzip_limited(&packed, body.len()), Ok(body.clone()));
        assert_eq!(
            gunzip_limited(&packed, body.len() - 1),
            Err(GunzipError::TooLarge)
        );
        assert_eq!(gunzip_limited(b"not gzip", 100), Err(GunzipError::Corrupt));
    }
}
