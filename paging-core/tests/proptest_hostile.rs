//! Property test in a hostile world: random sequences of mapper operations
//! on pre-populated hierarchies full of SDM-valid but unusual entries
//! (restrictive table entries, cache and software bits at every level,
//! large pages, non-present entries with software contents), with an
//! allocator that hands out frames anywhere in the 52-bit space and runs
//! dry on command, and a table access that fails at the k-th call.
//!
//! The oracle is an independent walk of the raw tables (see
//! `hostile_support`), not the mapper's walker. After every operation:
//!
//! - every page of the window the operation did not target keeps its
//!   translation, effective rights, cache type, status and software bits;
//! - every table entry of the window that stays a present table entry keeps
//!   every bit it had, except that R/W and U/S may be set and XD cleared;
//!   a non-present entry with contents is never written;
//! - nothing outside the window's entries and new tables is written;
//! - a successful operation gives its targets exactly what was asked;
//! - a failed operation changed no byte, and the frames the allocator has
//!   handed out are exactly those before it;
//! - the live frames are exactly the reachable tables (no leak, nothing
//!   freed that is still linked), and nothing is freed twice;
//! - operations the model says must succeed do, and those that must fail
//!   (overwrites, unreachable frames, a dry allocator, ...) do;
//! - in one case in four the table access reaches frames below 4 GiB
//!   only (a lowmem direct map), so new tables may be unreachable;
//! - for about one operation in four, the operation is first run once per
//!   table access it makes, with exactly that access failing: each run
//!   either succeeds with the unfailed outcome or changes nothing.
//!
//! Knobs, to look past one known defect at the others or aim the search:
//! `HOSTILE_TABLES=plain` (pre-built table entries restrict nothing),
//! `HOSTILE_ALLOC=friendly` (the allocator hands out low memory only),
//! `HOSTILE_SWEEP=off` or `HOSTILE_SWEEP=skip:Map,MapRange` (no failure
//! sweeps, or none for the operations named), `HOSTILE_OPS=MapRange,...`
//! (run only the operations named).
//!
//! Every CPU the mode can run on, as far as entries go (`feature_sets`):
//! 2-level with and without PSE and the PAT; PAE with and without NX and
//! the PAT, MAXPHYADDR 36 or 32, and without NX under the drop policy. The
//! world is built from entries that CPU can walk, the oracle reads reserved
//! bits as that CPU does (SDM Vol. 3A 4.3, 4.4.2), and a request needing a
//! missing feature must fail.
//!
//! Default size: 2,000 cases of 1 to 500 operations (250 on average) per
//! mode on the full-featured CPU, and 2,000 more shared by the other feature
//! sets: about 1,000,000 operations per mode, not counting the
//! failure-injection reruns; each run prints what it ran (`--nocapture`).
//! Set `PROPTEST_CASES` for more or fewer cases.
mod hostile_support;

use std::collections::{BTreeMap, BTreeSet};

use hostile_support::{
    AllocStyle, BLOCKS, BlockHier, BlockKind, Geo, Leaf, P, PS, PageView, RW, US, World, XD,
    build_world, hierarchy, reachable_tables, table_is_zero, view,
};
use paging_core::{
    CpuFeature, CpuFeatures, LargePages, MapFlags, Mapper, NxPolicy, Page, PagingMode, PhysAddr,
    PhysFrame, TlbOps, VirtAddr,
};
use paging_sim::{HostileAccess, ScriptedAllocator, SimRam, net_changes, undo};
use proptest::prelude::*;

const OPS: usize = 500;
const POOL: usize = 48;

#[derive(Debug, Clone)]
enum Op {
    Map {
        page: u32,
        frame: u32,
        flags: u8,
        budget: Option<u8>,
    },
    MapLarge {
        block: u32,
        target: u32,
        flags: u8,
        budget: Option<u8>,
    },
    MapRange {
        page: u32,
        pages: u32,
        frame: u32,
        flags: u8,
        large: bool,
        budget: Option<u8>,
    },
    Unmap {
        page: u32,
    },
    UpdateFlags {
        page: u32,
        flags: u8,
    },
    Free {
        page: u32,
        pages: u32,
    },
    UnmapRange {
        page: u32,
        pages: u32,
    },
    Translate {
        page: u32,
    },
}

/// One step: an operation, and whether to sweep an access failure over it
/// first.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    sweep: bool,
}

/// Frames `frame < 4000` are ordinary memory; the rest lie beyond the
/// mode's physical reach.
fn small_pa(g: &Geo, frame: u32) -> u64 {
    if frame < 4000 {
        0x1000_0000 + u64::from(frame) * 4096
    } else {
        (1u64 << g.maxphy) + u64::from(frame - 4000) * 4096
    }
}

fn large_pa(g: &Geo, target: u32) -> u64 {
    if target < 14 {
        0x4000_0000 + u64::from(target) * g.large
    } else {
        (1u64 << g.maxphy) + u64::from(target - 14) * g.large
    }
}

fn budget() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![6 => Just(None), 1 => (0u8..3).prop_map(Some)]
}

