//! Start-up of the application processors (see the steps in [`super`]):
//! the real-mode trampoline and its parameter block, the page below 1 MiB
//! it runs from, the APs' stacks, INIT-SIPI-SIPI, and `ap_main` and the
//! idle loop each AP then runs.

use core::sync::atomic::Ordering;

use paging_core::PhysFrame;

use super::{AP_TIMEOUT_MS, CpuState, KERNEL_CR3, SLOTS};
use crate::arch::apic::{self, LocalApic};
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::boot::context::BootContext;
use crate::mm::layout::{AP_DOUBLE_FAULT_STACK_SIZE, AP_STACK_SIZE, PAGE_OFFSET};
use crate::{
    arch::cpu, arch::double_fault, arch::gdt, arch::idt, arch::mode, arch::pat, arch::pit, failure,
    mm::frames, mm::vmalloc,
};

/// Offsets in the trampoline page.
mod param {
    pub const GDT: usize = 0xF00;
    pub const GDTR: usize = 0xF20;
    pub const FAR_POINTER: usize = 0xF28;
    pub const PAGE: usize = 0xF30;
    pub const CR4: usize = 0xF34;
    pub const CR3: usize = 0xF38;
    pub const NXE: usize = 0xF3C;
    pub const CR0: usize = 0xF40;
    pub const STACK: usize = 0xF44;
    pub const ENTRY: usize = 0xF48;
    pub const CPU: usize = 0xF4C;
    pub const HANG: usize = 0xF50;
    /// Offset of the 32-bit part of the code.
    pub const PM32: usize = 0x40;
}

