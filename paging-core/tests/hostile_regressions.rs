//! One small deterministic test per mapper defect the hostile-world
//! property test (`proptest_hostile`) found. Each builds the smallest world
//! that shows the defect, raw in simulated RAM, and judges the result with
//! the independent walk of `hostile_support`.
//!
//! The rule every test checks: an operation either succeeds without
//! changing anything it was not asked to change, or fails and leaves every
//! table byte and the set of frames handed out exactly as they were.
mod hostile_support;

use std::collections::BTreeSet;

use hostile_support::{
    A, BLOCKS, BlockKind, Geo, P, PCD, PWT, PageView, RW, US, XD, hierarchy, reachable_tables, view,
};
use paging_core::{
    LargePages, MapFlags, Mapper, Page, PagingMode, PhysAddr, PhysFrame, TlbOps, VirtAddr,
};
use paging_sim::{HostileAccess, ScriptedAllocator, SimRam, net_changes, undo};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

/// Software bits 9 and 11.
const SW: u64 = 0xA00;

struct NoTlb;

impl TlbOps for NoTlb {
    fn flush_page(&self, _va: VirtAddr) {}
    fn flush_all(&self) {}
    fn flush_everything(&self) {}
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start_address(PhysAddr::new(addr).unwrap()).unwrap()
}

/// A world for mode `M`: RAM, the table access, the window and the root.
struct Rig<M: PagingMode> {
    ram: &'static SimRam,
    geo: Geo,
    root: u64,
    mapper: Mapper<M, HostileAccess<'static>>,
    alloc: ScriptedAllocator,
}

/// Root (PGD, or the PDPT) at 1 MiB; in PAE the PDPT's first entry points
/// at a page directory at 2 MiB unless `pdpte` says otherwise.
const ROOT: u64 = 0x10_0000;
const PD: u64 = 0x20_0000;
const PT: u64 = 0x30_0000;
const PT2: u64 = 0x40_0000;

impl<M: PagingMode> Rig<M> {
    /// An empty hierarchy (in PAE with the first PDPTE present iff
    /// `pdpte`), and an allocator handing out `script`.
    fn new(pdpte: bool, script: &[u64]) -> Self {
        let ram = hostile_support::leaked_ram();
        let access = HostileAccess::new(ram);
        let geo = Geo::of::<M>();
        let mut owned = vec![frame(ROOT)];
        if geo.pae && pdpte {
            ram.write_u64(PhysAddr::new(ROOT).unwrap(), PD | P).unwrap();
            owned.push(frame(PD));
        }
        let mut alloc = ScriptedAllocator::new(script.iter().map(|&a| frame(a)));
        alloc.adopt(owned);
        let mapper =
            Mapper::new_isolated(PhysAddr::new(ROOT).unwrap(), access, geo.features).unwrap();
        Self {
            ram,
            geo,
            root: ROOT,
            mapper,
            alloc,
        }
    }

    /// Address of block `b`'s PDE.
    fn pde_slot(&self, b: u32) -> u64 {
        hierarchy(self.ram, &self.geo, self.root)[b as usize]
            .pde_slot
            .unwrap()
    }

    fn write(&self, addr: u64, value: u64) {
        let pa = PhysAddr::new(addr).unwrap();
        if self.geo.pae {
            self.ram.write_u64(pa, value).unwrap();
        } else {
            self.ram.write_u32(pa, value as u32).unwrap();
        }
    }

    fn read(&self, addr: u64) -> u64 {
        let pa = PhysAddr::new(addr).unwrap();
        if self.geo.pae {
            self.ram.read_u64(pa).unwrap()
        } else {
            u64::from(self.ram.read_u32(pa).unwrap())
        }
    }

    /// Link a page table at `pt` under block `b` with PDE bits `bits`, and
    /// count it as the world's.
    fn table(&mut self, b: u32, pt: u64, bits: u64) {
        let slot = self.pde_slot(b);
        self.write(slot, pt | P | bits);
        self.alloc.adopt([frame(pt)]);
    }