fn op_strategy(g: Geo) -> impl Strategy<Value = Op> {
    let pages = g.pages();
    let per = g.per_block;
    // Pages are drawn mostly near the block edges and a few hot spots, so
    // that operations meet each other's tables and the pre-built entries.
    let page = prop_oneof![
        2 => 0..pages,
        1 => (0..BLOCKS, 0u32..4).prop_map(move |(b, i)| b * per + i),
        1 => (0..BLOCKS, 0u32..4).prop_map(move |(b, i)| b * per + per - 1 - i),
    ];
    let flags = 0u8..128;
    prop_oneof![
        5 => (page.clone(), 0u32..4100, flags.clone(), budget())
            .prop_map(|(page, frame, flags, budget)| Op::Map { page, frame, flags, budget }),
        2 => (0..BLOCKS, 0u32..16, flags.clone(), budget())
            .prop_map(|(block, target, flags, budget)| Op::MapLarge { block, target, flags, budget }),
        2 => (page.clone(), 1..2 * per + 2, 0u32..4100, flags.clone(), any::<bool>(), budget())
            .prop_map(|(page, pages, frame, flags, large, budget)| {
                Op::MapRange { page, pages, frame, flags, large, budget }
            }),
        3 => page.clone().prop_map(|page| Op::Unmap { page }),
        3 => (page.clone(), flags).prop_map(|(page, flags)| Op::UpdateFlags { page, flags }),
        1 => (page.clone(), 1..3 * per).prop_map(|(page, pages)| Op::Free { page, pages }),
        1 => (page.clone(), 1..2 * per + 2).prop_map(|(page, pages)| Op::UnmapRange { page, pages }),
        1 => page.prop_map(|page| Op::Translate { page }),
    ]
}

fn step_strategy(g: Geo) -> impl Strategy<Value = Step> {
    (op_strategy(g), prop::bool::weighted(0.25)).prop_map(|(op, sweep)| Step { op, sweep })
}

/// A TLB that does nothing: the oracle reads the tables, not a TLB.
struct NoTlb;

impl TlbOps for NoTlb {
    fn flush_page(&self, _va: VirtAddr) {}
    fn flush_all(&self) {}
    fn flush_everything(&self) {}
}

/// What the model says about an operation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    MustOk,
    /// Must fail, for the reason given.
    MustFail(&'static str),
    /// The mapper may refuse (it would have to widen a table entry) or
    /// succeed.
    Either,
}

/// What an operation did, in a form two runs can be compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Translated(u64),
    Err(String),
}

impl Outcome {
    fn is_ok(&self) -> bool {
        !matches!(self, Self::Err(_))
    }
}

struct Ctx<'a> {
    g: Geo,
    ram: &'a SimRam,
    /// The access reaches frames ending at or below this address only.
    limit: Option<u64>,
    /// Upper entries and pages before the operation.
    hier: Vec<BlockHier>,
    pages: Vec<PageView>,
}

