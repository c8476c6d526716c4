//! The hot paths counted with callgrind: each runs a fixed setup, then `n`
//! operations. Running a path with `n` and `2n` and subtracting gives the
//! instructions of exactly `n` operations, setup excluded (it is the same
//! in both runs).

use core::hint::black_box;

use kmap::{AccessedBit, FlushPolicy, GlobalFlush, KmapTask, PerPage, RangeFlush};
use paging_core::PagingMode;
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

use crate::kmap_host::{KmapHost, MISS_PAGES, highmem_frame, hit_frame};
use crate::{FixtureError, LockLookup, OursPages, OursRange, PAGES, RawBound, TheirPages};

/// One countable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotPath {
    /// Name on the `hotpaths` command line and in the report.
    pub name: &'static str,
    /// Operations in the shorter run (the longer one does twice as many).
    pub n: usize,
}

const fn path(name: &'static str, n: usize) -> HotPath {
    HotPath { name, n }
}

/// Every path, in report order.
pub const HOT_PATHS: &[HotPath] = &[
    path("map-2level", PAGES / 4),
    path("map-pae", PAGES / 4),
    path("map-x86_64", PAGES / 4),
    path("translate-2level", 4096),
    path("translate-pae", 4096),
    path("translate-x86_64", 4096),
    path("range-2level", 1),
    path("range-pae", 1),
    path("bound-2level", 1),
    path("bound-pae", 1),
    path("volatile-2level", 1),
    path("volatile-pae", 1),
    path("lock-lookup", 4096),
    path("kmap-hit-2level", 4096),
    path("kmap-hit-pae", 4096),
    path("kmap-hit-held-2level", 4096),
    path("kmap-hit-held-pae", 4096),
    path("kmap-miss-2level-per-page", 4096),
    path("kmap-miss-2level-range", 4096),
    path("kmap-miss-2level-global", 4096),
    path("kmap-miss-2level-accessed-bit", 4096),
    path("kmap-miss-pae-per-page", 4096),
    path("kmap-miss-pae-range", 4096),
    path("kmap-miss-pae-global", 4096),
    path("kmap-miss-pae-accessed-bit", 4096),
];

/// Runs the measured part of a path: the only code a profile collects
/// (`valgrind --toggle-collect=*hotpaths::measured*`).
#[inline(never)]
pub fn measured<T>(ops: impl FnOnce() -> T) -> T {
    black_box(ops())
}

/// Run path `name` with `n` operations after its setup; returns a checksum
/// of the results (printed, so nothing is optimised away).
pub fn run(name: &str, n: usize) -> Result<u64, FixtureError> {
    let unknown = || FixtureError::Failed(format!("unknown hot path `{name}`"));
    let (kind, rest) = name.split_once('-').ok_or_else(unknown)?;
    match (kind, rest) {
        ("map", "2level") => map::<TwoLevel>(n),
        ("map", "pae") => map::<Pae>(n),
        ("map", "x86_64") => {
            let mut t = TheirPages::new()?;
            measured(|| t.map_pages(0..n))?;
            Ok(n as u64)
        }
        ("translate", "2level") => translate::<TwoLevel>(n),
        ("translate", "pae") => translate::<Pae>(n),
        ("translate", "x86_64") => {
            let mut t = TheirPages::new()?;
            t.map_pages(0..PAGES)?;
            measured(|| {
                let mut sum = 0u64;
                for k in 0..n {
                    let i = k % PAGES;
                    sum = sum.wrapping_add(t.translate_pages(i..i + 1)?);
                }
                Ok(sum)
            })
        }
        ("range", "2level") => range::<TwoLevel>(n),
        ("range", "pae") => range::<Pae>(n),
        ("bound", "2level") => bound::<TwoLevel>(n),
        ("bound", "pae") => bound::<Pae>(n),
        ("volatile", "2level") => bound_volatile::<TwoLevel>(n),
        ("volatile", "pae") => bound_volatile::<Pae>(n),
        ("lock", "lookup") => {
            let l = LockLookup::new();
            let key = l.present_key();
            Ok(measured(|| {
                let mut sum = 0u64;
                for _ in 0..n {
                    sum += u64::from(l.lookup(black_box(key)).unwrap_or(0));
                }
                sum
            }))
        }
        ("kmap", rest) => kmap_path(rest, n).ok_or_else(unknown)?,
        _ => Err(unknown()),
    }
}

