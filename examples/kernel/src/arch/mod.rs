//! Architecture: the CPU and its tables (GDT, IDT, TSS), exceptions, the local APIC, timers, port I/O and the serial, VGA and PCI devices.

pub mod apic;
pub mod cpu;
pub mod double_fault;
pub mod exceptions;
pub mod fault_probe;
pub mod fpu;
pub mod gdt;
pub mod guards;
pub mod idt;
pub mod io;
pub mod mode;
pub mod nmi;
pub mod pat;
pub mod pci;
pub mod pit;
pub mod serial;
pub mod timer;
pub mod tss;
pub mod vga;