impl Ctx<'_> {
    fn range_end(&self, page: u32, pages: u32) -> u32 {
        (page + pages).min(self.g.pages())
    }

    /// Blocks touched by `page..end`, each with the part inside it.
    fn chunks(&self, page: u32, end: u32) -> Vec<(u32, u32, u32)> {
        let per = self.g.per_block;
        let mut out = Vec::new();
        let mut p = page;
        while p < end {
            let b = p / per;
            let e = ((b + 1) * per).min(end);
            out.push((b, p, e));
            p = e;
        }
        out
    }

    /// New tables mapping `page..end` needs, and whether an existing table
    /// entry would have to be widened.
    fn range_needs(
        &self,
        page: u32,
        end: u32,
        pa0: u64,
        flags: MapFlags,
        large: bool,
    ) -> (usize, bool) {
        let mut need = 0;
        let mut widen = false;
        let mut new_pgd = BTreeSet::new();
        for (b, p, e) in self.chunks(page, end) {
            let h = &self.hier[b as usize];
            if self.g.pae && h.pgd == 0 && new_pgd.insert(self.g.pgd_index(b)) {
                need += 1;
            }
            match h.kind(&self.g) {
                BlockKind::Empty => {
                    let pa = pa0 + u64::from(p - page) * 4096;
                    let whole = e - p == self.g.per_block && pa.is_multiple_of(self.g.large);
                    if !(large && whole) {
                        need += 1;
                    }
                }
                BlockKind::Table => widen |= !self.g.table_allows(h.pde, flags),
                _ => {}
            }
        }
        (need, widen)
    }

    /// Why the first `need` frames the allocator will hand out cannot all
    /// be had and linked, if they cannot.
    fn frames_fail(
        &self,
        alloc: &ScriptedAllocator,
        need: usize,
        budget: Option<u8>,
    ) -> Option<&'static str> {
        if need == 0 {
            return None;
        }
        let mut a = alloc.clone();
        a.set_budget(budget.map(usize::from));
        let next = a.peek(need);
        if next.len() < need {
            Some("the allocator runs dry")
        } else if next.iter().any(|f| {
            self.limit
                .is_some_and(|l| f.start_address().as_u64() + 4096 > l)
        }) {
            Some("a new table frame is unreachable")
        } else if next
            .iter()
            .any(|f| !self.g.table_in_reach(f.start_address().as_u64()))
        {
            Some("a new table frame is beyond reach")
        } else {
            None
        }
    }

    fn mapped_at_base(&self, page: u32) -> bool {
        match self.pages[page as usize] {
            PageView::Mapped(l) => !l.large || page.is_multiple_of(self.g.per_block),
            _ => false,
        }
    }

    /// The pages `op` targets (for unmap and update: the large page it
    /// names, if any).
    fn targets(&self, op: &Op) -> Vec<u32> {
        let per = self.g.per_block;
        let whole_block = |page: u32| {
            let b = page / per;
            (b * per..(b + 1) * per).collect::<Vec<_>>()
        };
        match *op {
            Op::Map { page, .. } => vec![page],
            Op::MapLarge { block, .. } => whole_block(block * per),
            Op::MapRange { page, pages, .. } | Op::UnmapRange { page, pages } => {
                (page..self.range_end(page, pages)).collect()
            }
            Op::Unmap { page } | Op::UpdateFlags { page, .. } => match self.pages[page as usize] {
                PageView::Mapped(l) if l.large => whole_block(page),
                _ => vec![page],
            },
            Op::Free { .. } | Op::Translate { .. } => vec![],
        }
    }

    fn expect(&self, op: &Op, alloc: &ScriptedAllocator) -> Expect {
        let g = &self.g;
        let decide = |fail: Option<&'static str>, ok: bool| {
            if let Some(why) = fail {
                Expect::MustFail(why)
            } else if ok {
                Expect::MustOk
            } else {
                Expect::Either
            }
        };
        match *op {
            Op::Map {
                page,
                frame,
                flags,
                budget,
            } => {
                let f = Geo::flags_of(flags);
                let (need, widen) = self.range_needs(page, page + 1, 0, g.effective(f), false);
                let fail = if !g.expressible(f) {
                    Some("flags not expressible")
                } else if let Some(why) = g.cpu_refuses(f, false) {
                    Some(why)
                } else if !g.leaf_in_reach(small_pa(g, frame), 4096) {
                    Some("frame beyond reach")
                } else if self.pages[page as usize] != PageView::Unmapped(0) {
                    Some("page not empty")
                } else {
                    self.frames_fail(alloc, need, budget)
                };
                decide(fail, !widen)
            }
            Op::MapLarge {
                block,
                target,
                flags,
                budget,
            } => {
                let f = Geo::flags_of(flags);
                let h = &self.hier[block as usize];
                let need = usize::from(g.pae && h.pgd == 0);
                let fail = if !g.expressible(f) {
                    Some("flags not expressible")
                } else if let Some(why) = g.cpu_refuses(f, true) {
                    Some(why)
                } else if !g.leaf_in_reach(large_pa(g, target), g.large) {
                    Some("large page beyond reach")
                } else if h.kind(g) != BlockKind::Empty {
                    Some("PDE not empty")
                } else {
                    self.frames_fail(alloc, need, budget)
                };
                decide(fail, true)
            }
            Op::MapRange {
                page,
                pages,
                frame,
                flags,
                large,
                budget,
            } => {
                let f = Geo::flags_of(flags);
                let end = self.range_end(page, pages);
                let pa = small_pa(g, frame);
                // Without PSE (2-level) a range gets 4 KiB pages only.
                let large = large && g.large_pages();
                let (need, widen) = self.range_needs(page, end, pa, g.effective(f), large);
                let fail = if !g.expressible(f) {
                    Some("flags not expressible")
                } else if let Some(why) = g.cpu_refuses(f, false) {
                    Some(why)
                } else if !g.leaf_in_reach(pa, u64::from(end - page) * 4096) {
                    Some("range beyond reach")
                } else if self.pages[page as usize..end as usize]
                    .iter()
                    .any(|v| *v != PageView::Unmapped(0))
                {
                    Some("a page in the range is not empty")
                } else {
                    self.frames_fail(alloc, need, budget)
                };
                decide(fail, !widen)
            }
            Op::Unmap { page } => decide(
                (!self.mapped_at_base(page)).then_some("nothing mapped at this base"),
                true,
            ),
            Op::UpdateFlags { page, flags } => {
                let f = Geo::flags_of(flags);
                let fail = if !g.expressible(f) {
                    Some("flags not expressible")
                } else if let Some(why) = g.cpu_refuses(f, false) {
                    Some(why)
                } else if !self.mapped_at_base(page) {
                    Some("nothing mapped at this base")
                } else {
                    None
                };
                let h = &self.hier[(page / g.per_block) as usize];
                let widen = h.kind(g) == BlockKind::Table && !g.table_allows(h.pde, g.effective(f));
                decide(fail, !widen)
            }
            Op::UnmapRange { page, pages } => {
                let end = self.range_end(page, pages);
                let cut = self.chunks(page, end).iter().any(|&(b, p, e)| {
                    self.hier[b as usize].kind(g) == BlockKind::Large && e - p != g.per_block
                });
                decide(cut.then_some("a large page is cut"), true)
            }
            Op::Free { .. } => Expect::MustOk,
            Op::Translate { page } => decide(
                (!matches!(self.pages[page as usize], PageView::Mapped(_))).then_some("not mapped"),
                true,
            ),
        }
    }

    /// What target page `page` must look like after `op` succeeded.
    fn check_target(&self, op: &Op, page: u32, got: PageView) -> Result<(), String> {
        let g = &self.g;
        let before = self.pages[page as usize];
        let per = g.per_block;
        let leaf = |got: PageView| match got {
            PageView::Mapped(l) => Ok(l),
            other => Err(format!("page {page} should be mapped, is {other:?}")),
        };
        let same = |want: Leaf, got: Leaf, what: &str| {
            if want == got {
                Ok(())
            } else {
                Err(format!("page {page} {what}: want {want:?}, got {got:?}"))
            }
        };
        match *op {
            Op::Map { frame, flags, .. } => {
                let want =
                    Leaf::wanted(small_pa(g, frame), false, g.effective(Geo::flags_of(flags)));
                same(want, leaf(got)?.without_status(), "after map")
            }
            Op::MapLarge { target, flags, .. } => {
                let pa = large_pa(g, target) + u64::from(page % per) * 4096;
                let want = Leaf::wanted(pa, true, g.effective(Geo::flags_of(flags)));
                same(want, leaf(got)?.without_status(), "after map_large")
            }
            Op::MapRange {
                page: first,
                pages,
                frame,
                flags,
                large,
                ..
            } => {
                let got = leaf(got)?.without_status();
                let pa = small_pa(g, frame) + u64::from(page - first) * 4096;
                let b = page / per;
                let end = self.range_end(first, pages);
                let whole = first <= b * per
                    && end >= (b + 1) * per
                    && (pa - u64::from(page % per) * 4096).is_multiple_of(g.large)
                    && self.hier[b as usize].kind(g) == BlockKind::Empty;
                let size_free = large && g.large_pages() && whole;
                let want = Leaf::wanted(
                    pa,
                    size_free && got.large,
                    g.effective(Geo::flags_of(flags)),
                );
                same(want, got, "after map_range")
            }
            Op::Unmap { .. } => match got {
                PageView::Unmapped(0) => Ok(()),
                other => Err(format!("page {page} should be unmapped, is {other:?}")),
            },
            Op::UnmapRange { .. } => match (before, got) {
                (PageView::Mapped(_), PageView::Unmapped(0)) => Ok(()),
                (PageView::Mapped(_), other) => {
                    Err(format!("page {page} should be unmapped, is {other:?}"))
                }
                (b, a) if a == b => Ok(()),
                (b, a) => Err(format!("page {page} held no mapping ({b:?}), now {a:?}")),
            },
            Op::UpdateFlags { flags, .. } => {
                let PageView::Mapped(old) = before else {
                    return Err(format!("page {page} was not mapped"));
                };
                let got = leaf(got)?;
                let mut want = Leaf::wanted(old.pa, old.large, g.effective(Geo::flags_of(flags)));
                want.a = old.a;
                want.d = old.d;
                want.sw = got.sw;
                same(want, got, "after update_flags")
            }
            Op::Free { .. } | Op::Translate { .. } => Ok(()),
        }
    }
}

