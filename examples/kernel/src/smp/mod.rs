//! Application processors: found in the firmware tables
//! ([`crate::smp::firmware`]), started with INIT-SIPI-SIPI through a real-mode
//! trampoline below 1 MiB, brought into the kernel's own tables in this
//! build's paging mode, then parked in an idle loop that runs work the
//! boot CPU hands out ([`work::run_on_all`]).
//!
//! # Start-up of one AP
//!
//! 1. The boot CPU copies the trampoline ([`startup`]) to a free page
//!    below 1 MiB and fills its parameter block: a GDT with flat segments,
//!    the far pointer into the 32-bit part, CR4 (PSE or PAE, PGE), the CR3
//!    of a start-up directory, whether to set EFER.NXE, CR0, the AP's
//!    stack, its index and the Rust entry.
//! 2. INIT, 10 ms, STARTUP, 200 µs, STARTUP (the SDM's MP initialisation
//!    protocol). The AP starts in real mode at the page, loads the GDT,
//!    enters protected mode, sets CR4, CR3, EFER.NXE (PAE, when the boot
//!    CPU has it on) and CR0.PG, and jumps to `ap_main` ([`startup`]) on its stack.
//! 3. The start-up directory is an address space made with the crates
//!    (`Mapper::create` + `KernelSync::register`, like a process's): the
//!    kernel half of the reference, plus the trampoline page mapped at its
//!    own physical address, so that the instruction after `mov cr0` is
//!    still mapped. `ap_main` loads the kernel's own directory at once; the
//!    start-up directory is torn down when every AP is up.
//! 4. `ap_main` gives the CPU its own GDT, main TSS and double-fault task
//!    (with its own stack), loads the shared IDT, programs the PAT, enables
//!    its local APIC and reports itself online.
//!
//! Each AP's kernel stack and double-fault stack live in one vmalloc
//! region, each with an unmapped guard page below it. An AP that does not
//! report within [`AP_TIMEOUT_MS`] is reported and left out; the kernel
//! goes on with the CPUs it has.

pub mod firmware;
pub mod startup;
pub mod watchdog;
pub mod work;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use paging_core::{MapFlags, PhysAddr, PhysFrame, VirtAddr, Zone};

use crate::arch::apic::{self, LocalApic};
use crate::base::config::CPUS;
use crate::base::error::Error;
use crate::boot::context::BootContext;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::early_fixmap::KernelFixmapT;
use crate::mm::layout::{AP_DOUBLE_FAULT_STACK_SIZE, AP_STACK_SIZE};
use crate::smp::firmware::CpuList;
use crate::{arch::cpu, arch::gdt, arch::mode, failure, mm::frames, println};
use startup::{allocate_stacks, start_ap, trampoline_page, write_trampoline};

/// How long the boot CPU waits for an AP to report.
pub const AP_TIMEOUT_MS: u32 = 500;
/// Vector of the TLB-shootdown IPI (defined with the shootdown).
pub use crate::mm::shootdown::SHOOTDOWN_VECTOR;
/// Vector of the wake-up IPI (an idle AP has work).
pub const WAKE_VECTOR: u8 = 0xF1;
/// Vector of the call IPI: runs this CPU's [`set_interrupt_work`] function
/// in interrupt context (interrupts off), for the tests of what interrupt
/// handlers may do.
pub const CALL_VECTOR: u8 = 0xF2;

/// Per-CPU state the boot CPU and the APs share.
struct CpuSlot {
    /// Local APIC ID (valid once the CPU is known).
    apic_id: AtomicU32,
    /// The CPU runs the kernel and answers IPIs.
    online: AtomicBool,
    /// Work to run: a `fn(usize, usize)` as `usize` (0: none).
    work: AtomicUsize,
    /// Its argument.
    arg: AtomicUsize,
    /// Bumped by the boot CPU for each work item.
    posted: AtomicU32,
    /// Set to `posted` by the CPU when the item has run.
    finished: AtomicU32,
    /// Top of the AP's kernel stack.
    stack_top: AtomicU32,
    /// Top of the AP's double-fault stack.
    double_fault_top: AtomicU32,
    /// What the CPU saw of itself at start-up (for the self-tests).
    seen: spin::Mutex<Option<CpuState>>,
}

/// A CPU's own view of its set-up, recorded on that CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    /// [`gdt::cpu_index`].
    pub index: usize,
    /// Its local APIC ID.
    pub apic_id: u32,
    /// CR0, CR3, CR4.
    pub cr0: u32,
    /// CR3.
    pub cr3: u32,
    /// CR4.
    pub cr4: u32,
    /// EFER.NXE.
    pub nxe: bool,
    /// IA32_PAT, if the CPU has one.
    pub pat: Option<u64>,
    /// GDT base (`sgdt`).
    pub gdt_base: u32,
    /// Task register (`str`).
    pub task_register: u16,
    /// ESP when recorded.
    pub esp: u32,
}

