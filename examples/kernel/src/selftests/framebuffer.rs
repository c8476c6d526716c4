//! Write-combining: the linear framebuffer of QEMU's standard VGA (PCI
//! 1234:1111, BAR0), found by a PCI configuration-space scan and mapped
//! write-combining with `ioremap` in the vmalloc area's vmap part.

use core::sync::atomic::{Ordering, fence};

use paging_core::{CacheType, Entry, PhysAddr, VirtAddr, Walker, cpu};

use crate::arch::mode::Mode;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::kernel_tables::kernel_flags;
use crate::selftests::harness::{Failure, TestResult};
use crate::{
    arch::io, arch::pat, arch::pci, ensure, fail, failure, mm::frames, mm::vmalloc, println,
};

/// QEMU's `-vga std` (Bochs VBE) device.
const VGA_VENDOR: u16 = 0x1234;
const VGA_DEVICE: u16 = 0x1111;
/// Pages of the framebuffer mapped.
const PAGES: u32 = 4;
/// PAT bit of a PTE (bit 7), PCD (bit 4), PWT (bit 3): SDM Vol. 3A 11.12.3.
const PTE_PAT: u64 = 1 << 7;
const PCD: u64 = 1 << 4;
const PWT: u64 = 1 << 3;
/// The WC encoding of a PAT entry (SDM table 11-10).
const PAT_WC: u64 = 0x01;

pub fn framebuffer_write_combining(kernel: &Kernel) -> TestResult {
    let layout = pat::layout();
    let flags = match kernel_flags()
        .data
        .with_cache(CacheType::WriteCombining, &layout)
    {
        Ok(flags) => flags,
        // No PAT (reported at boot): the refusal is the right answer.
        Err(e) if !crate::arch::cpu::features().pat => {
            println!(
                "    skipped: no PAT (CPUID.1:EDX.PAT clear): write-combining refused ({e}); nothing to map"
            );
            return Ok(());
        }
        Err(e) => fail!("write-combining flags under the programmed PAT: {e}"),
    };
    let vga = pci::find(VGA_VENDOR, VGA_DEVICE).ok_or_else(|| {
        failure!("no PCI device {VGA_VENDOR:04x}:{VGA_DEVICE:04x} (QEMU -vga std)")
    })?;
    let bar0 = vga.bar(0);
    ensure!(bar0 & 1 == 0, "VGA {vga:?}: BAR0 {bar0:#x} is an I/O BAR");
    ensure!(
        (bar0 >> 1) & 3 == 0,
        "VGA {vga:?}: BAR0 {bar0:#x} is not a 32-bit memory BAR"
    );
    ensure!(
        vga.command() & 2 != 0,
        "VGA {vga:?}: memory decoding is off"
    );
    let base = u64::from(bar0 & !0xF);
    ensure!(base != 0, "VGA {vga:?}: BAR0 is not assigned");
    let phys = PhysAddr::new(base).map_err(|e| failure!("BAR0 {base:#x}: {e}"))?;
    // The flags `ioremap` builds for WC are these (kernel data + WC).
    let va = vmalloc::ioremap(
        phys,
        u64::from(PAGES) * 4096,
        CacheType::WriteCombining,
        &mut frames::lock(),
    )?;
    // Bochs's VGA decodes its linear framebuffer only in a VBE mode with the
    // LFB on (QEMU's always does); 8 bpp, which every display back end
    // takes. Text mode comes back when VBE is turned off.
    dispi(DISPI_XRES, 640);
    dispi(DISPI_YRES, 480);
    dispi(DISPI_BPP, 8);
    // NOCLEARMEM: the mode switch must not wipe the text console's memory.
    dispi(
        DISPI_ENABLE,
        DISPI_ENABLED | DISPI_LFB_ENABLED | DISPI_NOCLEARMEM,
    );
    // The window overlays the start of video memory, where text mode keeps
    // its characters and attributes: keep what is there and put it back
    // before text mode returns, so the console (and whatever draws it, such
    // as Bochs's terminal display) shows what it showed before, not a
    // screen of random blinking characters.
    let mut saved = SAVED.lock();
    save(va, &mut saved);
    let checked = check_pte(kernel, va).and_then(|selected| {
        write_and_read_back(va)?;
        Ok(selected)
    });
    let restored = restore(va, &saved);
    drop(saved);
    dispi(DISPI_ENABLE, 0);
    vmalloc::vunmap(va)?;
    let (index, pat) = checked?;
    restored?;
    println!(
        "    VGA {:02x}:{:02x}.{} BAR0 {phys}: {PAGES} pages mapped at {va}, flags {flags:?}",
        vga.bus, vga.device, vga.function
    );
    println!(
        "    their PTEs select PAT entry {index} of IA32_PAT {pat:#018x}: WC; \
         {} words written, fenced, read back",
        PAGES * 1024
    );
    Ok(())
}