/// Run `op`. The mapper holds the access; `alloc` is the allocator.
fn apply<M: PagingMode>(
    g: &Geo,
    mapper: &mut Mapper<M, &HostileAccess<'_>>,
    alloc: &mut ScriptedAllocator,
    op: &Op,
) -> Outcome {
    let va = |page: u32| VirtAddr::new(g.va(page));
    let done = |r: Result<(), String>| match r {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Err(e),
    };
    match *op {
        Op::Map {
            page, frame, flags, ..
        } => {
            let pg = Page::from_start_address(va(page)).unwrap();
            let fr =
                PhysFrame::from_start_address(PhysAddr::new(small_pa(g, frame)).unwrap()).unwrap();
            done(
                mapper
                    .map(pg, fr, Geo::flags_of(flags), alloc)
                    .map(|f| f.flush(&NoTlb))
                    .map_err(|e| format!("{e:?}")),
            )
        }
        Op::MapLarge {
            block,
            target,
            flags,
            ..
        } => {
            let pa = PhysAddr::new(large_pa(g, target)).unwrap();
            done(
                mapper
                    .map_large(va(block * g.per_block), pa, Geo::flags_of(flags), alloc)
                    .map(|f| f.flush(&NoTlb))
                    .map_err(|e| format!("{e:?}")),
            )
        }
        Op::MapRange {
            page,
            pages,
            frame,
            flags,
            large,
            ..
        } => {
            let end = (page + pages).min(g.pages());
            let len = u64::from(end - page) * 4096;
            let mode = if large {
                LargePages::Use
            } else {
                LargePages::Avoid
            };
            let pa = PhysAddr::new(small_pa(g, frame)).unwrap();
            done(
                mapper
                    .map_range(va(page), pa, len, Geo::flags_of(flags), mode, alloc)
                    .map(|f| f.flush(&NoTlb))
                    .map_err(|e| format!("{e:?}")),
            )
        }
        Op::Unmap { page } => done(
            mapper
                .unmap(va(page))
                .map(|(_, f)| f.flush(&NoTlb))
                .map_err(|e| format!("{e:?}")),
        ),
        Op::UpdateFlags { page, flags } => done(
            mapper
                .update_flags(va(page), Geo::flags_of(flags))
                .map(|f| f.flush(&NoTlb))
                .map_err(|e| format!("{e:?}")),
        ),
        Op::Free { page, pages } => done(
            mapper
                .free_empty_tables(
                    va(page),
                    u64::from((page + pages).min(g.pages()) - page) * 4096,
                    &NoTlb,
                    alloc,
                )
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
        ),
        Op::UnmapRange { page, pages } => {
            let end = (page + pages).min(g.pages());
            done(
                mapper
                    .unmap_range(va(page), u64::from(end - page) * 4096)
                    .map(|(_, f)| f.flush(&NoTlb))
                    .map_err(|e| format!("{e:?}")),
            )
        }
        Op::Translate { page } => match mapper.translate(va(page)) {
            Ok(t) => Outcome::Translated(t.phys_addr().as_u64()),
            Err(e) => Outcome::Err(format!("{e:?}")),
        },
    }
}

