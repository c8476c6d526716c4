//! The seed threads' races, on every CPU at once (design points 2 and 6,
//! now on real processors): the lazy kernel-space sync of 2001 (CPUs in
//! different address spaces fault on the same fresh vmalloc entry at the
//! same moment) and the NMI deadlock of 2010 (an NMI on every CPU, while
//! one CPU holds the frame-allocator and kmap locks, reads an unsynced
//! vmalloc page).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use super::kernel_sync::{EXPECTED_FILLS, VmallocPage};
use super::memory_access::read_word;
use crate::base::config::CPUS;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::selftests::harness::{Failure, TestResult};
use crate::{
    arch::apic, arch::mode, arch::nmi, ensure, failure, mm::frames, mm::kernel_sync,
    mm::kmap_setup, println, smp,
};
use paging_core::{PhysAddr, Zone};

/// One fresh address space per CPU, registered before the vmalloc page is
/// mapped, so in 2-level mode none has the page's PGD entry.
struct Spaces {
    spaces: heapless::Vec<AddressSpace<DirectMapAccess>, CPUS>,
}

impl Spaces {
    fn new() -> Result<Self, Failure> {
        let mut frames = frames::lock();
        let mut spaces = heapless::Vec::new();
        for _ in 0..smp::known() {
            let space = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
            let _ = spaces.push(space);
        }
        Ok(Self { spaces })
    }

    fn root(&self, cpu: usize) -> PhysAddr {
        self.spaces[cpu].root()
    }

    fn destroy(self) -> Result<(), Failure> {
        let mut frames = frames::lock();
        for space in self.spaces {
            space.destroy(&mut *frames)?;
        }
        Ok(())
    }
}

/// What the workers share: set by the boot CPU before `run_on_all`.
struct Race {
    roots: [u64; CPUS],
    va: usize,
    expected: u32,
    /// CPUs that reached the barrier.
    arrived: AtomicUsize,
    /// CPUs taking part.
    cpus: usize,
    /// Bit `cpu` set if that CPU read the right word.
    good: AtomicU32,
    /// Released by the boot CPU when the NMIs are done.
    done: AtomicBool,
}

impl Race {
    /// Every online CPU, each in its own space of `spaces`, all after the
    /// word of `page`.
    fn new(spaces: &Spaces, page: &VmallocPage) -> Self {
        let mut roots = [0; CPUS];
        for (cpu, root) in roots.iter_mut().enumerate().take(smp::known()) {
            *root = spaces.root(cpu).as_u64();
        }
        Self {
            roots,
            va: page.va.as_u32() as usize,
            expected: page.value,
            arrived: AtomicUsize::new(0),
            cpus: smp::online_count(),
            good: AtomicU32::new(0),
            done: AtomicBool::new(false),
        }
    }
}

/// Loads `root` on this CPU, runs `f`, loads back the kernel directory.
fn in_space<R>(root: u64, f: impl FnOnce() -> R) -> R {
    let previous = mode::current_root();
    // SAFETY: `root` is a registered address space's directory: its kernel
    // half maps this code, this CPU's stack and everything the worker
    // touches (vmalloc entries made later are filled by the lazy path).
    // `previous` is the directory this CPU ran on a moment ago.
    unsafe {
        let _ = mode::load_root(PhysAddr::new_truncate(root));
        let result = f();
        let _ = mode::load_root(previous);
        result
    }
}

