//! The kernel's own GDT: flat ring-0 code and data segments and the two TSS
//! descriptors (main task, double-fault task).

use core::arch::asm;

use crate::tss::TaskStateSegment;

/// Selector of the flat 32-bit code segment.
pub const KERNEL_CODE: u16 = 0x08;
/// Selector of the flat data segment.
pub const KERNEL_DATA: u16 = 0x10;
/// Selector of the main task's TSS (loaded into TR).
pub const MAIN_TSS: u16 = 0x18;
/// Selector of the double-fault task's TSS (target of the IDT task gate).
pub const DOUBLE_FAULT_TSS: u16 = 0x20;

/// Flat 4 GiB code segment: base 0, limit 0xFFFFF pages, present, ring 0,
/// execute/read, 32-bit, 4 KiB granularity.
const FLAT_CODE: u64 = 0x00CF_9A00_0000_FFFF;
/// Flat 4 GiB data segment: as [`FLAT_CODE`] but read/write data.
const FLAT_DATA: u64 = 0x00CF_9200_0000_FFFF;

/// The table itself. The CPU writes it (accessed bits, the TSS busy bit), so
/// it lives in writable memory.
static mut GDT: [u64; 5] = [0, FLAT_CODE, FLAT_DATA, 0, 0];

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

/// Installs the GDT, reloads every segment register and loads TR with
/// [`MAIN_TSS`].
///
/// # Safety
/// Call once, early, on the boot CPU with interrupts disabled; `main` and
/// `double_fault` must stay valid (they are statics in practice).
pub unsafe fn init(main: *const TaskStateSegment, double_fault: *const TaskStateSegment) {
    let gdt = &raw mut GDT;
    // SAFETY: single CPU, interrupts off, and no segment refers to these
    // slots yet, so nothing reads the table while it is written.
    unsafe {
        (*gdt)[usize::from(MAIN_TSS >> 3)] = tss_descriptor(main);
        (*gdt)[usize::from(DOUBLE_FAULT_TSS >> 3)] = tss_descriptor(double_fault);
    }
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[u64; 5]>() - 1) as u16,
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
            "mov gs, {data:x}",
            "mov ss, {data:x}",
            "push {code}",
            "lea {tmp}, [2f]",
            "push {tmp}",
            "retf",
            "2:",
            "ltr {tss:x}",
            pointer = in(reg) &raw const pointer,
            data = in(reg) u32::from(KERNEL_DATA),
            code = const KERNEL_CODE,
            tss = in(reg) u32::from(MAIN_TSS),
            tmp = out(reg) _,
        );
    }
}
