//! Raw-socket requests, for what an HTTP client library cannot send or would hide: bodies
//! larger than the Server reads (`[LIM-2]`, `[LIM-3]`), malformed request heads (`[LIM-13]`), and
//! a request fully sent before anything else happens (a held long-poll, `[PULL-8]`). Plain
//! `http://` only; over `https://` these checks are skipped.

use std::time::Duration;

use serde_json::Value;

use crate::client::{Ctx, Resp};
use crate::Verdict;

impl Ctx {
    /// POSTs a body larger than the Server will read, over a raw socket: the body is written
    /// from another thread (write errors ignored), so a Server that answers early and closes the
    /// connection (as `[LIM-3]` allows) is still heard. Plain `http://` only.
    pub fn post_oversized(&self, path: &str, token: &str, body: Vec<u8>) -> Result<Resp, Verdict> {
        let Some(authority) = self.authority() else {
            return Err(Verdict::Skip(
                "oversized uploads are checked over plain http only".into(),
            ));
        };
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        self.raw_exchange(request)?
            .ok_or_else(|| Verdict::Error("no answer to an oversized body".into()))
    }

    /// Sends `request` as raw bytes on a new connection (written from another thread, write
    /// errors ignored, like [`Ctx::post_oversized`]) and reads until the Server closes or a
    /// whole response has arrived. `None` when the Server closed without answering. Plain
    /// `http://` only.
    pub fn raw_exchange(&self, request: Vec<u8>) -> Result<Option<Resp>, Verdict> {
        use std::io::Write;
        let mut stream = self.raw_connect(Duration::from_secs(30))?;
        let mut writer = stream
            .try_clone()
            .map_err(|e| Verdict::Error(e.to_string()))?;
        let upload = std::thread::spawn(move || {
            let _ = writer.write_all(&request);
        });
        let raw = read_one_response(&mut stream);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = upload.join();
        Ok((!raw.is_empty()).then(|| parse_raw_response(&raw)))
    }

    /// Sends `request` as raw bytes on a new connection and returns once every byte is written,
    /// without reading the answer: the request is then fully at the Server (a long-poll that a
    /// later push must wake). Read the answer with [`Sent::response`]. Plain `http://` only.
    pub fn raw_send(&self, request: &[u8]) -> Result<Sent, Verdict> {
        use std::io::Write;
        let mut stream = self.raw_connect(Duration::from_secs(60))?;
        stream
            .write_all(request)
            .and_then(|()| stream.flush())
            .map_err(|e| Verdict::Error(format!("sending a raw request: {e}")))?;
        Ok(Sent { stream })
    }

    /// A new connection to the Server whose reads give up after `read_timeout` (a hang guard,
    /// not a check); a skip over `https://`.
    fn raw_connect(&self, read_timeout: Duration) -> Result<std::net::TcpStream, Verdict> {
        let Some(authority) = self.authority() else {
            return Err(Verdict::Skip(
                "raw requests are checked over plain http only".into(),
            ));
        };
        let stream =
            std::net::TcpStream::connect(authority).map_err(|e| Verdict::Error(e.to_string()))?;
        stream
            .set_read_timeout(Some(read_timeout))
            .map_err(|e| Verdict::Error(e.to_string()))?;
        Ok(stream)
    }

    /// The authority (`host:port`) of a plain `http://` base URL.
    pub fn authority(&self) -> Option<&str> {
        self.base().strip_prefix("http://")
    }
}

/// A request fully written by [`Ctx::raw_send`] whose answer is not read yet.
pub struct Sent {
    stream: std::net::TcpStream,
}

impl Sent {
    /// Reads the answer: `None` when the Server closed without answering.
    pub fn response(mut self) -> Option<Resp> {
        let raw = read_one_response(&mut self.stream);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        (!raw.is_empty()).then(|| parse_raw_response(&raw))
    }
}

/// Reads from `stream` until the Server closes, the read times out, or one whole response with
/// a `Content-Length` has arrived.
fn read_one_response(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| raw.len() >= end + 4 + n) {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    raw
}

/// A response read from a raw socket: status line, headers, body (up to the end of `raw`).
fn parse_raw_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_owned(),
    }
}
