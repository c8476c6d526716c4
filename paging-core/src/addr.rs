//! Physical and virtual addresses, 4 KiB frames and pages, page sizes.
//!
//! Physical addresses are 64-bit everywhere: a PAE kernel on a 32-bit CPU
//! reaches memory above 4 GiB, so `usize` would be wrong on the very target
//! these crates exist for. Virtual addresses are i386-width (`u32`).

use core::fmt;

/// Size of the smallest page and of every page-table frame.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;
/// The widest physical address any x86 paging mode can express (bits).
pub const MAX_PHYS_BITS_ARCH: u32 = 52;

/// An address is not aligned to what the operation needs, or out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// `addr` is not a multiple of `align`.
    Unaligned {
        /// The offending address.
        addr: u64,
        /// The required alignment in bytes.
        align: u64,
    },
    /// `addr` has bits set above bit 51, which no x86 paging mode can express.
    OutOfRange {
        /// The offending address.
        addr: u64,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(f, "address {addr:#x} is not aligned to {align:#x}")
            }
            Self::OutOfRange { addr } => {
                write!(f, "address {addr:#x} is above the 52-bit physical limit")
            }
        }
    }
}

impl core::error::Error for AddrError {}

/// A physical address (up to 52 bits, on every host and target).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// The zero address.
    pub const ZERO: Self = Self(0);

    /// `addr` as a physical address, or an error if it has bits above bit 51.
    pub const fn new(addr: u64) -> Result<Self, AddrError> {
        if addr >> MAX_PHYS_BITS_ARCH != 0 {
            Err(AddrError::OutOfRange { addr })
        } else {
            Ok(Self(addr))
        }
    }

    /// `addr` with any bits above bit 51 cleared.
    pub const fn new_truncate(addr: u64) -> Self {
        Self(addr & ((1 << MAX_PHYS_BITS_ARCH) - 1))
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// Round down to a multiple of `align`, a power of two known at the
    /// call (`PAGE_SIZE`, a large page's size). For an alignment computed
    /// at run time use [`checked_align_down`](Self::checked_align_down).
    pub const fn align_down(self, align: u64) -> Self {
        Self(self.0 & !(align - 1))
    }

    /// Round down to a multiple of `align`, or `None` if `align` is not a
    /// power of two (0 included).
    pub const fn checked_align_down(self, align: u64) -> Option<Self> {
        if align.is_power_of_two() {
            Some(Self(self.0 & !(align - 1)))
        } else {
            None
        }
    }

    /// Round up to a multiple of `align`, or `None` if `align` is not a
    /// power of two (0 included) or the result would pass 52 bits.
    ///
    /// ```
    /// use paging_core::PhysAddr;
    /// let a = PhysAddr::new(0x1234).unwrap();
    /// assert_eq!(a.align_up(0x1000), Some(PhysAddr::new(0x2000).unwrap()));
    /// assert_eq!(a.align_up(3), None);
    /// let top = PhysAddr::new((1 << 52) - 1).unwrap();
    /// assert_eq!(top.align_up(0x1000), None);
    /// ```
    pub const fn align_up(self, align: u64) -> Option<Self> {
        if !align.is_power_of_two() {
            return None;
        }
        match self.0.checked_add(align - 1) {
            Some(v) => Self::new_or_none(v & !(align - 1)),
            None => None,
        }
    }

    const fn new_or_none(addr: u64) -> Option<Self> {
        if addr >> MAX_PHYS_BITS_ARCH != 0 {
            None
        } else {
            Some(Self(addr))
        }
    }

    /// Whether the address fits in `bits` bits.
    pub const fn fits_bits(self, bits: u32) -> bool {
        bits >= 64 || self.0 >> bits == 0
    }

    /// `self + bytes`, or `None` on overflow past 52 bits.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) if v >> MAX_PHYS_BITS_ARCH == 0 => Some(Self(v)),
            _ => None,
        }
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A 32-bit virtual address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u32);

impl VirtAddr {
    /// The zero address.
    pub const ZERO: Self = Self(0);

    /// `addr` as a virtual address.
    pub const fn new(addr: u32) -> Self {
        Self(addr)
    }

