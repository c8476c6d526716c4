//! The page-fault error code: what the CPU pushes for vector 14 (Intel SDM
//! vol. 3A, 4.7 "Page-Fault Exceptions", figure 4-12).
//!
//! ```
//! use paging_core::PageFaultError;
//!
//! // A user-mode write to a present, read-only page.
//! let code = PageFaultError::from_bits_retain(0b111);
//! assert!(code.contains(PageFaultError::PRESENT | PageFaultError::WRITE));
//! assert!(!code.is_not_present());
//! assert_eq!(code.to_string(), "protection, write, user");
//! // A supervisor fetch from a page that is not mapped.
//! assert_eq!(
//!     PageFaultError::INSTRUCTION_FETCH.to_string(),
//!     "not-present, read, supervisor, fetch"
//! );
//! ```

use core::fmt;

bitflags::bitflags! {
    /// A page-fault error code. The CPU sets only the bits below; any other
    /// bit is kept as it came ([`from_bits_retain`](Self::from_bits_retain))
    /// so that nothing the CPU said is lost.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PageFaultError: u32 {
        /// P (bit 0): the page was present: a protection violation (0: the
        /// translation was not present).
        const PRESENT = 1 << 0;
        /// W/R (bit 1): the access was a write (0: a read).
        const WRITE = 1 << 1;
        /// U/S (bit 2): the access was made in user mode (CPL 3).
        const USER = 1 << 2;
        /// RSVD (bit 3): a paging-structure entry had a reserved bit set
        /// (XD without EFER.NXE, an address bit at or above MAXPHYADDR, a
        /// PAE PDPTE's reserved bits...).
        const RESERVED_BIT = 1 << 3;
        /// I/D (bit 4): the access was an instruction fetch (reported when
        /// NX or SMEP is on).
        const INSTRUCTION_FETCH = 1 << 4;
        /// PK (bit 5): a protection-key violation (PKRU/PKRS; 64-bit
        /// paging only, never on a 32-bit kernel).
        const PROTECTION_KEY = 1 << 5;
        /// SS (bit 6): a shadow-stack access.
        const SHADOW_STACK = 1 << 6;
        /// SGX (bit 15): an SGX-specific access-control violation.
        const SGX = 1 << 15;
    }
}

impl PageFaultError {
    /// Whether the fault was a missing translation (P = 0), the kind a
    /// demand-paging or lazy-sync handler resolves.
    pub const fn is_not_present(self) -> bool {
        !self.contains(Self::PRESENT)
    }

    /// Whether the faulting access was a write.
    pub const fn is_write(self) -> bool {
        self.contains(Self::WRITE)
    }

    /// Whether the faulting access came from user mode.
    pub const fn is_user(self) -> bool {
        self.contains(Self::USER)
    }

    /// Whether the faulting access was an instruction fetch.
    pub const fn is_fetch(self) -> bool {
        self.contains(Self::INSTRUCTION_FETCH)
    }

    /// Whether a reserved bit was set in an entry of the walk: a table
    /// written with a bit this CPU does not accept, never a fault to
    /// resolve by mapping something.
    pub const fn is_reserved_bit(self) -> bool {
        self.contains(Self::RESERVED_BIT)
    }
}

impl From<u32> for PageFaultError {
    fn from(code: u32) -> Self {
        Self::from_bits_retain(code)
    }
}

/// `not-present` or `protection`, then `read` or `write`, then
/// `supervisor` or `user`, then each further bit that is set
/// (`reserved-bit`, `fetch`, `protection-key`, `shadow-stack`, `sgx`, and
/// `bits 0x...` for any the SDM does not define), comma-separated.
impl fmt::Display for PageFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_not_present() {
            "not-present"
        } else {
            "protection"
        })?;
        f.write_str(if self.is_write() { ", write" } else { ", read" })?;
        f.write_str(if self.is_user() {
            ", user"
        } else {
            ", supervisor"
        })?;
        for (bit, name) in [
            (Self::RESERVED_BIT, "reserved-bit"),
            (Self::INSTRUCTION_FETCH, "fetch"),
            (Self::PROTECTION_KEY, "protection-key"),
            (Self::SHADOW_STACK, "shadow-stack"),
            (Self::SGX, "sgx"),
        ] {
            if self.contains(bit) {
                write!(f, ", {name}")?;
            }
        }
        let unknown = self.bits() & !Self::all().bits();
        if unknown != 0 {
            write!(f, ", bits {unknown:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::PageFaultError as E;

    #[test]
    fn each_bit_is_where_the_sdm_puts_it() {
        assert_eq!(E::PRESENT.bits(), 1);
        assert_eq!(E::WRITE.bits(), 2);
        assert_eq!(E::USER.bits(), 4);
        assert_eq!(E::RESERVED_BIT.bits(), 8);
        assert_eq!(E::INSTRUCTION_FETCH.bits(), 0x10);
        assert_eq!(E::PROTECTION_KEY.bits(), 0x20);
        assert_eq!(E::SHADOW_STACK.bits(), 0x40);
        assert_eq!(E::SGX.bits(), 0x8000);
    }

    #[test]
    fn display_names_every_bit() {
        assert_eq!(E::empty().to_string(), "not-present, read, supervisor");
        assert_eq!(E::from(0x3).to_string(), "protection, write, supervisor");
        assert_eq!(E::from(0x15).to_string(), "protection, read, user, fetch");
        assert_eq!(
            E::from(0x9).to_string(),
            "protection, read, supervisor, reserved-bit"
        );
        assert_eq!(
            E::from(0x8060).to_string(),
            "not-present, read, supervisor, protection-key, shadow-stack, sgx"
        );
        assert_eq!(
            E::from(0x1_0004).to_string(),
            "not-present, read, user, bits 0x10000"
        );
    }

    #[test]
    fn predicates_read_their_bits() {
        let c = E::from(0b11111);
        assert!(!c.is_not_present() && c.is_write() && c.is_user());
        assert!(c.is_fetch() && c.is_reserved_bit());
        let none = E::empty();
        assert!(none.is_not_present() && !none.is_write() && !none.is_user());
        assert!(!none.is_fetch() && !none.is_reserved_bit());
        assert_eq!(E::from(0xFFFF_FFFF).bits(), 0xFFFF_FFFF);
    }
}