fn map<M: PagingMode>(n: usize) -> Result<u64, FixtureError> {
    let mut f = OursPages::<M>::new()?;
    measured(|| f.map_pages(0..n))?;
    Ok(n as u64)
}

fn translate<M: PagingMode>(n: usize) -> Result<u64, FixtureError> {
    let mut f = OursPages::<M>::new()?;
    f.map_pages(0..PAGES)?;
    measured(|| {
        let mut sum = 0u64;
        for k in 0..n {
            let i = k % PAGES;
            sum = sum.wrapping_add(f.translate_pages(i..i + 1)?);
        }
        Ok(sum)
    })
}

fn range<M: PagingMode>(n: usize) -> Result<u64, FixtureError> {
    let mut f = OursRange::<M>::new();
    measured(|| {
        let mut sum = 0;
        for _ in 0..n {
            f.reset();
            sum += f.map_range()?;
        }
        Ok(sum)
    })
}

fn bound<M: PagingMode>(n: usize) -> Result<u64, FixtureError> {
    let mut b = RawBound::new::<M>()?;
    measured(|| {
        for _ in 0..n {
            b.fill();
        }
    });
    Ok(b.pte(n).unwrap_or(0))
}

fn bound_volatile<M: PagingMode>(n: usize) -> Result<u64, FixtureError> {
    let mut b = RawBound::new::<M>()?;
    measured(|| {
        for _ in 0..n {
            b.fill_volatile();
        }
    });
    Ok(b.pte(n).unwrap_or(0))
}

/// `kmap-hit-MODE`, `kmap-hit-held-MODE`, `kmap-miss-MODE-POLICY`.
fn kmap_path(rest: &str, n: usize) -> Option<Result<u64, FixtureError>> {
    Some(match rest {
        "hit-2level" => kmap_hit::<TwoLevel>(n, false),
        "hit-pae" => kmap_hit::<Pae>(n, false),
        "hit-held-2level" => kmap_hit::<TwoLevel>(n, true),
        "hit-held-pae" => kmap_hit::<Pae>(n, true),
        _ => {
            let (mode, policy) = rest.strip_prefix("miss-")?.split_once('-')?;
            match mode {
                "2level" => kmap_miss_policy::<TwoLevel>(policy, n)?,
                "pae" => kmap_miss_policy::<Pae>(policy, n)?,
                _ => return None,
            }
        }
    })
}

fn kmap_miss_policy<M: PagingMode>(policy: &str, n: usize) -> Option<Result<u64, FixtureError>> {
    Some(match policy {
        "per-page" => kmap_miss::<M, _>(PerPage, n),
        "range" => kmap_miss::<M, _>(RangeFlush, n),
        "global" => kmap_miss::<M, _>(GlobalFlush, n),
        "accessed-bit" => kmap_miss::<M, _>(AccessedBit, n),
        _ => return None,
    })
}

fn kmap_hit<M: PagingMode>(n: usize, held: bool) -> Result<u64, FixtureError> {
    let k = KmapHost::<M, _>::new(GlobalFlush)?;
    // SAFETY: the only task token of this thread.
    let task = unsafe { KmapTask::new() };
    k.warm(&task)?;
    let frame = hit_frame().ok_or(FixtureError::Frame)?;
    let holder = if held {
        Some(k.pool().try_map(&task, frame)?)
    } else {
        None
    };
    let sum = measured(|| {
        let mut sum = 0u64;
        for _ in 0..n {
            sum += u64::from(k.kmap_kunmap(&task, black_box(frame))?.as_u32());
        }
        Ok::<_, FixtureError>(sum)
    })?;
    drop(holder);
    Ok(sum)
}

fn kmap_miss<M: PagingMode, P: FlushPolicy>(policy: P, n: usize) -> Result<u64, FixtureError> {
    let k = KmapHost::<M, _>::new(policy)?;
    // SAFETY: the only task token of this thread.
    let task = unsafe { KmapTask::new() };
    k.warm(&task)?;
    measured(|| {
        let mut sum = 0u64;
        for i in 0..n {
            let frame = highmem_frame(i % MISS_PAGES).ok_or(FixtureError::Frame)?;
            sum += u64::from(k.kmap_kunmap(&task, frame)?.as_u32());
        }
        Ok(sum)
    })
}