    /// The address as a number.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The address widened to `u64` (handy for range arithmetic).
    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        (self.0 as u64) & (align - 1) == 0
    }

    /// Round down to a multiple of `align`, a power of two known at the
    /// call (`PAGE_SIZE`, a large page's size). For an alignment computed
    /// at run time use [`checked_align_down`](Self::checked_align_down).
    pub const fn align_down(self, align: u64) -> Self {
        Self(((self.0 as u64) & !(align - 1)) as u32)
    }

    /// Round down to a multiple of `align`, or `None` if `align` is not a
    /// power of two (0 included).
    pub const fn checked_align_down(self, align: u64) -> Option<Self> {
        if align.is_power_of_two() {
            Some(self.align_down(align))
        } else {
            None
        }
    }

    /// Round up to a multiple of `align`, or `None` if `align` is not a
    /// power of two (0 included) or the result would pass the end of the
    /// 4 GiB space (`2^32` is not an address).
    ///
    /// ```
    /// use paging_core::VirtAddr;
    /// let a = VirtAddr::new(0xC000_1234);
    /// assert_eq!(a.align_up(0x1000), Some(VirtAddr::new(0xC000_2000)));
    /// assert_eq!(a.align_up(0x40_0000), Some(VirtAddr::new(0xC040_0000)));
    /// assert_eq!(VirtAddr::new(0xFFFF_F001).align_up(0x1000), None);
    /// assert_eq!(a.align_up(0), None);
    /// ```
    pub const fn align_up(self, align: u64) -> Option<Self> {
        if !align.is_power_of_two() {
            return None;
        }
        // In u64: a u32 address plus an alignment below 2^64 / 2 cannot
        // overflow unless the alignment itself is enormous.
        match (self.0 as u64).checked_add(align - 1) {
            Some(v) => {
                let up = v & !(align - 1);
                if up > u32::MAX as u64 {
                    None
                } else {
                    Some(Self(up as u32))
                }
            }
            None => None,
        }
    }

    /// `self + bytes`, or `None` if the result would pass the end of the
    /// 4 GiB space. The end itself (`2^32`) is not representable, so ranges
    /// are passed as start + length.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        let v = self.0 as u64 + bytes;
        if v > u32::MAX as u64 {
            None
        } else {
            Some(Self(v as u32))
        }
    }

    /// The address of `ptr` (on the 32-bit target, the whole pointer; on a
    /// 64-bit host, its low 32 bits).
    pub fn from_ptr<T: ?Sized>(ptr: *const T) -> Self {
        Self(ptr.cast::<u8>() as usize as u32)
    }

    /// The address as a pointer, for the code running on the CPU whose
    /// tables map it. Making the pointer is safe; dereferencing it is the
    /// caller's business (is it mapped, and with what?).
    pub const fn as_ptr<T>(self) -> *const T {
        self.0 as usize as *const T
    }

    /// The address as a mutable pointer (see [`as_ptr`](Self::as_ptr)).
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as usize as *mut T
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#010x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A 4 KiB physical frame (the unit of allocation and of every page table).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysFrame(PhysAddr);

impl PhysFrame {
    /// The frame starting at `addr`, or an error if `addr` is not 4 KiB aligned
    /// or above the 52-bit limit.
    pub const fn from_start_address(addr: PhysAddr) -> Result<Self, AddrError> {
        if !addr.is_aligned(PAGE_SIZE) {
            return Err(AddrError::Unaligned {
                addr: addr.as_u64(),
                align: PAGE_SIZE,
            });
        }
        Ok(Self(addr))
    }

    /// The frame with number `pfn` (address `pfn << 12`), if it fits in 52 bits.
    pub const fn from_number(pfn: u64) -> Result<Self, AddrError> {
        if pfn >> (MAX_PHYS_BITS_ARCH - PAGE_SHIFT) != 0 {
            return Err(AddrError::OutOfRange {
                addr: pfn.wrapping_shl(PAGE_SHIFT),
            });
        }
        Ok(Self(PhysAddr(pfn << PAGE_SHIFT)))
    }

    /// The frame that contains `addr`.
    pub const fn containing_address(addr: PhysAddr) -> Self {
        Self(addr.align_down(PAGE_SIZE))
    }

    /// The first byte of the frame.
    pub const fn start_address(self) -> PhysAddr {
        self.0
    }

    /// The frame number (`address >> 12`).
    pub const fn number(self) -> u64 {
        self.0.as_u64() >> PAGE_SHIFT
    }

    /// The frame `n` frames after this one, if it exists.
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match Self::from_number(self.number().wrapping_add(n)) {
            Ok(f) if self.number().checked_add(n).is_some() => Some(f),
            _ => None,
        }
    }
}

impl fmt::Debug for PhysFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysFrame({:#x})", self.0.as_u64())
    }
}

/// A 4 KiB virtual page.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Page(VirtAddr);

