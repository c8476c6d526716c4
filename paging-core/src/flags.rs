//! Mode-independent mapping flags.
//!
//! These are *generic* flags: each backend converts them to its own entry bits
//! and refuses what its format cannot express (for example `NO_EXECUTE` in
//! 2-level mode, which has no XD bit). The values are part of the API: bits
//! 0-6 (present .. dirty) sit where every x86 leaf entry has them, and
//! `GLOBAL` is bit 7 (one below the hardware's bit 8), so a backend converts
//! with two masks and a shift instead of a loop over flags.

bitflags::bitflags! {
    /// What a mapping allows and how it is cached.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MapFlags: u16 {
        /// The translation is valid. Mapping calls add it themselves.
        const PRESENT = 1 << 0;
        /// Writes are allowed (R/W).
        const WRITABLE = 1 << 1;
        /// Ring 3 may access the page (U/S).
        const USER = 1 << 2;
        /// Write-through caching (PWT).
        const WRITE_THROUGH = 1 << 3;
        /// Caching disabled (PCD).
        const CACHE_DISABLE = 1 << 4;
        /// The CPU has used this entry for a translation (A).
        const ACCESSED = 1 << 5;
        /// The CPU has written through this entry (D).
        const DIRTY = 1 << 6;
        /// Kept in the TLB across CR3 reloads when CR4.PGE is set (G).
        const GLOBAL = 1 << 7;
        /// Page Attribute Table index bit (bit 7 in a PTE, bit 12 in a large-page entry).
        const PAT = 1 << 8;
        /// Instruction fetches fault (XD, bit 63; PAE with EFER.NXE only).
        const NO_EXECUTE = 1 << 9;
    }
}

impl MapFlags {
    /// Present + writable kernel data.
    pub const KERNEL_RW: Self = Self::PRESENT.union(Self::WRITABLE);
    /// Present, read-only kernel data.
    pub const KERNEL_RO: Self = Self::PRESENT;
    /// Present + writable, uncached (MMIO).
    pub const KERNEL_UNCACHED: Self = Self::KERNEL_RW
        .union(Self::CACHE_DISABLE)
        .union(Self::WRITE_THROUGH);

    /// The flags that say what an access may do, as opposed to how the CPU
    /// has used the entry (accessed/dirty).
    pub const fn without_status(self) -> Self {
        self.difference(Self::ACCESSED.union(Self::DIRTY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_are_separable() {
        let f = MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY;
        assert_eq!(f.without_status(), MapFlags::KERNEL_RW);
        assert!(MapFlags::KERNEL_UNCACHED.contains(MapFlags::CACHE_DISABLE));
    }
}
