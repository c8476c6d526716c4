//! Processes: ring-3 programs ([`crate::proc::user`]) in address spaces of their
//! own, on every CPU.
//!
//! - **Address space.** A directory made with `Mapper::create` and
//!   registered with the kernel sync (the kernel half), whose user PTE
//!   tables come from highmem (`Zone::PreferHighmem`) and are reached
//!   through local kmaps (`kmap::HighmemTables`): Linux's pte-highmem. The
//!   text is copied into fresh pages at [`user::TEXT_BASE`] (read-only,
//!   executable); the heap (`sbrk`) and the stack are anonymous: nothing is
//!   mapped until the first touch, which maps a zeroed highmem page
//!   (writable, no-execute).
//! - **fork** shares every page: the writable ones are made read-only and
//!   marked copy-on-write with one `Mapper::protect_range` per region (bit
//!   `MapFlags::SOFTWARE_0`), and the child maps the same frames, walked
//!   with `Mapper::mappings` (the parent's PTE table through one local
//!   kmap, the child's through a second: LIFO). A write fault on a shared
//!   copy-on-write page copies it (two local kmaps again); on a page no
//!   longer shared it just makes it writable.
//! - **Faults** that are neither demand-zero nor copy-on-write kill the
//!   process with a reason; the kernel and the other processes go on.
//! - **exit** tears the user half down with `Mapper::teardown_releasing`:
//!   every page is released (a shared frame only loses a reference), every
//!   table freed after the flush.
//! - **Scheduling.** Each process is pinned to one CPU (chosen round-robin
//!   at creation), which runs it from its own scheduler loop
//!   ([`run_until_done`]); each process has its own kernel stack (the TSS's
//!   ring-0 stack while it runs). A local-APIC timer preempts user code,
//!   and kernel code that declared itself preemptible
//!   ([`user::nr::KMAP_HOLD`]); the switch saves the CPU's local-kmap stack
//!   with the process and puts it back when it runs again. Pinning keeps
//!   the local kmaps' addresses valid, and means a user-space flush only
//!   ever targets the one CPU that ran the space.
//!
//! - **Hostile processes** (issue 21): a system call that fails returns -1
//!   and records why ([`nr::LAST_ERROR`], [`err`]); per-process limits on
//!   children ([`MAX_CHILDREN`]), heap ([`HEAP_MAX`]) and console output
//!   ([`CONSOLE_BUDGET`]); a refused fork frees what it built; zombies go
//!   with their parent; round-robin picks; the x87 state is switched by
//!   [`crate::arch::fpu`]; user memory is reached only through
//!   [`crate::proc::usercopy`]; SMEP/SMAP/UMIP are on while processes run
//!   ([`crate::arch::guards`]).
//!
//! Locks are taken with interrupts off: the timer cannot preempt a holder.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use kmap::SavedLocal;
use paging_core::{
    Entry as _, FrameAllocator, MapFlags, Page, PageSize, PhysAddr, PhysFrame, VirtAddr, Zone,
};
use tlb_shootdown::CpuSet;

use crate::arch::exceptions::{ExceptionFrame, UserFrame};
use crate::arch::fault_probe::ErrorCode;
use crate::base::ticket::TicketLock;
use crate::mm::address_space::AddressSpace;
use crate::mm::frames::{self, Frames, ZoneId};
use crate::mm::kmap_setup::{self, KernelHighmemTables};
use crate::mm::layout::{CPUS, KMAP_LOCAL_DEPTH, PAGE_OFFSET};
use crate::mm::shootdown::{self, AddressSpaceTlb};
use crate::proc::user::{Program, TEXT_BASE, err, nr};
use crate::selftests::harness::Failure;
use crate::{
    arch::cpu, arch::double_fault, arch::gdt, arch::mode, failure, print, println, proc::timer, smp,
};

/// Processes alive (or not yet reaped) at once.
pub const MAX_PROCESSES: usize = 96;
/// Start of the heap (`sbrk` grows it up).
pub const HEAP_START: u32 = 0x1000_0000;
/// Most the heap may grow.
pub const HEAP_MAX: u32 = 64 << 20;
/// Top of the user stack (it grows down, demand-zero, [`STACK_PAGES`]).
pub const STACK_TOP: u32 = 0xBFFF_F000;
/// Pages of user stack.
pub const STACK_PAGES: u32 = 16;
/// Pages of each process's kernel stack (lowmem, through the direct map,
/// which has no guard pages: a canary at the bottom is checked at every
/// switch instead).
const KSTACK_PAGES: usize = 4;
/// The word at the bottom of every kernel stack.
const STACK_CANARY: u32 = 0x57AC_CA11;
/// The copy-on-write marker in a leaf (a software-available bit).
pub const COW: MapFlags = MapFlags::SOFTWARE_0;
/// Exit code of a killed process.
pub const KILLED: u32 = 0xDEAD_0000;
/// Children (alive or zombie) one process may have; one more fork returns
/// -1 with [`err::CHILD_LIMIT`].
pub const MAX_CHILDREN: usize = 16;
/// Console bytes one process may write in its life; the rest are dropped
/// and counted (reported at its exit), the write returns what was written
/// and `last_error` is [`err::CONSOLE_BUDGET`].
pub const CONSOLE_BUDGET: u32 = 1024;
/// Most preemptions `kmap_hold` waits for; more is [`err::INVALID`].
pub const KMAP_HOLD_MAX: u32 = 16;

/// A process's address space: user PTE tables in highmem.
type Space = AddressSpace<KernelHighmemTables>;

/// Where a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Runnable, waiting for its CPU.
    Ready,
    /// On its CPU now.
    Running,
    /// In `wait`, for a child to exit.
    Waiting,
    /// Exited (or killed): the exit code is kept for `wait`.
    Zombie,
}

/// Page-table frames a process's mappers allocated, by zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFrames {
    /// In lowmem (the directory, PAE PMD tables, PTE tables when highmem
    /// is not used).
    pub low: u32,
    /// In highmem.
    pub high: u32,
    /// Of those, above 4 GiB (PAE with RAM there).
    pub above_4g: u32,
}

/// One process.
pub struct Process {
    pid: u32,
    parent: u32,
    state: State,
    cpu: usize,
    program: &'static str,
    space: Option<Space>,
    /// Base of the kernel stack (lowmem, through the direct map).
    kstack: u32,
    heap_end: u32,
    exit_code: u32,
    kill_reason: Option<&'static str>,
    kill_address: u32,
    tables: TableFrames,
    pte_zone: Zone,
    saved_local: Option<SavedLocal<KMAP_LOCAL_DEPTH>>,
    /// Why the last failed system call failed ([`err`]).
    last_error: u32,
    /// Console bytes written, and dropped once over [`CONSOLE_BUDGET`].
    console_written: u32,
    console_dropped: u32,
    /// Its parent exited first: the kernel frees its slot when it ends.
    orphan: bool,
    /// Its CPU's timer tick when it last became ready (fairness).
    ready_tick: u32,
    /// This CPU's pick count ([`PICKS`]) when it last became ready.
    ready_pick: u32,
    /// The exception vector that killed it (not a page fault).
    kill_vector: Option<u32>,
    /// Its writes are copied from its memory but not printed, and its
    /// death is counted, not reported (the fuzzers); inherited by fork.
    quiet: bool,
}

impl Process {
    /// A new ready process (no PID or slot yet).
    #[allow(clippy::too_many_arguments)]
    fn new(
        parent: u32,
        cpu: usize,
        program: &'static str,
        space: Space,
        kstack: u32,
        heap_end: u32,
        tables: TableFrames,
        pte_zone: Zone,
    ) -> Self {
        Self {
            pid: 0,
            parent,
            state: State::Ready,
            cpu,
            program,
            space: Some(space),
            kstack,
            heap_end,
            exit_code: 0,
            kill_reason: None,
            kill_address: 0,
            tables,
            pte_zone,
            saved_local: None,
            last_error: err::NONE,
            console_written: 0,
            console_dropped: 0,
            orphan: false,
            ready_tick: 0,
            ready_pick: 0,
            kill_vector: None,
            quiet: false,
        }
    }
}

