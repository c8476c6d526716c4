//! How the kernel reaches page tables in lowmem: through the direct map,
//! `virtual = physical + PAGE_OFFSET`.
//!
//! Demonstrates `paging_core::TableAccess`: the mapper, the fixmap and the
//! kmap pool never touch table memory except through it. Like
//! `paging_core::OffsetAccess`, but its reach grows at run time: only the
//! 16 MiB boot window is mapped until the final tables are loaded, then all
//! of lowmem.

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::{AccessError, PhysFrame, PtrTable, TableAccess};

use crate::mm::layout::{BOOT_WINDOW_SIZE, PAGE_OFFSET};

/// First physical address the direct map does not reach (yet). 32 bits
/// (lowmem ends below 1 GiB): a 64-bit atomic load on i586 compiles to an
/// x87 `fild`/`fistp` pair, which kernel code must not use (it clobbers the
/// FPU state) and which is slow in QEMU.
static REACH: AtomicU32 = AtomicU32::new(BOOT_WINDOW_SIZE);

/// Page tables reached at `physical + PAGE_OFFSET`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectMapAccess;

impl DirectMapAccess {
    /// The first physical address not reachable now.
    pub fn reach() -> u64 {
        u64::from(REACH.load(Ordering::Acquire))
    }

    /// The final tables map lowmem up to `limit` (at most 896 MiB): reach
    /// all of it.
    ///
    /// # Safety
    /// The tables now in CR3 must map physical `0..limit` writable at
    /// `PAGE_OFFSET`, and keep doing so.
    pub unsafe fn extend_reach(limit: u64) {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX) & !0xFFF;
        REACH.store(limit, Ordering::Release);
    }
}

impl TableAccess for DirectMapAccess {
    type Table<'a> = PtrTable<'a>;

    fn table(&self, frame: PhysFrame) -> Result<PtrTable<'_>, AccessError> {
        let pa = frame.start_address().as_u64();
        if pa + 4096 > Self::reach() {
            return Err(AccessError::Unreachable(frame));
        }
        let va = PAGE_OFFSET as usize + pa as usize;
        // SAFETY: `pa` is below the reach, which the current tables map
        // writable at PAGE_OFFSET (boot window, then lowmem: see
        // `extend_reach`). Page-table frames are only ever accessed
        // volatilely, atomically or by the MMU (the kernel's Rust objects
        // that hold tables, `EarlyTables` and the boot tables, are atomics
        // or assembly data).
        Ok(unsafe { PtrTable::new(va as *mut u8) })
    }
}
