//! Inspecting a hierarchy: every mapping in a range, and a dump a kernel can
//! print.
//!
//! [`Walker::mappings`] visits the present leaves in `[start, start + len)`
//! in address order, reading each table through the walker's
//! [`TableAccess`] (so a PTE table in highmem is reached through its
//! temporary mapping, once per table visited). [`Walker::dump`] prints them,
//! runs of pages that continue each other (next virtual page, next frame,
//! same flags) merged into one line.
//!
//! ```
//! use paging_core::{MapFlags, Page, PageSize, PhysAddr, PhysFrame, VirtAddr};
//! use paging_sim::{Machine, SimRam};
//! use paging_x86_pae::Pae;
//!
//! let ram = SimRam::new();
//! let mut m = Machine::<Pae>::new(&ram);
//! let page = |x| Page::containing_address(VirtAddr::new(x));
//! let frame = |x| PhysFrame::from_number(x).unwrap();
//! for i in 0..3 {
//!     m.mapper.map(page(0xC000_0000 + i * 0x1000), frame(0x100 + i as u64), MapFlags::KERNEL_RW, &mut m.alloc)?.ignore();
//! }
//! m.mapper.map(page(0xD000_0000), frame(0x500), MapFlags::KERNEL_RO, &mut m.alloc)?.ignore();
//! m.mapper.map_large(VirtAddr::new(0xE000_0000), PhysAddr::new(0x4000_0000)?, MapFlags::KERNEL_RW, &mut m.alloc)?.ignore();
//!
//! let found: Vec<_> = m.mapper.walker().mappings(VirtAddr::new(0xC000_0000), 0x4000_0000).collect::<Result<_, _>>()?;
//! assert_eq!(found.len(), 5);
//! assert_eq!(found[3].va, VirtAddr::new(0xD000_0000));
//! assert_eq!(found[4].size, PageSize::Size2MiB);
//!
//! let text = m.mapper.walker().dump(VirtAddr::new(0xC000_0000), 0x4000_0000).to_string();
//! assert_eq!(text.lines().count(), 3, "{text}");
//! assert!(text.starts_with("0xc0000000-0xc0003000 -> 0x100000 4K x3 W"), "{text}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::access::{AccessError, TableAccess, reach};
use crate::addr::{PAGE_SIZE, PageSize, PhysAddr, PhysFrame, VirtAddr};
use crate::entry::{Entry, PmdEntry, PteEntry};
use crate::flags::MapFlags;
use crate::mode::PagingMode;
use crate::walk::Walker;

/// One present leaf: a 4 KiB page or a large page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Its first virtual address (for a large page that starts before the
    /// range asked for, the large page's own start).
    pub va: VirtAddr,
    /// The first byte it maps to.
    pub base: PhysAddr,
    /// Its size.
    pub size: PageSize,
    /// The leaf's flags (including Accessed and Dirty as the CPU left them).
    pub flags: MapFlags,
}

/// The present leaves of a range, in address order; see
/// [`Walker::mappings`]. An access failure is yielded once, then the
/// iteration ends.
pub struct Mappings<'w, M: PagingMode, A: TableAccess> {
    walker: &'w Walker<M, A>,
    /// Next address to look at.
    next: u64,
    /// One past the range.
    end: u64,
}

impl<'w, M: PagingMode, A: TableAccess> fmt::Debug for Mappings<'w, M, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mappings")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

impl<M: PagingMode, A: TableAccess> Walker<M, A> {
    /// Every present leaf in `[start, start + len)` (clipped at 4 GiB), in
    /// address order.
    pub fn mappings(&self, start: impl Into<VirtAddr>, len: u64) -> Mappings<'_, M, A> {
        let start = start.into().as_u64();
        Mappings {
            walker: self,
            next: start,
            end: start.saturating_add(len).min(1 << 32),
        }
    }

    /// The mappings of `[start, start + len)` as text, one line per run of
    /// pages that continue each other (see the [module docs](self)).
    pub fn dump(&self, start: impl Into<VirtAddr>, len: u64) -> Dump<'_, M, A> {
        Dump {
            walker: self,
            start: start.into(),
            len,
        }
    }
}