    /// Write leaf entry `i` of the page table at `pt`.
    fn leaf(&self, pt: u64, i: u64, value: u64) {
        self.write(pt + i * self.geo.entry_bytes(), value);
    }

    fn pages(&self) -> Vec<PageView> {
        view(
            self.ram,
            &self.geo,
            &hierarchy(self.ram, &self.geo, self.root),
        )
    }

    /// Run `op`; return its result (as text), what it changed (net words)
    /// and whether the frames handed out are those before it.
    fn run<T: core::fmt::Debug>(
        &mut self,
        op: impl FnOnce(&mut Mapper<M, HostileAccess<'static>>, &mut ScriptedAllocator) -> Result<(), T>,
    ) -> Outcome {
        self.mapper.access().take_log();
        let live = self.alloc.live_set().clone();
        let result = op(&mut self.mapper, &mut self.alloc).map_err(|e| format!("{e:?}"));
        let log = self.mapper.access().take_log();
        let handed: BTreeSet<u64> = self
            .alloc
            .take_handed()
            .iter()
            .map(|f| f.number())
            .collect();
        let mut net = net_changes(&log);
        // Frames handed out and given back are the allocator's again.
        net.retain(|a, _| {
            !handed.contains(&(a >> 12)) || self.alloc.live_set().contains(&(a >> 12))
        });
        Outcome {
            result,
            changed: net.len(),
            frames_as_before: self.alloc.live_set() == &live,
            log,
        }
    }

    /// The frames handed out are exactly the reachable tables.
    fn assert_no_leak(&self) {
        assert_eq!(
            self.alloc.live_set(),
            &reachable_tables(self.ram, &self.geo, self.root),
            "live frames are not the reachable tables"
        );
        assert_eq!(self.alloc.double_frees(), 0);
    }
}

#[derive(Debug)]
struct Outcome {
    result: Result<(), String>,
    changed: usize,
    frames_as_before: bool,
    log: Vec<paging_sim::StoreRecord>,
}

impl Outcome {
    /// A failure must leave everything as it was.
    fn assert_atomic(&self, what: &str) {
        if self.result.is_err() {
            // The typed errors themselves (TableRestricts, TableOutOfReach)
            // are asserted variant by variant in mapper_restrictive.rs; here
            // what counts is that nothing changed.
            assert_eq!(
                self.changed, 0,
                "{what}: failed ({:?}) but changed {} words",
                self.result, self.changed
            );
            assert!(
                self.frames_as_before,
                "{what}: failed ({:?}) but kept or freed frames",
                self.result
            );
        }
    }
}

fn no_reserved(pages: &[PageView]) {
    if let Some((i, v)) = pages
        .iter()
        .enumerate()
        .find(|(_, v)| matches!(v, PageView::Reserved(_)))
    {
        panic!("page {i} of the window faults with RSVD: {v:?}");
    }
}

// ---------------------------------------------------------------------
// Defect 1: a restrictive table entry is rewritten from scratch when a
// neighbour is mapped under it, and the old neighbour gains rights.
// ---------------------------------------------------------------------

/// Table entry: read-only, supervisor, XD (PAE), PWT, PCD, software bits.
fn restrictive<M: PagingMode>() -> u64 {
    let xd = if Geo::of::<M>().pae { XD } else { 0 };
    A | PWT | PCD | SW | xd
}

/// A page table under block 0 whose entry restricts, with a writable,
/// user, executable leaf at page 0 (its effective rights: read-only,
/// supervisor, no-execute) and, if `second`, a read-only supervisor leaf at
/// page 1.
fn restricted_world<M: PagingMode>(second: bool) -> Rig<M> {
    let mut rig = Rig::<M>::new(true, &[0x50_0000, 0x51_0000]);
    rig.table(0, PT, restrictive::<M>());
    rig.leaf(PT, 0, 0x800_0000 | P | RW | US);
    if second {
        rig.leaf(PT, 1, 0x800_1000 | P);
    }
    rig
}

fn neighbour_keeps_its_rights<M: PagingMode>(
    what: &str,
    op: impl FnOnce(
        &mut Mapper<M, HostileAccess<'static>>,
        &mut ScriptedAllocator,
    ) -> Result<(), String>,
    second: bool,
) {
    let mut rig = restricted_world::<M>(second);
    let before = rig.pages();
    let out = rig.run(op);
    out.assert_atomic(what);
    let after = rig.pages();
    assert_eq!(
        after[0], before[0],
        "{what}: the neighbour at page 0 changed ({:?})",
        out.result
    );
    rig.assert_no_leak();
}

fn map_does_not_widen_a_neighbour<M: PagingMode>() {
    let wx = MapFlags::WRITABLE | MapFlags::USER;
    neighbour_keeps_its_rights::<M>(
        "map",
        |m, a| {
            let page = Page::from_start_address(VirtAddr::new(Geo::of::<M>().va(1))).unwrap();
            m.map(page, frame(0x900_0000), wx, a)
                .map(|f| f.flush(&NoTlb))
                .map_err(|e| format!("{e:?}"))
        },
        false,
    );
}

fn map_range_does_not_widen_a_neighbour<M: PagingMode>() {
    let wx = MapFlags::WRITABLE | MapFlags::USER;
    neighbour_keeps_its_rights::<M>(
        "map_range",
        |m, a| {
            let va = VirtAddr::new(Geo::of::<M>().va(1));
            let pa = PhysAddr::new(0x900_0000).unwrap();
            m.map_range(va, pa, 0x2000, wx, LargePages::Avoid, a)
                .map(|f| f.flush(&NoTlb))
                .map_err(|e| format!("{e:?}"))
        },
        false,
    );
}

fn update_flags_does_not_widen_a_neighbour<M: PagingMode>() {
    let wx = MapFlags::WRITABLE | MapFlags::USER;
    neighbour_keeps_its_rights::<M>(
        "update_flags",
        |m, _| {
            let va = VirtAddr::new(Geo::of::<M>().va(1));
            m.update_flags(va, wx)
                .map(|f| f.flush(&NoTlb))
                .map_err(|e| format!("{e:?}"))
        },
        true,
    );
}

/// With no neighbour to gain anything, the mapper may widen the entry, but
/// must keep its cache and software bits.
fn widening_keeps_cache_and_software_bits<M: PagingMode>() {
    let mut rig = Rig::<M>::new(true, &[0x50_0000]);
    let bits = restrictive::<M>();
    rig.table(0, PT, bits);
    let slot = rig.pde_slot(0);
    let was = rig.read(slot);
    let wx = MapFlags::WRITABLE | MapFlags::USER;
    let out = rig.run(|m, a| {
        let page = Page::from_start_address(VirtAddr::new(Geo::of::<M>().va(1))).unwrap();
        m.map(page, frame(0x900_0000), wx, a)
            .map(|f| f.flush(&NoTlb))
    });
    out.assert_atomic("map");
    if out.result.is_ok() {
        let now = rig.read(slot);
        assert_eq!(
            now & !(RW | US | XD | A),
            was & !(RW | US | XD | A),
            "the table entry lost bits: {was:#x} -> {now:#x}"
        );
    }
    rig.assert_no_leak();
}

/// A read-only, supervisor, no-execute leaf needs nothing from the table
/// entry: mapping it must not rewrite a restrictive entry at all.
fn restricted_leaf_leaves_the_table_entry_alone<M: PagingMode>() {
    let mut rig = restricted_world::<M>(false);
    let slot = rig.pde_slot(0);
    let was = rig.read(slot);
    let before = rig.pages();
    let nx = if rig.geo.pae {
        MapFlags::NO_EXECUTE
    } else {
        MapFlags::empty()
    };
    let out = rig.run(|m, a| {
        let page = Page::from_start_address(VirtAddr::new(Geo::of::<M>().va(1))).unwrap();
        m.map(page, frame(0x900_0000), MapFlags::KERNEL_RO | nx, a)
            .map(|f| f.flush(&NoTlb))
    });
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(rig.read(slot), was, "the table entry was rewritten");
    assert_eq!(rig.pages()[0], before[0], "the neighbour changed");
    rig.assert_no_leak();
}

/// PAE: an executable leaf under an XD table entry with no other mapping
/// below it: the mapper may clear XD (nobody else gains) or refuse, but it
/// must not report success for a page that cannot execute.
#[test]
fn pae_executable_leaf_under_xd_table_entry_is_executable_or_refused() {
    let mut rig = Rig::<Pae>::new(true, &[0x50_0000]);
    rig.table(0, PT, RW | US | A | XD);
    let out = rig.run(|m, a| {
        let page = Page::from_start_address(VirtAddr::new(Geo::of::<Pae>().va(1))).unwrap();
        m.map(page, frame(0x900_0000), MapFlags::KERNEL_RW, a)
            .map(|f| f.flush(&NoTlb))
    });
    out.assert_atomic("map");
    if out.result.is_ok() {
        match rig.pages()[1] {
            PageView::Mapped(l) => assert!(!l.nx, "mapped without NO_EXECUTE, but XD applies"),
            other => panic!("page 1 not mapped: {other:?}"),
        }
    }
    rig.assert_no_leak();
}

#[test]
fn two_level_restricted_leaf_leaves_the_table_entry_alone() {
    restricted_leaf_leaves_the_table_entry_alone::<TwoLevel>();
}

#[test]
fn pae_restricted_leaf_leaves_the_table_entry_alone() {
    restricted_leaf_leaves_the_table_entry_alone::<Pae>();
}

#[test]
fn two_level_map_does_not_widen_a_neighbour() {
    map_does_not_widen_a_neighbour::<TwoLevel>();
}

#[test]
fn pae_map_does_not_widen_a_neighbour() {
    map_does_not_widen_a_neighbour::<Pae>();
}

#[test]
fn two_level_map_range_does_not_widen_a_neighbour() {
    map_range_does_not_widen_a_neighbour::<TwoLevel>();
}

#[test]
fn pae_map_range_does_not_widen_a_neighbour() {
    map_range_does_not_widen_a_neighbour::<Pae>();
}

#[test]
fn two_level_update_flags_does_not_widen_a_neighbour() {
    update_flags_does_not_widen_a_neighbour::<TwoLevel>();
}

#[test]
fn pae_update_flags_does_not_widen_a_neighbour() {
    update_flags_does_not_widen_a_neighbour::<Pae>();
}

#[test]
fn two_level_widening_keeps_cache_and_software_bits() {
    widening_keeps_cache_and_software_bits::<TwoLevel>();
}

#[test]
fn pae_widening_keeps_cache_and_software_bits() {
    widening_keeps_cache_and_software_bits::<Pae>();
}

// ---------------------------------------------------------------------
// Defect 2: a table frame beyond the mode's reach is linked.
// ---------------------------------------------------------------------

/// Map one page with the allocator handing out `script`; it must fail
/// cleanly, or succeed with a hierarchy the CPU accepts.
fn map_with_tables_at<M: PagingMode>(pdpte: bool, script: &[u64]) {
    let mut rig = Rig::<M>::new(pdpte, script);
    let out = rig.run(|m, a| {
        let page = Page::from_start_address(VirtAddr::new(Geo::of::<M>().va(0))).unwrap();
        m.map(page, frame(0x900_0000), MapFlags::KERNEL_RW, a)
            .map(|f| f.flush(&NoTlb))
    });
    out.assert_atomic("map");
    let pages = rig.pages();
    no_reserved(&pages);
    assert!(
        out.result
            .as_ref()
            .is_err_and(|e| e.starts_with("TableOutOfReach")),
        "a table frame beyond reach was linked, or refused for another reason: {:?} {:?}",
        out.result,
        hierarchy(rig.ram, &rig.geo, rig.root)[0]
    );
    rig.assert_no_leak();
}

#[test]
fn pae_page_table_above_maxphyaddr_is_refused() {
    map_with_tables_at::<Pae<36>>(true, &[1 << 36]);
}

#[test]
fn pae_page_directory_above_maxphyaddr_is_refused() {
    map_with_tables_at::<Pae<36>>(false, &[1 << 36, 0x50_0000]);
}

#[test]
fn two_level_page_table_above_4g_is_refused() {
    map_with_tables_at::<TwoLevel>(true, &[1 << 32]);
}

// ---------------------------------------------------------------------
// Defect 3: map_range fails half-way, after linking the first table, and
// keeps a frame.
// ---------------------------------------------------------------------

fn map_range_with_second_table_at<M: PagingMode>(second: u64) {
    let mut rig = Rig::<M>::new(true, &[0x50_0000, second]);
    let g = rig.geo;
    let out = rig.run(|m, a| {
        let va = VirtAddr::new(g.va(0));
        let pa = PhysAddr::new(0x900_0000).unwrap();
        m.map_range(
            va,
            pa,
            2 * g.large,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            a,
        )
        .map(|f| f.flush(&NoTlb))
    });
    out.assert_atomic("map_range");
    no_reserved(&rig.pages());
    assert!(out.result.is_err(), "a table frame beyond reach was linked");
    rig.assert_no_leak();
}

#[test]
fn two_level_map_range_is_all_or_nothing() {
    map_range_with_second_table_at::<TwoLevel>(1 << 32);
}

#[test]
fn pae_map_range_is_all_or_nothing() {
    map_range_with_second_table_at::<Pae<36>>(1 << 36);
}

// ---------------------------------------------------------------------
// Found by the failure sweep: an access failure after the first write
// leaves a failed operation half done.
// ---------------------------------------------------------------------

/// Run `op` once per table access it makes, with exactly that access
/// failing, rewinding RAM and the allocator after each run: each run must
/// succeed as the unfailed one did, or change nothing.
fn sweep<M: PagingMode>(
    rig: &mut Rig<M>,
    what: &str,
    op: impl Fn(&mut Mapper<M, HostileAccess<'static>>, &mut ScriptedAllocator) -> Result<(), String>,
) {
    let saved = rig.alloc.clone();
    rig.mapper.access().reset_calls();
    let clean = rig.run(&op);
    let calls = rig.mapper.access().calls();
    undo(rig.ram, &clean.log);
    rig.alloc = saved.clone();
    assert!(clean.result.is_ok(), "{what} fails without a failure");
    for k in 1..=calls {
        rig.mapper.access().reset_calls();
        rig.mapper.access().fail_at(Some(k));
        let out = rig.run(&op);
        rig.mapper.access().fail_at(None);
        undo(rig.ram, &out.log);
        rig.alloc = saved.clone();
        if out.result.is_ok() {
            assert_eq!(out.changed, clean.changed, "{what}, access {k} failing");
        } else {
            out.assert_atomic(&format!("{what} with access {k} of {calls} failing"));
        }
    }
}

/// A page table linked by a supervisor-only entry (as the mapper makes
/// for a kernel page), so a user page needs the entry widened: the leaf
/// is written first, then the table entry.
fn kernel_table<M: PagingMode>() -> Rig<M> {
    let mut rig = Rig::<M>::new(true, &[0x50_0000]);
    rig.table(0, PT, RW | A);
    rig.leaf(PT, 0, 0x800_0000 | P | RW);
    rig
}

fn map_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = kernel_table::<M>();
    sweep(&mut rig, "map", |m, a| {
        let page = Page::from_start_address(VirtAddr::new(Geo::of::<M>().va(1))).unwrap();
        m.map(page, frame(0x900_0000), MapFlags::USER, a)
            .map(|f| f.flush(&NoTlb))
            .map_err(|e| format!("{e:?}"))
    });
}

fn update_flags_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = kernel_table::<M>();
    sweep(&mut rig, "update_flags", |m, _| {
        m.update_flags(VirtAddr::new(Geo::of::<M>().va(0)), MapFlags::USER)
            .map(|f| f.flush(&NoTlb))
            .map_err(|e| format!("{e:?}"))
    });
}

