//! Token buckets by key, for the per-User request limit (`[LIM-5]`) and the per-address limit
//! on failed authentications (`[SEC-6]`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets by key: per User for requests (`[LIM-5]`), per source address for failed
/// authentications (`[SEC-6]`).
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_s` requests per second per key, in bursts of as many.
    pub fn new(per_s: u32) -> Self {
        let per_s = f64::from(per_s.max(1));
        Self::with_burst(per_s, per_s)
    }

    /// A limiter earning `per_s` tokens per second per key, holding at most `burst`.
    pub fn with_burst(per_s: f64, burst: f64) -> Self {
        Self {
            per_s: per_s.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Refills `key`'s bucket, then takes one token from it if `take`; on refusal, the whole
    /// seconds until one is available.
    fn refill(&self, key: &str, take: bool) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            buckets.clear(); // bounded memory; a reset only ever lets requests through
        }
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_s).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            if take {
                *tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_s).ceil().clamp(1.0, 86_400.0) as u64)
        }
    }

    /// Takes one token for `key`; on refusal, the whole seconds until one is available.
    pub(crate) fn take(&self, key: &str) -> Result<(), u64> {
        self.refill(key, true)
    }

    /// Whether `key` has a token left, without taking it.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        self.refill(key, false)
    }
}
