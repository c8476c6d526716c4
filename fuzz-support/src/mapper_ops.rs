//! Mapper operation sequences on a simulated machine, in both modes.
//!
//! The first byte picks the mode; every following group of bytes is one of
//! map, map_large, map_range, unmap, update_flags, free_empty_tables,
//! translate, or a change of the allocator's failure budget. Addresses are
//! mostly inside a window of eight large-page blocks around the 1 GiB line
//! (so operations meet each other), sometimes raw 32-bit virtual and 64-bit
//! physical values (unaligned, beyond the mode, anywhere); flags are mostly
//! the bits that change what the MMU does, sometimes raw bits.
//!
//! After every operation:
//! - a refused operation changed no table, kept no frame, freed nothing;
//! - nothing was ever freed twice;
//! - the frames the allocator has out are exactly the tables the hierarchy
//!   links (the PGD, PMD tables, PTE tables);
//! - a successful operation did what it says (`translate` shows the new
//!   mapping, or its absence);
//! - the simulated MMU, through its TLB with every flush token applied,
//!   agrees with [`Mapper::translate`](paging_core::Mapper::translate) for
//!   every address the operation touched and a sample of others.

use paging_core::{
    Entry, LargePages, MapFlags, Page, PagingMode, PhysAddr, PhysFrame, PmdEntry, VirtAddr,
};
use paging_sim::{Access, Machine, SimRam};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

use crate::input::Input;

/// Large-page blocks in the window.
const BLOCKS: u32 = 8;
/// Operations per input, at most (keeps one run short).
const MAX_OPS: usize = 512;

/// Run the mapper operations encoded in `data`; panics only on a broken
/// invariant.
pub fn mapper_ops(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() & 1 == 0 {
        run_mode::<TwoLevel>(input);
    } else {
        run_mode::<Pae>(input);
    }
}

/// One operation, decoded.
#[derive(Debug, Clone, Copy)]
enum Op {
    Map(VirtAddr, PhysAddr, MapFlags),
    MapLarge(VirtAddr, PhysAddr, MapFlags),
    MapRange(VirtAddr, PhysAddr, u64, MapFlags, LargePages),
    Unmap(VirtAddr),
    UpdateFlags(VirtAddr, MapFlags),
    Free(VirtAddr, u64),
    Translate(VirtAddr),
    Budget(Option<usize>),
}

/// The window and the decoding of addresses for mode `M`.
struct Geometry {
    base: u32,
    large: u64,
    per_block: u32,
}

impl Geometry {
    fn of<M: PagingMode>() -> Self {
        let large = M::LARGE_PAGE_SIZE.bytes();
        Self {
            base: 0x4000_0000 - (BLOCKS / 2) * large as u32,
            large,
            per_block: (large / 4096) as u32,
        }
    }

    fn pages(&self) -> u32 {
        BLOCKS * self.per_block
    }

    fn page(&self, page: u32) -> VirtAddr {
        VirtAddr::new(self.base + (page % self.pages()) * 4096)
    }

    /// A page of the window, or (rarely) any 32-bit value.
    fn va(&self, input: &mut Input<'_>) -> VirtAddr {
        if input.byte() < 240 {
            self.page(input.below16(self.pages()))
        } else {
            VirtAddr::new(input.u32())
        }
    }

    /// A large-page block of the window, or any 32-bit value.
    fn block_va(&self, input: &mut Input<'_>) -> VirtAddr {
        if input.byte() < 240 {
            self.page(input.below(BLOCKS) * self.per_block)
        } else {
            VirtAddr::new(input.u32())
        }
    }

    /// One of 4096 frames at 256 MiB, or any physical value.
    fn pa(&self, input: &mut Input<'_>) -> PhysAddr {
        if input.byte() < 240 {
            PhysAddr::new_truncate(0x1000_0000 + u64::from(input.below16(4096)) * 4096)
        } else {
            PhysAddr::new_truncate(input.u64())
        }
    }

    /// One of 16 large pages at 512 MiB, or any physical value.
    fn large_pa(&self, input: &mut Input<'_>) -> PhysAddr {
        if input.byte() < 240 {
            PhysAddr::new_truncate(0x2000_0000 + u64::from(input.below(16)) * self.large)
        } else {
            PhysAddr::new_truncate(input.u64())
        }
    }
}

/// Mostly the flags that change what the MMU does; sometimes raw bits.
fn flags(input: &mut Input<'_>) -> MapFlags {
    let b = input.byte();
    if b >= 224 {
        return MapFlags::from_bits_retain(input.u16());
    }
    let mut f = MapFlags::empty();
    for (bit, flag) in [
        (1, MapFlags::WRITABLE),
        (2, MapFlags::USER),
        (4, MapFlags::GLOBAL),
        (8, MapFlags::CACHE_DISABLE),
        (16, MapFlags::NO_EXECUTE),
    ] {
        if b & bit != 0 {
            f |= flag;
        }
    }
    f
}