/// The process table.
struct Table {
    slots: [Option<Process>; MAX_PROCESSES],
    next_pid: u32,
    next_cpu: usize,
}

/// The process table, behind a fair lock: every CPU's scheduler loop takes
/// it, and an unfair lock let idle schedulers starve a CPU that needed it
/// once (see [`crate::base::ticket`]).
static TABLE: TicketLock<Table> = TicketLock::new(
    "the process table's lock",
    Table {
        slots: [const { None }; MAX_PROCESSES],
        next_pid: 1,
        next_cpu: 0,
    },
);

/// Saved kernel ESP of each process slot (switch_context writes it).
static mut CONTEXTS: [u32; MAX_PROCESSES] = [0; MAX_PROCESSES];
/// Saved ESP of each CPU's scheduler loop.
static mut SCHEDULERS: [u32; CPUS] = [0; CPUS];
/// The slot each CPU runs now (`usize::MAX`: none).
static CURRENT: [AtomicUsize; CPUS] = [const { AtomicUsize::new(usize::MAX) }; CPUS];
/// Kernel code of this slot's process may be preempted (set around
/// `kmap_hold`'s wait).
static PREEMPTIBLE: [AtomicBool; MAX_PROCESSES] = [const { AtomicBool::new(false) }; MAX_PROCESSES];
/// Times each slot's process was preempted.
static PREEMPTIONS: [AtomicU32; MAX_PROCESSES] = [const { AtomicU32::new(0) }; MAX_PROCESSES];

/// Counters the self-tests read.
pub struct Counters {
    /// Demand-zero faults resolved.
    pub demand_zero: AtomicU32,
    /// Copy-on-write faults that copied the page.
    pub cow_copies: AtomicU32,
    /// Copy-on-write faults on a page no longer shared (made writable).
    pub cow_reuses: AtomicU32,
    /// Most references one frame had at once.
    pub max_sharing: AtomicU32,
    /// Pages fork shared.
    pub shared_by_fork: AtomicU32,
    /// Context switches into a process that held local kmaps.
    pub local_restores: AtomicU32,
    /// Timer preemptions.
    pub preemptions: AtomicU32,
    /// Forks refused (limits, a full table, no memory).
    pub forks_refused: AtomicU32,
    /// Of those, refused because the process table was full.
    pub forks_table_full: AtomicU32,
    /// System calls made.
    pub syscalls: AtomicU32,
    /// Processes killed (a fault or an exception from ring 3).
    pub kills: AtomicU32,
    /// Processes that exited with [`crate::proc::user::FUZZ_CORRUPT`]: they read
    /// a value they had not written.
    pub corrupt: AtomicU32,
}

/// The counters.
pub static COUNTERS: Counters = Counters {
    demand_zero: AtomicU32::new(0),
    cow_copies: AtomicU32::new(0),
    cow_reuses: AtomicU32::new(0),
    max_sharing: AtomicU32::new(0),
    shared_by_fork: AtomicU32::new(0),
    local_restores: AtomicU32::new(0),
    preemptions: AtomicU32::new(0),
    forks_refused: AtomicU32::new(0),
    forks_table_full: AtomicU32::new(0),
    syscalls: AtomicU32::new(0),
    kills: AtomicU32::new(0),
    corrupt: AtomicU32::new(0),
};

/// Extra references of user frames shared by fork (absent: one owner).
static SHARED: spin::Mutex<heapless::index_map::FnvIndexMap<u64, u32, 4096>> =
    spin::Mutex::new(heapless::index_map::FnvIndexMap::new());

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    cpu::without_interrupts(|| f(&mut TABLE.lock()))
}

/// One more mapping of `frame` (fork).
fn share(frame: PhysFrame) -> Result<(), Failure> {
    let mut shared = SHARED.lock();
    let extra = shared.get(&frame.number()).copied().unwrap_or(0) + 1;
    shared
        .insert(frame.number(), extra)
        .map_err(|_| failure!("the shared-frame table is full"))?;
    COUNTERS.max_sharing.fetch_max(extra + 1, Ordering::Relaxed);
    Ok(())
}

/// One mapping of `frame` fewer; whether it was the last (free it).
fn unshare(frame: PhysFrame) -> bool {
    let mut shared = SHARED.lock();
    match shared.get(&frame.number()).copied() {
        Some(1) => {
            shared.swap_remove(&frame.number());
            false
        }
        Some(extra) => {
            let _ = shared.insert(frame.number(), extra - 1);
            false
        }
        None => true,
    }
}

/// Makes process `pid` quiet: its writes are checked and copied but not
/// printed, its death counted but not reported (inherited by its
/// children). Whether it exists.
pub fn make_quiet(pid: u32) -> bool {
    with_table(|t| {
        t.slots
            .iter_mut()
            .flatten()
            .find(|p| p.pid == pid)
            .map(|p| p.quiet = true)
            .is_some()
    })
}

/// Processes that hold an address space now (each registered with the
/// kernel sync).
pub fn live_spaces() -> usize {
    with_table(|t| {
        t.slots
            .iter()
            .flatten()
            .filter(|p| p.space.is_some())
            .count()
    })
}

/// Frames in the shared-page table now (each shared by fork).
pub fn shared_frames() -> usize {
    cpu::without_interrupts(|| SHARED.lock().len())
}

fn is_shared(frame: PhysFrame) -> bool {
    SHARED.lock().contains_key(&frame.number())
}

/// Frames handed to a process's mapper, counted by zone (its page tables).
struct Counting<'a> {
    inner: &'a mut Frames,
    tables: &'a mut TableFrames,
}

// SAFETY: every call is forwarded to the kernel's allocator, whose frames
// are RAM nobody else uses until they are freed.
unsafe impl FrameAllocator for Counting<'_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        let frame = self.inner.allocate_frame(zone)?;
        if frame.number() < self.inner.zone_range(ZoneId::High).0 {
            self.tables.low += 1;
        } else {
            self.tables.high += 1;
            if frame.start_address().as_u64() >= 1 << 32 {
                self.tables.above_4g += 1;
            }
        }
        Some(frame)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.inner.deallocate_frame(frame) };
    }
}

/// Flags of user pages.
fn text_flags() -> MapFlags {
    MapFlags::PRESENT | MapFlags::USER
}

fn data_flags() -> MapFlags {
    MapFlags::PRESENT | MapFlags::WRITABLE | MapFlags::USER | mode::no_execute()
}

/// The table access for user tables: highmem tables through local kmaps.
fn user_tables() -> Result<KernelHighmemTables, Failure> {
    kmap_setup::highmem_tables().ok_or_else(|| failure!("kmap is not set up"))
}

/// Writes `f`'s bytes into `frame` through a local kmap (interrupts off).
fn with_frame<R>(frame: PhysFrame, f: impl FnOnce(*mut u8) -> R) -> Result<R, Failure> {
    let local = kmap_setup::local().ok_or_else(|| failure!("no local kmaps"))?;
    cpu::without_interrupts(|| {
        let k = local
            .map(gdt::cpu_index(), frame)
            .map_err(|e| failure!("local kmap: {e}"))?;
        Ok(f(k.va().as_u32() as *mut u8))
    })
}

/// A zeroed highmem frame (lowmem if there is none).
fn zeroed_frame(frames: &mut Frames) -> Result<PhysFrame, Failure> {
    let frame = frames
        .allocate_frame(Zone::PreferHighmem)
        .ok_or_else(|| failure!("out of memory"))?;
    // SAFETY: the slot maps the frame just allocated, writable, 4 KiB.
    with_frame(frame, |p| unsafe { core::ptr::write_bytes(p, 0, 4096) })?;
    Ok(frame)
}