impl CpuState {
    /// Reads it on the running CPU.
    pub fn read() -> Self {
        let mut gdtr = [0u8; 6];
        let task_register: u16;
        let esp: u32;
        // SAFETY: `sgdt` writes 6 bytes into the buffer; `str` and reading
        // ESP have no side effects.
        unsafe {
            core::arch::asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack, preserves_flags));
            core::arch::asm!("str {:x}", out(reg) task_register, options(nomem, nostack, preserves_flags));
            core::arch::asm!("mov {}, esp", out(reg) esp, options(nomem, nostack, preserves_flags));
        }
        Self {
            index: gdt::cpu_index(),
            apic_id: apic::get().map_or(u32::MAX, LocalApic::id),
            cr0: cpu::cr0(),
            cr3: cpu::cr3(),
            cr4: cpu::cr4(),
            nxe: mode::nx_enabled_on_this_cpu(),
            pat: paging_core::cpu::read_pat_msr(),
            gdt_base: u32::from_le_bytes([gdtr[2], gdtr[3], gdtr[4], gdtr[5]]),
            task_register,
            esp,
        }
    }
}

impl CpuSlot {
    const fn new() -> Self {
        Self {
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            work: AtomicUsize::new(0),
            arg: AtomicUsize::new(0),
            posted: AtomicU32::new(0),
            finished: AtomicU32::new(0),
            stack_top: AtomicU32::new(0),
            double_fault_top: AtomicU32::new(0),
            seen: spin::Mutex::new(None),
        }
    }
}

static SLOTS: [CpuSlot; CPUS] = [const { CpuSlot::new() }; CPUS];
/// CPUs known (the boot CPU plus the APs that came up), indices 0..count.
static KNOWN: AtomicUsize = AtomicUsize::new(1);
/// The kernel's directory, loaded by each AP first thing.
static KERNEL_CR3: AtomicU32 = AtomicU32::new(0);

/// How many CPUs are online.
pub fn online_count() -> usize {
    SLOTS
        .iter()
        .filter(|s| s.online.load(Ordering::Acquire))
        .count()
}

/// Whether CPU `cpu` is online.
pub fn is_online(cpu: usize) -> bool {
    SLOTS
        .get(cpu)
        .is_some_and(|s| s.online.load(Ordering::Acquire))
}

/// CPU `cpu`'s local APIC ID.
pub fn apic_id(cpu: usize) -> Option<u32> {
    SLOTS.get(cpu).map(|s| s.apic_id.load(Ordering::Relaxed))
}

/// What CPU `cpu` recorded of itself when it came up (APs only).
pub fn state_at_start(cpu: usize) -> Option<CpuState> {
    *SLOTS.get(cpu)?.seen.lock()
}

/// CPU `cpu`'s kernel stack and double-fault stack (APs only), as
/// `(bottom, top)` pairs; the page below each bottom is its guard.
pub fn stacks(cpu: usize) -> Option<[(u32, u32); 2]> {
    let slot = SLOTS.get(cpu).filter(|_| cpu > 0)?;
    let top = slot.stack_top.load(Ordering::Relaxed);
    let df_top = slot.double_fault_top.load(Ordering::Relaxed);
    (top != 0).then(|| {
        [
            (top - AP_STACK_SIZE as u32, top),
            (df_top - AP_DOUBLE_FAULT_STACK_SIZE as u32, df_top),
        ]
    })
}

/// CPUs known (online or timed out), indices `0..known()`.
pub fn known() -> usize {
    KNOWN.load(Ordering::Acquire)
}

/// What the start-up found, for the self-tests.
#[derive(Clone, Copy, Debug)]
pub struct SmpReport {
    /// The firmware's CPU list.
    pub list: CpuList,
    /// APs started and online.
    pub started: usize,
    /// APs that did not report in time (left out).
    pub timed_out: usize,
}

static REPORT: spin::Once<SmpReport> = spin::Once::new();

/// What the start-up found (`None` before [`init`]).
pub fn report() -> Option<SmpReport> {
    REPORT.get().copied()
}

