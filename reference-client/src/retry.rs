//! How the Client retries: the [`RetryPolicy`] (full-jitter exponential backoff) and its
//! [`Preset`]s (spec chapter 08, "Retrying": `[RETRY-1]`, `[RETRY-6]`).

use serde_json::Value;

/// Retry schedule presets (`[RETRY-6]`: each waits at least as long as the Server asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A user is waiting: the Server's policy, few attempts.
    Interactive,
    /// Background sync: longer waits, more attempts.
    Background,
    /// Metered network: long waits, few attempts.
    Metered,
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
}