/// The initial kernel stack of a process: a trap frame that `iretd`s to
/// `frame`, below it a context that `switch_context` "returns" from into
/// `exception_return`. Returns the context's ESP.
fn prepare_stack(kstack: u32, frame: &UserFrame) -> u32 {
    unsafe extern "C" {
        fn exception_return();
    }
    let top = kstack + (KSTACK_PAGES * 4096) as u32;
    let frame_at = top - size_of::<UserFrame>() as u32;
    let context_at = frame_at - 5 * 4;
    // SAFETY: the stack is two lowmem frames just allocated for this
    // process, mapped writable by the direct map; nothing else uses them.
    unsafe {
        (frame_at as *mut UserFrame).write(*frame);
        let context = context_at as *mut u32;
        // edi, esi, ebx, ebp, then the return address.
        for i in 0..4 {
            context.add(i).write(0);
        }
        context
            .add(4)
            .write(exception_return as *const () as usize as u32);
    }
    context_at
}

/// A fresh user frame entering `TEXT_BASE` with EBX = `arg`.
fn entry_frame(arg: u32) -> UserFrame {
    let data = u32::from(gdt::USER_DATA);
    UserFrame {
        frame: ExceptionFrame {
            gs: data,
            fs: data,
            es: data,
            ds: data,
            edi: 0,
            esi: 0,
            ebp: 0,
            esp: 0,
            ebx: arg,
            edx: 0,
            ecx: 0,
            eax: 0,
            vector: 0,
            error_code: 0,
            eip: TEXT_BASE,
            cs: u32::from(gdt::USER_CODE),
            eflags: 0x202, // IF
        },
        user_esp: STACK_TOP,
        user_ss: data,
    }
}

fn kernel_stack(frames: &mut Frames) -> Result<u32, Failure> {
    let frame = frames
        .allocate_contiguous(KSTACK_PAGES, Zone::Lowmem)
        .ok_or_else(|| failure!("no lowmem for a kernel stack"))?;
    let base = PAGE_OFFSET + frame.start_address().as_u64() as u32;
    // SAFETY: the frames were just allocated; the direct map maps them.
    unsafe { (base as *mut u32).write_volatile(STACK_CANARY) };
    Ok(base)
}

/// Whether the canary at the bottom of the kernel stack at `base` is
/// intact (the stack never ran into the frames below it).
fn canary_intact(base: u32) -> bool {
    // SAFETY: `base` is a kernel stack's lowest word, mapped by the
    // direct map while the process exists.
    base == 0 || unsafe { (base as *const u32).read_volatile() } == STACK_CANARY
}

fn free_kernel_stack(kstack: u32, frames: &mut Frames) {
    let first = (kstack - PAGE_OFFSET) as u64;
    for i in 0..KSTACK_PAGES as u64 {
        let frame = PhysFrame::containing_address(PhysAddr::new_truncate(first + i * 4096));
        // SAFETY: the stack's frames came from `frames`; the process is dead
        // and no CPU runs on this stack any more (the caller's contract).
        unsafe { frames.deallocate_frame(frame) };
    }
}

/// Puts a new process in the table (Ready on its CPU); returns its PID,
/// or the process if the table is full (the caller frees it: [`discard`]).
#[allow(clippy::result_large_err)]
fn install(mut process: Process, frame: &UserFrame) -> Result<u32, Process> {
    with_table(|table| {
        let Some(index) = table.slots.iter().position(Option::is_none) else {
            return Err(process);
        };
        process.pid = table.next_pid;
        table.next_pid += 1;
        if process.cpu == usize::MAX {
            process.cpu = next_cpu(table);
        }
        let context = prepare_stack(process.kstack, frame);
        // SAFETY: the slot is free: no CPU runs it, nothing else writes
        // its context (the table lock is held).
        unsafe { (&raw mut CONTEXTS[index]).write(context) };
        PREEMPTIONS[index].store(0, Ordering::Relaxed);
        crate::arch::fpu::reset(index);
        process.ready_tick = timer::ticks(process.cpu);
        process.ready_pick = PICKS[process.cpu % CPUS].load(Ordering::Relaxed);
        let pid = process.pid;
        // A new process: the fault-loop count starts afresh (the slot's
        // last occupant faulted where every process first does).
        LAST_FAULT[index].store(0, Ordering::Relaxed);
        REPEATS[index].store(0, Ordering::Relaxed);
        table.slots[index] = Some(process);
        Ok(pid)
    })
}

/// Frees a process that never ran (its table slot was refused): its
/// address space (a forked child's shared pages lose a reference) and its
/// kernel stack.
fn discard(mut process: Process) {
    let mut frames = frames::lock();
    if let Some(space) = process.space.take()
        && let Err(e) = destroy_space(space, CpuSet::empty(), &mut frames)
    {
        println!("    discarding a process failed: {}", e.message());
    }
    if process.kstack != 0 {
        free_kernel_stack(process.kstack, &mut frames);
    }
}

/// The next online CPU, round robin.
fn next_cpu(table: &mut Table) -> usize {
    for _ in 0..CPUS {
        let cpu = table.next_cpu % CPUS;
        table.next_cpu += 1;
        if smp::is_online(cpu) {
            return cpu;
        }
    }
    0
}

/// Creates a process running `program` with EBX = `arg`, its user PTE
/// tables from `pte_zone` (highmem normally; lowmem for the comparison),
/// on `cpu` (or round robin). The kernel is its parent (PID 0).
pub fn spawn(
    program: Program,
    arg: u32,
    pte_zone: Zone,
    cpu: Option<usize>,
) -> Result<u32, Failure> {
    let mut frames = frames::lock();
    let mut tables = TableFrames::default();
    let mut counting = Counting {
        inner: &mut frames,
        tables: &mut tables,
    };
    let mut space = Space::create(user_tables()?, pte_zone, &mut counting)?;
    let code = program.code();
    let pages = code.len().div_ceil(4096);
    let mut mapped = 0;
    let result = (|| {
        for page in 0..pages {
            let frame = zeroed_frame(counting.inner)?;
            let chunk = &code[page * 4096..code.len().min((page + 1) * 4096)];
            // SAFETY: the slot maps the new frame; `chunk` is at most 4 KiB.
            with_frame(frame, |p| unsafe {
                core::ptr::copy_nonoverlapping(chunk.as_ptr(), p, chunk.len())
            })?;
            let va = Page::containing_address(VirtAddr::new(TEXT_BASE + (page * 4096) as u32));
            match space.mapper().map(va, frame, text_flags(), &mut counting) {
                Ok(flush) => flush.ignore(), // no CPU has loaded this space
                Err(e) => {
                    // SAFETY: allocated above for this page, and the map
                    // that would have used it failed: nothing maps it.
                    unsafe { counting.inner.deallocate_frame(frame) };
                    return Err(failure!("mapping text: {e}"));
                }
            }
            mapped += 1;
        }
        kernel_stack(counting.inner)
    })();
    let kstack = match result {
        Ok(kstack) => kstack,
        Err(e) => {
            let _ = mapped;
            destroy_space(space, CpuSet::empty(), &mut frames)?;
            return Err(e);
        }
    };
    drop(frames);
    let process = Process::new(
        0,
        cpu.unwrap_or(usize::MAX),
        program.name,
        space,
        kstack,
        HEAP_START,
        tables,
        pte_zone,
    );
    install(process, &entry_frame(arg)).map_err(|process| {
        discard(process);
        failure!("the process table is full")
    })
}

/// Tears a user half down, releasing every frame (shared ones lose a
/// reference), and frees the directory. `cpus` ran the space.
fn destroy_space(space: Space, cpus: CpuSet, frames: &mut Frames) -> Result<(), Failure> {
    let tlb = AddressSpaceTlb(cpus);
    // `teardown_releasing` hands each page over after the flush that made
    // it unreachable, so it is freed at once, however many there are. The
    // allocator is shared between the teardown (tables) and the callback
    // (pages) through a `RefCell`: they take turns, never overlap.
    let frames = core::cell::RefCell::new(frames);
    space.destroy_releasing(&tlb, &mut Turns(&frames), |_, unmapped| {
        let frame = PhysFrame::containing_address(unmapped.base);
        if unshare(frame) {
            // SAFETY: the teardown unmapped it and flushed every CPU that
            // ran the space before this call, and `unshare` said this space
            // held the last reference: nothing maps or uses it now.
            unsafe { frames.borrow_mut().deallocate_frame(frame) };
        }
    })?;
    Ok(())
}