fn budget_of(op: &Op) -> Option<usize> {
    match *op {
        Op::Map { budget, .. } | Op::MapLarge { budget, .. } | Op::MapRange { budget, .. } => {
            budget.map(usize::from)
        }
        _ => None,
    }
}

/// The net change of one run, ignoring frames that were handed out and
/// given back during it (their content is the allocator's).
struct Run {
    outcome: Outcome,
    net: BTreeMap<u64, (u32, u32)>,
    live: BTreeSet<u64>,
    /// Frames handed out by this run and still live.
    fresh: BTreeSet<u64>,
    calls: u64,
    log: Vec<paging_sim::StoreRecord>,
}

fn run_once<M: PagingMode>(
    g: &Geo,
    mapper: &mut Mapper<M, &HostileAccess<'_>>,
    access: &HostileAccess<'_>,
    alloc: &mut ScriptedAllocator,
    op: &Op,
    fail_at: Option<u64>,
) -> Run {
    access.take_log();
    access.reset_calls();
    access.fail_at(fail_at);
    alloc.take_handed();
    alloc.set_budget(budget_of(op));
    let outcome = apply(g, mapper, alloc, op);
    alloc.set_budget(None);
    access.fail_at(None);
    let log = access.take_log();
    mark_dirty(log.iter().map(|r| r.addr));
    let handed = alloc.take_handed();
    let transient: BTreeSet<u64> = handed
        .iter()
        .map(|f| f.number())
        .filter(|n| !alloc.live_set().contains(n))
        .collect();
    let fresh = handed
        .iter()
        .map(|f| f.number())
        .filter(|n| alloc.live_set().contains(n))
        .collect();
    let mut net = net_changes(&log);
    net.retain(|addr, _| !transient.contains(&(addr >> 12)));
    Run {
        outcome,
        net,
        live: alloc.live_set().clone(),
        fresh,
        calls: access.calls(),
        log,
    }
}

