//! The kernel's GDTs, one per CPU: flat ring-0 code and data segments, the
//! two TSS descriptors (this CPU's main task and its double-fault task) and
//! a small per-CPU data segment loaded into GS, whose first word is the
//! CPU's index ([`cpu_index`]). The selectors are the same on every CPU, so
//! the one IDT (whose double-fault gate names [`DOUBLE_FAULT_TSS`]) serves
//! them all.

use core::arch::asm;

use crate::arch::tss::TaskStateSegment;
use crate::base::config::CPUS;

/// Selector of the flat 32-bit code segment.
pub const KERNEL_CODE: u16 = 0x08;
/// Selector of the flat data segment.
pub const KERNEL_DATA: u16 = 0x10;
/// Selector of the main task's TSS (loaded into TR).
pub const MAIN_TSS: u16 = 0x18;
/// Selector of the double-fault task's TSS (target of the IDT task gate).
pub const DOUBLE_FAULT_TSS: u16 = 0x20;
/// Selector of the per-CPU data segment (in GS): base = this CPU's
/// [`PerCpuWord`], limit one page.
pub const PER_CPU: u16 = 0x28;
/// Selector of the flat ring-3 code segment (RPL 3).
pub const USER_CODE: u16 = 0x30 | 3;
/// Selector of the flat ring-3 data segment (RPL 3).
pub const USER_DATA: u16 = 0x38 | 3;
/// Descriptors per GDT.
const ENTRIES: usize = 8;
/// Flat 4 GiB ring-3 code segment (DPL 3, execute/read).
const USER_FLAT_CODE: u64 = 0x00CF_FA00_0000_FFFF;
/// Flat 4 GiB ring-3 data segment (DPL 3, read/write).
const USER_FLAT_DATA: u64 = 0x00CF_F200_0000_FFFF;

/// Flat 4 GiB code segment: base 0, limit 0xFFFFF pages, present, ring 0,
/// execute/read, 32-bit, 4 KiB granularity.
const FLAT_CODE: u64 = 0x00CF_9A00_0000_FFFF;
/// Flat 4 GiB data segment: as [`FLAT_CODE`] but read/write data.
const FLAT_DATA: u64 = 0x00CF_9200_0000_FFFF;

/// The tables, one per CPU. The CPU writes them (accessed bits, the TSS
/// busy bit), so they live in writable memory.
static mut GDT: [[u64; ENTRIES]; CPUS] = [[
    0,
    FLAT_CODE,
    FLAT_DATA,
    0,
    0,
    0,
    USER_FLAT_CODE,
    USER_FLAT_DATA,
]; CPUS];

/// What GS points at on each CPU: the CPU's index, read by [`cpu_index`].
#[repr(C, align(64))]
pub struct PerCpuWord {
    index: u32,
}

/// Each CPU's [`PerCpuWord`] (read-only after boot: the index never changes).
static PER_CPU_WORDS: [PerCpuWord; CPUS] = {
    let mut words = [const { PerCpuWord { index: 0 } }; CPUS];
    let mut i = 0;
    while i < CPUS {
        words[i].index = i as u32;
        i += 1;
    }
    words
};

/// The index (0 = the boot CPU) of the CPU running this code, from its
/// per-CPU segment: one load, no lock, valid in every context (NMIs and the
/// double-fault task included, whose TSS loads the same GS).
#[inline]
pub fn cpu_index() -> usize {
    let index: u32;
    // SAFETY: every CPU loads GS with its PER_CPU selector in `init` before
    // any other kernel code runs on it, and the segment's first word is its
    // index; reading it has no side effect.
    unsafe {
        asm!("mov {:e}, gs:[0]", out(reg) index, options(nostack, preserves_flags, readonly))
    };
    index as usize
}

/// Set once the boot CPU has loaded its per-CPU segment.
static PER_CPU_READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// [`cpu_index`], or 0 before the boot CPU loaded its GDT (the first
/// boot messages).
pub fn cpu_index_early() -> usize {
    if PER_CPU_READY.load(core::sync::atomic::Ordering::Acquire) {
        cpu_index()
    } else {
        0
    }
}