/// The kernel's allocator, lent to a teardown and its release callback in
/// turn.
struct Turns<'a, 'b>(&'a core::cell::RefCell<&'b mut Frames>);

// SAFETY: every call is forwarded to the kernel's allocator.
unsafe impl FrameAllocator for Turns<'_, '_> {
    fn allocate_frame(&mut self, zone: Zone) -> Option<PhysFrame> {
        self.0.borrow_mut().allocate_frame(zone)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: the caller keeps the contract, forwarded unchanged.
        unsafe { self.0.borrow_mut().deallocate_frame(frame) };
    }
}

/// The slot of the process this CPU runs.
fn current_slot() -> Option<usize> {
    let slot = CURRENT[gdt::cpu_index() % CPUS].load(Ordering::Relaxed);
    (slot < MAX_PROCESSES).then_some(slot)
}

/// Whether this CPU runs a process now.
pub fn running() -> bool {
    current_slot().is_some()
}

/// Switches from the running process to this CPU's scheduler; returns when
/// the scheduler runs the process again.
fn switch_to_scheduler(slot: usize) {
    let cpu = gdt::cpu_index() % CPUS;
    // SAFETY: `slot` is this CPU's current process: only this CPU saves
    // into its context; the scheduler's context was saved when it switched
    // here.
    unsafe { switch_context(&raw mut CONTEXTS[slot], (&raw const SCHEDULERS[cpu]).read()) };
}

unsafe extern "C" {
    /// Saves the callee-saved registers and ESP into `*from`, loads `to`.
    fn switch_context(from: *mut u32, to: u32);
}

core::arch::global_asm!(
    r#"
    .section .text, "ax"
    .global switch_context
switch_context:
    mov eax, [esp + 4]
    mov edx, [esp + 8]
    push ebp
    push ebx
    push esi
    push edi
    mov [eax], esp
    mov esp, edx
    pop edi
    pop esi
    pop ebx
    pop ebp
    ret
    "#
);

/// Runs the processes pinned to this CPU until no process is left alive
/// on any CPU (one could still fork a child onto this one); zombies stay
/// for their parents (or [`reap_all`]). Called on
/// each CPU through `smp::run_on_all`, with the local-APIC timer running.
pub fn run_until_done(cpu: usize) {
    crate::arch::fpu::init_cpu();
    let cr4 = crate::arch::guards::enable();
    timer::start();
    crate::smp::watchdog::set_describer(describe_cpu);
    crate::smp::watchdog::set_dumper(dump_table);
    loop {
        crate::smp::watchdog::check_deadline();
        let picked = cpu::without_interrupts(|| pick(cpu));
        match picked {
            Pick::Run(slot) => run_slot(cpu, slot),
            Pick::Idle => {
                // Halt until an interrupt (the timer, or a wake-up when a
                // child exits): `sti; hlt` cannot miss one.
                // SAFETY: ring 0; halts this CPU until an interrupt.
                unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
            }
            Pick::Done => break,
        }
    }
    timer::stop();
    crate::arch::guards::restore(cr4);
    // SAFETY: ring 0; `run_on_all` runs its work with interrupts on.
    unsafe { core::arch::asm!("sti", options(nostack)) };
}

/// One line for the watchdog's report: the process CPU `cpu` runs, and
/// every process in the table with its state (read without the lock: the
/// kernel is stopping, and the lock may be what it is stuck on).
fn describe_cpu(cpu: usize) {
    let current = CURRENT[cpu].load(Ordering::Relaxed);
    let next = NEXT_SCAN[cpu].load(Ordering::Relaxed);
    crate::println!(
        "watchdog: cpu {cpu} runs process slot {current} (>= {MAX_PROCESSES}: none), next scan at {next}"
    );
}

/// The process table, for the watchdog's report: every process with its
/// CPU and state (the lock is tried for a while; the others still run).
fn dump_table() {
    for _ in 0..10_000_000u32 {
        if let Some(table) = TABLE.try_lock() {
            for (slot, p) in table.slots.iter().enumerate() {
                if let Some(p) = p {
                    crate::println!(
                        "watchdog: process slot {slot}: pid {} parent {} on cpu {} {:?}, kernel stack {:#x}, space {}",
                        p.pid,
                        p.parent,
                        p.cpu,
                        p.state,
                        p.kstack,
                        p.space.is_some()
                    );
                }
            }
            return;
        }
        core::hint::spin_loop();
    }
    crate::println!("watchdog: the process table stayed locked");
}

enum Pick {
    Run(usize),
    Idle,
    Done,
}

/// Where each CPU's next scan of the table starts: the slot after the one
/// it ran last (round robin).
static NEXT_SCAN: [AtomicUsize; CPUS] = [const { AtomicUsize::new(0) }; CPUS];
/// Longest a ready process waited for its CPU, in that CPU's timer ticks.
static WORST_WAIT: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Processes each CPU has picked to run.
static PICKS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Most other processes a ready process saw picked before its turn.
static WORST_PICKS: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];
/// Most processes ready on the CPU at once (at a pick).
static MOST_READY: [AtomicU32; CPUS] = [const { AtomicU32::new(0) }; CPUS];

/// Clears the fairness figures of every CPU.
pub fn fairness_reset() {
    for cpu in 0..CPUS {
        WORST_WAIT[cpu].store(0, Ordering::Relaxed);
        WORST_PICKS[cpu].store(0, Ordering::Relaxed);
        MOST_READY[cpu].store(0, Ordering::Relaxed);
    }
}

/// CPU `cpu`'s fairness figures since [`fairness_reset`]: the worst wait
/// of a ready process in timer ticks and in other processes picked before
/// its turn, and the most processes ready at once.
pub fn fairness(cpu: usize) -> (u32, u32, u32) {
    (
        WORST_WAIT[cpu % CPUS].load(Ordering::Relaxed),
        WORST_PICKS[cpu % CPUS].load(Ordering::Relaxed),
        MOST_READY[cpu % CPUS].load(Ordering::Relaxed),
    )
}

/// The next process for this CPU, round robin from the slot after the
/// last one it ran (a process preempted goes behind every other ready
/// one: with n ready, each waits at most n - 1 time slices); idle while
/// any process anywhere may still fork one onto it; done when every
/// process has exited.
fn pick(cpu: usize) -> Pick {
    let mut table = TABLE.lock();
    let start = NEXT_SCAN[cpu].load(Ordering::Relaxed);
    let mut alive = false;
    let mut chosen = None;
    let mut ready = 0;
    for i in 0..MAX_PROCESSES {
        let slot = (start + i) % MAX_PROCESSES;
        let Some(p) = &table.slots[slot] else {
            continue;
        };
        match p.state {
            State::Ready if p.cpu == cpu => {
                ready += 1;
                chosen = chosen.or(Some(slot));
            }
            State::Ready | State::Waiting | State::Running => alive = true,
            State::Zombie => {}
        }
    }
    let Some(slot) = chosen else {
        return if alive { Pick::Idle } else { Pick::Done };
    };
    if let Some(p) = table.slots[slot].as_mut() {
        p.state = State::Running;
        let waited = timer::ticks(cpu).wrapping_sub(p.ready_tick);
        WORST_WAIT[cpu].fetch_max(waited, Ordering::Relaxed);
        let picks = PICKS[cpu].load(Ordering::Relaxed);
        WORST_PICKS[cpu].fetch_max(picks.wrapping_sub(p.ready_pick), Ordering::Relaxed);
        MOST_READY[cpu].fetch_max(ready, Ordering::Relaxed);
    }
    PICKS[cpu].fetch_add(1, Ordering::Relaxed);
    NEXT_SCAN[cpu].store(slot + 1, Ordering::Relaxed);
    Pick::Run(slot)
}

