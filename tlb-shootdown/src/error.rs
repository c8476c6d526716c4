//! Errors of a shootdown.

use core::fmt;

use paging_core::{AnyError, ErrorKind, PagingError};

use crate::CpuSet;

/// Why a shootdown did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShootdownError {
    /// A CPU index (a target, or the current CPU) is not below the
    /// shootdown's number of CPUs. Nothing was sent or changed.
    NoSuchCpu {
        /// The index.
        cpu: usize,
    },
    /// A target CPU is offline: it takes no shootdown interrupts, so
    /// waiting for it would hang. Nothing was sent or changed.
    Offline {
        /// The lowest offline target.
        cpu: usize,
    },
    /// These CPUs did not acknowledge within the configured spin bound
    /// ([`Shootdown::with_ack_limit`](crate::Shootdown::with_ack_limit)):
    /// the request stays in their mailboxes and is performed when they
    /// next service it, but until then they may use stale translations.
    NoAck {
        /// The CPUs that did not answer.
        cpus: CpuSet,
    },
}

impl fmt::Display for ShootdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchCpu { cpu } => write!(f, "no CPU {cpu}"),
            Self::Offline { cpu } => write!(f, "TLB shootdown to offline CPU {cpu}"),
            Self::NoAck { cpus } => {
                write!(f, "CPUs {cpus:?} did not acknowledge the TLB shootdown")
            }
        }
    }
}

impl core::error::Error for ShootdownError {}

impl PagingError for ShootdownError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSuchCpu { .. } => ErrorKind::OutOfRange,
            Self::Offline { .. } | Self::NoAck { .. } => ErrorKind::InvalidState,
        }
    }
}

impl From<ShootdownError> for AnyError {
    /// Keeps the kind and names the variant (paging-core's catch-all cannot
    /// hold this crate's types).
    fn from(e: ShootdownError) -> Self {
        let what = match e {
            ShootdownError::NoSuchCpu { .. } => "tlb-shootdown: no such cpu",
            ShootdownError::Offline { .. } => "tlb-shootdown: offline cpu",
            ShootdownError::NoAck { .. } => "tlb-shootdown: no acknowledgement",
        };
        Self::other(e.kind(), what)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_kind_and_any_error() {
        let e = ShootdownError::NoAck {
            cpus: CpuSet::single(2),
        };
        assert_eq!(
            e.to_string(),
            "CPUs {2} did not acknowledge the TLB shootdown"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidState);
        assert_eq!(
            ShootdownError::Offline { cpu: 1 }.to_string(),
            "TLB shootdown to offline CPU 1"
        );
        assert_eq!(
            ShootdownError::NoSuchCpu { cpu: 9 }.kind(),
            ErrorKind::OutOfRange
        );
        let any = AnyError::from(ShootdownError::NoSuchCpu { cpu: 9 });
        assert_eq!(any.kind(), ErrorKind::OutOfRange);
    }
}
