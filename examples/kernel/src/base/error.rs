//! The kernel's error: why a step failed, as a short formatted message.
//! Every layer returns it (`Result<T, Error>`), built with [`failure!`],
//! [`ensure!`] and [`fail!`]; the boot prints it (`BOOT FAILED: ...`) and
//! the self-test harness reports it as a failed test.
//!
//! [`failure!`]: crate::failure
//! [`ensure!`]: crate::ensure
//! [`fail!`]: crate::fail

use core::fmt::{self, Write};

/// Why something failed: a message in a fixed buffer (longer text is cut).
/// There is no heap, so the message is formatted in place; the self-test
/// harness reports it as a test failure ([`crate::selftests::harness::Failure`]).
pub struct Error {
    buf: [u8; 240],
    len: usize,
}

impl Error {
    /// An error with the formatted message `args`.
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut error = Self {
            buf: [0; 240],
            len: 0,
        };
        // Writing into the buffer cannot fail: overflow is truncated.
        let _ = error.write_fmt(args);
        error
    }

    /// The message.
    pub fn message(&self) -> &str {
        let bytes = &self.buf[..self.len];
        // Truncation may split a UTF-8 sequence; keep the valid prefix.
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Error {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Returns an [`Error`] with a formatted reason unless `$cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err($crate::base::error::Error::new(format_args!($($reason)+)));
        }
    };
}

/// An [`Error`] with a formatted message (for `map_err`).
#[macro_export]
macro_rules! failure {
    ($($reason:tt)+) => {
        $crate::base::error::Error::new(format_args!($($reason)+))
    };
}

/// Returns an [`Error`] with a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($reason:tt)+) => {
        return Err($crate::base::error::Error::new(format_args!($($reason)+)))
    };
}