/// Runs process `slot` on this CPU until it yields, waits, exits or is
/// preempted.
fn run_slot(cpu: usize, slot: usize) {
    let (root, kstack, saved) = cpu::without_interrupts(|| {
        let mut table = TABLE.lock();
        let p = table.slots[slot].as_mut().expect("picked slot");
        let root = p.space.as_ref().map(Space::root);
        (root, p.kstack, p.saved_local.take())
    });
    let Some(root) = root else { return };
    cpu::without_interrupts(|| {
        double_fault::set_ring0_stack(cpu, kstack + (KSTACK_PAGES * 4096) as u32);
        // SAFETY: the process's directory, registered with the kernel
        // sync: its kernel half maps this code and stack.
        let _ = unsafe { shootdown::load_root(root) };
        if let (Some(saved), Some(local)) = (saved, kmap_setup::local()) {
            if local.restore(&saved).is_ok() {
                COUNTERS.local_restores.fetch_add(1, Ordering::Relaxed);
            }
        }
        CURRENT[cpu].store(slot, Ordering::Relaxed);
        crate::arch::fpu::switch_in(slot);
        // SAFETY: the process's context was saved by `switch_context` (or
        // prepared by `install`); this CPU's scheduler context is saved
        // here.
        unsafe { switch_context(&raw mut SCHEDULERS[cpu], (&raw const CONTEXTS[slot]).read()) };
        crate::arch::fpu::switch_out(slot);
        CURRENT[cpu].store(usize::MAX, Ordering::Relaxed);
        // The process left local kmaps behind: keep them with it.
        let saved = kmap_setup::local().and_then(|local| {
            if local.depth(cpu).unwrap_or(0) > 0 {
                local.save(cpu).ok()
            } else {
                None
            }
        });
        // SAFETY: the kernel's directory (the reference) maps everything
        // the scheduler uses.
        let _ = unsafe { shootdown::load_root(kernel_root()) };
        let mut table = TABLE.lock();
        if let Some(p) = table.slots[slot].as_mut() {
            if !canary_intact(p.kstack) {
                println!();
                println!(
                    "KERNEL STACK OVERFLOW in pid {} (kernel stack {:#x})",
                    p.pid, p.kstack
                );
                crate::arch::io::exit_qemu(false);
            }
            p.saved_local = saved;
            if p.state == State::Zombie && p.kstack != 0 {
                // Off its stack now: free it, then the parent may reap.
                free_kernel_stack(p.kstack, &mut frames::lock());
                p.kstack = 0;
                let parent = p.parent;
                if p.orphan {
                    // Nobody will wait for it: the kernel reaps it now.
                    table.slots[slot] = None;
                    return;
                }
                let wake = table.slots.iter_mut().flatten().find_map(|q| {
                    (q.pid == parent && q.state == State::Waiting).then(|| {
                        q.state = State::Ready;
                        q.ready_tick = timer::ticks(q.cpu);
                        q.ready_pick = PICKS[q.cpu % CPUS].load(Ordering::Relaxed);
                        q.cpu
                    })
                });
                if let Some(target) = wake
                    && target != cpu
                {
                    smp::wake(target);
                }
            }
        }
    });
}

fn kernel_root() -> PhysAddr {
    crate::mm::kernel_sync::get().map_or(PhysAddr::new_truncate(0), |s| s.reference())
}

/// What one finished process left.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Its PID.
    pub pid: u32,
    /// The program.
    pub program: &'static str,
    /// The exit code ([`KILLED`] if killed).
    pub exit_code: u32,
    /// Why it was killed.
    pub kill_reason: Option<&'static str>,
    /// The faulting address if killed by a fault.
    pub kill_address: u32,
    /// Its page-table frames.
    pub tables: TableFrames,
    /// Where its user PTE tables came from.
    pub pte_zone: Zone,
    /// The CPU it ran on.
    pub cpu: usize,
    /// Console bytes dropped over its budget.
    pub console_dropped: u32,
    /// The exception that killed it (not a page fault).
    pub kill_vector: Option<u32>,
    /// Its last system-call error.
    pub last_error: u32,
}

/// Removes every zombie whose parent is the kernel (or gone), calling `f`
/// with each; returns how many processes are left.
pub fn reap_all(mut f: impl FnMut(Outcome)) -> usize {
    let mut left = 0;
    with_table(|table| {
        for slot in table.slots.iter_mut() {
            let Some(p) = slot else { continue };
            if p.state == State::Zombie && p.parent == 0 && p.kstack == 0 {
                f(outcome(p));
                *slot = None;
            } else {
                left += 1;
            }
        }
    });
    left
}

fn outcome(p: &Process) -> Outcome {
    Outcome {
        pid: p.pid,
        program: p.program,
        exit_code: p.exit_code,
        kill_reason: p.kill_reason,
        kill_address: p.kill_address,
        tables: p.tables,
        pte_zone: p.pte_zone,
        cpu: p.cpu,
        console_dropped: p.console_dropped,
        kill_vector: p.kill_vector,
        last_error: p.last_error,
    }
}

/// Runs every process to its end on every CPU.
pub fn run_all() {
    smp::run_on_all(|cpu, _| run_until_done(cpu), 0);
}

/// Called for `int 0x80` (interrupts off, on the process's kernel stack).
pub fn syscall(frame: &mut ExceptionFrame) {
    let Some(slot) = current_slot() else {
        frame.eax = u32::MAX;
        return;
    };
    if !frame.user_mode() {
        frame.eax = u32::MAX;
        return;
    }
    // SAFETY: an interrupt from ring 3: the CPU pushed the user ESP and SS
    // right after EFLAGS.
    let user = unsafe { &mut *(frame as *mut ExceptionFrame as *mut UserFrame) };
    let (a, b) = (user.frame.ebx, user.frame.ecx);
    COUNTERS.syscalls.fetch_add(1, Ordering::Relaxed);
    let result = match user.frame.eax {
        nr::WRITE => sys_write(slot, a, b),
        nr::GETPID => Ok(with_table(|t| t.slots[slot].as_ref().map_or(0, |p| p.pid))),
        nr::FORK => sys_fork(slot, user),
        nr::EXIT => Ok(exit(slot, a, None, 0)),
        nr::WAIT => sys_wait(slot, user),
        nr::YIELD => {
            yield_now(slot);
            Ok(0)
        }
        nr::SBRK => sys_sbrk(slot, a),
        nr::KMAP_HOLD => sys_kmap_hold(slot, a),
        nr::LAST_ERROR => Ok(with_table(|t| {
            t.slots[slot].as_ref().map_or(err::NONE, |p| p.last_error)
        })),
        _ => Err(err::INVALID),
    };
    user.frame.eax = result.unwrap_or_else(|code| {
        with_table(|t| {
            if let Some(p) = t.slots[slot].as_mut() {
                p.last_error = code;
            }
        });
        u32::MAX
    });
}

/// `write(buf, len)`: at most [`CONSOLE_BUDGET`] bytes over the process's
/// life reach the console; the rest are dropped and counted.
fn sys_write(slot: usize, buf: u32, len: u32) -> Result<u32, u32> {
    if len > 4096 || !crate::proc::usercopy::user_range(buf, len as usize) {
        return Err(err::FAULT);
    }
    let quiet = with_table(|t| t.slots[slot].as_ref().is_some_and(|p| p.quiet));
    if quiet {
        // Copied like any write (the same checks, the same faults), then
        // dropped.
        let mut chunk = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u32);
            crate::proc::usercopy::copy_from_user(&mut chunk[..n as usize], buf + done)?;
            done += n;
        }
        return Ok(len);
    }
    let allowed = with_table(|t| {
        let p = t.slots[slot].as_mut()?;
        let allowed = len.min(CONSOLE_BUDGET.saturating_sub(p.console_written));
        p.console_written += allowed;
        p.console_dropped = p.console_dropped.saturating_add(len - allowed);
        Some(allowed)
    })
    .unwrap_or(0);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < allowed {
        let n = (allowed - done).min(chunk.len() as u32);
        let part = &mut chunk[..n as usize];
        crate::proc::usercopy::copy_from_user(part, buf + done)?;
        for byte in part.iter() {
            print!("{}", *byte as char);
        }
        done += n;
    }
    if allowed < len {
        return if allowed == 0 {
            Err(err::CONSOLE_BUDGET)
        } else {
            with_table(|t| {
                if let Some(p) = t.slots[slot].as_mut() {
                    p.last_error = err::CONSOLE_BUDGET;
                }
            });
            Ok(allowed)
        };
    }
    Ok(len)
}

