//! How the Client retries (spec chapter 08, "Retrying"): the [`RetryPolicy`] of full-jitter
//! exponential backoff and its [`Preset`]s (`[RETRY-1]`, `[RETRY-6]`), which failures are
//! transient (`[RETRY-3]`), and the schedule: persisted so that a restart resumes it
//! (`[RETRY-5]`), never sooner than `Retry-After` (`[RETRY-2]`), reset on success (`[RETRY-7]`).
//! The transport runs the attempts; this module decides how long to wait between them.

use serde_json::Value;

use crate::clock::now_ms;
use crate::store::Store;
use crate::{Client, ClientError, Event};

/// Retry schedule presets (`[RETRY-6]`: each waits at least as long as the Server asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A user is waiting: the Server's policy, few attempts.
    Interactive,
    /// Background sync: longer waits, more attempts.
    Background,
    /// Metered network: long waits, few attempts.
    Metered,
    /// Exactly the Server's announced policy, no longer (`[RETRY-1]` without the room
    /// `[RETRY-6]` gives), and many attempts: what the client conformance kit checks against.
    Announced,
}

/// How to retry: bounds of the full-jitter exponential backoff, and the attempts one sync may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Upper bound of the first delay.
    pub initial_delay_ms: u64,
    /// Largest upper bound.
    pub delay_ms_cap: u64,
    /// Growth per consecutive failure.
    pub multiplier: u64,
    /// Failed attempts one `sync` may make before it gives up (the schedule is kept).
    pub attempts_per_sync: u32,
}

impl RetryPolicy {
    /// A preset.
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Interactive => Self {
                initial_delay_ms: 200,
                delay_ms_cap: 5_000,
                multiplier: 2,
                attempts_per_sync: 5,
            },
            Preset::Background => Self {
                initial_delay_ms: 1_000,
                delay_ms_cap: 300_000,
                multiplier: 2,
                attempts_per_sync: 12,
            },
            // `at_least` raises each bound to the Server's.
            Preset::Announced => Self {
                initial_delay_ms: 1,
                delay_ms_cap: 1,
                multiplier: 1,
                attempts_per_sync: 30,
            },
            Preset::Metered => Self {
                initial_delay_ms: 5_000,
                delay_ms_cap: 900_000,
                multiplier: 3,
                attempts_per_sync: 4,
            },
        }
    }

    /// This policy, but never waiting less than the Server's announced policy (`[RETRY-1]`).
    pub fn at_least(self, server: &Value) -> Self {
        let get = |k: &str| server[k].as_u64();
        Self {
            initial_delay_ms: self
                .initial_delay_ms
                .max(get("initial_delay_ms").unwrap_or(0)),
            delay_ms_cap: self.delay_ms_cap.max(get("delay_ms_cap").unwrap_or(0)),
            multiplier: self.multiplier.max(get("multiplier").unwrap_or(1)),
            attempts_per_sync: self.attempts_per_sync,
        }
    }

    /// The upper bound of the wait after `failures` consecutive failures (0-based).
    pub fn bound_ms(&self, failures: u32) -> u64 {
        let grown = self
            .initial_delay_ms
            .saturating_mul(self.multiplier.saturating_pow(failures.min(40)));
        grown.min(self.delay_ms_cap)
    }

    /// The wait in milliseconds after `failures` consecutive failures (0-based), drawn with full
    /// jitter from `random_u64` (a uniformly random 64-bit number; the reference Client reads it
    /// from the operating system) as `random_u64 mod (bound + 1)`, and never shorter than
    /// `retry_after_s`, the Server's `Retry-After` in seconds (`[RETRY-1]`, `[RETRY-2]`). Pure,
    /// so a seeded random source replays the same schedule (spec/vectors/backoff.json).
    pub fn delay_ms(&self, failures: u32, retry_after_s: Option<u64>, random_u64: u64) -> u64 {
        let bound = self.bound_ms(failures);
        // A cap of u64::MAX would overflow bound + 1; saturating keeps the draw below it.
        let jittered = random_u64 % bound.saturating_add(1);
        match retry_after_s {
            Some(s) => jittered.max(s.saturating_mul(1000)),
            None => jittered,
        }
    }
}

/// Whether a response with this status is a transient failure, to retry (`[RETRY-3]`).
pub(crate) fn is_transient(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

impl Client {
    /// The consecutive failures so far, as persisted (`[RETRY-5]`), after waiting until the
    /// persisted time of the next attempt.
    pub(crate) fn resume_schedule(&self) -> Result<u32, ClientError> {
        let resumed: u32 = self
            .store
            .meta("retry_failures")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // A restart resumes the schedule instead of retrying at once.
        if let Some(next) = self
            .store
            .meta("retry_next_ms")?
            .and_then(|v| v.parse::<u64>().ok())
        {
            let now = now_ms();
            if next > now {
                crate::inject::sleep_ms((next - now).min(self.cfg.retry.delay_ms_cap));
            }
        }
        Ok(resumed)
    }

    /// The configured policy, never waiting less than the Server's announced one.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        match &self.discovery {
            Some(d) => self.cfg.retry.at_least(&d["backoff"]),
            None => self.cfg.retry,
        }
    }

    /// Forgets the failures after a successful request (`[RETRY-7]`).
    pub(crate) fn reset_schedule(&mut self) -> Result<(), ClientError> {
        self.store.tx(|tx| {
            Store::set_meta(tx, "retry_failures", "0")?;
            Store::set_meta(tx, "retry_next_ms", "0")
        })
    }

    /// After the failure that follows `failed` consecutive ones, persists the schedule and waits
    /// a delay drawn with full jitter, never shorter than the Server's `Retry-After` seconds.
    pub(crate) fn wait_before_retry(
        &mut self,
        policy: &RetryPolicy,
        failed: u32,
        retry_after: Option<u64>,
        reason: String,
    ) -> Result<(), ClientError> {
        let mut r = [0u8; 8];
        let _ = crate::inject::fill_random(&mut r);
        let retry_after = retry_after.filter(|_| !crate::faults::fault!(IgnoresRetryAfter));
        let delay = if crate::faults::fault!(NoJitter) {
            policy
                .bound_ms(failed)
                .max(retry_after.unwrap_or(0).saturating_mul(1000))
        } else {
            policy.delay_ms(failed, retry_after, u64::from_le_bytes(r))
        };
        let failures = failed + 1;
        let next = now_ms() + delay;
        self.store.tx(|tx| {
            Store::set_meta(tx, "retry_failures", &failures.to_string())?;
            Store::set_meta(tx, "retry_next_ms", &next.to_string())?;
            Store::count(tx, "retries", 1)
        })?;
        self.emit(Event::Retrying {
            failures,
            delay_ms: delay,
            reason,
        });
        crate::inject::sleep_ms(delay);
        Ok(())
    }
}
