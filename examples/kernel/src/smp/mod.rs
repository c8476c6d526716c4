//! Application processors: found in the firmware tables
//! ([`crate::smp::firmware`]), started with INIT-SIPI-SIPI through a real-mode
//! trampoline below 1 MiB, brought into the kernel's own tables in this
//! build's paging mode, then parked in an idle loop that runs work the
//! boot CPU hands out ([`run_on_all`]).
//!
//! # Start-up of one AP
//!
//! 1. The boot CPU copies the trampoline ([`TRAMPOLINE`]) to a free page
//!    below 1 MiB and fills its parameter block: a GDT with flat segments,
//!    the far pointer into the 32-bit part, CR4 (PSE or PAE, PGE), the CR3
//!    of a start-up directory, whether to set EFER.NXE, CR0, the AP's
//!    stack, its index and the Rust entry.
//! 2. INIT, 10 ms, STARTUP, 200 µs, STARTUP (the SDM's MP initialisation
//!    protocol). The AP starts in real mode at the page, loads the GDT,
//!    enters protected mode, sets CR4, CR3, EFER.NXE (PAE, when the boot
//!    CPU has it on) and CR0.PG, and jumps to [`ap_main`] on its stack.
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
pub mod watchdog;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use paging_core::{MapFlags, PhysAddr, PhysFrame, VirtAddr, Zone};

use crate::arch::apic::{self, LocalApic};
use crate::boot::context::BootContext;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::early_fixmap::KernelFixmapT;
use crate::mm::layout::{AP_DOUBLE_FAULT_STACK_SIZE, AP_STACK_SIZE, CPUS, PAGE_OFFSET};
use crate::selftests::harness::Failure;
use crate::smp::firmware::CpuList;
use crate::{
    arch::cpu, arch::double_fault, arch::gdt, arch::idt, arch::mode, arch::pat, arch::pit, failure,
    mm::frames, mm::vmalloc, println,
};

/// How long the boot CPU waits for an AP to report.
pub const AP_TIMEOUT_MS: u32 = 500;
/// Vector of the TLB-shootdown IPI.
pub const SHOOTDOWN_VECTOR: u8 = 0xF0;
/// Vector of the wake-up IPI (an idle AP has work).
pub const WAKE_VECTOR: u8 = 0xF1;
/// Vector of the call IPI: runs this CPU's [`set_interrupt_work`] function
/// in interrupt context (interrupts off), for the tests of what interrupt
/// handlers may do.
pub const CALL_VECTOR: u8 = 0xF2;

/// Per CPU: a `fn(usize)` (as `usize`, 0 for none) the call IPI runs.
static INTERRUPT_WORK: [AtomicUsize; CPUS] = [const { AtomicUsize::new(0) }; CPUS];

