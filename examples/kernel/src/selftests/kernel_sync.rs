//! Kernel mappings shared by many address spaces (design point 6): a
//! vmalloc mapping made in the reference directory reaches another address
//! space lazily through the page-fault handler (also from inside an NMI),
//! or eagerly through `KernelSync::publish`.

use paging_core::{FrameAllocator, PagingMode, PhysFrame, VirtAddr, Walker, Zone};

use super::memory_access::{pattern, write_word};
use crate::arch::mode::Mode;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::{self, Frames};
use crate::mm::kernel::Kernel;
use crate::mm::kernel_sync::{self, SyncFaults};
use crate::mm::layout::PAGE_OFFSET;
use crate::selftests::harness::{Failure, TestResult};
use crate::{arch::apic, arch::fault_probe, arch::nmi, ensure, failure, mm::vmalloc, println};

/// The space every test creates, with tables reached through the direct map.
type Space = AddressSpace<DirectMapAccess>;

/// Lazy sync faults one first touch of a new vmalloc region costs: one
/// PGD entry in 2-level mode, nothing in PAE mode (shared kernel PMD).
pub(super) const EXPECTED_FILLS: u32 = if <Mode as PagingMode>::PMD_FOLDED {
    1
} else {
    0
};

/// A lowmem page holding a known word, mapped in a new vmalloc region of
/// the reference directory only.
pub(super) struct VmallocPage {
    frame: PhysFrame,
    /// Where the page is mapped (in the reference directory only).
    pub(super) va: VirtAddr,
    /// The word it holds.
    pub(super) value: u32,
}

impl VmallocPage {
    pub(super) fn new(frames: &mut Frames) -> Result<Self, Failure> {
        let frame = frames
            .allocate_frame(Zone::Lowmem)
            .ok_or_else(|| failure!("out of lowmem frames"))?;
        let value = pattern(frame.number());
        // SAFETY: the frame was just allocated for this test and is lowmem,
        // so its direct-map address is mapped writable; nothing else
        // refers to it.
        unsafe {
            write_word(
                PAGE_OFFSET as usize + frame.start_address().as_u64() as usize,
                value,
            )
        };
        match vmalloc::map_in_new_region(frame, frames) {
            Ok(va) => Ok(Self { frame, va, value }),
            Err(e) => {
                // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
                unsafe { frames.deallocate_frame(frame) };
                Err(e)
            }
        }
    }

    pub(super) fn release(self, frames: &mut Frames) -> Result<(), Failure> {
        let frame = vmalloc::unmap(self.va)?;
        ensure!(frame == self.frame, "{} mapped {frame:?}", self.va);
        // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
        unsafe { frames.deallocate_frame(frame) };
        Ok(())
    }
}

/// Whether the directory at `root` translates `va` (by its tables).
fn translates(root: paging_core::PhysAddr, va: VirtAddr) -> bool {
    Walker::<Mode, _>::new(root, DirectMapAccess)
        .translate(va)
        .is_ok()
}

/// Reads `page` with `space` loaded; returns the value and the lazy sync
/// faults the read cost.
fn read_in(space: &Space, page: &VmallocPage) -> Result<(u32, SyncFaults), Failure> {
    let before = kernel_sync::faults();
    // SAFETY: the page maps a lowmem frame the test owns (ordinary RAM).
    let read = space.run(|| unsafe { fault_probe::read_u32(page.va.as_u32() as usize) });
    let faults = kernel_sync::faults().since(before);
    let value = read.map_err(|f| failure!("reading {} in {}: {f:?}", page.va, space.root()))?;
    Ok((value, faults))
}

/// Runs `body` with a fresh registered space and a new vmalloc page, then
/// releases both, whatever `body` returned.
fn with_space_and_page(
    body: impl FnOnce(&Space, &VmallocPage, &mut Frames) -> TestResult,
) -> TestResult {
    let mut frames = frames::lock();
    let space = Space::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
    let page = match VmallocPage::new(&mut frames) {
        Ok(page) => page,
        Err(e) => {
            space.destroy(&mut *frames)?;
            return Err(e);
        }
    };
    let result = body(&space, &page, &mut frames);
    let released = page.release(&mut frames);
    let destroyed = space.destroy(&mut *frames);
    result?;
    released?;
    destroyed.map(|_| ())
}

