//! Example i386 kernel for the paging crates.
//!
//! A multiboot v1 kernel (boots from GRUB or `qemu-system-i386 -kernel`),
//! built once per paging mode (`mode-2level` or `mode-pae`). It enters the
//! higher half on static boot page tables ([`boot`]), installs its own GDT,
//! IDT and double-fault task, reads the loader's memory map, runs its
//! self-tests and exits QEMU through `isa-debug-exit` (33 = pass).
//!
//! `cargo xtask run` builds and boots it; see `examples/kernel/README.md`.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A test failure carries its message inline (there is no heap); a few
// hundred bytes of stack per returned `Err` are fine.
#![allow(clippy::result_large_err)]

#[cfg(all(feature = "mode-2level", feature = "mode-pae"))]
compile_error!("enable exactly one of the features `mode-2level` and `mode-pae`, not both");
#[cfg(not(any(feature = "mode-2level", feature = "mode-pae")))]
compile_error!("enable one of the features `mode-2level` or `mode-pae`");

mod boot;
mod context;
mod cpu;
mod crash_demo;
mod double_fault;
mod exceptions;
mod fault_probe;
mod gdt;
mod idt;
mod io;
mod layout;
mod mem_intrinsics;
mod memmap;
mod multiboot;
mod phys_window;
mod selftests;
mod serial;
mod test;
mod tss;

pub use context::BootContext;

/// The paging mode this kernel was built for.
#[cfg(feature = "mode-2level")]
pub const MODE: &str = "2-level (32-bit entries, 4 GiB physical)";
/// The paging mode this kernel was built for.
#[cfg(all(feature = "mode-pae", not(feature = "mode-2level")))]
pub const MODE: &str = "PAE (64-bit entries, NX, 64 GiB physical)";

/// Rust entry point, called by the boot code on the boot stack with paging
/// on (see [`boot`]); `magic` and `info_phys` are EAX and EBX at entry.
#[unsafe(no_mangle)]
pub extern "C" fn kmain(magic: u32, info_phys: u32) -> ! {
    serial::init();
    println!("example-kernel {}", env!("CARGO_PKG_VERSION"));
    println!("paging mode: {MODE}");
    println!("boot page tables: static 2-level, 4 KiB pages for 0..4 MiB, 4 MiB pages to 16 MiB");
    // SAFETY: first thing after boot, single CPU, interrupts disabled (the
    // loader leaves IF clear and nothing sets it); paging is already on.
    unsafe {
        let (main_task, double_fault_task) = double_fault::prepare_tasks();
        gdt::init(main_task, double_fault_task);
        idt::init();
    }
    let context = BootContext::gather(magic, info_phys);
    report(&context);
    crash_demo::run_if_requested(&context);
    test::run_all(selftests::ALL, &context)
}

/// Prints what the kernel found at boot.
fn report(context: &BootContext) {
    let image = layout::kernel_image();
    println!(
        "kernel image: {:#x}..{:#x} (physical {:#x}..{:#x})",
        image.start,
        image.end,
        image.start - boot::PAGE_OFFSET,
        image.end - boot::PAGE_OFFSET
    );
    println!("command line: {:?}", context.cmdline);
    println!("cpu paging features: {:?}", context.features);
    match &context.memory_map {
        Ok(map) => {
            println!(
                "memory map ({} regions after normalisation):",
                map.regions().len()
            );
            for region in map.regions() {
                println!(
                    "  {:#011x}..{:#011x} {:?}",
                    region.base,
                    region.end(),
                    region.kind
                );
            }
            const MIB: u64 = 1 << 20;
            println!(
                "usable RAM: {} MiB total, {} MiB above 1 MiB, {} MiB above 4 GiB",
                map.usable_bytes() / MIB,
                map.usable_bytes_above(MIB) / MIB,
                map.usable_bytes_above(1 << 32) / MIB
            );
        }
        Err(error) => println!("memory map unavailable: {error}"),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!();
    println!("KERNEL PANIC: {info}");
    io::exit_qemu(false)
}

/// Never called: every profile uses `panic = "abort"`, but the prebuilt
/// `core` for this target was compiled with unwinding and still refers to
/// the personality routine.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