impl Page {
    /// The page starting at `addr`, or an error if `addr` is not 4 KiB aligned.
    pub const fn from_start_address(addr: VirtAddr) -> Result<Self, AddrError> {
        if !addr.is_aligned(PAGE_SIZE) {
            return Err(AddrError::Unaligned {
                addr: addr.as_u64(),
                align: PAGE_SIZE,
            });
        }
        Ok(Self(addr))
    }

    /// The page that contains `addr`.
    pub const fn containing_address(addr: VirtAddr) -> Self {
        Self(addr.align_down(PAGE_SIZE))
    }

    /// The first byte of the page.
    pub const fn start_address(self) -> VirtAddr {
        self.0
    }

    /// The page number (`address >> 12`).
    pub const fn number(self) -> u32 {
        self.0.as_u32() >> PAGE_SHIFT
    }

    /// The page `n` pages after this one, if it is below 4 GiB.
    pub const fn checked_add(self, n: u32) -> Option<Self> {
        match self.0.checked_add(n as u64 * PAGE_SIZE) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page({:#010x})", self.0.as_u32())
    }
}

/// The size of one mapping: a 4 KiB page, or a large page at the PMD level
/// (4 MiB in 2-level mode with PSE, 2 MiB in PAE mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a PTE.
    Size4KiB,
    /// 2 MiB, mapped by a PAE PDE with PS set.
    Size2MiB,
    /// 4 MiB, mapped by a 32-bit PDE with PS set (PSE).
    Size4MiB,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4KiB => 4 << 10,
            Self::Size2MiB => 2 << 20,
            Self::Size4MiB => 4 << 20,
        }
    }

    /// `log2(bytes())`.
    pub const fn shift(self) -> u32 {
        match self {
            Self::Size4KiB => 12,
            Self::Size2MiB => 21,
            Self::Size4MiB => 22,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Size4KiB => "4 KiB",
            Self::Size2MiB => "2 MiB",
            Self::Size4MiB => "4 MiB",
        })
    }
}

// Address arithmetic. Linear addresses wrap at 4 GiB as the CPU's do, and
// physical addresses are kept to 52 bits, so no operator panics; use
// `checked_add` where running past the end is an error.

impl core::ops::Add<u32> for VirtAddr {
    type Output = Self;
    /// `self + bytes`, wrapping at 4 GiB.
    fn add(self, bytes: u32) -> Self {
        Self(self.0.wrapping_add(bytes))
    }
}

impl core::ops::AddAssign<u32> for VirtAddr {
    fn add_assign(&mut self, bytes: u32) {
        *self = *self + bytes;
    }
}

impl core::ops::Sub<u32> for VirtAddr {
    type Output = Self;
    /// `self - bytes`, wrapping at 0.
    fn sub(self, bytes: u32) -> Self {
        Self(self.0.wrapping_sub(bytes))
    }
}

impl core::ops::SubAssign<u32> for VirtAddr {
    fn sub_assign(&mut self, bytes: u32) {
        *self = *self - bytes;
    }
}

impl core::ops::Sub for VirtAddr {
    type Output = u32;
    /// The distance from `other` up to `self`, wrapping.
    fn sub(self, other: Self) -> u32 {
        self.0.wrapping_sub(other.0)
    }
}

impl core::ops::Add<u64> for PhysAddr {
    type Output = Self;
    /// `self + bytes`, kept to 52 bits (the architectural limit).
    fn add(self, bytes: u64) -> Self {
        Self::new_truncate(self.0.wrapping_add(bytes))
    }
}

impl core::ops::AddAssign<u64> for PhysAddr {
    fn add_assign(&mut self, bytes: u64) {
        *self = *self + bytes;
    }
}

impl core::ops::Sub<u64> for PhysAddr {
    type Output = Self;
    /// `self - bytes`, kept to 52 bits.
    fn sub(self, bytes: u64) -> Self {
        Self::new_truncate(self.0.wrapping_sub(bytes))
    }
}

impl core::ops::Sub for PhysAddr {
    type Output = u64;
    /// The distance from `other` up to `self` (wrapping in 52 bits).
    fn sub(self, other: Self) -> u64 {
        self.0.wrapping_sub(other.0) & ((1 << MAX_PHYS_BITS_ARCH) - 1)
    }
}

impl From<Page> for VirtAddr {
    fn from(page: Page) -> Self {
        page.start_address()
    }
}

