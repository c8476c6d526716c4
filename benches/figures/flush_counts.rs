//! Flushes by kind per 100,000 kmaps over 10,000 pages with 1,024 slots,
//! for each flush policy, on the simulated machine (so the counts are what
//! the simulated TLB itself received).
//!
//! The workload is fixed by a seeded PRNG: each map picks a page uniformly,
//! holds it while the next three maps happen (a FIFO of 3), and
//! dereferences it through the MMU three times in four (the rest are never
//! touched, which is what the accessed-bit policy exploits).

use kmap::{AccessedBit, FlushCounts, FlushPolicy, GlobalFlush, KmapTask, PerPage, RangeFlush};
use paging_core::{PAGE_SIZE, PhysAddr, PhysFrame};
use paging_sim::{Access, SimRam};

use super::sim_kernel::{SimKernel, SimMode};

/// Persistent slots.
pub const SLOTS: usize = 1024;
/// Distinct highmem pages.
pub const PAGES: usize = 10_000;
/// Maps in the workload.
pub const MAPS: usize = 100_000;
/// Mappings held at once.
pub const HELD: usize = 3;

/// What one policy did over the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushFigure {
    /// The policy's name.
    pub policy: &'static str,
    /// Times the pool's cursor wrapped (and cleared unused slots).
    pub wraps: u64,
    /// Maps that reused a slot still holding the page.
    pub hits: u64,
    /// What the policy counted.
    pub counts: FlushCounts,
    /// `invlpg`s the simulated TLB received.
    pub tlb_invlpg: u64,
    /// Full flushes (globals included) and CR3 reloads the simulated TLB
    /// received.
    pub tlb_full: u64,
}

impl FlushFigure {
    /// Invalidations of any kind the TLB received.
    pub fn invalidations(&self) -> u64 {
        self.tlb_invlpg + self.tlb_full
    }
}

/// splitmix64: the same seed gives the same workload on every machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Run the workload with `policy` in mode `M`.
pub fn run<M: SimMode, P: FlushPolicy>(policy: P) -> Result<FlushFigure, String> {
    let ram = SimRam::new();
    let k = SimKernel::<M>::new(&ram)?;
    let pool = k.pool::<P, SLOTS>(policy)?;
    let frame = |i: usize| {
        PhysAddr::new(M::DATA + i as u64 * PAGE_SIZE)
            .ok()
            .and_then(|pa| PhysFrame::from_start_address(pa).ok())
            .ok_or_else(|| format!("data page {i}"))
    };
    // SAFETY: the only task token of this thread.
    let task = unsafe { KmapTask::new() };
    let mut rng = Rng(0x5EED_F1A5);
    let before = k.m.mmu.tlb_stats();
    let mut held = std::collections::VecDeque::with_capacity(HELD + 1);
    for _ in 0..MAPS {
        let f = frame(rng.below(PAGES))?;
        let touch = rng.below(4) != 0;
        let g = pool.try_map(&task, f).map_err(|e| format!("kmap: {e}"))?;
        if touch {
            let t = k.m.mmu.translate(g.va(), Access::READ);
            if t.map(|t| t.pa) != Ok(f.start_address()) {
                return Err(format!("{:?} does not reach {f:?}", g.va()));
            }
        }
        held.push_back(g);
        if held.len() > HELD {
            drop(held.pop_front());
        }
    }
    drop(held);
    let after = k.m.mmu.tlb_stats();
    let stats = pool.stats();
    if stats.maps != MAPS as u64 || pool.in_use() != 0 {
        return Err(format!(
            "{} maps counted, {} in use",
            stats.maps,
            pool.in_use()
        ));
    }
    Ok(FlushFigure {
        policy: pool.policy().name(),
        wraps: stats.wraps,
        hits: stats.hits,
        counts: stats.flushes,
        tlb_invlpg: after.invlpg - before.invlpg,
        tlb_full: (after.global_flushes - before.global_flushes)
            + (after.cr3_loads - before.cr3_loads),
    })
}

/// The workload under every policy: per-page, range, global, accessed-bit.
pub fn all<M: SimMode>() -> Result<[FlushFigure; 4], String> {
    Ok([
        run::<M, _>(PerPage)?,
        run::<M, _>(RangeFlush)?,
        run::<M, _>(GlobalFlush)?,
        run::<M, _>(AccessedBit)?,
    ])
}
