//! The Client's clock (spec chapter 02): [`LocalClock`] is this handle's copy of the Hybrid
//! Logical Clock that every handle on one store shares, stored with each Stamp (`[HLC-10]`,
//! `[HLC-11]`), kept past merged Server clocks (`[HLC-5]`) and set back after `clock-skew`
//! (`[HLC-12]`). [`now_ms`] is where the Client reads the wall clock, and [`random_hex`] makes
//! the random part of Client and Op IDs.

use driftless_protocol::hlc::{Clock, Hlc};

use crate::store::Store;
use crate::ClientError;

/// This handle's copy of the clock that every handle on the store shares. The store holds the
/// clock (`hlc`) and the number of step backs so far (`clock_epoch`, `[HLC-12]`); a handle whose
/// epoch is behind drops its copy for the stored one.
#[derive(Debug, Clone)]
pub(crate) struct LocalClock {
    pub(crate) clock: Clock,
    pub(crate) epoch: u64,
}

impl LocalClock {
    /// Brings this copy up to the store's clock, inside `tx`.
    pub(crate) fn catch_up_in(&mut self, tx: &rusqlite::Connection) -> Result<(), ClientError> {
        let stored = Store::meta_in(tx, "hlc")?.and_then(|h| h.parse::<Hlc>().ok());
        let epoch = Store::meta_in(tx, "clock_epoch")?
            .and_then(|e| e.parse::<u64>().ok())
            .unwrap_or(0);
        match stored {
            Some(s) if epoch != self.epoch || s > self.clock.last() => {
                self.clock = Clock::resume(&s);
            }
            _ => {}
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Issues a Stamp inside `tx` and stores the clock (`[HLC-11]`, `[HLC-10]`).
    pub(crate) fn stamp_in(&mut self, tx: &rusqlite::Connection) -> Result<Hlc, ClientError> {
        self.catch_up_in(tx)?;
        let hlc = self.clock.issue(now_ms());
        Store::set_meta(tx, "hlc", &hlc.to_string())?;
        Ok(hlc)
    }

    /// Stores Server clocks merged since (`[HLC-5]`), so every handle's next Stamp is past them.
    pub(crate) fn keep_in(&mut self, tx: &rusqlite::Connection) -> Result<(), ClientError> {
        let mine = self.clock.last();
        let epoch = self.epoch;
        self.catch_up_in(tx)?;
        if self.epoch == epoch && mine >= self.clock.last() {
            self.clock = Clock::resume(&mine);
            Store::set_meta(tx, "hlc", &mine.to_string())?;
        }
        Ok(())
    }

    /// Sets the clock of every handle back after `clock-skew` (`[HLC-12]`) to the protocol's
    /// [`step_back_target`](driftless_protocol::hlc::step_back_target) of the latest HLC any
    /// handle stored, `server` (the response's `Driftless-Clock`) and `counted` (the HLCs of this
    /// Client's applied Mutations and those of unknown fate); returns whether it moved. A step of
    /// logical ticks only would change nothing the Server's skew check sees, so none is taken.
    pub(crate) fn step_back_in(
        &mut self,
        tx: &rusqlite::Connection,
        server: &Hlc,
        counted: &[Hlc],
    ) -> Result<bool, ClientError> {
        self.catch_up_in(tx)?;
        let current = self.clock.last();
        let Some(to) = driftless_protocol::hlc::step_back_target(&current, server, counted) else {
            return Ok(false);
        };
        let to = &to;
        self.epoch += 1;
        self.clock = Clock::resume(to);
        Store::set_meta(tx, "hlc", &to.to_string())?;
        Store::set_meta(tx, "clock_epoch", &self.epoch.to_string())?;
        Store::count(tx, "clock_step_backs", 1)?;
        Ok(true)
    }
}

pub(crate) fn now_ms() -> u64 {
    crate::inject::now_ms()
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if !crate::inject::fill_random(&mut b) {
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (now_ms() as usize + i) as u8)
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
