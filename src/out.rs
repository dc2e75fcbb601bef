//! Printing results to stdout that stops quietly when the reader went away.
//!
//! `println!` panics ("failed printing to stdout: Broken pipe") when stdout is a pipe whose
//! reader closed it, as `driftless simulate | head` does. [`outln!`] and [`out!`] print through
//! [`write`] instead: the first write that fails (EPIPE or any other error) marks stdout closed,
//! and every later write is dropped without a word, so the command finishes its work and exits
//! with its own code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout and flushes; after the first failure writes nothing.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Like `print!`, through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// Like `println!`, through [`write`].
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