pub fn lazy_fault_fills_a_new_vmalloc_entry(kernel: &Kernel) -> TestResult {
    with_space_and_page(|space, page, _| {
        let va = page.va;
        ensure!(translates(kernel.root, va), "the reference lacks {va}");
        let visible_before = translates(space.root(), va);
        let (value, faults) = read_in(space, page)?;
        ensure!(
            value == page.value,
            "read {value:#x} at {va}, wrote {:#x}",
            page.value
        );
        ensure!(
            faults.filled == EXPECTED_FILLS && faults.already_synced == 0,
            "{faults:?} lazy sync faults, expected {EXPECTED_FILLS} fill(s)"
        );
        ensure!(
            translates(space.root(), va),
            "{va} still not mapped in the space after the read"
        );
        if <Mode as PagingMode>::PMD_FOLDED {
            ensure!(
                !visible_before,
                "the space had {va} before any sync (registered after the mapping?)"
            );
            let index = <Mode as PagingMode>::pgd_index(va);
            println!(
                "    {va} mapped in the reference only: new PGD entry {index}, empty in the second space {}",
                space.root()
            );
        } else {
            ensure!(
                visible_before,
                "the space does not see {va} although the kernel PMD is shared"
            );
            println!(
                "    PAE: the kernel half is PDPT entry 3, whose PMD table every space shares from registration; {va} is a new entry in that PMD, so nothing needs syncing: the second space {} saw it before any access",
                space.root()
            );
        }
        println!(
            "    first read there: {} lazy sync fault(s) (filled {}, already synced {}), read {value:#010x} as written",
            faults.filled + faults.already_synced,
            faults.filled,
            faults.already_synced
        );
        Ok(())
    })
}

/// Spins at most this many times for the NMI to arrive.
const NMI_WAIT_SPINS: u32 = 10_000_000;

pub fn lazy_fault_inside_an_nmi(kernel: &Kernel) -> TestResult {
    if let Some(why) = crate::smp::no_apic() {
        println!("    skipped: {why}");
        return Ok(());
    }
    let apic = crate::mm::early_fixmap::local_apic(kernel.fixmap)?;
    with_space_and_page(|space, page, _frames_held| {
        let va = page.va;
        let svr = apic.enable();
        let count = nmi::count();
        // SAFETY: the page maps a lowmem frame the test owns.
        unsafe { nmi::arm_read(va.as_u32() as usize) };
        // The interrupted code holds the frame allocator's lock (the
        // caller's guard) the whole time: the NMI path must need no lock.
        let (sent, spins) = space.run(|| {
            let sent = apic.send_nmi_to_self();
            let mut spins = 0;
            while nmi::read_result().is_none() && spins < NMI_WAIT_SPINS {
                core::hint::spin_loop();
                spins += 1;
            }
            (sent, spins)
        });
        apic.restore_svr(svr);
        sent?;
        let Some(read) = nmi::read_result() else {
            return Err(failure!(
                "no NMI ran the read ({} NMIs seen, waited {spins} spins)",
                nmi::count() - count
            ));
        };
        ensure!(
            nmi::count() == count + 1,
            "{} NMIs, expected 1",
            nmi::count() - count
        );
        ensure!(
            u64::from(read.root) == space.root().as_u64(),
            "the NMI ran with CR3 {:#x}, not the second space {}",
            read.root,
            space.root()
        );
        ensure!(
            read.value == Some(page.value),
            "the NMI read {:?} at {va}, expected {:#x}",
            read.value,
            page.value
        );
        ensure!(
            read.sync.filled == EXPECTED_FILLS && read.sync.already_synced == 0,
            "{:?} lazy sync faults inside the NMI, expected {EXPECTED_FILLS} fill(s)",
            read.sync
        );
        println!(
            "    local APIC {} (SVR {svr:#x}: {}), NMI sent to itself through the ICR (delivery mode NMI, physical destination = own ID)",
            apic.id(),
            if svr & apic::SVR_ENABLE != 0 {
                "already software-enabled"
            } else {
                "software-enabled for the test"
            }
        );
        println!(
            "    the NMI ran in the second space {} on the interrupted stack, {spins} spins after the send, with the frame allocator locked by the interrupted code",
            space.root()
        );
        println!(
            "    its read of {va} cost {} nested page fault(s) resolved lock-free by the lazy path (filled {}); value {:#010x} as written",
            read.sync.filled + read.sync.already_synced,
            read.sync.filled,
            page.value
        );
        Ok(())
    })
}

pub fn eager_publish_reaches_every_registered_space(kernel: &Kernel) -> TestResult {
    let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
    let mut frames = frames::lock();
    let second = Space::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
    drop(frames);
    let result = with_space_and_page(|third, page, _| {
        let va = page.va;
        let registered = sync.registered();
        let written = sync
            .publish(va, 4096)
            .map_err(|e| failure!("publish {va}: {e}"))?;
        // Two test spaces lack the new entry in 2-level mode; in PAE mode
        // the shared PMD already has it.
        let expected = 2 * EXPECTED_FILLS as usize;
        ensure!(
            written == expected,
            "publish wrote {written} entries, expected {expected}"
        );
        for space in [&second, third] {
            ensure!(
                translates(space.root(), va),
                "{va} not mapped in {} after publish",
                space.root()
            );
        }
        ensure!(translates(kernel.root, va), "the reference lacks {va}");
        let (value, faults) = read_in(third, page)?;
        ensure!(
            value == page.value,
            "read {value:#x} at {va}, wrote {:#x}",
            page.value
        );
        ensure!(
            faults == SyncFaults::default(),
            "{faults:?} lazy sync faults after publish, expected none"
        );
        println!(
            "    publish({va}) under the registry lock: {written} entries written into the {registered} registered directories; the third space read {value:#010x} with 0 sync faults"
        );
        Ok(())
    });
    let mut frames = frames::lock();
    let destroyed = second.destroy(&mut *frames);
    result?;
    destroyed.map(|_| ())
}