fn decode(g: &Geometry, input: &mut Input<'_>) -> Op {
    match input.below(11) {
        0 | 1 => Op::Map(g.va(input), g.pa(input), flags(input)),
        2 => Op::MapLarge(g.block_va(input), g.large_pa(input), flags(input)),
        3 => {
            let va = g.va(input);
            let len = if input.byte() < 240 {
                u64::from(input.below16(3 * g.per_block)) * 4096
            } else {
                u64::from(input.u32())
            };
            let large = if input.byte() & 1 == 0 {
                LargePages::Use
            } else {
                LargePages::Avoid
            };
            Op::MapRange(va, g.pa(input), len, flags(input), large)
        }
        4 | 5 => Op::Unmap(g.va(input)),
        6 => Op::UpdateFlags(g.va(input), flags(input)),
        7 => {
            let va = g.va(input);
            let len = if input.byte() < 240 {
                u64::from(input.below16(4 * g.per_block)) * 4096
            } else {
                u64::from(input.u32())
            };
            Op::Free(va, len)
        }
        8 => Op::Translate(g.va(input)),
        _ => Op::Budget(match input.byte() {
            n @ 0..=127 => Some(usize::from(n % 6)),
            _ => None,
        }),
    }
}

/// A fresh machine of mode `M` and the checks between operations.
struct Run<'r, M: PagingMode> {
    m: Machine<'r, M>,
    g: Geometry,
}

fn run_mode<M: PagingMode>(mut input: Input<'_>) {
    let ram = SimRam::new();
    let mut run = Run {
        m: Machine::<M>::new(&ram),
        g: Geometry::of::<M>(),
    };
    for step in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = decode(&run.g, &mut input);
        run.apply(step, op);
    }
    for page in (0..run.g.pages()).step_by(97) {
        run.agree(run.g.page(page), "final sweep");
    }
}