/// Spins until `arrived` reaches `cpus`, at most about `limit` rounds.
fn barrier(arrived: &AtomicUsize, cpus: usize, limit: u32) -> bool {
    arrived.fetch_add(1, Ordering::SeqCst);
    for _ in 0..limit {
        if arrived.load(Ordering::SeqCst) >= cpus {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

pub fn smp_lazy_sync_race_on_a_fresh_vmalloc_entry(_: &Kernel) -> TestResult {
    let spaces = Spaces::new()?;
    let page = VmallocPage::new(&mut frames::lock())?;
    let race = Race::new(&spaces, &page);
    let before = kernel_sync::faults();
    crate::smp::work::run_on_all(
        |cpu, arg| {
            // SAFETY: `arg` is the `Race` on the boot CPU's stack, alive
            // until `run_on_all` returns.
            let race = unsafe { &*(arg as *const Race) };
            in_space(race.roots[cpu], || {
                let together = barrier(&race.arrived, race.cpus, 100_000_000);
                // SAFETY: the page is mapped in the reference (the lazy
                // path brings its entry here) and holds a plain word.
                let word = unsafe { read_word(race.va) };
                if together && word == race.expected {
                    race.good.fetch_or(1 << cpu, Ordering::SeqCst);
                }
            })
        },
        &race as *const Race as usize,
    );
    let sync = kernel_sync::faults().since(before);
    let good = race.good.load(Ordering::SeqCst);
    page.release(&mut frames::lock())?;
    spaces.destroy()?;
    ensure!(
        good.count_ones() as usize == race.cpus,
        "{} CPUs, read the word together on {good:#b}",
        race.cpus
    );
    let expected = EXPECTED_FILLS * race.cpus as u32;
    ensure!(
        sync.filled == expected && sync.already_synced == 0,
        "{} lazy fills and {} retries for {} CPUs in {} spaces (expected {expected} fills)",
        sync.filled,
        sync.already_synced,
        race.cpus,
        race.cpus
    );
    println!(
        "    CPUs: {}, each in its own address space, read {:#x} at once: {} lazy fills ({}), every CPU saw the word",
        race.cpus,
        race.va,
        sync.filled,
        if EXPECTED_FILLS == 0 {
            "none needed in PAE: the kernel PMD is shared"
        } else {
            "one per space"
        }
    );
    Ok(())
}

pub fn smp_nmi_on_every_cpu_while_locks_are_held(kernel: &Kernel) -> TestResult {
    if let Some(why) = crate::smp::no_apic() {
        println!("    skipped: {why}");
        return Ok(());
    }
    crate::mm::early_fixmap::local_apic(kernel.fixmap)?;
    let spaces = Spaces::new()?;
    let page = VmallocPage::new(&mut frames::lock())?;
    let result = nmi_race(&spaces, &page);
    page.release(&mut frames::lock())?;
    spaces.destroy()?;
    let (nmis, cpus, va, sync) = result?;
    ensure!(nmis as usize == cpus, "{nmis} NMIs handled for {cpus} CPUs");
    let expected = EXPECTED_FILLS * cpus as u32;
    ensure!(
        sync.filled == expected,
        "{} lazy fills inside the NMIs (expected {expected})",
        sync.filled
    );
    println!(
        "    cpu 0 held the frame-allocator and kmap-task locks; an NMI on each CPU ({}) read {:#x} in its own space: {} lazy fills inside NMIs, no deadlock, no double fault",
        cpus, va, sync.filled
    );
    Ok(())
}

/// One round of the soak's NMIs (`soak.rs`): every CPU in a fresh address
/// space of its own, an NMI on each while the boot CPU holds the
/// frame-allocator and kmap locks, each reading `page` (made once for the
/// whole soak: every vmalloc page takes a region of its own, and the
/// kernel's tables for it stay). Returns the NMIs handled.
pub fn soak_nmi_round(page: &VmallocPage) -> Result<u32, Failure> {
    let spaces = Spaces::new()?;
    let result = nmi_race(&spaces, page);
    spaces.destroy()?;
    let (nmis, cpus, _, _) = result?;
    ensure!(nmis as usize == cpus, "{nmis} NMIs handled for {cpus} CPUs");
    Ok(nmis)
}

/// Every CPU in its own space of `spaces` reads `page` in an NMI sent by
/// the boot CPU while it holds the locks; returns the NMIs handled, the
/// CPUs, the page's address and the lazy fills made meanwhile.
fn nmi_race(
    spaces: &Spaces,
    page: &VmallocPage,
) -> Result<(u32, usize, usize, kernel_sync::SyncFaults), Failure> {
    let race = Race::new(spaces, page);
    let counts_before: [u32; CPUS] = core::array::from_fn(nmi::count_on);
    let before = kernel_sync::faults();
    static OUTCOME: spin::Mutex<Option<Result<(), Failure>>> = spin::Mutex::new(None);
    *OUTCOME.lock() = None;
    crate::smp::work::run_on_all(
        |cpu, arg| {
            // SAFETY: `arg` is the `Race` on the boot CPU's stack, alive
            // until `run_on_all` returns.
            let race = unsafe { &*(arg as *const Race) };
            in_space(race.roots[cpu], || {
                if !barrier(&race.arrived, race.cpus, 100_000_000) {
                    return;
                }
                if cpu == 0 {
                    let outcome = nmi_everyone(race);
                    *OUTCOME.lock() = Some(outcome);
                    race.done.store(true, Ordering::SeqCst);
                } else {
                    // The NMI arrives while this CPU spins here, in an
                    // address space without the page's entry.
                    while !race.done.load(Ordering::SeqCst) {
                        core::hint::spin_loop();
                    }
                }
            })
        },
        &race as *const Race as usize,
    );
    let sync = kernel_sync::faults().since(before);
    let outcome = OUTCOME
        .lock()
        .take()
        .ok_or_else(|| failure!("the CPUs never met at the barrier"))?;
    outcome?;
    let nmis: u32 = (0..smp::known())
        .map(|cpu| nmi::count_on(cpu) - counts_before[cpu])
        .sum();
    Ok((nmis, race.cpus, race.va, sync))
}

/// On the boot CPU, with every CPU in its own space: take the locks, arm a
/// read of the page on every CPU, send each an NMI (this one last), wait
/// for every read, then release the locks.
fn nmi_everyone(race: &Race) -> Result<(), Failure> {
    let apic = apic::get().ok_or_else(|| failure!("no local APIC"))?;
    let frames = frames::lock();
    let task = kmap_setup::with_task(|_| {
        let cpus: heapless::Vec<usize, CPUS> = (0..smp::known())
            .filter(|&cpu| smp::is_online(cpu))
            .collect();
        for &cpu in cpus.iter().rev() {
            // SAFETY: the page is 4-aligned ordinary memory.
            unsafe { nmi::arm_read_on(cpu, race.va) };
            let id = smp::apic_id(cpu).unwrap_or(u32::MAX);
            apic.send_nmi(id)?;
        }
        for _ in 0..50_000_000u32 {
            if cpus.iter().all(|&cpu| nmi::read_result_of(cpu).is_some()) {
                break;
            }
            core::hint::spin_loop();
        }
        for &cpu in &cpus {
            let Some(read) = nmi::read_result_of(cpu) else {
                return Err(failure!(
                    "the NMI on CPU {cpu} never finished its read (deadlock?)"
                ));
            };
            ensure!(
                read.value == Some(race.expected) && read.root as u64 == race.roots[cpu],
                "CPU {cpu}'s NMI read {:x?} in {:#x} (expected {:#x} in {:#x})",
                read.value,
                read.root,
                race.expected,
                race.roots[cpu]
            );
        }
        Ok(())
    });
    drop(frames);
    task.ok_or_else(|| failure!("the kmap task token is lent out"))?
}
