//! What a simulated access is, and the exceptions the simulated CPU raises.

use core::fmt;

use paging_core::addr::VirtAddr;

/// The kind of a memory access, as the CPU checks it against the rights of
/// the paging-structure entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    /// A write (a read otherwise).
    pub write: bool,
    /// A user-mode (CPL 3) access (supervisor otherwise).
    pub user: bool,
    /// An instruction fetch.
    pub exec: bool,
}

impl Access {
    /// Supervisor data read.
    pub const READ: Self = Self {
        write: false,
        user: false,
        exec: false,
    };
    /// Supervisor data write.
    pub const WRITE: Self = Self {
        write: true,
        user: false,
        exec: false,
    };
    /// Supervisor instruction fetch.
    pub const EXEC: Self = Self {
        write: false,
        user: false,
        exec: true,
    };
    /// User data read.
    pub const USER_READ: Self = Self {
        write: false,
        user: true,
        exec: false,
    };
    /// User data write.
    pub const USER_WRITE: Self = Self {
        write: true,
        user: true,
        exec: false,
    };
    /// User instruction fetch.
    pub const USER_EXEC: Self = Self {
        write: false,
        user: true,
        exec: true,
    };
}

/// A #PF exception: the faulting linear address (CR2) and the error code the
/// CPU pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageFault {
    /// The linear address whose translation failed (CR2).
    pub addr: VirtAddr,
    /// The error code, bits as defined by [`PageFault::PRESENT`] and friends.
    pub code: u32,
}

impl PageFault {
    /// Bit 0 (P): 0 = a non-present entry, 1 = a protection violation (or a
    /// reserved bit).
    pub const PRESENT: u32 = 1 << 0;
    /// Bit 1 (W/R): the access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// Bit 2 (U/S): the access was a user-mode access.
    pub const USER: u32 = 1 << 2;
    /// Bit 3 (RSVD): a reserved bit was set in a paging-structure entry.
    pub const RESERVED: u32 = 1 << 3;
    /// Bit 4 (I/D): the access was an instruction fetch (reported only under
    /// PAE with EFER.NXE on).
    pub const FETCH: u32 = 1 << 4;

    /// A fault with this address and raw error code.
    pub const fn new(addr: VirtAddr, code: u32) -> Self {
        Self { addr, code }
    }

    /// P = 1: a protection violation or reserved bit, not a missing entry.
    pub const fn is_protection(&self) -> bool {
        self.code & Self::PRESENT != 0
    }

    /// W/R = 1: the access was a write.
    pub const fn is_write(&self) -> bool {
        self.code & Self::WRITE != 0
    }

    /// U/S = 1: the access came from user mode.
    pub const fn is_user(&self) -> bool {
        self.code & Self::USER != 0
    }

    /// RSVD = 1: a reserved bit was set in an entry the walk used.
    pub const fn is_reserved(&self) -> bool {
        self.code & Self::RESERVED != 0
    }

    /// I/D = 1: the access was an instruction fetch.
    pub const fn is_fetch(&self) -> bool {
        self.code & Self::FETCH != 0
    }
}

impl fmt::Display for PageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page fault at {} (error code {:#x}: {}{}{}{})",
            self.addr,
            self.code,
            if self.is_protection() {
                "protection"
            } else {
                "not present"
            },
            if self.is_write() { ", write" } else { ", read" },
            if self.is_user() {
                ", user"
            } else {
                ", supervisor"
            },
            match (self.is_reserved(), self.is_fetch()) {
                (true, true) => ", reserved bit, fetch",
                (true, false) => ", reserved bit",
                (false, true) => ", fetch",
                (false, false) => "",
            }
        )
    }
}

impl core::error::Error for PageFault {}

/// A #GP from a MOV to CR3 (or a CR4.PGE toggle) in PAE mode: a present
/// PDPTE had a reserved bit set (bits 2:1, 8:5 or 63:MAXPHYADDR, which
/// include XD). Nothing changed: CR3, the latched PDPTEs and the TLB are as
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cr3Fault {
    /// The value the load tried to put in CR3.
    pub cr3: u32,
    /// Index (0..4) of the first offending PDPTE.
    pub index: usize,
    /// Its value.
    pub pdpte: u64,
}

/// The name the SDM gives the exception.
pub type GeneralProtection = Cr3Fault;

impl fmt::Display for Cr3Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#GP loading CR3 {:#010x}: PDPTE {} = {:#018x} has reserved bits set",
            self.cr3, self.index, self.pdpte
        )
    }
}

impl core::error::Error for Cr3Fault {}
