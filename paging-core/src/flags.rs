//! Mode-independent mapping flags.
//!
//! These are *generic* flags: each backend converts them to its own entry bits
//! and refuses what its format cannot express (for example `NO_EXECUTE` in
//! 2-level mode, which has no XD bit). The values are part of the API: bits
//! 0-6 (present .. dirty) sit where every x86 leaf entry has them, and
//! `GLOBAL` is bit 7 (one below the hardware's bit 8), and the three
//! software bits are 10-12 (one above the hardware's AVL bits 9-11), so a
//! backend converts with masks and shifts instead of a loop over flags.

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
        /// Software bit 0: the leaf's bit 9 (AVL). The CPU ignores it (SDM
        /// Vol. 3A, tables 4-4 to 4-11): it changes no translation, right or
        /// cache type, and the CPU never writes it. Free for the kernel (a
        /// copy-on-write marker, say); the mapper stores and reports it like
        /// any flag and never changes it unless asked to.
        const SOFTWARE_0 = 1 << 10;
        /// Software bit 1: the leaf's bit 10 (AVL), ignored by the CPU like
        /// [`SOFTWARE_0`](Self::SOFTWARE_0).
        const SOFTWARE_1 = 1 << 11;
        /// Software bit 2: the leaf's bit 11 (AVL), ignored by the CPU like
        /// [`SOFTWARE_0`](Self::SOFTWARE_0).
        const SOFTWARE_2 = 1 << 12;
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

    /// All three software bits (the leaf's AVL bits 9-11), which the CPU
    /// ignores.
    pub const SOFTWARE: Self = Self::SOFTWARE_0
        .union(Self::SOFTWARE_1)
        .union(Self::SOFTWARE_2);

    /// The flags that say what an access may do, as opposed to how the CPU
    /// has used the entry (accessed/dirty).
    #[inline]
    pub const fn without_status(self) -> Self {
        self.difference(Self::ACCESSED.union(Self::DIRTY))
    }

    /// The low bits of an x86 leaf entry (a PTE, or a PDE mapping a large
    /// page) that these flags set: present .. dirty at bits 0-6 as they are,
    /// global at bit 8, PAT at `pat` (bit 7 in a PTE, bit 12 in a large-page
    /// entry), the software bits at 9-11. `NO_EXECUTE` is not included: only
    /// PAE has it (bit 63).
    #[inline]
    pub const fn x86_leaf_bits(self, pat: u64) -> u64 {
        let generic = self.bits() as u64;
        let mut raw = generic & LOW_SEVEN
            | (generic & Self::GLOBAL.bits() as u64) << 1
            | (generic & Self::SOFTWARE.bits() as u64) >> 1;
        if self.contains(Self::PAT) {
            raw |= pat;
        }
        raw
    }

    /// The flags an x86 leaf entry's low bits carry (the inverse of
    /// [`x86_leaf_bits`](Self::x86_leaf_bits); `NO_EXECUTE` is the caller's).
    #[inline]
    pub const fn from_x86_leaf_bits(raw: u64, pat: u64) -> Self {
        let bits = (raw & LOW_SEVEN) as u16
            | ((raw >> 1) as u16 & Self::GLOBAL.bits())
            | ((raw & X86_AVAILABLE) << 1) as u16;
        let flags = Self::from_bits_retain(bits);
        if raw & pat != 0 {
            flags.union(Self::PAT)
        } else {
            flags
        }
    }
}

/// Present .. dirty: bits 0-6 in the generic flags and in every x86 entry.
const LOW_SEVEN: u64 = 0x7F;
/// Bits 11:9 of an x86 entry (AVL): ignored by the CPU.
const X86_AVAILABLE: u64 = 0b111 << 9;

// The positions `x86_leaf_bits` relies on (part of the API).
static_assertions::const_assert_eq!(MapFlags::PRESENT.bits(), 1 << 0);
static_assertions::const_assert_eq!(MapFlags::WRITABLE.bits(), 1 << 1);
static_assertions::const_assert_eq!(MapFlags::USER.bits(), 1 << 2);
static_assertions::const_assert_eq!(MapFlags::WRITE_THROUGH.bits(), 1 << 3);
static_assertions::const_assert_eq!(MapFlags::CACHE_DISABLE.bits(), 1 << 4);
static_assertions::const_assert_eq!(MapFlags::ACCESSED.bits(), 1 << 5);
static_assertions::const_assert_eq!(MapFlags::DIRTY.bits(), 1 << 6);
static_assertions::const_assert_eq!(MapFlags::GLOBAL.bits(), 1 << 7);
static_assertions::const_assert_eq!(MapFlags::SOFTWARE_0.bits(), 1 << 10);
static_assertions::const_assert_eq!(MapFlags::SOFTWARE_1.bits(), 1 << 11);
static_assertions::const_assert_eq!(MapFlags::SOFTWARE_2.bits(), 1 << 12);
static_assertions::const_assert_eq!((MapFlags::SOFTWARE.bits() as u64) >> 1, X86_AVAILABLE);

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the SDM puts each flag in a leaf entry (Vol. 3A tables 4-4,
    /// 4-6, 4-9, 4-11): the table `x86_leaf_bits` must agree with.
    const SDM: [(MapFlags, u64); 11] = [
        (MapFlags::PRESENT, 1 << 0),
        (MapFlags::WRITABLE, 1 << 1),
        (MapFlags::USER, 1 << 2),
        (MapFlags::WRITE_THROUGH, 1 << 3),
        (MapFlags::CACHE_DISABLE, 1 << 4),
        (MapFlags::ACCESSED, 1 << 5),
        (MapFlags::DIRTY, 1 << 6),
        (MapFlags::GLOBAL, 1 << 8),
        (MapFlags::SOFTWARE_0, 1 << 9),
        (MapFlags::SOFTWARE_1, 1 << 10),
        (MapFlags::SOFTWARE_2, 1 << 11),
    ];

    #[test]
    fn x86_leaf_bits_follow_the_sdm_for_every_combination() {
        for pat in [1u64 << 7, 1 << 12] {
            for bits in 0..=MapFlags::all().bits() {
                let flags = MapFlags::from_bits_retain(bits).difference(MapFlags::NO_EXECUTE);
                let mut want = 0;
                for (flag, bit) in SDM {
                    if flags.contains(flag) {
                        want |= bit;
                    }
                }
                if flags.contains(MapFlags::PAT) {
                    want |= pat;
                }
                assert_eq!(flags.x86_leaf_bits(pat), want, "{flags:?}");
                assert_eq!(MapFlags::from_x86_leaf_bits(want, pat), flags);
            }
        }
    }

    #[test]
    fn status_bits_are_separable() {
        let f = MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY;
        assert_eq!(f.without_status(), MapFlags::KERNEL_RW);
        assert!(MapFlags::KERNEL_UNCACHED.contains(MapFlags::CACHE_DISABLE));
    }
}