/// Two blocks with page tables, one leaf in each.
fn two_tables<M: PagingMode>() -> Rig<M> {
    let mut rig = Rig::<M>::new(true, &[0x50_0000]);
    rig.table(0, PT, RW | US | A);
    rig.table(1, PT2, RW | US | A);
    let last = u64::from(rig.geo.per_block) - 1;
    rig.leaf(PT, last, 0x800_0000 | P | RW);
    rig.leaf(PT2, 0, 0x800_1000 | P | RW);
    rig
}

/// A range over the end of block 0, whose page table exists, and the start
/// of block 1, which needs a new one: block 0's entries are written before
/// block 1's table is reached.
fn map_range_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = Rig::<M>::new(true, &[0x50_0000]);
    rig.table(0, PT, RW | US | A);
    let g = rig.geo;
    sweep(&mut rig, "map_range", |m, a| {
        m.map_range(
            VirtAddr::new(g.va(g.per_block - 2)),
            PhysAddr::new(0x900_0000).unwrap(),
            0x4000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            a,
        )
        .map(|f| f.flush(&NoTlb))
        .map_err(|e| format!("{e:?}"))
    });
}

/// One page in an empty hierarchy: the new tables come off the reserved
/// chain and are filled; a failure while filling one must give it back.
fn map_range_new_table_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = Rig::<M>::new(false, &[0x50_0000, 0x51_0000]);
    let g = rig.geo;
    sweep(&mut rig, "map_range", |m, a| {
        m.map_range(
            VirtAddr::new(g.va(0)),
            PhysAddr::new(0x900_0000).unwrap(),
            0x1000,
            MapFlags::KERNEL_RW,
            LargePages::Avoid,
            a,
        )
        .map(|f| f.flush(&NoTlb))
        .map_err(|e| format!("{e:?}"))
    });
}

