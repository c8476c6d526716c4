//! Example i386 kernel for the paging crates: a guided tour.
//!
//! A multiboot v1 kernel (boots from GRUB or `qemu-system-i386 -kernel`),
//! built once per paging mode (`mode-2level` or `mode-pae`). Read [`kmain`]
//! first: it is the boot sequence, one step per line, and each step is a
//! short function whose doc comment says which crate feature it shows.
//! Then the self-tests ([`selftests`]) exercise what the boot built and
//! exit QEMU through `isa-debug-exit` (33 = pass).
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

mod arch;
mod base;
mod boot;
mod crash_demo;
mod mm;
mod proc;
mod selftests;
mod smp;

pub use boot::context::BootContext;

use base::error::Error;
use mm::kernel::Kernel;
use mm::kmap_policy::KernelPolicy;

/// First row of the VGA console, written through the early fixmap and read
/// back by the fixmap self-test after the handover.
const BANNER: &str = concat!(
    "example-kernel ",
    env!("CARGO_PKG_VERSION"),
    ": early console on fixmap slot VGA_CONSOLE (serial is the main console)"
);

/// Rust entry point, called by the boot code ([`boot::entry`], step 1: the static
/// boot tables, paging turned on by the mode's crate) on the boot stack in
/// the higher half; `magic` and `info_phys` are EAX and EBX at entry.
#[unsafe(no_mangle)]
pub extern "C" fn kmain(magic: u32, info_phys: u32) -> ! {
    arch::serial::init();
    println!("example-kernel {}", env!("CARGO_PKG_VERSION"));
    println!("paging mode: {}", arch::mode::DESCRIPTION);
    match boot(magic, info_phys) {
        Ok(kernel) => {
            crash_demo::run_if_requested(&kernel.context);
            smp::watchdog::provoke(&kernel.context);
            if selftests::soak_requested(&kernel) {
                selftests::harness::run_all(selftests::SOAK, &kernel)
            } else {
                selftests::harness::run_all(selftests::ALL, &kernel)
            }
        }
        Err(failure) => {
            println!("BOOT FAILED: {}", failure.message());
            arch::io::exit_qemu(false)
        }
    }
}

/// The boot sequence after the assembly: each line one step.
fn boot(magic: u32, info_phys: u32) -> Result<Kernel, Error> {
    install_cpu_tables();
    let early = mm::early_fixmap::set_up(BANNER)?; // 2. early fixmap + VGA console
    println!("early fixmap: static table, VGA text buffer in slot VGA_CONSOLE");
    let context = BootContext::gather(magic, info_phys); // 3. memory map
    report(&context);
    smp::watchdog::init(&context); // hangs become reports
    let layout = mm::memory::init_frames(&context)?; // 4. frame allocator
    let mut frames = mm::frames::lock();
    let mut mapper = mm::kernel_tables::build(&layout, &mut frames)?; // 5. final tables
    mm::kernel_tables::load(&mapper, &layout)?;
    let on_off = |on: bool| if on { "on" } else { "off" };
    println!(
        "final tables loaded: root {}, lowmem direct map to {:#x}, NX {}, global pages {}",
        mapper.root(),
        layout.direct_map_end,
        on_off(arch::mode::nx_enabled()),
        on_off(arch::mode::global_pages_enabled())
    );
    arch::pat::init(); // memory types: WC and WP in the PAT
    mm::kernel_sync::init(mapper.root()); // shared kernel half: reference directory
    println!(
        "kernel sync: reference directory {}, vmalloc {:#x}..{:#x} mapped there only",
        mapper.root(),
        mm::layout::VMALLOC_START,
        mm::layout::VMALLOC_END
    );
    let (fixmap, window) = mm::handover::hand_over(early, &mut mapper, &mut frames)?; // 6. handover
    drop(frames);
    let policy = KernelPolicy::from_cmdline(context.cmdline).unwrap_or(KernelPolicy::Global);
    mm::kmap_setup::init(fixmap, &window, &layout, policy)?; // 7. kmap pools
    smp::init(&context, fixmap)?; // 8. application processors
    let mut context = context;
    let mut frames = mm::frames::lock();
    let sealed = mm::ro_after_init::seal_cmdline(context.cmdline, &mut mapper, &mut frames); // 9. ro_after_init
    drop(frames);
    let (cmdline, stats) = sealed?;
    context.cmdline = cmdline;
    println!(
        "ro_after_init: command line ({} bytes) sealed read-only at {:#x}: {stats}",
        cmdline.len(),
        mm::ro_after_init::address().unwrap_or(0)
    );
    layout.print();
    Ok(Kernel {
        context,
        layout,
        root: mapper.root(),
        fixmap,
        window,
        banner: BANNER,
    })
}

/// Own GDT (flat segments, two TSSs), IDT with the page-fault handler
/// ([`arch::exceptions`]) and the double fault as a task with its own stack
/// ([`arch::double_fault`]): faults are caught and reported, never triple faults.
fn install_cpu_tables() {
    // SAFETY: first thing after boot, single CPU, interrupts disabled (the
    // loader leaves IF clear and nothing sets it); paging is already on.
    unsafe {
        let (main_task, double_fault_task) =
            arch::double_fault::prepare_tasks(0, arch::double_fault::boot_stack_top());
        arch::gdt::init(0, main_task, double_fault_task);
        arch::idt::init();
    }
    register_handlers();
}

/// The exception dispatcher's handlers from the layers above it
/// ([`arch::exceptions::register`]): system calls, the timer, IPIs, the
/// lazy kernel sync and processes' faults.
fn register_handlers() {
    arch::exceptions::register(arch::exceptions::Handlers {
        syscall: (arch::idt::SYSCALL_VECTOR, proc::syscall::syscall),
        timer: (
            u32::from(arch::timer::TIMER_VECTOR),
            proc::sched::timer_interrupt,
        ),
        interrupt: smp::work::interrupt,
        kernel_page_fault: mm::kernel_sync::handle_fault,
        user_page_fault: |frame, address, error_code| {
            (frame.user_mode() || address < mm::layout::PAGE_OFFSET)
                && proc::sched::running()
                && proc::fault::page_fault(frame, address, error_code)
        },
        user_exception: proc::fault::user_exception,
    });
}

/// Prints what the kernel found at boot.
fn report(context: &BootContext) {
    let image = mm::layout::kernel_image();
    println!(
        "kernel image: {:#x}..{:#x} (physical {:#x}..{:#x})",
        image.start,
        image.end,
        mm::layout::virt_to_phys(image.start),
        mm::layout::virt_to_phys(image.end)
    );
    println!("command line: {}", context.printable_cmdline());
    println!("cpu paging features: {:?}", context.features);
    println!("cpu features: {}", arch::cpu::features());
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
    arch::io::exit_qemu(false)
}

/// Never called: every profile uses `panic = "abort"`, but the prebuilt
/// `core` for this target was compiled with unwinding and still refers to
/// the personality routine.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
