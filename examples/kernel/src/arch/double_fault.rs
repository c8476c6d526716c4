//! Double faults run as a separate hardware task.
//!
//! Entry 8 of the IDT is a task gate naming [`gdt::DOUBLE_FAULT_TSS`]. On a
//! double fault the CPU saves the interrupted state into the main TSS and
//! loads the double-fault TSS: a fresh stack, the same CR3 and
//! `double_fault_task_entry` as EIP. So the handler runs even when the fault
//! was the kernel stack running into its guard page, and it can print the
//! interrupted state instead of letting the CPU triple-fault.
//!
//! The task's stack has an unmapped guard page below it too (the final
//! tables leave it out: [`crate::mm::kernel_tables`]), so a handler that ran
//! away would fault instead of overwriting what lies below.

use core::ops::Range;

use crate::arch::gdt;
use crate::arch::tss::TaskStateSegment;

use crate::base::config::CPUS;
use crate::{arch::cpu, arch::io, println};

/// Bytes of the double-fault task's stack (above its guard page).
const STACK_SIZE: usize = 16 << 10;
/// Each CPU's main-task TSS; the CPU saves into it on a task switch.
static mut MAIN_TASK: [TaskStateSegment; CPUS] = [TaskStateSegment::empty(); CPUS];
/// Each CPU's double-fault task TSS.
static mut DOUBLE_FAULT_TASK: [TaskStateSegment; CPUS] = [TaskStateSegment::empty(); CPUS];

core::arch::global_asm!(
    r#"
    .section .bss.double_fault_stack, "aw", @nobits
    .p2align 12
    .global double_fault_stack_guard
double_fault_stack_guard:
    .skip 4096
    .skip {stack_size}
    .global double_fault_stack_top
double_fault_stack_top:

    .section .text, "ax"
    .global double_fault_task_entry
double_fault_task_entry:
    // The CPU pushed the error code (always 0) onto this task's stack.
    call double_fault_handler
2:
    cli
    hlt
    jmp 2b
    "#,
    stack_size = const STACK_SIZE,
);

unsafe extern "C" {
    /// Entry of the double-fault task (assembly above).
    fn double_fault_task_entry();
    static double_fault_stack_guard: u8;
    static double_fault_stack_top: u8;
}

/// The unmapped guard page below the double-fault task's stack.
pub fn double_fault_guard_page() -> Range<usize> {
    let start = &raw const double_fault_stack_guard as usize;
    start..start + 4096
}

/// The double-fault task's stack (above its guard page).
pub fn double_fault_stack() -> Range<usize> {
    double_fault_guard_page().end..&raw const double_fault_stack_top as usize
}

/// The boot CPU's double-fault stack (in `.bss`, with its guard page).
pub fn boot_stack_top() -> u32 {
    double_fault_stack().end as u32
}

/// Fills in CPU `cpu`'s double-fault task (stack top `stack_top`, CR3,
/// entry) and returns the `(main, double_fault)` TSS addresses for its GDT.
///
/// # Safety
/// Call once per CPU, on that CPU with interrupts disabled, after paging is
/// set up (the current CR3 is copied into the task); `cpu < CPUS`, and
/// `stack_top` is the top of a mapped stack only this task uses.
pub unsafe fn prepare_tasks(
    cpu: usize,
    stack_top: u32,
) -> (*const TaskStateSegment, *const TaskStateSegment) {
    let data = u32::from(gdt::KERNEL_DATA);
    let task = TaskStateSegment {
        cr3: cpu::cr3(),
        eip: double_fault_task_entry as *const () as usize as u32,
        eflags: 0x2, // reserved bit 1; interrupts off
        esp: stack_top,
        cs: u32::from(gdt::KERNEL_CODE),
        ss: data,
        ds: data,
        es: data,
        fs: data,
        gs: u32::from(gdt::PER_CPU),
        ..TaskStateSegment::empty()
    };
    // SAFETY: `cpu < CPUS`; only CPU `cpu` touches its own entries, with
    // interrupts off, and the TSSs are not yet in its GDT, so the CPU
    // cannot be using them.
    unsafe {
        let slot = &raw mut DOUBLE_FAULT_TASK[cpu];
        slot.write(task);
        (&raw const MAIN_TASK[cpu], slot as *const TaskStateSegment)
    }
}

/// Sets the ring-0 stack CPU `cpu` switches to when an interrupt arrives
/// in ring 3 (the running process's kernel stack): its main TSS's
/// SS0:ESP0.
pub fn set_ring0_stack(cpu: usize, esp0: u32) {
    if cpu >= CPUS {
        return;
    }
    // SAFETY: only CPU `cpu` calls this for itself, with interrupts off;
    // the CPU reads SS0:ESP0 only on a privilege change, which cannot
    // happen during these stores (this is kernel code).
    unsafe {
        (&raw mut MAIN_TASK[cpu].ss0).write_volatile(u32::from(gdt::KERNEL_DATA));
        (&raw mut MAIN_TASK[cpu].esp0).write_volatile(esp0);
    }
}

/// Gives every CPU's double-fault task a new CR3 (the final tables): the
/// task switch loads CR3 from its TSS.
pub fn set_cr3(cr3: u32) {
    // By index: iterating the `static mut` would make references to it.
    #[allow(clippy::needless_range_loop)]
    for cpu in 0..CPUS {
        // SAFETY: a CPU reads its TSS only when it switches to the
        // double-fault task; a double fault during this store would be one
        // in kernel code running with the old CR3, which maps the same
        // kernel, so either value works.
        unsafe { (&raw mut DOUBLE_FAULT_TASK[cpu].cr3).write_volatile(cr3) };
    }
}

/// Runs on the double-fault task's stack; reports and stops QEMU.
#[unsafe(no_mangle)]
extern "C" fn double_fault_handler(error_code: u32) -> ! {
    // The task's GS is this CPU's per-CPU segment.
    let cpu = gdt::cpu_index().min(CPUS - 1);
    // SAFETY: the CPU finished writing the interrupted state into its main
    // TSS before switching here; nothing else writes it.
    let saved = unsafe { (&raw const MAIN_TASK[cpu]).read_volatile() };
    println!();
    println!(
        "DOUBLE FAULT on cpu {cpu} (error code {error_code:#x}), handled on the double-fault task's stack"
    );
    println!(
        "  interrupted: EIP {:#010x}  ESP {:#010x}  EBP {:#010x}  EFLAGS {:#010x}",
        saved.eip, saved.esp, saved.ebp, saved.eflags
    );
    println!(
        "  EAX {:#010x}  EBX {:#010x}  ECX {:#010x}  EDX {:#010x}  ESI {:#010x}  EDI {:#010x}",
        saved.eax, saved.ebx, saved.ecx, saved.edx, saved.esi, saved.edi
    );
    println!(
        "  CR2 {:#010x} (last page-fault address)  CR3 {:#010x}",
        cpu::cr2(),
        cpu::cr3()
    );
    io::exit_qemu(false)
}