impl<M: PagingMode> Run<'_, M> {
    /// Run `op`, then check every invariant.
    fn apply(&mut self, step: usize, op: Op) {
        let before = self.m.snapshot();
        let live = self.m.alloc.live();
        let ok = self.execute(op);
        let what = format!("step {step}: {op:?}");
        if !ok {
            assert_eq!(self.m.alloc.live(), live, "{what} failed but kept frames");
            assert!(
                self.m.snapshot() == before,
                "{what} failed but changed tables"
            );
        }
        assert_eq!(self.m.alloc.double_frees(), 0, "{what} freed a frame twice");
        assert_eq!(
            self.m.alloc.live(),
            self.linked_tables(),
            "{what}: frames out differ from tables linked"
        );
        let sample = self.g.page((step as u32).wrapping_mul(2_654_435_761));
        for va in touched(op).into_iter().flatten().chain([sample]) {
            self.agree(va, &what);
        }
    }

    /// Perform `op` and check that a success did what it says. Returns
    /// whether it succeeded.
    fn execute(&mut self, op: Op) -> bool {
        let m = &mut self.m;
        match op {
            Op::Map(va, pa, flags) => {
                let (page, frame) = (
                    Page::containing_address(va),
                    PhysFrame::containing_address(pa),
                );
                let done = m.mapper.map(page, frame, flags, &mut m.alloc);
                let ok = done.map(|f| f.flush(&m.mmu)).is_ok();
                if ok {
                    self.expect_mapped(page.start_address(), frame.start_address(), flags);
                }
                ok
            }
            Op::MapLarge(va, pa, flags) => {
                let ok = m
                    .mapper
                    .map_large(va, pa, flags, &mut m.alloc)
                    .map(|f| f.flush(&m.mmu))
                    .is_ok();
                if ok {
                    self.expect_mapped(va, pa, flags);
                }
                ok
            }
            Op::MapRange(va, pa, len, flags, large) => {
                let ok = m
                    .mapper
                    .map_range(va, pa, len, flags, large, &mut m.alloc)
                    .map(|f| f.flush(&m.mmu))
                    .is_ok();
                if ok && len > 0 {
                    self.expect_mapped(va, pa, flags);
                    let last = len - 4096;
                    let pa_last = PhysAddr::new_truncate(pa.as_u64() + last);
                    self.expect_mapped(VirtAddr::new(va.as_u32() + last as u32), pa_last, flags);
                }
                ok
            }
            Op::Unmap(va) => {
                let was = m.mapper.translate(va);
                match m.mapper.unmap(va) {
                    Ok((gone, flush)) => {
                        flush.flush(&m.mmu);
                        let was = was
                            .unwrap_or_else(|e| panic!("unmapped {va} that translated to {e:?}"));
                        assert_eq!(gone.base, was.base, "unmap of {va} reports another page");
                        assert!(
                            m.mapper.translate(va).is_err(),
                            "{va} still mapped after unmap"
                        );
                        true
                    }
                    Err(_) => false,
                }
            }
            Op::UpdateFlags(va, flags) => {
                let was = m.mapper.translate(va);
                let ok = m
                    .mapper
                    .update_flags(va, flags)
                    .map(|f| f.flush(&m.mmu))
                    .is_ok();
                if ok {
                    let was = was.unwrap_or_else(|e| panic!("re-flagged unmapped {va}: {e:?}"));
                    self.expect_mapped(va, was.phys_addr(), flags);
                }
                ok
            }
            Op::Free(va, len) => m
                .mapper
                .free_empty_tables(va, len, &m.mmu, &mut m.alloc)
                .is_ok(),
            Op::Translate(_) => true,
            Op::Budget(n) => {
                match n {
                    Some(n) => m.alloc.fail_after(n),
                    None => m.alloc.never_fail(),
                }
                true
            }
        }
    }

    /// `va` translates to `pa` with `flags` (status bits aside).
    fn expect_mapped(&self, va: VirtAddr, pa: PhysAddr, flags: MapFlags) {
        let t = self
            .m
            .mapper
            .translate(va)
            .unwrap_or_else(|e| panic!("{va} not mapped after a successful map: {e:?}"));
        assert_eq!(t.phys_addr(), pa, "{va} maps the wrong address");
        assert_eq!(
            t.flags.without_status(),
            (flags | MapFlags::PRESENT).without_status(),
            "{va} has other flags than asked for"
        );
    }

    /// The MMU (through its TLB) and the mapper agree about `va`.
    fn agree(&self, va: VirtAddr, what: &str) {
        let soft = self.m.mapper.translate(va);
        let hw = self.m.mmu.translate(va, Access::READ);
        match (soft, hw) {
            (Ok(t), Ok(h)) => {
                assert_eq!(
                    h.pa,
                    t.phys_addr(),
                    "{what}: MMU and mapper disagree at {va}"
                );
                let f = t.flags;
                assert_eq!(
                    h.writable,
                    f.contains(MapFlags::WRITABLE),
                    "{what}: W at {va}"
                );
                assert_eq!(h.user, f.contains(MapFlags::USER), "{what}: U at {va}");
                assert_eq!(h.nx, f.contains(MapFlags::NO_EXECUTE), "{what}: NX at {va}");
                assert_eq!(h.global, f.contains(MapFlags::GLOBAL), "{what}: G at {va}");
            }
            (Err(_), Err(fault)) => {
                assert_eq!(
                    fault.code & 1,
                    0,
                    "{what}: {va} faults with {fault:?}, not as absent"
                );
            }
            (soft, hw) => panic!("{what}: at {va} the mapper says {soft:?}, the MMU {hw:?}"),
        }
    }

    /// Frames the hierarchy links: the PGD, each PMD table (PAE), each PTE
    /// table. Read straight from RAM.
    fn linked_tables(&self) -> usize {
        let walker = self.m.mapper.walker();
        let root = walker.pgd_slot_at(0);
        let pgds = entries::<M>(&self.m.ram.frame_words(root.table));
        let mut tables = 1;
        for &raw in pgds.iter().skip(root.index).take(M::PTRS_PER_PGD) {
            let pgd: M::Pgd = Entry::from_raw(raw);
            if M::PMD_FOLDED {
                let pmd = M::Pmd::from_raw(pgd.raw());
                tables += usize::from(pmd.is_present() && !pmd.is_large());
                continue;
            }
            if !pgd.is_present() {
                continue;
            }
            tables += 1;
            let pmd_table = PhysFrame::containing_address(pgd.addr());
            let pmds = entries::<M>(&self.m.ram.frame_words(pmd_table));
            for &raw in pmds.iter().take(M::PTRS_PER_PMD) {
                let pmd = M::Pmd::from_raw(raw);
                tables += usize::from(pmd.is_present() && !pmd.is_large());
            }
        }
        tables
    }
}

/// The entries of a table frame at the mode's width.
fn entries<M: PagingMode>(words: &[u64; 512]) -> Vec<u64> {
    if M::ENTRY_BYTES == 8 {
        words.to_vec()
    } else {
        words
            .iter()
            .flat_map(|&w| [w & 0xFFFF_FFFF, w >> 32])
            .collect()
    }
}

/// The addresses an operation is about.
fn touched(op: Op) -> [Option<VirtAddr>; 2] {
    let page = |va: VirtAddr| Some(VirtAddr::new(va.as_u32() & !0xFFF));
    match op {
        Op::Map(va, ..) | Op::Unmap(va) | Op::UpdateFlags(va, _) | Op::Translate(va) => {
            [page(va), None]
        }
        Op::MapLarge(va, ..) => [page(va), page(VirtAddr::new(va.as_u32() | 0x1F_F000))],
        Op::MapRange(va, _, len, ..) | Op::Free(va, len) => {
            let last = va.as_u64() + len.saturating_sub(1);
            [
                page(va),
                (last < 1 << 32).then(|| VirtAddr::new(last as u32)),
            ]
        }
        Op::Budget(_) => [None, None],
    }
}
