//! Global pages: the kernel half is mapped with G and CR4.PGE is on, so a
//! CR3 switch need not drop kernel translations; `NativeTlb::flush_everything`
//! (a CR4.PGE toggle) still drops them.
//!
//! A vmalloc page is read (its global translation enters the TLB), then
//! repointed to another frame *without* an invalidation, as only a test may
//! do. After a CR3 switch to another address space and back, a CPU that
//! kept the global translation still reads the old frame; the SDM allows
//! but does not promise that (the TLB may evict anything at any time), and
//! QEMU's TCG drops every translation on a CR3 write, so the test prints
//! which one it saw and checks only what is guaranteed: the read works and
//! gives one of the two frames. After `flush_everything` the read must give
//! the new frame.

use paging_core::cpu::NativeTlb;
use paging_core::{FrameAllocator, Mapper, Page, PhysFrame, TlbOps, VirtAddr, Zone};

use super::memory_access::{pattern, write_word};
use crate::arch::mode::{self, Mode};
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::frames::{self, Frames};
use crate::mm::kernel::Kernel;
use crate::mm::kernel_tables::kernel_flags;
use crate::mm::layout::PAGE_OFFSET;
use crate::selftests::harness::{Failure, TestResult};
use crate::{arch::fault_probe, ensure, failure, mm::vmalloc, println};

/// Two lowmem frames with distinct words.
fn two_frames(frames: &mut Frames) -> Result<[(PhysFrame, u32); 2], Failure> {
    let mut out = [(PhysFrame::containing_address(Default::default()), 0); 2];
    for (k, slot) in out.iter_mut().enumerate() {
        let Some(frame) = frames.allocate_frame(Zone::Lowmem) else {
            if k == 1 {
                // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
                unsafe { frames.deallocate_frame(out[0].0) };
            }
            return Err(failure!("out of lowmem frames"));
        };
        let value = pattern(frame.number());
        // SAFETY: a lowmem frame just allocated for this test: mapped
        // writable in the direct map, referred to by nothing else.
        unsafe {
            write_word(
                PAGE_OFFSET as usize + frame.start_address().as_u64() as usize,
                value,
            )
        };
        *slot = (frame, value);
    }
    Ok(out)
}

fn read(va: VirtAddr) -> Result<u32, Failure> {
    // SAFETY: `va` maps one of the test's lowmem frames.
    unsafe { fault_probe::read_u32(va.as_u32() as usize) }.map_err(|f| failure!("read {va}: {f:?}"))
}

pub fn global_kernel_pages_survive_cr3_switch(kernel: &Kernel) -> TestResult {
    if !mode::global_pages_enabled() {
        ensure!(
            !mode::has_global_pages(),
            "the CPU has PGE but CR4.PGE is off"
        );
        println!("    this CPU has no global pages (CPUID PGE clear): nothing to check");
        return Ok(());
    }
    let mut frames = frames::lock();
    let [(old, old_value), (new, new_value)] = two_frames(&mut frames)?;
    let result = remap_and_switch(kernel, old, old_value, new, new_value, &mut frames);
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(old) };
    // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
    unsafe { frames.deallocate_frame(new) };
    result
}

fn remap_and_switch(
    kernel: &Kernel,
    old: PhysFrame,
    old_value: u32,
    new: PhysFrame,
    new_value: u32,
    frames: &mut Frames,
) -> TestResult {
    let va = vmalloc::map_in_new_region(old, frames)?;
    let other = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames);
    let result = other.and_then(|other| {
        let checked = switch_and_read(kernel, va, old_value, new, new_value, &other, frames);
        other.destroy(&mut *frames)?;
        checked
    });
    let unmapped = vmalloc::unmap(va);
    result?;
    ensure!(
        unmapped? == new,
        "{va} did not map the new frame at the end"
    );
    Ok(())
}

fn switch_and_read(
    kernel: &Kernel,
    va: VirtAddr,
    old_value: u32,
    new: PhysFrame,
    new_value: u32,
    other: &AddressSpace<DirectMapAccess>,
    frames: &mut Frames,
) -> TestResult {
    ensure!(read(va)? == old_value, "{va} does not read the first frame");
    // Repoint the PTE with no invalidation: the TLB may keep the old
    // global translation.
    // SAFETY: the kernel directory; through this binding the test only
    // repoints and unmaps its own vmalloc test page, which no Rust
    // reference points into.
    let mut reference = unsafe {
        Mapper::<Mode, _>::new(
            kernel.root,
            DirectMapAccess,
            crate::arch::mode::cpu_features(),
        )
    }
    .map_err(|e| failure!("{e}"))?;
    let (_, stale) = reference
        .unmap(va)
        .map_err(|e| failure!("unmap {va}: {e}"))?;
    stale.ignore();
    reference
        .map(
            Page::containing_address(va),
            new,
            kernel_flags().data,
            frames,
        )
        .map_err(|e| failure!("map {va}: {e}"))?
        .ignore();
    // Still no invalidation: a TLB hit gives the old frame.
    let stale = read(va)?;
    // CR3 to another space and back: no invlpg, no PGE toggle.
    other.run(|| ());
    let after_switch = read(va)?;
    ensure!(
        after_switch == old_value || after_switch == new_value,
        "{va} read {after_switch:#x} after the CR3 switch, neither frame's word"
    );
    NativeTlb.flush_everything();
    let after_flush = read(va)?;
    ensure!(
        after_flush == new_value,
        "{va} still reads {after_flush:#x} after flush_everything, expected the new frame's {new_value:#x}"
    );
    ensure!(
        mode::global_pages_enabled(),
        "CR4.PGE is off after flush_everything"
    );
    println!(
        "    {va} (global) repointed to another frame without invlpg: reads the {} frame (TLB {})",
        if stale == old_value { "old" } else { "new" },
        if stale == old_value { "hit" } else { "miss" }
    );
    println!(
        "    CR3 switched to {} and back, still no invlpg: read {}",
        other.root(),
        if after_switch == old_value {
            "the old frame: the global translation survived the CR3 switch"
        } else {
            "the new frame: this CPU dropped the global translation anyway (QEMU's TCG flushes everything on a CR3 write; a real CPU may keep it)"
        }
    );
    println!(
        "    after NativeTlb::flush_everything (CR4.PGE toggled, still on): the new frame, as it must"
    );
    Ok(())
}
