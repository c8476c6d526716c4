//! The physical frame allocator: one bitmap, two zones.
//!
//! Demonstrates `paging_core::FrameAllocator` (with `allocate_contiguous`,
//! which the fixmap window builder needs) and `paging_core::Zone`:
//!
//! - **lowmem**, physical `0..lowmem_limit`, is permanently mapped by the
//!   direct map: page directories, PMD tables, the kmap window;
//! - **highmem**, above it, is reached only through kmap: user pages and,
//!   with pte-highmem, PTE tables (`Zone::PreferHighmem`).
//!
//! The bitmap (one bit per frame, 1 = free) lives in `.bss`, so it exists
//! before any allocator and is reserved with the kernel image. Frames that
//! are never usable (firmware areas, holes, the first MiB, the kernel image,
//! the loader's structures) are simply never marked free.

use paging_core::{FrameAllocator, PhysFrame, Zone};

use crate::mm::layout::MAX_PHYS_TRACKED;

/// Frames tracked.
const FRAMES: u64 = MAX_PHYS_TRACKED / 4096;
/// 64-bit words of the bitmap.
const WORDS: usize = (FRAMES / 64) as usize;

/// One of the two zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneId {
    /// Directly mapped.
    Low = 0,
    /// Above the direct map.
    High = 1,
}

/// The allocator's state. One instance, [`FRAMES_LOCK`].
pub struct Frames {
    free_bits: [u64; WORDS],
    /// First highmem frame number (the lowmem limit, in frames).
    lowmem_end: u64,
    free: [u64; 2],
    total: [u64; 2],
    hint: [u64; 2],
    bad_frees: u64,
}

/// The kernel's frame allocator.
pub static FRAMES_LOCK: spin::Mutex<Frames> = spin::Mutex::new(Frames::new());

/// Locks the kernel's frame allocator (a spin the watchdog watches).
pub fn lock() -> spin::MutexGuard<'static, Frames> {
    loop {
        if let Some(guard) = FRAMES_LOCK.try_lock() {
            crate::base::spin::done();
            crate::base::spin::progress();
            return guard;
        }
        crate::base::spin::spin(
            "the frame allocator's lock",
            &raw const FRAMES_LOCK as usize,
        );
        core::hint::spin_loop();
    }
}

impl Frames {
    /// No frame free. All zeros, so the static lands in `.bss`, not in the
    /// kernel file; [`set_lowmem_limit`](Self::set_lowmem_limit) comes first.
    const fn new() -> Self {
        Self {
            free_bits: [0; WORDS],
            lowmem_end: 0,
            free: [0; 2],
            total: [0; 2],
            hint: [0; 2],
            bad_frees: 0,
        }
    }

    /// Sets the zone boundary. Call before any frame is freed.
    pub fn set_lowmem_limit(&mut self, limit: u64) {
        self.lowmem_end = (limit / 4096).min(FRAMES);
        self.hint = [0, self.lowmem_end];
    }

    /// Hands out highmem from 4 GiB up first (wrapping round to the lowmem
    /// limit), so page tables land above 4 GiB, where only PAE's 64-bit
    /// entries can point (kernel command line `frames=high-first`).
    ///
    /// Not the default: QEMU 7.2's `qemu-system-i386` keeps page-table
    /// addresses in 32 bits while it walks, so tables above 4 GiB read as
    /// empty there (`qemu-system-x86_64`, and real CPUs, walk them fine).
    pub fn prefer_above_4g(&mut self) {
        self.hint[ZoneId::High as usize] = self.lowmem_end.max(1 << 20);
    }

    /// The zone of frame number `pfn`.
    fn zone_of(&self, pfn: u64) -> ZoneId {
        if pfn < self.lowmem_end {
            ZoneId::Low
        } else {
            ZoneId::High
        }
    }

    /// Frame numbers of `zone`, as a half-open range.
    pub fn zone_range(&self, zone: ZoneId) -> (u64, u64) {
        match zone {
            ZoneId::Low => (0, self.lowmem_end),
            ZoneId::High => (self.lowmem_end, FRAMES),
        }
    }

    /// Whether frame `pfn` is free.
    pub fn is_free(&self, pfn: u64) -> bool {
        pfn < FRAMES && self.free_bits[(pfn / 64) as usize] & (1 << (pfn % 64)) != 0
    }

    fn mark_free(&mut self, pfn: u64) {
        self.free_bits[(pfn / 64) as usize] |= 1 << (pfn % 64);
        self.free[self.zone_of(pfn) as usize] += 1;
    }

    fn mark_used(&mut self, pfn: u64) {
        self.free_bits[(pfn / 64) as usize] &= !(1 << (pfn % 64));
        self.free[self.zone_of(pfn) as usize] -= 1;
    }

    /// Marks the whole frames inside physical `start..end` free (usable RAM).
    pub fn add_usable(&mut self, start: u64, end: u64) {
        let first = start.div_ceil(4096);
        let last = (end / 4096).min(FRAMES);
        for pfn in first..last {
            if !self.is_free(pfn) {
                self.mark_free(pfn);
                self.total[self.zone_of(pfn) as usize] += 1;
            }
        }
    }