/// `sbrk(bytes)`: checked arithmetic, the heap limit is the page limit.
fn sys_sbrk(slot: usize, bytes: u32) -> Result<u32, u32> {
    with_table(|t| {
        let p = t.slots[slot].as_mut().ok_or(err::KERNEL)?;
        let old = p.heap_end;
        let grow = bytes.checked_next_multiple_of(4096).ok_or(err::INVALID)?;
        let new = old.checked_add(grow).ok_or(err::PAGE_LIMIT)?;
        if new > HEAP_START + HEAP_MAX {
            return Err(err::PAGE_LIMIT);
        }
        p.heap_end = new;
        Ok(old)
    })
}

fn yield_now(slot: usize) {
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.state = State::Ready;
            p.ready_tick = timer::ticks(p.cpu);
            p.ready_pick = PICKS[p.cpu % CPUS].load(Ordering::Relaxed);
        }
    });
    switch_to_scheduler(slot);
}

fn sys_wait(slot: usize, user: &mut UserFrame) -> Result<u32, u32> {
    loop {
        let found = with_table(|t| {
            let pid = t.slots[slot].as_ref().map_or(0, |p| p.pid);
            let mut children = false;
            for child in t.slots.iter_mut() {
                let Some(c) = child else { continue };
                if c.parent != pid {
                    continue;
                }
                children = true;
                if c.state == State::Zombie && c.kstack == 0 {
                    let result = (c.pid, c.exit_code);
                    *child = None;
                    return Some(Some(result));
                }
            }
            if !children {
                return Some(None);
            }
            if let Some(p) = t.slots[slot].as_mut() {
                p.state = State::Waiting;
            }
            None
        });
        match found {
            Some(Some((pid, code))) => {
                user.frame.ebx = code;
                return Ok(pid);
            }
            Some(None) => return Err(err::NO_CHILD),
            None => switch_to_scheduler(slot),
        }
    }
}

/// Ends process `slot` (its own CPU, its own kernel stack): the user half
/// torn down, the parent woken, then the scheduler. Never returns.
fn exit(slot: usize, code: u32, reason: Option<&'static str>, address: u32) -> u32 {
    let cpu = gdt::cpu_index() % CPUS;
    if code == crate::proc::user::FUZZ_CORRUPT && reason.is_none() {
        COUNTERS.corrupt.fetch_add(1, Ordering::Relaxed);
    }
    // The space must not be loaded while it is torn down.
    // SAFETY: the kernel's directory maps everything this path uses.
    let _ = unsafe { shootdown::load_root(kernel_root()) };
    if let Some(local) = kmap_setup::local() {
        // A killed process may have left local kmaps (none do today).
        let _ = local.save(cpu);
    }
    let space = with_table(|t| t.slots[slot].as_mut().and_then(|p| p.space.take()));
    if let Some(space) = space
        && let Err(e) = destroy_space(space, CpuSet::single(cpu), &mut frames::lock())
    {
        println!("    teardown of slot {slot} failed: {}", e.message());
    }
    let (pid, dropped) = with_table(|t| {
        let (pid, dropped) = match t.slots[slot].as_mut() {
            Some(p) => {
                p.state = State::Zombie;
                p.exit_code = code;
                p.kill_reason = reason;
                p.kill_address = address;
                (p.pid, p.console_dropped)
            }
            None => (0, 0),
        };
        // Zombie children are reaped now; live ones (or ones still on
        // their kernel stack) become orphans, which the kernel reaps when
        // they end.
        for child in t.slots.iter_mut() {
            let Some(c) = child else { continue };
            if pid == 0 || c.parent != pid {
                continue;
            }
            if c.state == State::Zombie && c.kstack == 0 {
                *child = None;
            } else {
                c.parent = 0;
                c.orphan = true;
            }
        }
        (pid, dropped)
    });
    if dropped > 0 {
        println!(
            "    pid {pid}: {dropped} console bytes dropped (over its budget of {CONSOLE_BUDGET})"
        );
    }
    // The scheduler frees the kernel stack once off it, then wakes the
    // parent (which reaps only a zombie whose stack is gone).
    switch_to_scheduler(slot);
    // A zombie is never scheduled again.
    cpu::halt_forever()
}