/// Data segment descriptor with `base` and a 4 KiB limit (byte granular).
fn data_descriptor(base: u32) -> u64 {
    let base = u64::from(base);
    0xFFF | ((base & 0xFF_FFFF) << 16) | (0x92 << 40) | (0x4 << 52) | (((base >> 24) & 0xFF) << 56)
}

/// Operand of `lgdt`/`lidt`.
#[repr(C, packed)]
pub struct DescriptorTablePointer {
    /// Size of the table in bytes, minus one.
    pub limit: u16,
    /// Linear address of the table.
    pub base: u32,
}

/// Descriptor of an available 32-bit TSS at `tss` (type 0x9, present, ring 0).
fn tss_descriptor(tss: *const TaskStateSegment) -> u64 {
    let base = tss as usize as u64;
    let limit = (size_of::<TaskStateSegment>() - 1) as u64;
    (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56)
}

/// Installs CPU `cpu`'s GDT, reloads every segment register (GS with the
/// per-CPU segment), loads TR with [`MAIN_TSS`] and LDTR with the null
/// selector (no LDT: a selector with TI = 1 faults).
///
/// # Safety
/// Call once per CPU, early, on CPU `cpu` itself (`cpu < CPUS`) with
/// interrupts disabled; `main` and `double_fault` must stay valid (they are
/// statics in practice).
pub unsafe fn init(
    cpu: usize,
    main: *const TaskStateSegment,
    double_fault: *const TaskStateSegment,
) {
    // SAFETY: `cpu < CPUS` (the caller's contract); only this CPU touches
    // its own table.
    let gdt = unsafe { &raw mut GDT[cpu] };
    // SAFETY: interrupts off, and no segment refers to these slots yet, so
    // nothing reads the table while it is written.
    unsafe {
        (*gdt)[usize::from(MAIN_TSS >> 3)] = tss_descriptor(main);
        (*gdt)[usize::from(DOUBLE_FAULT_TSS >> 3)] = tss_descriptor(double_fault);
        (*gdt)[usize::from(PER_CPU >> 3)] =
            data_descriptor(&raw const PER_CPU_WORDS[cpu] as usize as u32);
    }
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[u64; ENTRIES]>() - 1) as u16,
        base: gdt as usize as u32,
    };
    // SAFETY: the table holds valid flat segments at the selectors loaded
    // here, so execution continues at the same addresses; the far return
    // reloads CS. The TSS descriptor is valid and not busy.
    unsafe {
        asm!(
            "lgdt [{pointer}]",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov fs, {data:x}",
            "mov gs, {per_cpu:x}",
            "mov ss, {data:x}",
            "push {code}",
            "lea {tmp}, [2f]",
            "push {tmp}",
            "retf",
            "2:",
            "ltr {tss:x}",
            // A null LDTR: any LDT selector (TI = 1) is a #GP, instead of
            // a descriptor fetched from the reset LDTR's base 0.
            "lldt {null:x}",
            pointer = in(reg) &raw const pointer,
            data = in(reg) u32::from(KERNEL_DATA),
            per_cpu = in(reg) u32::from(PER_CPU),
            code = const KERNEL_CODE,
            tss = in(reg) u32::from(MAIN_TSS),
            null = in(reg) 0u32,
            tmp = out(reg) _,
        );
    }
    PER_CPU_READY.store(true, core::sync::atomic::Ordering::Release);
    crate::base::spin::set_cpu_index(cpu_index);
}

/// The LDTR selector of this CPU (`sldt`): 0 once [`init`] ran.
pub fn ldtr() -> u16 {
    let selector: u32;
    // SAFETY: `sldt` only reads LDTR.
    unsafe { asm!("sldt {:e}", out(reg) selector, options(nomem, nostack, preserves_flags)) };
    selector as u16
}