    /// Takes every frame touching physical `start..end` out of use for good
    /// (kernel image, loader structures, the first MiB).
    pub fn reserve(&mut self, start: u64, end: u64) {
        let first = start / 4096;
        let last = end.div_ceil(4096).min(FRAMES);
        for pfn in first..last {
            if self.is_free(pfn) {
                self.mark_used(pfn);
                self.total[self.zone_of(pfn) as usize] -= 1;
            }
        }
    }

    /// Free frames in `zone`.
    pub fn free_frames(&self, zone: ZoneId) -> u64 {
        self.free[zone as usize]
    }

    /// Usable frames in `zone` (free or allocated).
    pub fn total_frames(&self, zone: ZoneId) -> u64 {
        self.total[zone as usize]
    }

    /// Frees of frames that were not allocated (ignored, counted).
    pub fn bad_frees(&self) -> u64 {
        self.bad_frees
    }

    /// The first free frame in `start..end`.
    pub fn next_free(&self, start: u64, end: u64) -> Option<u64> {
        self.scan(start, end)
    }

    /// The first free frame in `start..end`.
    fn scan(&self, start: u64, end: u64) -> Option<u64> {
        let mut pfn = start;
        while pfn < end {
            let bits = self.free_bits[(pfn / 64) as usize] >> (pfn % 64);
            if bits != 0 {
                let found = pfn + u64::from(bits.trailing_zeros());
                return (found < end).then_some(found);
            }
            pfn = (pfn / 64 + 1) * 64;
        }
        None
    }

    /// One frame from `zone`, searching from where the last one was found.
    fn take(&mut self, zone: ZoneId) -> Option<PhysFrame> {
        if self.free[zone as usize] == 0 {
            return None;
        }
        let (lo, hi) = self.zone_range(zone);
        let from = self.hint[zone as usize].clamp(lo, hi);
        let pfn = self.scan(from, hi).or_else(|| self.scan(lo, from))?;
        self.mark_used(pfn);
        self.hint[zone as usize] = pfn + 1;
        PhysFrame::from_number(pfn).ok()
    }

    /// `count` consecutive free lowmem frames at or above physical `from`,
    /// inside one `span`-aligned block (one large page of the direct map:
    /// the split self-tests). Given back with `deallocate_frame`.
    pub fn take_run_above(&mut self, from: u64, count: usize, span: u64) -> Option<PhysFrame> {
        let (count, per_span) = (count as u64, span / 4096);
        let (_, hi) = self.zone_range(ZoneId::Low);
        let mut start = from / 4096;
        while let Some(first) = self.scan(start, hi) {
            let end = first + count;
            if end > hi {
                return None;
            }
            if first / per_span != (end - 1) / per_span {
                start = (end - 1) / per_span * per_span;
                continue;
            }
            match (first..end).find(|&pfn| !self.is_free(pfn)) {
                None => {
                    (first..end).for_each(|pfn| self.mark_used(pfn));
                    return PhysFrame::from_number(first).ok();
                }
                Some(used) => start = used + 1,
            }
        }
        None
    }

    /// `count` consecutive free frames in `zone`.
    fn take_run(&mut self, zone: ZoneId, count: usize) -> Option<PhysFrame> {
        let count = count as u64;
        if count == 0 || self.free[zone as usize] < count {
            return None;
        }
        let (lo, hi) = self.zone_range(zone);
        let mut start = lo;
        while let Some(first) = self.scan(start, hi) {
            let end = first + count;
            if end > hi {
                return None;
            }
            match (first..end).find(|&pfn| !self.is_free(pfn)) {
                None => {
                    (first..end).for_each(|pfn| self.mark_used(pfn));
                    return PhysFrame::from_number(first).ok();
                }
                Some(used) => start = used + 1,
            }
        }
        None
    }
}

// SAFETY: a bitmap allocator over the RAM the Multiboot map calls free,
// less the kernel image and boot data: a frame is handed out only while its
// bit is clear, and its bit stays set until it is given back.
unsafe impl FrameAllocator for Frames {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        match zone {
            Zone::Lowmem => self.take(ZoneId::Low),
            Zone::PreferHighmem | Zone::Any => {
                self.take(ZoneId::High).or_else(|| self.take(ZoneId::Low))
            }
        }
    }

    fn allocate_contiguous(&mut self, count: usize, zone: Zone) -> Option<PhysFrame> {
        match zone {
            Zone::Lowmem => self.take_run(ZoneId::Low, count),
            Zone::PreferHighmem | Zone::Any => self
                .take_run(ZoneId::High, count)
                .or_else(|| self.take_run(ZoneId::Low, count)),
        }
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        let pfn = frame.number();

        if pfn >= FRAMES || self.is_free(pfn) {
            self.bad_frees += 1;
            return;
        }
        self.mark_free(pfn);
    }
}