core::arch::global_asm!(
    r#"
    .section .rodata.trampoline, "a"
    .global ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_start:
    // 16-bit real mode at CS:0 = page:0, as raw bytes (the offsets are the
    // `param` constants above).
    .byte 0xFA                          // cli
    .byte 0xFC                          // cld
    .byte 0x8C, 0xC8                    // mov ax, cs
    .byte 0x8E, 0xD8                    // mov ds, ax
    .byte 0x66, 0x8B, 0x1E, 0x30, 0x0F  // mov ebx, [0xF30]  (the page)
    .byte 0x66, 0x0F, 0x01, 0x16, 0x20, 0x0F // lgdt [0xF20] (32-bit base)
    .byte 0x0F, 0x20, 0xC0              // mov eax, cr0
    .byte 0x66, 0x83, 0xC8, 0x01        // or eax, 1 (PE)
    .byte 0x0F, 0x22, 0xC0              // mov cr0, eax
    .byte 0x66, 0xFF, 0x2E, 0x28, 0x0F  // jmp far dword [0xF28]
    .balign 64, 0x90
    // 32-bit protected mode, flat segments, paging off, EBX = the page.
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    cmp dword ptr [ebx + 0xF50], 0
    jne 3f
    mov eax, [ebx + 0xF34]
    mov cr4, eax
    mov eax, [ebx + 0xF38]
    mov cr3, eax
    cmp dword ptr [ebx + 0xF3C], 0
    je 2f
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800
    wrmsr
2:
    mov eax, [ebx + 0xF40]
    mov cr0, eax
    mov esp, [ebx + 0xF44]
    mov ecx, [ebx + 0xF4C]
    mov eax, [ebx + 0xF48]
    push ecx
    push 0
    jmp eax
3:
    cli
    hlt
    jmp 3b
ap_trampoline_end:
    "#
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// A page below 1 MiB for the trampoline: usable RAM the loader's
/// structures do not use (the frame allocator never hands out the first
/// MiB, so nothing else does).
pub(super) fn trampoline_page(context: &BootContext) -> Result<u64, Error> {
    let mut busy: heapless::Vec<(u64, u64), 4> = heapless::Vec::new();
    let info = u64::from(context.info_phys);
    let _ = busy.push((info, info + 4096));
    if let Ok(boot) = &context.boot_info {
        if let Some((phys, len)) = boot.memory_map {
            let _ = busy.push((u64::from(phys), u64::from(phys) + u64::from(len)));
        }
        if let Some(phys) = boot.cmdline {
            let _ = busy.push((u64::from(phys), u64::from(phys) + 4096));
        }
    }
    let map = context
        .memory_map
        .as_ref()
        .map_err(|e| failure!("no memory map: {e}"))?;
    [
        0x8000u64, 0x9000, 0x7000, 0x6000, 0x1_0000, 0x2_0000, 0x5_0000,
    ]
    .into_iter()
    .find(|&page| {
        let usable = map.regions().iter().any(|r| {
            r.kind == crate::boot::multiboot::RegionKind::Usable
                && r.base <= page
                && page + 4096 <= r.end()
        });
        usable && busy.iter().all(|&(s, e)| e <= page || page + 4096 <= s)
    })
    .ok_or_else(|| failure!("no free page below 1 MiB for the AP trampoline"))
}

/// Every AP's stacks, each one `vmalloc::vmap` range of fresh frames: the
/// double-fault stack, then the kernel stack. Each range is followed by the
/// area's guard page, and the area's first page is never mapped, so an
/// unmapped page lies below every stack (the kernel stack's is the
/// double-fault stack's guard). Returns the tops.
pub(super) fn allocate_stacks(aps: usize) -> Result<heapless::Vec<(u32, u32), CPUS>, Error> {
    const DF_PAGES: usize = AP_DOUBLE_FAULT_STACK_SIZE / 4096;
    const STACK_PAGES: usize = AP_STACK_SIZE / 4096;
    let mut tops = heapless::Vec::new();
    let mut frames = frames::lock();
    let data = crate::mm::kernel_tables::kernel_flags().data;
    let stack = |pages: usize, frames: &mut crate::mm::frames::Frames| -> Result<u32, Error> {
        let mut list: heapless::Vec<PhysFrame, STACK_PAGES> = heapless::Vec::new();
        for _ in 0..pages {
            let frame = paging_core::FrameAllocator::allocate_frame(frames, paging_core::Zone::Any)
                .ok_or_else(|| failure!("no frame for an AP stack"))?;
            let _ = list.push(frame);
        }
        match vmalloc::vmap(&list, data, frames) {
            Ok(va) => Ok(va.as_u32() + (pages * 4096) as u32),
            Err(e) => {
                for frame in list {
                    // SAFETY: allocated above; the failed vmap maps none.
                    unsafe { paging_core::FrameAllocator::deallocate_frame(frames, frame) };
                }
                Err(e)
            }
        }
    };
    for _ in 0..aps {
        let df_top = stack(DF_PAGES, &mut frames)?;
        let top = stack(STACK_PAGES, &mut frames)?;
        let _ = tops.push((top, df_top));
    }
    Ok(tops)
}

/// Copies the trampoline to `page` and fills its parameters for one AP.
pub(super) fn write_trampoline(
    page: u64,
    startup_cr3: u32,
    stack_top: u32,
    index: usize,
    hang: bool,
) {
    let code_start = &raw const ap_trampoline_start as usize;
    let code_len = &raw const ap_trampoline_end as usize - code_start;
    let base = (PAGE_OFFSET as u64 + page) as usize;
    let put = |offset: usize, value: u32| {
        // SAFETY: `base` is the direct-map address of the trampoline page
        // (below 1 MiB, reserved from the allocator, no Rust object there);
        // `offset + 4 <= 4096`.
        unsafe { ((base + offset) as *mut u32).write_volatile(value) }
    };
    // SAFETY: as above; the code is at most `param::GDT` bytes (checked
    // by the assertion in `init_checks`), copied byte for byte.
    unsafe {
        core::ptr::copy_nonoverlapping(code_start as *const u8, base as *mut u8, code_len);
    }
    let gdt: [u64; 3] = [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
    for (i, descriptor) in gdt.iter().enumerate() {
        put(param::GDT + 8 * i, *descriptor as u32);
        put(param::GDT + 8 * i + 4, (*descriptor >> 32) as u32);
    }
    let gdt_base = page as u32 + param::GDT as u32;
    put(param::GDTR, 23 | (gdt_base << 16));
    put(param::GDTR + 4, gdt_base >> 16);
    put(param::FAR_POINTER, page as u32 + param::PM32 as u32);
    put(param::FAR_POINTER + 4, u32::from(gdt::KERNEL_CODE));
    put(param::PAGE, page as u32);
    put(param::CR4, cpu::cr4());
    put(param::CR3, startup_cr3);
    put(param::NXE, u32::from(mode::nx_enabled()));
    put(param::CR0, cpu::cr0());
    put(param::STACK, stack_top);
    put(param::ENTRY, ap_main as *const () as usize as u32);
    put(param::CPU, index as u32);
    put(param::HANG, u32::from(hang));
    debug_assert!(code_len <= param::GDT);
}

/// INIT-SIPI-SIPI to `apic_id`, then waits for CPU `index` to report.
pub(super) fn start_ap(apic: &LocalApic, apic_id: u32, page: u64, index: usize) -> bool {
    let vector = (page >> 12) as u8;
    if apic.send_init(apic_id).is_err() {
        return false;
    }
    pit::delay_us(10_000);
    for _ in 0..2 {
        if apic.send_startup(apic_id, vector).is_err() {
            return false;
        }
        pit::delay_us(200);
        if SLOTS[index].online.load(Ordering::Acquire) {
            return true;
        }
    }
    for _ in 0..AP_TIMEOUT_MS {
        if SLOTS[index].online.load(Ordering::Acquire) {
            return true;
        }
        pit::delay_us(1000);
    }
    SLOTS[index].online.load(Ordering::Acquire)
}

/// Where each AP arrives from the trampoline: paging on (the start-up
/// directory), on its own stack, interrupts off.
extern "C" fn ap_main(index: u32) -> ! {
    let index = index as usize;
    // SAFETY: the kernel's directory maps this code, this stack (vmalloc,
    // in the reference itself) and everything below; it is what the boot
    // CPU runs on.
    unsafe { paging_core::cpu::write_cr3(KERNEL_CR3.load(Ordering::Relaxed)) };
    let slot = &SLOTS[index];
    // SAFETY: first thing on this CPU, interrupts off; the double-fault
    // stack was mapped for this AP alone.
    unsafe {
        let (main, double_fault) =
            double_fault::prepare_tasks(index, slot.double_fault_top.load(Ordering::Relaxed));
        gdt::init(index, main, double_fault);
        idt::load();
    }
    pat::init_ap();
    if let Some(apic) = apic::get() {
        apic.enable();
    }
    *slot.seen.lock() = Some(CpuState::read());
    // From here on, kernel mapping changes reach this CPU's TLB.
    crate::mm::shootdown::cpu_online();
    slot.online.store(true, Ordering::Release);
    idle(index)
}

/// An AP's life after start-up: run posted work, otherwise halt until an
/// IPI arrives. Interrupts are on while work runs and while halted, so the
/// CPU answers shootdowns.
fn idle(index: usize) -> ! {
    let slot = &SLOTS[index];
    loop {
        let posted = slot.posted.load(Ordering::Acquire);
        if posted != slot.finished.load(Ordering::Relaxed) {
            let work = slot.work.load(Ordering::Acquire);
            let arg = slot.arg.load(Ordering::Acquire);
            if work != 0 {
                // SAFETY: `work` was stored from a `fn(usize, usize)` by
                // `post`.
                let f: fn(usize, usize) = unsafe { core::mem::transmute(work) };
                // SAFETY: ring 0; IPIs may arrive while the work runs.
                unsafe { core::arch::asm!("sti", options(nostack)) };
                f(index, arg);
                // SAFETY: ring 0.
                unsafe { core::arch::asm!("cli", options(nostack)) };
            }
            slot.finished.store(posted, Ordering::Release);
            continue;
        }
        // `sti; hlt`: the interrupt shadow of `sti` means a wake-up IPI
        // arriving after the check above still ends the `hlt`.
        // SAFETY: ring 0; halts this CPU until an interrupt.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
    }
}