impl<M: PagingMode, A: TableAccess> Mappings<'_, M, A> {
    /// The next present leaf at or after `self.next`.
    fn find(&mut self) -> Result<Option<Mapping>, AccessError> {
        let access = self.walker.access();
        while self.next < self.end {
            let va = VirtAddr::new(self.next as u32);
            let pgd: M::Pgd = self.walker.pgd_slot(va).read(access)?;
            let Some(pmd_slot) = self.walker.pmd_slot(va, pgd) else {
                self.next = (self.next | (M::pgd_span() - 1)) + 1;
                continue;
            };
            let pmd: M::Pmd = pmd_slot.read(access)?;
            let span = M::pmd_span();
            let block_end = (self.next | (span - 1)) + 1;
            if !pmd.is_present() {
                self.next = block_end;
                continue;
            }
            if pmd.is_large() {
                self.next = block_end;
                return Ok(Some(Mapping {
                    va: va.align_down(span),
                    base: pmd.addr(),
                    size: M::LARGE_PAGE_SIZE,
                    flags: pmd.flags(),
                }));
            }
            // One table view for the whole scan of this PTE table.
            let table = reach(access, PhysFrame::containing_address(pmd.addr()))?;
            let last = block_end.min(self.end);
            while self.next < last {
                let at = VirtAddr::new(self.next as u32);
                let pte = M::Pte::load(&table, M::pte_index(at));
                self.next += PAGE_SIZE;
                if pte.is_present() {
                    return Ok(Some(Mapping {
                        va: at,
                        base: pte.addr(),
                        size: PageSize::Size4KiB,
                        flags: pte.flags(),
                    }));
                }
            }
        }
        Ok(None)
    }
}

impl<M: PagingMode, A: TableAccess> Iterator for Mappings<'_, M, A> {
    type Item = Result<Mapping, AccessError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.find() {
            Ok(found) => found.map(Ok),
            Err(e) => {
                self.next = self.end;
                Some(Err(e))
            }
        }
    }
}

impl<M: PagingMode, A: TableAccess> core::iter::FusedIterator for Mappings<'_, M, A> {}

/// A range of a hierarchy as text, one line per run and no line break after
/// the last (so `println!("{}", ...)` prints it whole); see
/// [`Walker::dump`]. Each line reads
/// `start-end -> phys size xcount flags`, flags as `W` (writable), `U`
/// (user), `G` (global), `NX`, `PWT`, `PCD`, `PAT`, `A`, `D`, and the
/// software bits as `SW0`, `SW1`, `SW2`.
pub struct Dump<'w, M: PagingMode, A: TableAccess> {
    walker: &'w Walker<M, A>,
    start: VirtAddr,
    len: u64,
}

impl<M: PagingMode, A: TableAccess> fmt::Debug for Dump<'_, M, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A run of mappings that continue each other.
struct Run {
    first: Mapping,
    count: u64,
}

impl Run {
    fn continues(&self, next: &Mapping) -> bool {
        let bytes = self.first.size.bytes() * self.count;
        next.size == self.first.size
            && next.flags == self.first.flags
            && next.va.as_u64() == self.first.va.as_u64() + bytes
            && next.base.as_u64() == self.first.base.as_u64() + bytes
    }

    /// One line, preceded by a line break unless it is the first.
    fn write(&self, f: &mut fmt::Formatter<'_>, first: bool) -> fmt::Result {
        if !first {
            writeln!(f)?;
        }
        let end = self.first.va.as_u64() + self.first.size.bytes() * self.count;
        let size = match self.first.size {
            PageSize::Size4KiB => "4K",
            PageSize::Size2MiB => "2M",
            PageSize::Size4MiB => "4M",
        };
        write!(
            f,
            "{:#010x}-{:#010x} -> {:#x} {size} x{}",
            self.first.va.as_u32(),
            end,
            self.first.base.as_u64(),
            self.count
        )?;
        let flags = self.first.flags;
        for (flag, name) in [
            (MapFlags::WRITABLE, "W"),
            (MapFlags::USER, "U"),
            (MapFlags::GLOBAL, "G"),
            (MapFlags::NO_EXECUTE, "NX"),
            (MapFlags::WRITE_THROUGH, "PWT"),
            (MapFlags::CACHE_DISABLE, "PCD"),
            (MapFlags::PAT, "PAT"),
            (MapFlags::ACCESSED, "A"),
            (MapFlags::DIRTY, "D"),
            (MapFlags::SOFTWARE_0, "SW0"),
            (MapFlags::SOFTWARE_1, "SW1"),
            (MapFlags::SOFTWARE_2, "SW2"),
        ] {
            if flags.contains(flag) {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

impl<M: PagingMode, A: TableAccess> fmt::Display for Dump<'_, M, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut run: Option<Run> = None;
        let mut written = 0;
        for found in self.walker.mappings(self.start, self.len) {
            let mapping = match found {
                Ok(mapping) => mapping,
                Err(e) => {
                    if let Some(run) = run.take() {
                        run.write(f, written == 0)?;
                        written += 1;
                    }
                    let sep = if written == 0 { "" } else { "\n" };
                    return write!(f, "{sep}(stopped: {e})");
                }
            };
            match run.as_mut() {
                Some(r) if r.continues(&mapping) => r.count += 1,
                _ => {
                    if let Some(done) = run.replace(Run {
                        first: mapping,
                        count: 1,
                    }) {
                        done.write(f, written == 0)?;
                        written += 1;
                    }
                }
            }
        }
        match run {
            Some(run) => run.write(f, written == 0),
            None if written == 0 => f.write_str("(nothing mapped)"),
            None => Ok(()),
        }
    }
}