#[test]
fn two_level_map_range_new_table_is_atomic_under_access_failure() {
    map_range_new_table_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_map_range_new_table_is_atomic_under_access_failure() {
    map_range_new_table_is_atomic_under_access_failure::<Pae>();
}

fn unmap_range_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = two_tables::<M>();
    let g = rig.geo;
    sweep(&mut rig, "unmap_range", |m, _| {
        m.unmap_range(VirtAddr::new(g.va(0)), 2 * g.large)
            .map(|(_, f)| f.flush(&NoTlb))
            .map_err(|e| format!("{e:?}"))
    });
}

fn free_empty_tables_is_atomic_under_access_failure<M: PagingMode>() {
    let mut rig = Rig::<M>::new(true, &[]);
    rig.table(0, PT, RW | US | A);
    rig.table(1, PT2, RW | US | A);
    let g = rig.geo;
    assert_eq!(
        hierarchy(rig.ram, &g, rig.root)[1].kind(&g),
        BlockKind::Table
    );
    sweep(&mut rig, "free_empty_tables", |m, a| {
        m.free_empty_tables(
            VirtAddr::new(g.va(0)),
            u64::from(BLOCKS) * g.large,
            &NoTlb,
            a,
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    });
}

#[test]
fn two_level_map_is_atomic_under_access_failure() {
    map_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_map_is_atomic_under_access_failure() {
    map_is_atomic_under_access_failure::<Pae>();
}

#[test]
fn two_level_update_flags_is_atomic_under_access_failure() {
    update_flags_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_update_flags_is_atomic_under_access_failure() {
    update_flags_is_atomic_under_access_failure::<Pae>();
}

#[test]
fn two_level_map_range_is_atomic_under_access_failure() {
    map_range_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_map_range_is_atomic_under_access_failure() {
    map_range_is_atomic_under_access_failure::<Pae>();
}

#[test]
fn two_level_unmap_range_is_atomic_under_access_failure() {
    unmap_range_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_unmap_range_is_atomic_under_access_failure() {
    unmap_range_is_atomic_under_access_failure::<Pae>();
}

#[test]
fn two_level_free_empty_tables_is_atomic_under_access_failure() {
    free_empty_tables_is_atomic_under_access_failure::<TwoLevel>();
}

#[test]
fn pae_free_empty_tables_is_atomic_under_access_failure() {
    free_empty_tables_is_atomic_under_access_failure::<Pae>();
}