/// `fork()`: -1 with [`err::CHILD_LIMIT`] or [`err::TABLE_FULL`] before any
/// work; with [`err::SHARED_FULL`] or [`err::NO_MEMORY`] once the child
/// half built is freed again (every shared page loses its reference).
fn sys_fork(slot: usize, user: &UserFrame) -> Result<u32, u32> {
    let cpu = gdt::cpu_index() % CPUS;
    let (mut parent_space, heap_end, program, pte_zone, pid, quiet) = with_table(|t| {
        let p = t.slots[slot].as_mut().expect("current");
        (
            p.space.take(),
            p.heap_end,
            p.program,
            p.pte_zone,
            p.pid,
            p.quiet,
        )
    });
    let refused = with_table(|t| {
        let children = t.slots.iter().flatten().filter(|c| c.parent == pid).count();
        if children >= MAX_CHILDREN {
            Some(err::CHILD_LIMIT)
        } else if t.slots.iter().all(Option::is_some) {
            Some(err::TABLE_FULL)
        } else {
            None
        }
    });
    let result = match (refused, parent_space.as_mut()) {
        (Some(code), _) => Err(code),
        (None, None) => Err(err::KERNEL),
        (None, Some(parent)) => fork_space(parent, heap_end, pte_zone, cpu),
    };
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = parent_space;
        }
    });
    let (child_space, tables, kstack) = result.inspect_err(|&code| {
        COUNTERS.forks_refused.fetch_add(1, Ordering::Relaxed);
        if code == err::TABLE_FULL {
            COUNTERS.forks_table_full.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    let mut frame = *user;
    frame.frame.eax = 0;
    let mut process = Process::new(
        pid,
        usize::MAX,
        program,
        child_space,
        kstack,
        heap_end,
        tables,
        pte_zone,
    );
    process.quiet = quiet;
    // Another CPU may have taken the last slot since the check.
    let child = install(process, &frame).map_err(|process| {
        discard(process);
        COUNTERS.forks_refused.fetch_add(1, Ordering::Relaxed);
        COUNTERS.forks_table_full.fetch_add(1, Ordering::Relaxed);
        err::TABLE_FULL
    })?;
    let child_cpu = with_table(|t| {
        t.slots
            .iter()
            .flatten()
            .find(|p| p.pid == child)
            .map(|p| p.cpu)
    });
    if let Some(target) = child_cpu
        && target != cpu
    {
        smp::wake(target);
    }
    Ok(child)
}

/// The user regions whose pages may be written (copy-on-write after fork).
fn writable_regions(heap_end: u32) -> [(u32, u32); 2] {
    [
        (HEAP_START, heap_end - HEAP_START),
        (STACK_TOP - STACK_PAGES * 4096, STACK_PAGES * 4096),
    ]
}

/// A kernel failure while forking: printed (a bug), [`err::KERNEL`].
fn kernel_error(e: Failure) -> u32 {
    println!("    fork failed: {}", e.message());
    err::KERNEL
}

fn fork_space(
    parent: &mut Space,
    heap_end: u32,
    pte_zone: Zone,
    cpu: usize,
) -> Result<(Space, TableFrames, u32), u32> {
    let tlb = AddressSpaceTlb(CpuSet::single(cpu));
    // 1. Every writable page of the parent: read-only, copy-on-write; one
    //    flush per region (this CPU is the only one that ran it).
    for (start, len) in writable_regions(heap_end) {
        if len == 0 {
            continue;
        }
        let (_, flush) = parent
            .mapper()
            .protect_range(
                VirtAddr::new(start),
                u64::from(len),
                MapFlags::WRITABLE,
                COW,
            )
            .map_err(|e| kernel_error(failure!("protect {start:#x}+{len:#x}: {e}")))?;
        flush.flush(&tlb);
    }
    // 2. The child maps the same frames.
    let mut frames = frames::lock();
    let mut tables = TableFrames::default();
    let mut counting = Counting {
        inner: &mut frames,
        tables: &mut tables,
    };
    let access = user_tables().map_err(kernel_error)?;
    let mut child = Space::create(access, pte_zone, &mut counting).map_err(|_| err::NO_MEMORY)?;
    let mut failed = None;
    for mapping in parent
        .mapper()
        .mappings(VirtAddr::new(0), u64::from(PAGE_OFFSET))
    {
        let mapping = match mapping {
            Ok(m) => m,
            Err(e) => {
                failed = Some(kernel_error(failure!("walking the parent: {e}")));
                break;
            }
        };
        if mapping.size != PageSize::Size4KiB {
            failed = Some(kernel_error(failure!("a large page in user space")));
            break;
        }
        let frame = PhysFrame::containing_address(mapping.base);
        let flags = mapping
            .flags
            .difference(MapFlags::ACCESSED | MapFlags::DIRTY);
        if share(frame).is_err() {
            failed = Some(err::SHARED_FULL);
            break;
        }
        match child.mapper().map(
            Page::containing_address(mapping.va),
            frame,
            flags,
            &mut counting,
        ) {
            Ok(flush) => flush.ignore(), // the child has not run
            Err(_) => {
                unshare(frame);
                failed = Some(err::NO_MEMORY);
                break;
            }
        }
        COUNTERS.shared_by_fork.fetch_add(1, Ordering::Relaxed);
    }
    let kstack = match failed {
        None => kernel_stack(counting.inner).map_err(|_| err::NO_MEMORY),
        Some(e) => Err(e),
    };
    match kstack {
        Ok(kstack) => Ok((child, tables, kstack)),
        Err(e) => {
            destroy_space(child, CpuSet::empty(), &mut frames).map_err(kernel_error)?;
            Err(e)
        }
    }
}

/// A page fault at `address` while this CPU runs a process: demand-zero,
/// copy-on-write, or (from ring 3) the end of the process. Returns whether
/// the access should be retried.
pub fn page_fault(frame: &ExceptionFrame, address: u32, error_code: u32) -> bool {
    let Some(slot) = current_slot() else {
        return false;
    };
    let user = frame.user_mode();
    if fault_loop(slot, address, error_code) {
        diagnose_fault_loop(slot, frame, address, error_code);
    }
    match resolve(slot, address, error_code) {
        Ok(()) => true,
        Err(reason) if user => {
            let (pid, quiet) = pid_and_quiet(slot);
            COUNTERS.kills.fetch_add(1, Ordering::Relaxed);
            if !quiet {
                println!(
                    "    killed pid {pid}: {reason} at {address:#010x} (EIP {:#010x}, error code {:#x}: {})",
                    frame.eip,
                    error_code,
                    ErrorCode(error_code)
                );
            }
            exit(slot, KILLED, Some(reason), address);
            false
        }
        Err(_) => false,
    }
}

/// The last fault each process took (address, error code) and how many
/// times in a row.
static LAST_FAULT: [AtomicU32; MAX_PROCESSES] = [const { AtomicU32::new(0) }; MAX_PROCESSES];
static LAST_CODE: [AtomicU32; MAX_PROCESSES] = [const { AtomicU32::new(0) }; MAX_PROCESSES];
static REPEATS: [AtomicU32; MAX_PROCESSES] = [const { AtomicU32::new(0) }; MAX_PROCESSES];

/// Whether process `slot` has now taken the same fault 64 times in a row:
/// a fault the handler says it resolved but the CPU takes again.
fn fault_loop(slot: usize, address: u32, error_code: u32) -> bool {
    let same = LAST_FAULT[slot].swap(address, Ordering::Relaxed) == address
        && LAST_CODE[slot].swap(error_code, Ordering::Relaxed) == error_code;
    if same {
        REPEATS[slot].fetch_add(1, Ordering::Relaxed) == 64
    } else {
        LAST_CODE[slot].store(error_code, Ordering::Relaxed);
        REPEATS[slot].store(0, Ordering::Relaxed);
        false
    }
}

/// Prints what the tables say about a fault that keeps coming back.
fn diagnose_fault_loop(slot: usize, frame: &ExceptionFrame, address: u32, error_code: u32) {
    let space = with_table(|t| t.slots[slot].as_mut().and_then(|p| p.space.take()));
    let Some(mut space) = space else { return };
    let walk = space.mapper().walk(VirtAddr::new(address));
    println!(
        "    FAULT LOOP: cpu {} slot {slot} at {address:#010x} EIP {:#010x} code {error_code:#x} ({}); CR3 {:#x} root {}",
        gdt::cpu_index(),
        frame.eip,
        ErrorCode(error_code),
        crate::arch::cpu::cr3(),
        space.root()
    );
    match walk {
        Ok(w) => println!(
            "    FAULT LOOP: pgd {:#x} pmd {:?} pte {:?}",
            w.pgd.1.raw(),
            w.pmd.map(|(s, e)| (s.table, s.index, e.raw())),
            w.pte.map(|(s, e)| (s.table, s.index, e.raw()))
        ),
        Err(e) => println!("    FAULT LOOP: walk failed: {e}"),
    }
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = Some(space);
        }
    });
}

/// Process `slot`'s PID and whether its kill notices are silenced (0 and
/// `false` for an empty slot).
fn pid_and_quiet(slot: usize) -> (u32, bool) {
    with_table(|t| {
        t.slots[slot]
            .as_ref()
            .map_or((0, false), |p| (p.pid, p.quiet))
    })
}

/// Any other exception from ring 3 ends the process.
pub fn user_exception(frame: &ExceptionFrame) -> bool {
    let Some(slot) = current_slot() else {
        return false;
    };
    if !frame.user_mode() {
        return false;
    }
    let (pid, quiet) = pid_and_quiet(slot);
    COUNTERS.kills.fetch_add(1, Ordering::Relaxed);
    if !quiet {
        println!(
            "    killed pid {pid}: exception {} at EIP {:#010x}",
            frame.vector, frame.eip
        );
    }
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.kill_vector = Some(frame.vector);
        }
    });
    exit(slot, KILLED, Some("exception"), frame.eip);
    true
}