/// The Bochs VBE "DISPI" interface of both emulators' VGA: an index port
/// and a data port, 16 bits each.
const DISPI_INDEX: u16 = 0x01CE;
const DISPI_DATA: u16 = 0x01CF;
const DISPI_XRES: u16 = 1;
const DISPI_YRES: u16 = 2;
const DISPI_BPP: u16 = 3;
const DISPI_ENABLE: u16 = 4;
const DISPI_ENABLED: u16 = 0x01;
const DISPI_LFB_ENABLED: u16 = 0x40;
/// Keep video memory as it is when the mode changes (both emulators clear
/// it otherwise).
const DISPI_NOCLEARMEM: u16 = 0x80;

/// Writes DISPI register `index`.
fn dispi(index: u16, value: u16) {
    // SAFETY: the VGA's VBE registers; the kernel's only use of the VGA is
    // its text buffer, which this test restores by turning VBE off again.
    unsafe {
        io::outw(DISPI_INDEX, index);
        io::outw(DISPI_DATA, value);
    }
}

/// Every PTE of the window, read by walking the kernel's tables, selects a
/// PAT entry that IA32_PAT (read back from the MSR) says is WC. Returns
/// that entry's index and the MSR value.
fn check_pte(kernel: &Kernel, va: VirtAddr) -> Result<(u64, u64), Failure> {
    let pat = cpu::read_pat_msr().ok_or_else(|| failure!("IA32_PAT unreadable"))?;
    let walker = Walker::<Mode, _>::new(kernel.root, DirectMapAccess);
    let mut selected = 0;
    for page in 0..PAGES {
        let at = VirtAddr::new(va.as_u32() + page * 4096);
        let walk = walker.walk(at).map_err(|e| failure!("walking {at}: {e}"))?;
        let Some((_, pte)) = walk.pte else {
            fail!("{at} has no PTE");
        };
        let raw = pte.raw();
        let index = u64::from(raw & PTE_PAT != 0) << 2
            | u64::from(raw & PCD != 0) << 1
            | u64::from(raw & PWT != 0);
        let entry = (pat >> (8 * index)) & 0xFF;
        ensure!(
            entry == PAT_WC,
            "PTE {raw:#x} at {at} selects PAT entry {index} = {entry:#x} of {pat:#018x}, not WC"
        );
        selected = index;
    }
    Ok((selected, pat))
}

/// Words of video memory the test overwrites.
const WORDS: usize = (PAGES * 4096 / 4) as usize;

/// What the window held before the test wrote its pattern.
static SAVED: spin::Mutex<[u32; WORDS]> = spin::Mutex::new([0; WORDS]);

/// Copies the window's words into `saved`.
fn save(va: VirtAddr, saved: &mut [u32; WORDS]) {
    let base = va.as_u32() as *const u32;
    for (i, word) in saved.iter_mut().enumerate() {
        // SAFETY: `va` maps PAGES pages of the VGA framebuffer (device
        // memory this test owns for its duration); `i` stays inside them.
        *word = unsafe { base.add(i).read_volatile() };
    }
}

/// Writes `saved` back over the window and checks it is there.
fn restore(va: VirtAddr, saved: &[u32; WORDS]) -> TestResult {
    let base = va.as_u32() as *mut u32;
    for (i, word) in saved.iter().enumerate() {
        // SAFETY: as in `save`.
        unsafe { base.add(i).write_volatile(*word) };
    }
    fence(Ordering::SeqCst);
    for (i, word) in saved.iter().enumerate() {
        // SAFETY: as in `save`.
        let got = unsafe { base.add(i).read_volatile() };
        ensure!(
            got == *word,
            "restoring video memory word {i}: wrote {word:#x}, read {got:#x}"
        );
    }
    Ok(())
}

/// Writes a pattern over the window, drains the write-combining buffers,
/// and reads it back.
fn write_and_read_back(va: VirtAddr) -> TestResult {
    let words = WORDS;
    let base = va.as_u32() as *mut u32;
    let pattern = |i: usize| (i as u32).wrapping_mul(0x9E37_79B9) ^ 0xA5A5_5A5A;
    for i in 0..words {
        // SAFETY: `va` maps PAGES pages of the VGA framebuffer (device
        // memory this test owns for its duration); `i` stays inside them.
        unsafe { base.add(i).write_volatile(pattern(i)) };
    }
    // A locked instruction on i586: drains the WC buffers (SDM 11.3.1).
    fence(Ordering::SeqCst);
    for i in 0..words {
        // SAFETY: as above.
        let got = unsafe { base.add(i).read_volatile() };
        ensure!(
            got == pattern(i),
            "framebuffer word {i} at {:#x}: wrote {:#x}, read {got:#x}",
            va.as_u32() as usize + 4 * i,
            pattern(i)
        );
    }
    Ok(())
}