impl From<PhysFrame> for PhysAddr {
    fn from(frame: PhysFrame) -> Self {
        frame.start_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phys_addr_rejects_bits_above_51() {
        assert!(PhysAddr::new(1 << 51).is_ok());
        assert_eq!(
            PhysAddr::new(1 << 52),
            Err(AddrError::OutOfRange { addr: 1 << 52 })
        );
        assert_eq!(PhysAddr::new_truncate(u64::MAX).as_u64(), (1 << 52) - 1);
    }

    #[test]
    fn frame_and_page_constructors_check_alignment() {
        let a = PhysAddr::new(0x1_0000_1000).unwrap();
        assert_eq!(
            PhysFrame::from_start_address(a).unwrap().number(),
            0x10_0001
        );
        assert_eq!(
            PhysFrame::from_start_address(PhysAddr::new(0x1234).unwrap()),
            Err(AddrError::Unaligned {
                addr: 0x1234,
                align: 4096
            })
        );
        assert!(Page::from_start_address(VirtAddr::new(0xC000_0000)).is_ok());
        assert!(Page::from_start_address(VirtAddr::new(0xC000_0800)).is_err());
        assert_eq!(
            Page::containing_address(VirtAddr::new(0xC000_0FFF)).start_address(),
            VirtAddr::new(0xC000_0000)
        );
        assert!(PhysFrame::from_number(1 << 40).is_err());
        assert!(PhysFrame::from_number((1 << 40) - 1).is_ok());
    }

    #[test]
    fn checked_adds_stop_at_the_end_of_the_space() {
        assert_eq!(
            VirtAddr::new(0xFFFF_F000).checked_add(0xFFF),
            Some(VirtAddr::new(0xFFFF_FFFF))
        );
        assert_eq!(VirtAddr::new(0xFFFF_F000).checked_add(0x1000), None);
        let last = Page::containing_address(VirtAddr::new(0xFFFF_F000));
        assert_eq!(last.checked_add(1), None);
        let f = PhysFrame::from_number((1 << 40) - 1).unwrap();
        assert_eq!(f.checked_add(1), None);
        assert_eq!(PhysAddr::new((1 << 52) - 1).unwrap().checked_add(1), None);
    }

    #[test]
    fn align_up_and_down_refuse_bad_alignments_and_overflow() {
        let v = VirtAddr::new(0xC000_0001);
        assert_eq!(v.align_up(PAGE_SIZE), Some(VirtAddr::new(0xC000_1000)));
        assert_eq!(
            VirtAddr::new(0xC000_1000).align_up(PAGE_SIZE),
            Some(VirtAddr::new(0xC000_1000))
        );
        assert_eq!(
            v.checked_align_down(PAGE_SIZE),
            Some(VirtAddr::new(0xC000_0000))
        );
        // The last page rounds down; above it, rounding up would pass 4 GiB.
        assert_eq!(
            VirtAddr::new(0xFFFF_F000).align_up(PAGE_SIZE),
            Some(VirtAddr::new(0xFFFF_F000))
        );
        assert_eq!(VirtAddr::new(0xFFFF_F001).align_up(PAGE_SIZE), None);
        assert_eq!(VirtAddr::new(1).align_up(1 << 32), None);
        assert_eq!(VirtAddr::new(1).align_up(1 << 63), None);
        assert_eq!(VirtAddr::ZERO.align_up(1 << 63), Some(VirtAddr::ZERO));
        for bad in [0, 3, 0x1800, u64::MAX] {
            assert_eq!(v.align_up(bad), None, "{bad:#x}");
            assert_eq!(v.checked_align_down(bad), None, "{bad:#x}");
            assert_eq!(PhysAddr::ZERO.align_up(bad), None, "{bad:#x}");
            assert_eq!(PhysAddr::ZERO.checked_align_down(bad), None, "{bad:#x}");
        }
        let p = PhysAddr::new(0x1_0000_0001).unwrap();
        assert_eq!(p.align_up(0x20_0000), PhysAddr::new(0x1_0020_0000).ok());
        assert_eq!(
            p.checked_align_down(0x20_0000),
            PhysAddr::new(0x1_0000_0000).ok()
        );
        let top = PhysAddr::new((1 << 52) - 0x800).unwrap();
        assert_eq!(top.align_up(PAGE_SIZE), None);
        assert_eq!(PhysAddr::new(1).unwrap().align_up(1 << 63), None);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::Size2MiB.bytes(), 1 << PageSize::Size2MiB.shift());
        assert_eq!(PageSize::Size4MiB.bytes(), 1 << PageSize::Size4MiB.shift());
        assert_eq!(PageSize::Size4KiB.bytes(), PAGE_SIZE);
    }
}