/// Masks the legacy PIC (its IRQs would arrive on exception vectors once
/// interrupts are on) after moving it to vectors 0x20..0x30, where a
/// spurious IRQ 7 or 15 lands on a gate that ignores it.
fn disable_pic() {
    // SAFETY: the standard 8259A initialisation sequence on its fixed
    // ports; every IRQ ends masked, so no device interrupt reaches a CPU.
    unsafe {
        use crate::arch::io::outb;
        outb(0x20, 0x11);
        outb(0xA0, 0x11);
        outb(0x21, 0x20);
        outb(0xA1, 0x28);
        outb(0x21, 4);
        outb(0xA1, 2);
        outb(0x21, 1);
        outb(0xA1, 1);
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
}

/// Finds the CPUs and starts every AP. `smp.ap-timeout-test=N` on the
/// command line makes AP number N (1-based among the APs) stop in the
/// trampoline, to show the timeout path.
pub fn init(context: &BootContext, fixmap: &'static KernelFixmapT) -> Result<SmpReport, Error> {
    crate::mm::shootdown::set_apic_ids(apic_id);
    disable_pic();
    if !cpu::features().apic {
        return Ok(uniprocessor(context, fixmap));
    }
    let apic = crate::mm::early_fixmap::local_apic(fixmap)?;
    apic.enable();
    let list = firmware::cpus(fixmap, context.has_option("smp.source=mp"));
    let bsp_id = apic.id();
    SLOTS[0].apic_id.store(bsp_id, Ordering::Relaxed);
    crate::mm::shootdown::cpu_online();
    SLOTS[0].online.store(true, Ordering::Release);
    KERNEL_CR3.store(cpu::cr3(), Ordering::Relaxed);
    println!(
        "smp: {} lists {} CPU(s) (APIC IDs {:?}){}, boot CPU APIC ID {bsp_id}",
        list.source.name(),
        list.count,
        list.ids(),
        if list.left_out > 0 {
            " and more than this kernel supports"
        } else {
            ""
        }
    );
    crate::arch::timer::calibrate();
    let hang = option_number(context.cmdline, "smp.ap-timeout-test=");
    let aps: heapless::Vec<u8, CPUS> = list
        .ids()
        .iter()
        .copied()
        .filter(|&id| u32::from(id) != bsp_id)
        .collect();
    let mut started = 0;
    let mut timed_out = 0;
    if !aps.is_empty() {
        let trampoline = trampoline_page(context)?;
        let stacks = allocate_stacks(aps.len())?;
        let mut frames = frames::lock();
        let mut startup = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
        startup
            .mapper()
            .map(
                paging_core::Page::containing_address(VirtAddr::new(trampoline as u32)),
                PhysFrame::containing_address(PhysAddr::new_truncate(trampoline)),
                MapFlags::KERNEL_RO,
                &mut *frames,
            )
            .map_err(|e| failure!("mapping the trampoline: {e}"))?
            .ignore(); // no CPU has loaded the start-up directory yet
        drop(frames);
        let startup_cr3 = startup.root().as_u64() as u32;
        for (n, &id) in aps.iter().enumerate() {
            let index = KNOWN.load(Ordering::Relaxed);
            let (stack_top, df_top) = stacks[n];
            let slot = &SLOTS[index];
            slot.apic_id.store(u32::from(id), Ordering::Relaxed);
            slot.stack_top.store(stack_top, Ordering::Relaxed);
            slot.double_fault_top.store(df_top, Ordering::Relaxed);
            write_trampoline(
                trampoline,
                startup_cr3,
                stack_top,
                index,
                hang == Some(n + 1),
            );
            if start_ap(apic, u32::from(id), trampoline, index) {
                KNOWN.store(index + 1, Ordering::Relaxed);
                started += 1;
            } else {
                println!(
                    "smp: CPU with APIC ID {id} did not come up within {AP_TIMEOUT_MS} ms; left out"
                );
                slot.apic_id.store(0, Ordering::Relaxed);
                timed_out += 1;
                // Its state is unknown: do not reuse its stack or index for
                // the next AP, in case it wakes up late.
                KNOWN.store(index + 1, Ordering::Relaxed);
            }
        }
        // No AP runs on the start-up directory any more (each loaded the
        // kernel's first thing; a timed-out one is halted before paging).
        let mut frames = frames::lock();
        startup.destroy(&mut *frames)?;
    }
    let report = SmpReport {
        list,
        started,
        timed_out,
    };
    REPORT.call_once(|| report);
    println!("cpus: {} online", online_count());
    Ok(report)
}

/// Why the tests that need a local APIC (IPIs, NMIs, APs) have nothing to
/// do here, or `None` if the CPU has one.
pub fn no_apic() -> Option<&'static str> {
    (!cpu::features().apic).then_some(
        "no local APIC (CPUID.1:EDX.APIC clear): one CPU, no IPIs, no NMI to send; the PIT is the preemption timer",
    )
}

/// A CPU without a local APIC (a 486, an early Pentium): a uniprocessor
/// PC. The boot CPU alone is online; no IPI is ever sent (there is no one
/// to send it to), and [`crate::arch::timer`] ticks with the PIT.
fn uniprocessor(context: &BootContext, fixmap: &'static KernelFixmapT) -> SmpReport {
    let list = firmware::cpus(fixmap, context.has_option("smp.source=mp"));
    crate::mm::shootdown::cpu_online();
    SLOTS[0].online.store(true, Ordering::Release);
    KERNEL_CR3.store(cpu::cr3(), Ordering::Relaxed);
    println!(
        "smp: no local APIC (CPUID.1:EDX.APIC clear): one CPU ({} lists {}), no IPIs; preemption by the PIT",
        list.source.name(),
        list.count
    );
    let report = SmpReport {
        list,
        started: 0,
        timed_out: 0,
    };
    REPORT.call_once(|| report);
    println!("cpus: {} online", online_count());
    report
}

/// `N` from `prefix N` in the command line.
fn option_number(cmdline: &str, prefix: &str) -> Option<usize> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix(prefix))
        .and_then(|n| n.parse().ok())
}
