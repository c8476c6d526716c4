//! The lazy kernel-sync path's fault counts as a value: counted by
//! [`crate::mm::kernel_sync`], recorded around an armed read by the NMI
//! handler ([`crate::arch::nmi`]), which sits below `mm/`.

/// How many page faults the lazy path resolved so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncFaults {
    /// An entry was copied from the reference.
    pub filled: u32,
    /// The entry was already equal to the reference's: just retried.
    pub already_synced: u32,
}

impl SyncFaults {
    /// Faults resolved since `earlier`.
    pub fn since(self, earlier: SyncFaults) -> SyncFaults {
        SyncFaults {
            filled: self.filled.wrapping_sub(earlier.filled),
            already_synced: self.already_synced.wrapping_sub(earlier.already_synced),
        }
    }
}