fn describe(net: &BTreeMap<u64, (u32, u32)>) -> String {
    net.iter()
        .take(6)
        .map(|(a, (o, n))| format!("[{a:#x}] {o:#x} -> {n:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

thread_local! {
    static RAM: &'static SimRam = hostile_support::leaked_ram();
    /// Frames written since the RAM was last cleared.
    static DIRTY: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Remember that the frames of `addrs` were written.
fn mark_dirty(addrs: impl Iterator<Item = u64>) {
    DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        for a in addrs {
            if d.last() != Some(&(a >> 12)) {
                d.push(a >> 12);
            }
        }
    });
}

/// The per-thread RAM: one `SimRam` reused across cases (building the
/// radix over the far regions costs more than a case), with every frame
/// the last case wrote zeroed.
fn with_ram<T>(f: impl FnOnce(&'static SimRam) -> T) -> T {
    DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        d.sort_unstable();
        d.dedup();
        RAM.with(|ram| {
            for &f in d.iter() {
                ram.fill_frame(PhysFrame::from_number(f).unwrap(), 0);
            }
        });
        d.clear();
    });
    RAM.with(|ram| f(ram))
}

/// `HOSTILE_TABLES=plain` builds worlds whose table entries restrict
/// nothing and carry no cache or software bits: the rest of the hostile
/// world (allocator, access failures, leaves, large pages, software
/// entries) without the pre-built table entries, to look past a known
/// table-entry defect at the others.
fn plain_tables() -> bool {
    std::env::var("HOSTILE_TABLES").is_ok_and(|v| v == "plain")
}

/// Whether to sweep an access failure over `op`. `HOSTILE_SWEEP=off`
/// skips every sweep; `HOSTILE_SWEEP=skip:UnmapRange,MapRange` skips the
/// sweeps of the operations named (to look past a known atomicity defect at
/// the others).
fn sweep_on(op: &Op) -> bool {
    let Ok(v) = std::env::var("HOSTILE_SWEEP") else {
        return true;
    };
    if v == "off" {
        return false;
    }
    let name = op_name(op);
    !v.strip_prefix("skip:")
        .is_some_and(|list| list.split(',').any(|s| s == name))
}

/// `op`'s name, as in its `Debug` form.
fn op_name(op: &Op) -> String {
    let name = format!("{op:?}");
    name.split([' ', '{']).next().unwrap_or("").to_owned()
}

/// `HOSTILE_OPS=MapRange,UpdateFlags` runs only the operations named (the
/// others in a sequence are skipped), to aim the search at one of them.
fn op_enabled(op: &Op) -> bool {
    std::env::var("HOSTILE_OPS").map_or(true, |v| v.split(',').any(|s| s == op_name(op)))
}

/// `HOSTILE_ALLOC=friendly` makes every allocator hand out low memory only
/// (to look past the out-of-reach-frame defects at the others).
fn style_of(style: u8) -> AllocStyle {
    if std::env::var("HOSTILE_ALLOC").is_ok_and(|v| v == "friendly") {
        return AllocStyle::Friendly;
    }
    match style % 3 {
        0 => AllocStyle::Friendly,
        1 => AllocStyle::Mixed,
        _ => AllocStyle::Hostile,
    }
}

/// Run `steps` on a world built from `seed`, checking every rule.
fn run<M: PagingMode>(
    features: CpuFeatures,
    seed: u64,
    style: u8,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    with_ram(|ram| run_in::<M>(ram, features, seed, style, steps))
}

fn run_in<M: PagingMode>(
    ram: &'static SimRam,
    features: CpuFeatures,
    seed: u64,
    style: u8,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let g = Geo::on::<M>(features);
    // One case in four reaches tables only below 4 GiB (a kernel whose
    // direct map ends there); the pre-built tables then live below it.
    let limit = seed.is_multiple_of(4).then_some(1u64 << 32);
    let World { root, owned, pool } = build_world(
        ram,
        g,
        seed,
        style_of(style),
        POOL,
        plain_tables(),
        limit.is_some(),
    );
    mark_dirty(owned.iter().map(|f| f.start_address().as_u64()));
    let access = HostileAccess::new(ram);
    access.set_limit(limit);
    let mut alloc = ScriptedAllocator::new(pool);
    alloc.adopt(owned);
    let mut mapper = Mapper::<M, &HostileAccess<'_>>::new_isolated(
        PhysAddr::new(root).unwrap(),
        &access,
        g.features,
    )
    .unwrap();
    let mut hier = hierarchy(ram, &g, root);
    let mut pages = view(ram, &g, &hier);
    prop_assert!(
        !pages.iter().any(|v| matches!(v, PageView::Reserved(_))),
        "the world builder made an invalid hierarchy"
    );
    prop_assert_eq!(
        alloc.live_set(),
        &reachable_tables(ram, &g, root),
        "world tables"
    );
    for (i, step) in steps.iter().enumerate() {
        let op = &step.op;
        if !op_enabled(op) {
            continue;
        }
        OPS_RUN.with(|c| c.set(c.get() + 1));
        let ctx = Ctx {
            g,
            ram,
            limit,
            hier,
            pages,
        };
        let expect = ctx.expect(op, &alloc);
        let live_before = alloc.live_set().clone();

        if step.sweep && sweep_on(op) {
            sweep::<M>(&ctx, &mut mapper, &access, &mut alloc, op, i)?;
        }

        let run = run_once::<M>(&g, &mut mapper, &access, &mut alloc, op, None);
        let ok = run.outcome.is_ok();
        prop_assert_eq!(alloc.double_frees(), 0, "double free by op {} {:?}", i, op);
        match expect {
            Expect::MustOk => {
                prop_assert!(ok, "op {} {:?} must succeed, got {:?}", i, op, run.outcome)
            }
            Expect::MustFail(why) => prop_assert!(
                !ok,
                "op {} {:?} must fail ({}), got {:?}",
                i,
                op,
                why,
                run.outcome
            ),
            Expect::Either => {}
        }
        if !ok {
            prop_assert!(
                run.net.is_empty(),
                "failed op {} {:?} ({:?}) changed {} words: {}",
                i,
                op,
                run.outcome,
                run.net.len(),
                describe(&run.net)
            );
            prop_assert_eq!(
                &run.live,
                &live_before,
                "failed op {} {:?} ({:?}) kept or freed frames",
                i,
                op,
                run.outcome
            );
        }
        if let (Op::Translate { page }, Outcome::Translated(pa)) = (op, &run.outcome) {
            match ctx.pages[*page as usize] {
                PageView::Mapped(l) => prop_assert_eq!(*pa, l.pa, "translate at op {}", i),
                other => prop_assert!(
                    false,
                    "translate at op {} found {:#x}, oracle {:?}",
                    i,
                    pa,
                    other
                ),
            }
        }
        if run.log.is_empty() {
            (hier, pages) = (ctx.hier, ctx.pages);
            continue;
        }
        let new_hier = hierarchy(ram, &g, root);
        let new_pages = view(ram, &g, &new_hier);
        if ok {
            check_success(&ctx, op, &run, &new_hier, &new_pages)
                .map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
        }
        prop_assert_eq!(
            alloc.live_set(),
            &reachable_tables(ram, &g, root),
            "live frames are not the reachable tables after op {} {:?}",
            i,
            op
        );
        (hier, pages) = (new_hier, new_pages);
    }
    Ok(())
}

