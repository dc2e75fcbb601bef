//! Concurrent requests: the same request from several connections at once, for what only a
//! race shows (one push replayed concurrently, `[IDEM-2]`) or only a burst reaches (a rate limit
//! on a slow or loaded machine, `[LIM-5]`).

use serde_json::Value;

use crate::client::Ctx;
use crate::Verdict;

impl Ctx {
    /// POSTs the JSON `body` to `path` from `n` connections at once (each thread waits at a
    /// barrier, then sends); the answers, in thread order, as (status, body). For requests that
    /// must be safe to race, such as one push replayed concurrently (`[IDEM-2]`).
    pub fn post_concurrently(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        n: usize,
    ) -> Result<Vec<(u16, Value)>, Verdict> {
        let url = format!("{}{path}", self.base());
        let bytes = body.to_string();
        let barrier = std::sync::Barrier::new(n.max(1));
        let answers: Vec<Result<(u16, Value), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n.max(1))
                .map(|_| {
                    let agent = self.agent().clone();
                    let (url, bytes, barrier) = (&url, &bytes, &barrier);
                    scope.spawn(move || {
                        let request =
                            bearer_request("POST", url, token, bytes.clone().into_bytes())?;
                        barrier.wait();
                        let mut resp = agent.run(request).map_err(|e| e.to_string())?;
                        let status = resp.status().as_u16();
                        let text = resp.body_mut().read_to_string().unwrap_or_default();
                        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a request thread panicked".into()))
                })
                .collect()
        });
        answers
            .into_iter()
            .map(|a| a.map_err(|e| Verdict::Error(format!("POST {path}: {e}"))))
            .collect()
    }

    /// GETs `path` with `token` from `threads` connections at once until one answer has
    /// `status`, at most `max` requests in all; whether one did. Parallel, so that a rate limit
    /// is reached on a slow or loaded machine too. A transport failure is an error.
    pub fn get_until_status(
        &self,
        path: &str,
        token: &str,
        status: u16,
        threads: usize,
        max: usize,
    ) -> Result<bool, Verdict> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (sent, found) = (AtomicUsize::new(0), AtomicBool::new(false));
        let url = format!("{}{path}", self.base());
        let failure = std::sync::Mutex::new(None::<String>);
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                let agent = self.agent().clone();
                let (url, sent, found, failure) = (&url, &sent, &found, &failure);
                scope.spawn(move || {
                    while !found.load(Ordering::Relaxed)
                        && sent.fetch_add(1, Ordering::Relaxed) < max
                    {
                        let request = bearer_request("GET", url, token, Vec::new());
                        match request.and_then(|r| agent.run(r).map_err(|e| e.to_string())) {
                            Ok(resp) if resp.status().as_u16() == status => {
                                found.store(true, Ordering::Relaxed)
                            }
                            Ok(_) => {}
                            Err(e) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                found.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(Verdict::Error(format!("GET {path}: {e}"))),
            None => Ok(found.into_inner()),
        }
    }
}

/// A request with a bearer Token and `Driftless-Version: 1.0`; a non-empty body is JSON.
fn bearer_request(
    method: &str,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> Result<ureq::http::Request<Vec<u8>>, String> {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("driftless-version", "1.0");
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(body).map_err(|e| e.to_string())
}
