//! The interrupt descriptor table: an interrupt gate for every CPU exception
//! (dispatched by [`crate::arch::exceptions`]) except the double fault, whose entry
//! is a task gate to the double-fault task ([`crate::arch::double_fault`]).

use core::arch::asm;

use crate::arch::exceptions;
use crate::arch::gdt::{self, DescriptorTablePointer};

/// The system-call vector (`int 0x80`), open to ring 3.
pub const SYSCALL_VECTOR: u32 = 0x80;
/// Vector of the double-fault exception.
const DOUBLE_FAULT_VECTOR: usize = 8;
/// Present, ring 0, 32-bit interrupt gate (clears IF on entry).
const INTERRUPT_GATE: u64 = 0x8E;
/// Present, ring 0, task gate.
const TASK_GATE: u64 = 0x85;

/// The table (256 gates; vectors without a gate stay not-present).
static mut IDT: [u64; 256] = [0; 256];

fn interrupt_gate(handler: u32) -> u64 {
    let handler = u64::from(handler);
    (handler & 0xFFFF)
        | (u64::from(gdt::KERNEL_CODE) << 16)
        | (INTERRUPT_GATE << 40)
        | ((handler >> 16) << 48)
}

fn task_gate(tss_selector: u16) -> u64 {
    (u64::from(tss_selector) << 16) | (TASK_GATE << 40)
}

/// Fills and loads the IDT.
///
/// # Safety
/// Call once on the boot CPU with interrupts disabled, after [`gdt::init`]
/// (the gates name its selectors).
pub unsafe fn init() {
    let idt = &raw mut IDT;
    for (vector, stub) in exceptions::stubs().iter().enumerate() {
        let gate = if vector == DOUBLE_FAULT_VECTOR {
            task_gate(gdt::DOUBLE_FAULT_TSS)
        } else {
            interrupt_gate(*stub)
        };
        // SAFETY: single CPU, interrupts off, the IDT is not loaded yet.
        unsafe { (*idt)[vector] = gate };
    }
    for [vector, stub] in exceptions::interrupt_stubs() {
        let mut gate = interrupt_gate(*stub);
        if *vector == SYSCALL_VECTOR {
            // Ring 3 may `int 0x80`: DPL 3 (every other gate is DPL 0, so
            // `int N` from ring 3 to it is a #GP).
            gate |= 3 << 45;
        }
        // SAFETY: as above.
        unsafe { (*idt)[*vector as usize] = gate };
    }
    // SAFETY: the table is complete.
    unsafe { load() };
}

/// Makes `vector` enter the kernel exactly as `like` does (a copy of its
/// gate, so the stub reports `like`): the legacy PIC's IRQ 0 (vector 0x20)
/// reaches the timer's handler this way on a CPU without a local APIC.
///
/// # Safety
/// After [`init`]; `vector` must not be in use (no interrupt can arrive on
/// it while the gate is written).
pub unsafe fn route(vector: u8, like: u8) {
    let idt = &raw mut IDT;
    // SAFETY: the caller promises no interrupt uses `vector` now; `like`'s
    // gate is complete (written by `init`).
    unsafe { (*idt)[usize::from(vector)] = (*idt)[usize::from(like)] };
}

/// Loads the (one, shared) IDT on this CPU.
///
/// # Safety
/// After [`init`] ran on the boot CPU, with this CPU's GDT loaded.
pub unsafe fn load() {
    let idt = &raw mut IDT;
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[u64; 256]>() - 1) as u16,
        base: idt as usize as u32,
    };
    // SAFETY: every present gate points at a valid stub or TSS.
    unsafe {
        asm!("lidt [{}]", in(reg) &raw const pointer, options(readonly, nostack, preserves_flags))
    };
}