/// Sets what the call IPI runs on this CPU (`None`: nothing).
pub fn set_interrupt_work(f: Option<fn(usize)>) {
    INTERRUPT_WORK[gdt::cpu_index() % CPUS].store(f.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// Sends the call IPI to this CPU (it runs once interrupts are on).
/// Without a local APIC: `int` through the same gate, so the handler runs
/// at once, in interrupt context all the same (an interrupt gate clears
/// IF).
pub fn call_self() -> Result<(), Failure> {
    if !cpu::features().apic {
        // SAFETY: ring 0; the call vector's gate is an interrupt gate of
        // the kernel, its handler returns with `iretd`.
        unsafe { core::arch::asm!("int {v}", v = const CALL_VECTOR) };
        return Ok(());
    }
    let apic = apic::get().ok_or_else(|| failure!("no local APIC"))?;
    let id = apic.id();
    apic.send_fixed(id, CALL_VECTOR)
        .map_err(|()| failure!("the APIC refused the call IPI"))
}

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
pub fn init(context: &BootContext, fixmap: &'static KernelFixmapT) -> Result<SmpReport, Failure> {
    disable_pic();
    if !cpu::features().apic {
        return Ok(uniprocessor(context, fixmap));
    }
    let apic = apic::local_apic(fixmap)?;
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
    crate::proc::timer::calibrate();
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
/// to send it to), and [`crate::proc::timer`] ticks with the PIT.
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

/// A page below 1 MiB for the trampoline: usable RAM the loader's
/// structures do not use (the frame allocator never hands out the first
/// MiB, so nothing else does).
fn trampoline_page(context: &BootContext) -> Result<u64, Failure> {
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

/// One vmalloc region holds every AP's stacks: per AP a guard page, the
/// double-fault stack, a guard page, the kernel stack. Returns the tops.
fn allocate_stacks(aps: usize) -> Result<heapless::Vec<(u32, u32), CPUS>, Failure> {
    const DF_PAGES: u32 = (AP_DOUBLE_FAULT_STACK_SIZE / 4096) as u32;
    const STACK_PAGES: u32 = (AP_STACK_SIZE / 4096) as u32;
    const PER_AP: u32 = 1 + DF_PAGES + 1 + STACK_PAGES;
    static_assertions::const_assert!(
        PER_AP as usize * 4096 * CPUS <= crate::mm::layout::PMD_SPAN as usize
    );
    let region = vmalloc::reserve_region()?.as_u32();
    let mut tops = heapless::Vec::new();
    let mut frames = frames::lock();
    for n in 0..aps as u32 {
        let base = region + n * PER_AP * 4096;
        let df = base + 4096;
        let stack = df + DF_PAGES * 4096 + 4096;
        for page in 0..DF_PAGES {
            vmalloc::map_page(VirtAddr::new(df + page * 4096), &mut frames)?;
        }
        for page in 0..STACK_PAGES {
            vmalloc::map_page(VirtAddr::new(stack + page * 4096), &mut frames)?;
        }
        let _ = tops.push((stack + STACK_PAGES * 4096, df + DF_PAGES * 4096));
    }
    Ok(tops)
}

/// Copies the trampoline to `page` and fills its parameters for one AP.
fn write_trampoline(page: u64, startup_cr3: u32, stack_top: u32, index: usize, hang: bool) {
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
fn start_ap(apic: &LocalApic, apic_id: u32, page: u64, index: usize) -> bool {
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

/// Posts `f(cpu, arg)` to AP `cpu` and wakes it.
fn post(cpu: usize, f: fn(usize, usize), arg: usize) {
    let slot = &SLOTS[cpu];
    slot.work.store(f as usize, Ordering::Release);
    slot.arg.store(arg, Ordering::Release);
    slot.posted.fetch_add(1, Ordering::AcqRel);
    if let Some(apic) = apic::get() {
        let _ = apic.send_fixed(slot.apic_id.load(Ordering::Relaxed), WAKE_VECTOR);
    }
}

/// Wakes CPU `cpu` from `hlt` (its scheduler has something to run).
pub fn wake(cpu: usize) {
    if let (Some(apic), Some(id)) = (apic::get(), apic_id(cpu)) {
        let _ = apic.send_fixed(id, WAKE_VECTOR);
    }
}

/// Whether AP `cpu` finished its last posted work.
fn finished(cpu: usize) -> bool {
    let slot = &SLOTS[cpu];
    slot.finished.load(Ordering::Acquire) == slot.posted.load(Ordering::Acquire)
}

/// Runs `f(cpu, arg)` on every online CPU at once (the boot CPU included,
/// last to start) and returns when all have finished. Interrupts are on
/// during `f` on every CPU, so shootdowns are answered. Called on the boot
/// CPU.
pub fn run_on_all(f: fn(usize, usize), arg: usize) {
    let cpus = KNOWN.load(Ordering::Acquire);
    for cpu in 1..cpus {
        if is_online(cpu) {
            post(cpu, f, arg);
        }
    }
    let flags = cpu::save_and_disable_interrupts();
    // SAFETY: ring 0; this CPU answers IPIs while it runs its share.
    unsafe { core::arch::asm!("sti", options(nostack)) };
    f(0, arg);
    wait_for_posted_work(cpus);
    // SAFETY: ring 0.
    unsafe { core::arch::asm!("cli", options(nostack)) };
    cpu::restore_interrupts(flags);
}

/// Waits until every online AP below `cpus` finished its posted work (a
/// spin the watchdog watches).
fn wait_for_posted_work(cpus: usize) {
    while !(1..cpus).all(|cpu| !is_online(cpu) || finished(cpu)) {
        crate::smp::watchdog::spin("work posted to other CPUs", &raw const SLOTS as usize);
        core::hint::spin_loop();
    }
    crate::smp::watchdog::done();
}

/// Runs `f(cpu, arg)` on every online CPU but this one (the boot CPU) and
/// returns when all have finished. Interrupts stay as they are here.
pub fn run_on_others(f: fn(usize, usize), arg: usize) {
    let cpus = KNOWN.load(Ordering::Acquire);
    for cpu in 1..cpus {
        if is_online(cpu) {
            post(cpu, f, arg);
        }
    }
    wait_for_posted_work(cpus);
}

/// Called by the dispatcher for every vector above the exceptions.
pub fn interrupt(vector: u32) {
    match vector {
        // The wake-up IPI: the idle loop re-checks its work.
        v if v == u32::from(WAKE_VECTOR) => eoi(),
        v if v == u32::from(CALL_VECTOR) => {
            let cpu = gdt::cpu_index() % CPUS;
            let work = INTERRUPT_WORK[cpu].load(Ordering::SeqCst);
            if work != 0 {
                // SAFETY: stored from a `fn(usize)` by `set_interrupt_work`.
                let f: fn(usize) = unsafe { core::mem::transmute(work) };
                f(cpu);
            }
            eoi();
        }
        v if v == u32::from(SHOOTDOWN_VECTOR) => {
            crate::mm::shootdown::interrupt();
            eoi();
        }
        // Spurious (APIC 0xFF, PIC 7 and 15): no EOI.
        _ => {}
    }
}

fn eoi() {
    if let Some(apic) = apic::get() {
        apic.eoi();
    }
}