/// The checks after a successful operation.
fn check_success(
    ctx: &Ctx<'_>,
    op: &Op,
    run: &Run,
    new_hier: &[BlockHier],
    new_pages: &[PageView],
) -> Result<(), String> {
    let g = &ctx.g;
    let mut targets = vec![false; new_pages.len()];
    for t in ctx.targets(op) {
        targets[t as usize] = true;
    }
    for (p, (&before, &after)) in ctx.pages.iter().zip(new_pages).enumerate() {
        let p = p as u32;
        if targets[p as usize] {
            ctx.check_target(op, p, after)?;
        } else if before != after {
            return Err(format!(
                "page {p} (va {:#x}) was not targeted but changed: {before:?} -> {after:?}",
                g.va(p)
            ));
        }
    }
    // Upper entries: a present table entry keeps every bit but R/W, U/S
    // (which may be set), XD (which may be cleared) and A; a PDPTE keeps
    // every bit; a non-present entry with contents is never written.
    for (b, (old, new)) in ctx.hier.iter().zip(new_hier).enumerate() {
        let pairs = [
            (old.pgd_slot, old.pgd, new.pgd, true),
            (
                old.pde_slot.unwrap_or(0),
                old.pde,
                if new.pde_slot == old.pde_slot {
                    new.pde
                } else {
                    old.pde
                },
                false,
            ),
        ];
        for (slot, was, now, top) in pairs {
            if was == now || (g.pae && !top && old.pde_slot.is_none()) {
                continue;
            }
            if was & P == 0 && was != 0 {
                return Err(format!(
                    "block {b}: non-present entry at {slot:#x} with contents {was:#x} overwritten with {now:#x}"
                ));
            }
            let table = if top && g.pae {
                true
            } else {
                was & P != 0 && was & PS == 0
            };
            if was & P != 0 && now & P != 0 && table {
                let addr = g.addr_mask() & !0xFFF;
                if was & addr != now & addr {
                    return Err(format!(
                        "block {b}: table entry at {slot:#x} repointed {was:#x} -> {now:#x}"
                    ));
                }
                let free = if top && g.pae {
                    0
                } else {
                    RW | US | XD | hostile_support::A
                };
                let widened_ok = (was & !now) & (RW | US) == 0 && (now & !was) & XD == 0;
                if (was ^ now) & !free != 0 || !widened_ok {
                    return Err(format!(
                        "block {b}: table entry at {slot:#x} rewritten {was:#x} -> {now:#x} (lost or narrowed bits {:#x}, new bits {:#x})",
                        was & !now,
                        now & !was
                    ));
                }
            }
            if was & P != 0 && now & P == 0 && table && !matches!(op, Op::Free { .. }) {
                return Err(format!(
                    "block {b}: table entry at {slot:#x} removed ({was:#x} -> {now:#x}) by a non-free op"
                ));
            }
        }
    }
    // Nothing outside the window's upper entries, its page tables and new
    // tables is written.
    let mut allowed_frames: BTreeSet<u64> = run.fresh.clone();
    let mut allowed_slots = BTreeSet::new();
    for h in ctx.hier.iter().chain(new_hier) {
        allowed_slots.insert(h.pgd_slot & !7);
        if let Some(s) = h.pde_slot {
            allowed_slots.insert(s & !7);
        }
        if h.kind(g) == BlockKind::Table {
            allowed_frames.insert(h.pt(g) >> 12);
        }
    }
    for addr in run.net.keys() {
        if !allowed_frames.contains(&(addr >> 12)) && !allowed_slots.contains(&(addr & !7)) {
            return Err(format!(
                "wrote outside the window's entries and new tables: {}",
                describe(&run.net)
            ));
        }
    }
    // Freeing: no empty page table is left whose block lies wholly in the
    // range.
    if let Op::Free { page, pages } = *op {
        for (b, h) in new_hier.iter().enumerate() {
            let b = b as u32;
            let end = (page + pages).min(g.pages());
            let inside = b * g.per_block >= page && (b + 1) * g.per_block <= end;
            if inside && h.kind(g) == BlockKind::Table && table_is_zero(ctx.ram, h.pt(g)) {
                return Err(format!("empty page table of block {b} not freed"));
            }
        }
    }
    Ok(())
}

