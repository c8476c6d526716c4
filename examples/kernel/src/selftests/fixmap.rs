//! The fixmap after the handover: the early console mapping survived, and
//! the window's PTE tables are one physically contiguous array.

use paging_core::{Entry, MapFlags, PagingMode, PhysFrame, PmdEntry, VirtAddr, Walker};

use crate::arch::mode::Mode;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::early_fixmap::early_table_frame;
use crate::mm::kernel::Kernel;
use crate::mm::layout::{KernelFixmap, PAGE_OFFSET, VGA_TEXT_BUFFER};
use crate::selftests::harness::TestResult;
use crate::{arch::vga, ensure, fail, println};

pub fn early_console_mapping_survives_the_handover(kernel: &Kernel) -> TestResult {
    // The banner was written through the early table, before any
    // allocator; read it back through the final window's copy.
    let Some(row) = vga::banner_row() else {
        fail!("the VGA console never started");
    };
    for (i, byte) in kernel.banner.bytes().take(row.len()).enumerate() {
        let expected = vga::banner_cell(byte);
        ensure!(
            row[i] == expected,
            "VGA cell {i} reads {:#06x} through the fixmap, expected {expected:#06x}",
            row[i]
        );
    }
    // The slot maps the real text buffer, uncached.
    let slot = kernel.fixmap.get(KernelFixmap::VGA_CONSOLE);
    let Ok(Some((frame, flags))) = slot else {
        fail!("VGA_CONSOLE slot: {slot:?}");
    };
    ensure!(
        frame.start_address().as_u64() == VGA_TEXT_BUFFER,
        "VGA_CONSOLE maps {frame:?}, not {VGA_TEXT_BUFFER:#x}"
    );
    ensure!(
        flags.contains(MapFlags::CACHE_DISABLE | MapFlags::WRITABLE),
        "VGA_CONSOLE flags {flags:?} are not uncached + writable"
    );
    // The same cell through the direct map agrees.
    let direct = (PAGE_OFFSET as usize + VGA_TEXT_BUFFER as usize) as *const u16;
    // SAFETY: the direct map covers physical 0xB8000 (the VGA buffer) for
    // the kernel's life; a volatile read of device memory has no effect.
    let first = unsafe { direct.read_volatile() };
    ensure!(
        first == row[0],
        "direct map reads {first:#06x}, fixmap {:#06x}",
        row[0]
    );
    // And the fixmap's PMD slot no longer points at the early table.
    let walker = Walker::<Mode, _>::new(kernel.root, DirectMapAccess);
    let va = kernel.fixmap.virt(KernelFixmap::VGA_CONSOLE);
    let table = match walker.walk(va) {
        Ok(walk) => walk.pte.map(|(slot, _)| slot.table),
        Err(e) => fail!("walking {va}: {e}"),
    };
    ensure!(
        table.is_some() && table != Some(early_table_frame()),
        "the VGA slot's PTE is in {table:?}, expected a window table (early was {:?})",
        early_table_frame()
    );
    println!("    banner read back through slot {va} after the handover");
    Ok(())
}

pub fn kmap_window_tables_are_contiguous(kernel: &Kernel) -> TestResult {
    let window = &kernel.window;
    let walker = Walker::<Mode, _>::new(kernel.root, DirectMapAccess);
    let span = <Mode as PagingMode>::pmd_span();
    let mut frames = [PhysFrame::containing_address(Default::default()); 8];
    ensure!(
        window.tables() <= frames.len(),
        "{} tables",
        window.tables()
    );
    for (k, frame) in frames.iter_mut().enumerate().take(window.tables()) {
        let va = VirtAddr::new((window.start().as_u64() + k as u64 * span) as u32);
        let walk = match walker.walk(va) {
            Ok(walk) => walk,
            Err(e) => fail!("walking {va}: {e}"),
        };
        let Some((_, pmd)) = walk.pmd else {
            fail!("no PMD entry for {va}");
        };
        ensure!(
            pmd.is_present() && !pmd.is_large(),
            "PMD entry for {va} is {pmd:?}, not a table"
        );
        *frame = PhysFrame::containing_address(pmd.addr());
        let expected = window.first_frame().checked_add(k as u64);
        ensure!(
            Some(*frame) == expected,
            "table {k} (for {va}) is {frame:?}, expected {expected:?}"
        );
    }
    // Every slot's PTE, found by the walk, is where the window's one-array
    // arithmetic says it is.
    for va in [
        window.start(),
        kernel.fixmap.virt(KernelFixmap::VGA_CONSOLE),
        VirtAddr::new((window.end() - 4096) as u32),
    ] {
        let slot = walker.walk(va).ok().and_then(|w| w.pte).map(|(s, _)| s);
        let Some(slot) = slot else {
            fail!("no PTE slot for {va}");
        };
        let walked = slot.table.start_address().as_u64()
            + (slot.index * <Mode as PagingMode>::ENTRY_BYTES) as u64;
        let computed = window.pte_phys(va).map(|p| p.as_u64());
        ensure!(
            computed == Some(walked),
            "PTE of {va}: window says {computed:#x?}, walk says {walked:#x}"
        );
    }
    println!(
        "    {} PTE tables at frames {:?}..+{} cover {}..{:#x}",
        window.tables(),
        window.first_frame(),
        window.tables(),
        window.start(),
        window.end()
    );
    Ok(())
}
