//! Every usable highmem frame (or an even sample of them) is reached
//! through the persistent kmap pool, written with a pattern derived from
//! its address, and read back through a later mapping.

use paging_core::PhysFrame;

use super::memory_access::{pattern, read_word, write_word};
use crate::arch::pit::{self, Stopwatch};
use crate::mm::frames::{self, Frames, ZoneId};
use crate::mm::kernel::Kernel;
use crate::mm::kmap_setup::{self, KernelPool};
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println};

/// Most frames one pass maps (TCG runs about a million kmaps in a few
/// seconds): beyond this the sweep takes every n-th free frame.
const SWEEP_BUDGET: u64 = 48 * 1024;
/// First frame number above 4 GiB.
const PFN_4G: u64 = 1 << 20;

/// What a pass did.
#[derive(Default)]
struct Pass {
    frames: u64,
    above_4g: u64,
    highest: u64,
}

pub fn every_highmem_frame_is_kmapped_written_and_read_back(kernel: &Kernel) -> TestResult {
    let Some(pool) = kmap_setup::pool() else {
        fail!("no kmap pool");
    };
    let frames = frames::lock();
    let free = frames.free_frames(ZoneId::High);
    if free == 0 {
        println!(
            "    no highmem: all {} MiB of RAM is below the lowmem limit {:#x}; nothing to sweep",
            frames.total_frames(ZoneId::Low) / 256,
            kernel.layout.lowmem_limit
        );
        return Ok(());
    }
    let stride = free.div_ceil(SWEEP_BUDGET);
    let watch = Stopwatch::start();
    let written = sweep(pool, &frames, stride, false)?;
    let read = sweep(pool, &frames, stride, true)?;
    let cycles = watch.elapsed();
    ensure!(
        written.frames == read.frames && written.frames > 0,
        "wrote {} frames, read back {}",
        written.frames,
        read.frames
    );
    let ram_above_4g = kernel
        .context
        .memory_map
        .as_ref()
        .map_or(0, |map| map.usable_bytes_above(1 << 32));
    if cfg!(feature = "mode-pae") && ram_above_4g > 0 {
        ensure!(
            read.above_4g > 0,
            "RAM above 4 GiB exists but no frame there was swept"
        );
    }
    println!(
        "    swept {} of {} free highmem frames ({}), {} of them above 4 GiB, highest {:#x}; {} {} per kmap+access",
        read.frames,
        free,
        Sample(stride),
        read.above_4g,
        read.highest << 12,
        cycles / (2 * read.frames),
        Stopwatch::unit()
    );
    Ok(())
}

/// How much of highmem a sweep covers, for people.
struct Sample(u64);

impl core::fmt::Display for Sample {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == 1 {
            f.write_str("all of them")
        } else {
            write!(f, "a sample: 1 in {}", self.0)
        }
    }
}

/// One pass over every `stride`-th free highmem frame: write its pattern
/// (first and last word), or check it.
fn sweep(pool: &KernelPool, frames: &Frames, stride: u64, check: bool) -> Result<Pass, Failure> {
    let (mut pfn, end) = frames.zone_range(ZoneId::High);
    let outcome = kmap_setup::with_task(|task| -> Result<Pass, Failure> {
        let mut pass = Pass::default();
        let mut index = 0u64;
        while let Some(found) = frames.next_free(pfn, end) {
            pit::keep_time();
            pfn = found + 1;
            index += 1;
            if !(index - 1).is_multiple_of(stride) {
                continue;
            }
            let frame = PhysFrame::from_number(found).map_err(|e| failure!("{e}"))?;
            let kmap = pool
                .map(task, frame)
                .map_err(|e| failure!("kmap of {frame:?}: {e}"))?;
            let va = kmap.va().as_u32() as usize;
            let expected = pattern(found);
            if check {
                // SAFETY: `va` maps `frame` (a free frame, owned by the
                // allocator we hold locked) for the guard's life.
                let (first, last) = unsafe { (read_word(va), read_word(va + 4092)) };
                if first != expected || last != !expected {
                    return Err(failure!(
                        "frame {frame:?} at {va:#x} holds {first:#x}/{last:#x}, expected {expected:#x}/{:#x}",
                        !expected
                    ));
                }
            } else {
                // SAFETY: as above; nothing else uses a free frame.
                unsafe {
                    write_word(va, expected);
                    write_word(va + 4092, !expected);
                }
            }
            drop(kmap);
            pass.frames += 1;
            pass.above_4g += u64::from(found >= PFN_4G);
            pass.highest = found;
        }
        Ok(pass)
    });
    outcome.unwrap_or_else(|| Err(failure!("the main task's kmap token is in use")))
}