/// Run `op` once per table access it makes, with exactly that access
/// failing; each run must succeed with the unfailed outcome or change
/// nothing. RAM and the allocator are rewound after each run.
fn sweep<M: PagingMode>(
    ctx: &Ctx<'_>,
    mapper: &mut Mapper<M, &HostileAccess<'_>>,
    access: &HostileAccess<'_>,
    alloc: &mut ScriptedAllocator,
    op: &Op,
    i: usize,
) -> Result<(), TestCaseError> {
    let saved = alloc.clone();
    let live_before = alloc.live_set().clone();
    let clean = run_once::<M>(&ctx.g, mapper, access, alloc, op, None);
    undo(ctx.ram, &clean.log);
    *alloc = saved.clone();
    SWEEP_RUNS.with(|c| c.set(c.get() + clean.calls + 1));
    for k in 1..=clean.calls {
        let run = run_once::<M>(&ctx.g, mapper, access, alloc, op, Some(k));
        let double = alloc.double_frees();
        undo(ctx.ram, &run.log);
        *alloc = saved.clone();
        prop_assert_eq!(
            double,
            0,
            "double free with access {} failing, op {} {:?}",
            k,
            i,
            op
        );
        if run.outcome.is_ok() {
            prop_assert_eq!(
                &run.outcome,
                &clean.outcome,
                "access {} failing, op {} {:?}",
                k,
                i,
                op
            );
            prop_assert!(
                run.net == clean.net && run.live == clean.live,
                "op {} {:?} succeeded with access {} failing but did something else",
                i,
                op,
                k
            );
        } else {
            prop_assert!(
                run.net.is_empty(),
                "op {} {:?} failed ({:?}) with access {} of {} failing and changed {} words: {}",
                i,
                op,
                run.outcome,
                k,
                clean.calls,
                run.net.len(),
                describe(&run.net)
            );
            prop_assert_eq!(
                &run.live,
                &live_before,
                "op {} {:?} failed ({:?}) with access {} of {} failing and kept or freed frames",
                i,
                op,
                run.outcome,
                k,
                clean.calls
            );
        }
    }
    Ok(())
}

fn steps_for<M: PagingMode>() -> impl Strategy<Value = (u64, u8, Vec<Step>)> {
    let g = Geo::of::<M>();
    let ops = if cfg!(miri) { 12 } else { OPS };
    (
        any::<u64>(),
        0u8..3,
        // Any length up to `ops` (250 on average), so that a failure
        // shrinks to the few operations that matter.
        proptest::collection::vec(step_strategy(g), 1..=ops),
    )
}

/// 2,000 cases unless `PROPTEST_CASES` asks for more (or fewer); one under
/// Miri.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(miri) { 1 } else { 2000 })
}

fn persistence() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    if cfg!(miri) {
        return None;
    }
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
    ))
}

thread_local! {
    /// Operations run (each sweep rerun counted once in `SWEEP_RUNS`).
    static OPS_RUN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static SWEEP_RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Every CPU mode `M` can run on, as far as entries go: 2-level with and
/// without PSE and the PAT; PAE with and without NX and the PAT, with
/// MAXPHYADDR the mode's width or 32 (a Pentium M), and without NX under
/// the drop policy. The first is the full-featured CPU.
fn feature_sets<M: PagingMode>() -> Vec<CpuFeatures> {
    let full = CpuFeatures::full::<M>();
    let mut out = Vec::new();
    if M::PMD_FOLDED {
        for pse in [true, false] {
            for pat in [true, false] {
                let mut f = full;
                f.pse = pse;
                f.pat = pat;
                out.push(f);
            }
        }
    } else {
        for nx in [true, false] {
            for pat in [true, false] {
                for max_phys_bits in [M::MAX_PHYS_BITS, 32] {
                    let mut f = full;
                    f.nx = nx;
                    f.pat = pat;
                    f.max_phys_bits = max_phys_bits;
                    out.push(f);
                }
            }
        }
        out.push(
            full.without(CpuFeature::NoExecute)
                .with_nx_policy(NxPolicy::Drop),
        );
    }
    out.dedup();
    out
}

/// Run the property for mode `M` on every feature set and print how much
/// it did: the full-featured CPU gets [`cases`] cases, the others share
/// as many again.
fn check<M: PagingMode>() {
    let sets = feature_sets::<M>();
    let others = (sets.len() - 1).max(1) as u32;
    for (i, features) in sets.into_iter().enumerate() {
        let cases = if i == 0 {
            cases()
        } else {
            cases().div_ceil(others)
        };
        check_on::<M>(features, cases);
    }
}

fn check_on<M: PagingMode>(features: CpuFeatures, cases: u32) {
    let config = ProptestConfig {
        cases,
        failure_persistence: persistence(),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    OPS_RUN.with(|c| c.set(0));
    SWEEP_RUNS.with(|c| c.set(0));
    let start = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&steps_for::<M>(), |(seed, style, steps)| {
        run::<M>(features, seed, style, &steps)
    });
    eprintln!(
        "{} (nx {}, pat {}, pse {}, maxphyaddr {}, {:?}): {} cases, {} operations, \
         {} failure-injection reruns, {:.1} s",
        M::NAME,
        features.nx,
        features.pat,
        features.pse,
        features.max_phys_bits,
        features.nx_policy,
        cases,
        OPS_RUN.with(|c| c.get()),
        SWEEP_RUNS.with(|c| c.get()),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{features:?}: {e}");
    }
}

#[test]
fn two_level_hostile_world() {
    check::<paging_x86_2level::TwoLevel>();
}

#[test]
fn pae36_hostile_world() {
    check::<paging_x86_pae::Pae<36>>();
}