fn resolve(slot: usize, address: u32, error_code: u32) -> Result<(), &'static str> {
    let present = error_code & ErrorCode::PRESENT != 0;
    let write = error_code & ErrorCode::WRITE != 0;
    let fetch = error_code & ErrorCode::FETCH != 0;
    if address >= PAGE_OFFSET {
        return Err("user access to a kernel address");
    }
    let (space, heap_end) = with_table(|t| {
        let p = t.slots[slot].as_mut().expect("current");
        (p.space.take(), p.heap_end)
    });
    let Some(mut space) = space else {
        return Err("no address space");
    };
    let result = (|| {
        let page = Page::containing_address(VirtAddr::new(address));
        let anonymous = (HEAP_START..heap_end).contains(&address)
            || (STACK_TOP - STACK_PAGES * 4096..STACK_TOP).contains(&address);
        if !present {
            if !anonymous {
                return Err("access to an unmapped address");
            }
            let mut frames = frames::lock();
            let frame = zeroed_frame(&mut frames).map_err(|_| "out of memory")?;
            let mut tables = TableFrames::default();
            let mut counting = Counting {
                inner: &mut frames,
                tables: &mut tables,
            };
            match space.mapper().map(page, frame, data_flags(), &mut counting) {
                // Not present before, so no TLB holds it; but in PAE a new
                // PMD table is a new PDPT entry, which the CPU reads only at
                // a CR3 load (it caches the four PDPTEs): the flush says so
                // and reloads CR3 here. Ignoring it left the CPU faulting
                // "not present" on a page that was mapped (seen on Bochs,
                // which caches PDPTEs as CPUs do; QEMU's TCG re-reads them).
                Ok(flush) => flush.flush(&AddressSpaceTlb(CpuSet::single(gdt::cpu_index()))),
                Err(e) => {
                    // SAFETY: allocated above; the map failed, nothing maps it.
                    unsafe { counting.inner.deallocate_frame(frame) };
                    println!("    demand-zero map of {page:?} failed: {e}");
                    return Err("cannot map a demand-zero page");
                }
            }
            drop(frames);
            add_tables(slot, tables);
            COUNTERS.demand_zero.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if fetch {
            return Err("no-execute fetch");
        }
        if !write {
            return Err("protection fault on a read");
        }
        let leaf = space
            .mapper()
            .mappings(page.start_address(), 4096)
            .next()
            .and_then(Result::ok)
            .ok_or("the faulting page vanished")?;
        if !leaf.flags.contains(COW) {
            return Err("write to a read-only page");
        }
        let old = PhysFrame::containing_address(leaf.base);
        let flags = leaf
            .flags
            .difference(COW | MapFlags::ACCESSED | MapFlags::DIRTY)
            | MapFlags::WRITABLE;
        let tlb = AddressSpaceTlb(CpuSet::single(gdt::cpu_index()));
        if !is_shared(old) {
            // The last one: just writable again.
            space
                .mapper()
                .update_flags(page, flags)
                .map_err(|_| "cannot update a copy-on-write page")?
                .flush(&tlb);
            COUNTERS.cow_reuses.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut frames = frames::lock();
        let new = frames
            .allocate_frame(Zone::PreferHighmem)
            .ok_or("out of memory")?;
        copy_frame(old, new).map_err(|_| "cannot copy a page")?;
        let (_, flush) = space
            .mapper()
            .unmap(page)
            .map_err(|_| "cannot unmap a copy-on-write page")?;
        flush.flush(&tlb);
        space
            .mapper()
            .map(page, new, flags, &mut *frames)
            .map_err(|_| "cannot map the copy")?
            // Just unmapped and flushed; the flush of the new entry is all
            // the same applied (a PAE PDPT change needs a CR3 load).
            .flush(&tlb);
        drop(frames);
        // Another process may have copied it at the same time on its CPU:
        // then this was the last reference.
        if unshare(old) {
            // SAFETY: unmapped and flushed above, and this was the last
            // reference.
            unsafe { frames::lock().deallocate_frame(old) };
        }
        COUNTERS.cow_copies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })();
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.space = Some(space);
        }
    });
    result
}

fn add_tables(slot: usize, tables: TableFrames) {
    with_table(|t| {
        if let Some(p) = t.slots[slot].as_mut() {
            p.tables.low += tables.low;
            p.tables.high += tables.high;
            p.tables.above_4g += tables.above_4g;
        }
    });
}

/// Copies `from` into `to` through two local kmaps (LIFO).
fn copy_frame(from: PhysFrame, to: PhysFrame) -> Result<(), Failure> {
    let local = kmap_setup::local().ok_or_else(|| failure!("no local kmaps"))?;
    let cpu = gdt::cpu_index();
    cpu::without_interrupts(|| {
        let a = local.map(cpu, from).map_err(|e| failure!("{e}"))?;
        let b = local.map(cpu, to).map_err(|e| failure!("{e}"))?;
        // SAFETY: both slots map whole frames; `to` was just allocated.
        unsafe {
            core::ptr::copy_nonoverlapping(
                a.va().as_u32() as *const u8,
                b.va().as_u32() as *mut u8,
                4096,
            )
        };
        drop(b);
        drop(a);
        Ok(())
    })
}

/// `kmap_hold(n)`: two pages of the kernel's own, mapped through local
/// kmaps and filled; then, with interrupts on, wait until this process has
/// been preempted `n` times (other processes use the same CPU's slots
/// meanwhile); then check both pages through the same addresses.
///
/// At most [`KMAP_HOLD_MAX`] preemptions (more is -1,
/// [`err::INVALID`]), and the wait ends after a bounded number of spins
/// even if the timer never comes: no process can keep a CPU in ring 0.
fn sys_kmap_hold(slot: usize, preemptions: u32) -> Result<u32, u32> {
    let cpu = gdt::cpu_index() % CPUS;
    if preemptions > KMAP_HOLD_MAX {
        return Err(err::INVALID);
    }
    let Some(local) = kmap_setup::local() else {
        return Ok(2);
    };
    // One lock at a time: a guard in the same statement would live on.
    let f1 = zeroed_frame(&mut frames::lock());
    let f2 = zeroed_frame(&mut frames::lock());
    let (f1, f2) = match (f1, f2) {
        (Ok(f1), Ok(f2)) => (f1, f2),
        (f1, f2) => {
            let mut frames = frames::lock();
            for frame in [f1, f2].into_iter().flatten() {
                // SAFETY: allocated above and not mapped yet.
                unsafe { frames.deallocate_frame(frame) };
            }
            return Err(err::NO_MEMORY);
        }
    };
    let pid = with_table(|t| t.slots[slot].as_ref().map_or(0, |p| p.pid));
    let result = (|| {
        let a = local.map(cpu, f1).map_err(|_| 3u32)?;
        let b = local.map(cpu, f2).map_err(|_| 3u32)?;
        let (va, vb) = (a.va().as_u32() as *mut u32, b.va().as_u32() as *mut u32);
        let pattern = |i: usize, which: u32| pid.wrapping_mul(0x0101_0101) ^ (i as u32) ^ which;
        for i in 0..1024 {
            // SAFETY: both slots map frames allocated just above.
            unsafe {
                va.add(i).write_volatile(pattern(i, 0xAAAA_0000));
                vb.add(i).write_volatile(pattern(i, 0x5555_0000));
            }
        }
        // Counted from the start, with wrapping differences: the counter
        // may wrap, the comparison does not.
        let start = PREEMPTIONS[slot].load(Ordering::Relaxed);
        let done = || {
            PREEMPTIONS[slot]
                .load(Ordering::Relaxed)
                .wrapping_sub(start)
                >= preemptions
        };
        let max_spins = 20_000_000 * u64::from(preemptions + 1);
        PREEMPTIBLE[slot].store(true, Ordering::SeqCst);
        // SAFETY: ring 0; the timer may now preempt this kernel code.
        unsafe { core::arch::asm!("sti", options(nostack)) };
        let mut spins = 0u64;
        while !done() && spins < max_spins {
            core::hint::spin_loop();
            spins += 1;
        }
        // SAFETY: ring 0.
        unsafe { core::arch::asm!("cli", options(nostack)) };
        PREEMPTIBLE[slot].store(false, Ordering::SeqCst);
        if !done() {
            return Err(4);
        }
        let mut wrong = 0;
        for i in 0..1024 {
            // SAFETY: as above: the same slots, restored after each switch.
            let (x, y) = unsafe { (va.add(i).read_volatile(), vb.add(i).read_volatile()) };
            if x != pattern(i, 0xAAAA_0000) || y != pattern(i, 0x5555_0000) {
                wrong += 1;
            }
        }
        drop(b);
        drop(a);
        if wrong == 0 { Ok(0) } else { Err(1) }
    })();
    let mut frames = frames::lock();
    // SAFETY: allocated above; the spaces that mapped them are gone.
    unsafe {
        frames.deallocate_frame(f1);
        frames.deallocate_frame(f2);
    }
    Ok(result.unwrap_or_else(|e| e))
}

/// Called by the timer interrupt (interrupts off): preempts the running
/// process if it was in ring 3, or in kernel code that allowed it.
pub fn timer_tick(frame: &ExceptionFrame) {
    let Some(slot) = current_slot() else { return };
    if !frame.user_mode() && !PREEMPTIBLE[slot].load(Ordering::SeqCst) {
        return;
    }
    PREEMPTIONS[slot].fetch_add(1, Ordering::Relaxed);
    COUNTERS.preemptions.fetch_add(1, Ordering::Relaxed);
    yield_now(slot);
}

/// Lowmem and highmem frames free now.
pub fn free_frames() -> (u64, u64) {
    let frames = frames::lock();
    (
        frames.free_frames(ZoneId::Low),
        frames.free_frames(ZoneId::High),
    )
}
