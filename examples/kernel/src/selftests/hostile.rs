//! Hostile processes (issue 21): each test runs ring-3 programs written
//! to take what they should not, and checks the kernel gave nothing away.
//! Every test also checks (through [`run_and_reap`]) that the frame
//! allocator's counts, the kernel sync's registry and the shared-page
//! table are back where they started.

use core::sync::atomic::{AtomicU32, Ordering};

use paging_core::Zone;

use super::processes::run_and_reap;
use crate::base::config::CPUS;
use crate::mm::kernel::Kernel;
use crate::proc::process::{self, COUNTERS, KILLED, MAX_CHILDREN};
use crate::proc::user::{self, Program, err, nr};
use crate::selftests::harness::{Failure, TestResult};
use crate::{arch::gdt, ensure, fail, println, smp};

fn spawn(program: Program, arg: u32) -> Result<u32, Failure> {
    crate::proc::spawn::spawn(program, arg, Zone::PreferHighmem, None)
}

/// The last online CPU (the one the single-CPU tests share).
fn last_cpu() -> usize {
    (0..CPUS).rev().find(|&c| smp::is_online(c)).unwrap_or(0)
}

/// Runs one process to its end; its outcome (the only one reaped).
fn run_one(program: Program, arg: u32) -> Result<crate::proc::sched::Outcome, Failure> {
    let before = crate::proc::sched::free_frames();
    spawn(program, arg)?;
    let outcomes = run_and_reap(before)?;
    let [o] = outcomes.as_slice() else {
        fail!("{} outcomes for one {}", outcomes.len(), program.name);
    };
    Ok(*o)
}

/// H1: a fork tree two levels deep (each process forks until refused:
/// 16 x 16 wanted, the table holds 96). A refused fork frees the
/// child it began (address space, shared references, kernel stack,
/// registry slot) and says why; nothing is printed per refusal.
pub fn user_hostile_fork_bomb(_: &Kernel) -> TestResult {
    let refused = COUNTERS.forks_refused.load(Ordering::Relaxed);
    let full = COUNTERS.forks_table_full.load(Ordering::Relaxed);
    let o = run_one(user::fork_bomb(), 2)?;
    ensure!(
        o.exit_code == 0 && o.kill_reason.is_none(),
        "the fork bomb's root ended with {o:?}"
    );
    let refused = COUNTERS.forks_refused.load(Ordering::Relaxed) - refused;
    let full = COUNTERS.forks_table_full.load(Ordering::Relaxed) - full;
    ensure!(
        full > 0,
        "no fork was refused for a full table: the table never filled"
    );
    println!(
        "    a fork tree filled the {}-slot table: {refused} forks refused with -1 ({full} table full, the others at {MAX_CHILDREN} children), no line printed per refusal, orphans reaped by the kernel; frames, registry and shared table back",
        process::MAX_PROCESSES
    );
    Ok(())
}

/// H2: a process with 1000 private pages (more than any fixed buffer)
/// exits: every one is freed.
pub fn user_hostile_exit_frees_every_private_page(_: &Kernel) -> TestResult {
    let o = run_one(user::big_exit(), 1000)?;
    ensure!(
        o.exit_code == 0 && o.kill_reason.is_none(),
        "big-exit ended with {o:?}"
    );
    println!("    1000 heap pages touched, the process exited: every frame back");
    Ok(())
}

/// H6: `kmap_hold(0xFFFFFFFF)` is refused at once ([`err::INVALID`]);
/// the cap is [`process::KMAP_HOLD_MAX`] preemptions.
pub fn user_hostile_kmap_hold_is_capped(_: &Kernel) -> TestResult {
    let start = crate::arch::cpu::rdtsc();
    let o = run_one(user::call_err(), nr::KMAP_HOLD)?;
    let cycles = crate::arch::cpu::rdtsc() - start;
    ensure!(
        o.exit_code == err::INVALID && o.kill_reason.is_none(),
        "kmap_hold(0xFFFFFFFF) ended with {:#x} ({o:?}), expected -1 and last_error {}",
        o.exit_code,
        err::INVALID
    );
    println!(
        "    kmap_hold(0xFFFFFFFF): -1, last_error {} (invalid), cap {} preemptions; the whole run took {} million cycles",
        err::INVALID,
        process::KMAP_HOLD_MAX,
        cycles / 1_000_000
    );
    Ok(())
}

/// A heap beyond [`process::HEAP_MAX`] (20,000 pages) is refused with
/// [`err::PAGE_LIMIT`], before any page is touched.
pub fn user_hostile_page_limit(_: &Kernel) -> TestResult {
    let o = run_one(user::big_exit(), 20_000)?;
    ensure!(
        o.exit_code == u32::MAX && o.last_error == err::PAGE_LIMIT && o.kill_reason.is_none(),
        "sbrk of 20,000 pages ended with {o:?}, expected -1 and last_error {}",
        err::PAGE_LIMIT
    );
    println!(
        "    sbrk of 20,000 pages (over the {} MiB heap limit): -1, last_error {} (page limit)",
        process::HEAP_MAX >> 20,
        err::PAGE_LIMIT
    );
    Ok(())
}

/// `sbrk(0xFFFFF001)` rounds past 4 GiB: refused, the heap unmoved.
pub fn user_hostile_sbrk_wrap_is_refused(_: &Kernel) -> TestResult {
    let o = run_one(user::sbrk_wrap(), 0)?;
    ensure!(
        o.exit_code == err::INVALID,
        "sbrk(0xFFFFF001) ended with {:#x} ({o:?}): 0x100 means it moved the heap",
        o.exit_code
    );
    println!(
        "    sbrk(0xFFFFF001): -1, last_error {} (invalid), heap unmoved",
        err::INVALID
    );
    Ok(())
}

/// Zombies are reaped when their parent exits without waiting: only the
/// parent is left for the kernel.
pub fn user_hostile_zombies_reaped_with_their_parent(_: &Kernel) -> TestResult {
    let o = run_one(user::orphan_maker(), 8)?;
    ensure!(
        o.exit_code == 0 && o.kill_reason.is_none(),
        "orphan-maker ended with {o:?}"
    );
    println!(
        "    8 children exited, their parent never waited and exited: all 8 slots freed by the kernel"
    );
    Ok(())
}

/// A fork of a process with more pages than the shared-page table holds
/// returns -1 ([`err::SHARED_FULL`]) and leaves the table as it was.
pub fn user_hostile_big_fork_is_refused_cleanly(_: &Kernel) -> TestResult {
    let o = run_one(user::big_fork(), 4200)?;
    ensure!(
        o.exit_code == err::SHARED_FULL && o.kill_reason.is_none(),
        "a fork of 4200 pages ended with {:#x} ({o:?}), expected last_error {}",
        o.exit_code,
        err::SHARED_FULL
    );
    println!(
        "    fork of a 4200-page process: -1, last_error {} (shared-page table full), the table empty again",
        err::SHARED_FULL
    );
    Ok(())
}

/// A process writing 100 lines gets [`process::CONSOLE_BUDGET`] bytes out;
/// the rest are dropped and counted.
pub fn user_hostile_console_flood_is_dropped_with_a_count(_: &Kernel) -> TestResult {
    let o = run_one(user::flood(), 100)?;
    let budget = process::CONSOLE_BUDGET;
    ensure!(
        o.exit_code == budget && o.console_dropped == 100 * 64 - budget,
        "flood wrote {} bytes and had {} dropped ({o:?}), expected {budget} and {}",
        o.exit_code,
        o.console_dropped,
        100 * 64 - budget
    );
    ensure!(
        o.last_error == err::CONSOLE_BUDGET,
        "flood's last error {}",
        o.last_error
    );
    println!(
        "    100 lines of 64 bytes: {budget} bytes printed, {} dropped and counted, last_error {} (console budget)",
        o.console_dropped,
        err::CONSOLE_BUDGET
    );
    Ok(())
}

/// A process forks until refused: exactly [`MAX_CHILDREN`] children, then
/// -1 with [`err::CHILD_LIMIT`].
pub fn user_hostile_child_limit(_: &Kernel) -> TestResult {
    let o = run_one(user::child_limit(), 0)?;
    let expected = MAX_CHILDREN as u32 | (err::CHILD_LIMIT << 16);
    ensure!(
        o.exit_code == expected && o.kill_reason.is_none(),
        "child-limit ended with {:#x} ({o:?}), expected {expected:#x}",
        o.exit_code
    );
    println!(
        "    {MAX_CHILDREN} forks, then -1 with last_error {} (child limit)",
        err::CHILD_LIMIT
    );
    Ok(())
}

/// H4: four ring-3 spinners on one CPU take turns: a ready process sees
/// each other ready process picked at most once before its own turn.
///
/// Round robin (a turn ends at the first tick after one whole tick period
/// of running, [`crate::proc::sched::timer_tick`]) bounds the wait at n - 1
/// turns for n ready processes. The wait in ticks is printed, not
/// asserted: a tick that lands in non-preemptible kernel code lengthens a
/// turn, and a vCPU the host deschedules takes its missed ticks late.
pub fn user_hostile_spinner_cannot_starve_others(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let cpu = last_cpu();
    let preemptions = COUNTERS.preemptions.load(Ordering::Relaxed);
    let ticks = crate::arch::timer::ticks(cpu);
    for _ in 0..4 {
        crate::proc::spawn::spawn(user::spinner(), 20_000_000, Zone::PreferHighmem, Some(cpu))?;
    }
    crate::proc::sched::fairness_reset();
    let outcomes = run_and_reap(before)?;
    ensure!(
        outcomes.len() == 4,
        "{} of 4 spinners ended",
        outcomes.len()
    );
    let (worst, picks, ready) = crate::proc::sched::fairness(cpu);
    let preemptions = COUNTERS.preemptions.load(Ordering::Relaxed) - preemptions;
    let ticks = crate::arch::timer::ticks(cpu) - ticks;
    ensure!(
        preemptions >= 4,
        "only {preemptions} preemptions in {ticks} ticks: the spinners are too short to measure"
    );
    // The bound is on turns: with round robin, a ready process sees each
    // other ready process picked at most once before its own turn. In
    // ticks it also holds on an idle host, but a vCPU the host deschedules
    // takes its missed ticks late and in a row, which a loaded CI machine
    // showed (7 and 13 ticks with 4 ready): printed, not asserted.
    ensure!(
        picks < ready.max(1),
        "a ready process saw {picks} others picked before its turn with at most {ready} ready on cpu {cpu}"
    );
    println!(
        "    4 spinners on cpu {cpu}: worst wait of a ready process {picks} other processes' turns with {ready} ready (bound {}), {worst} ticks; {preemptions} preemptions in {ticks} ticks",
        ready.max(1) - 1
    );
    Ok(())
}

/// H3: two processes keep values in x87 registers across 24 switches
/// each (with the other loading its own meanwhile), two others check
/// they start from `fninit`'s state with zeroed registers. Prints the
/// eager save + restore cost.
pub fn user_hostile_fpu_state_never_crosses_processes(_: &Kernel) -> TestResult {
    let before = crate::proc::sched::free_frames();
    let cpu = last_cpu();
    let cost = crate::arch::fpu::switch_cost();
    let secrets = [0x1234_5678u32, 0x0BAD_F00D];
    for secret in secrets {
        crate::proc::spawn::spawn(user::fpu_keeper(), secret, Zone::PreferHighmem, Some(cpu))?;
    }
    for _ in 0..2 {
        crate::proc::spawn::spawn(user::fpu_checker(), 0, Zone::PreferHighmem, Some(cpu))?;
    }
    let outcomes = run_and_reap(before)?;
    ensure!(
        outcomes.len() == 4,
        "{} of 4 processes ended",
        outcomes.len()
    );
    for o in &outcomes {
        ensure!(
            o.exit_code == 0 && o.kill_reason.is_none(),
            "{} pid {} ended with {:#x} (keeper 1: its registers changed; checker bits: 1 control, 2 status, 4 tags, 8 registers not clean)",
            o.program,
            o.pid,
            o.exit_code
        );
    }
    let after = crate::arch::fpu::switch_cost();
    let (cycles, switches) = (after.0 - cost.0, after.1 - cost.1);
    ensure!(switches > 0, "no switch was counted");
    println!(
        "    cr0.NE {}; 2 keepers kept ST0/ST1 over 24 switches each, 2 newcomers saw fninit's state and zeroed registers; eager frstor + fnsave: {} TSC cycles per switch ({switches} switches)",
        u32::from(crate::arch::cpu::cr0() & crate::arch::fpu::CR0_NE != 0),
        cycles / switches
    );
    Ok(())
}

/// LDTR of each CPU, recorded by [`record_ldtr`] (0xFFFF: not run).
static LDTRS: [AtomicU32; CPUS] = [const { AtomicU32::new(0xFFFF) }; CPUS];

fn record_ldtr(cpu: usize, _: usize) {
    LDTRS[cpu % CPUS].store(u32::from(gdt::ldtr()), Ordering::Relaxed);
}

/// H5: LDTR is null on every CPU; a ring-3 load of selector 0x0F (LDT
/// entry 1) is a #GP that kills the process.
pub fn user_hostile_ldt_selector_faults(_: &Kernel) -> TestResult {
    crate::smp::work::run_on_all(record_ldtr, 0);
    for cpu in (0..CPUS).filter(|&c| smp::is_online(c)) {
        let ldtr = LDTRS[cpu].load(Ordering::Relaxed);
        ensure!(
            ldtr == 0,
            "cpu {cpu}: LDTR {ldtr:#x}, expected the null selector"
        );
    }
    let o = run_one(user::ldt_selector(), 0)?;
    ensure!(
        o.exit_code == KILLED && o.kill_vector == Some(13),
        "loading selector 0x0F ended with {o:?}, expected killed by #GP (13)"
    );
    println!(
        "    LDTR null on {} CPUs; selector 0x0F in ring 3: #GP, process killed",
        smp::online_count().max(1)
    );
    Ok(())
}

/// A user page for the guard tests, in an address space of its own.
const GUARD_VA: u32 = 0x4000_0000;

/// One address space with a writable user page at [`GUARD_VA`] (a `ret`
/// at its start, executable where the mode has NX) and a read-only one
/// after it; `f` runs with it loaded; everything is freed after.
fn with_user_pages(f: impl FnOnce() -> TestResult) -> TestResult {
    use crate::mm::address_space::AddressSpace;
    use crate::mm::direct_map::DirectMapAccess;
    use crate::mm::frames;
    use crate::mm::layout::PAGE_OFFSET;
    use paging_core::{FrameAllocator, MapFlags, Page, VirtAddr};

    let before = crate::proc::sched::free_frames();
    let mut guard = frames::lock();
    let (Some(rw), Some(ro)) = (
        guard.allocate_frame(Zone::Lowmem),
        guard.allocate_frame(Zone::Lowmem),
    ) else {
        fail!("out of lowmem");
    };
    for (frame, fill) in [(rw, 0xC3u8), (ro, 0x5A)] {
        // SAFETY: lowmem frames just allocated, mapped by the direct map.
        unsafe {
            core::ptr::write_bytes(
                (PAGE_OFFSET as usize + frame.start_address().as_u64() as usize) as *mut u8,
                fill,
                4096,
            )
        };
    }
    let registry = crate::mm::kernel_sync::get().map_or(0, |s| s.registered());
    let mut space = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *guard)?;
    let user = MapFlags::PRESENT | MapFlags::USER;
    let result = (|| {
        for (va, frame, flags) in [
            (GUARD_VA, rw, user | MapFlags::WRITABLE),
            (GUARD_VA + 4096, ro, user),
        ] {
            space
                .mapper()
                .map(
                    Page::containing_address(VirtAddr::new(va)),
                    frame,
                    flags,
                    &mut *guard,
                )
                .map_err(|e| crate::failure!("user map: {e}"))?
                .ignore(); // not loaded yet
        }
        Ok(())
    })();
    drop(guard);
    let result = result.and_then(|()| space.run(f));
    let mut guard = frames::lock();
    space.destroy(&mut *guard)?;
    // SAFETY: allocated by this test; the space that mapped them is gone.
    unsafe {
        guard.deallocate_frame(rw);
        guard.deallocate_frame(ro);
    }
    drop(guard);
    ensure!(
        crate::proc::sched::free_frames() == before,
        "frames not back after the guard test"
    );
    ensure!(
        crate::mm::kernel_sync::get().map_or(0, |s| s.registered()) == registry,
        "the test's address space is still registered"
    );
    result
}

/// The one path to user memory: refuses every range that leaves the user
/// half (kernel, fixmap, pkmap, straddling 3 GiB, wrapping) and pages it
/// cannot reach (unmapped, read-only for a write), copies the rest.
pub fn user_hostile_usercopy_is_the_only_path(_: &Kernel) -> TestResult {
    use crate::mm::layout::PAGE_OFFSET;
    use crate::proc::usercopy::{copy_from_user, copy_to_user};
    with_user_pages(|| {
        let mut buf = [0u8; 16];
        for bad in [
            PAGE_OFFSET,
            PAGE_OFFSET - 8,
            0xFFFF_F000,
            0xFFC0_0000,
            crate::mm::layout::PKMAP_BASE,
            u32::MAX - 4,
        ] {
            ensure!(
                copy_from_user(&mut buf, bad) == Err(err::FAULT)
                    && copy_to_user(bad, &buf) == Err(err::FAULT),
                "a copy at {bad:#x} was not refused"
            );
        }
        ensure!(
            copy_from_user(&mut buf, 0x0040_0000) == Err(err::FAULT),
            "a copy from an unmapped page was not refused"
        );
        ensure!(
            copy_to_user(GUARD_VA + 4096, &buf) == Err(err::FAULT),
            "a copy to a read-only user page was not refused"
        );
        copy_from_user(&mut buf, GUARD_VA + 4096 - 8)
            .map_err(|e| crate::failure!("read across the two pages: {e}"))?;
        ensure!(
            buf[..8] == [0xC3; 8] && buf[8..] == [0x5A; 8],
            "read {buf:x?} across the two user pages"
        );
        copy_to_user(GUARD_VA + 100, b"copied to user")
            .map_err(|e| crate::failure!("write: {e}"))?;
        let mut back = [0u8; 14];
        copy_from_user(&mut back, GUARD_VA + 100).map_err(|e| crate::failure!("read back: {e}"))?;
        ensure!(&back == b"copied to user", "read back {back:x?}");
        println!(
            "    kernel, fixmap, pkmap, straddling and wrapping ranges refused; unmapped and read-only pages refused; user pages copied both ways"
        );
        Ok(())
    })
}

/// SMEP and SMAP, where the CPU has them: with the guards on, a kernel
/// fetch from a user page and a kernel read of one outside the usercopy
/// path fault; the usercopy path (stac/clac) still reads it.
pub fn user_hostile_smep_and_smap_guard_user_pages(_: &Kernel) -> TestResult {
    use crate::arch::fault_probe::{self, ErrorCode};
    use crate::arch::guards;
    let (smep, smap, _) = guards::available();
    with_user_pages(|| {
        let cr4 = guards::enable_bits(guards::CR4_SMEP | guards::CR4_SMAP);
        // SAFETY: GUARD_VA holds a `ret` (0xC3), or faults.
        let fetch = unsafe { fault_probe::call(GUARD_VA as usize) };
        // SAFETY: an ordinary user page of this space, or a fault.
        let read = unsafe { fault_probe::read_u32(GUARD_VA as usize) };
        let mut buf = [0u8; 4];
        let copied = crate::proc::usercopy::copy_from_user(&mut buf, GUARD_VA);
        guards::restore(cr4);
        if smep {
            let Err(f) = fetch else {
                fail!("SMEP on, but the kernel ran a `ret` from a user page");
            };
            ensure!(
                f.address == GUARD_VA && f.error_code.0 & ErrorCode::FETCH != 0,
                "SMEP fault {f:?}"
            );
            println!(
                "    SMEP: a kernel call into a user page faults ({})",
                f.error_code
            );
        } else {
            ensure!(fetch.is_ok(), "no SMEP, yet the call faulted: {fetch:?}");
            println!("    skipped: no SMEP");
        }
        if smap {
            let Err(f) = read else {
                fail!("SMAP on, but a plain kernel read of a user page worked");
            };
            ensure!(
                f.address == GUARD_VA && f.error_code.0 & ErrorCode::PRESENT != 0,
                "SMAP fault {f:?}"
            );
            println!(
                "    SMAP: a kernel read outside the usercopy path faults ({})",
                f.error_code
            );
        } else {
            println!("    skipped: no SMAP");
        }
        ensure!(
            copied == Ok(()) && buf == [0xC3; 4],
            "the usercopy path read {buf:x?} ({copied:?})"
        );
        println!("    the usercopy path (stac/clac) reads the same page");
        Ok(())
    })
}

/// UMIP, where the CPU has it: `sgdt`, `sidt`, `smsw` and `str` in ring 3
/// are a #GP that kills the process.
pub fn user_hostile_umip_hides_descriptor_tables(_: &Kernel) -> TestResult {
    let (_, _, umip) = crate::arch::guards::available();
    let before = crate::proc::sched::free_frames();
    let mut pids = [0u32; 4];
    for (which, pid) in pids.iter_mut().enumerate() {
        *pid = spawn(user::umip(), which as u32)?;
    }
    let outcomes = run_and_reap(before)?;
    ensure!(
        outcomes.len() == 4,
        "{} of 4 processes ended",
        outcomes.len()
    );
    for (which, pid) in pids.iter().enumerate() {
        let name = ["sgdt", "sidt", "smsw", "str"][which];
        let Some(o) = outcomes.iter().find(|o| o.pid == *pid) else {
            fail!("the {name} process never ended");
        };
        if umip {
            ensure!(
                o.exit_code == KILLED && o.kill_vector == Some(13),
                "{name} in ring 3 with UMIP ended with {o:?}, expected killed by #GP"
            );
        } else {
            ensure!(o.exit_code == 0, "{name} without UMIP ended with {o:?}");
        }
    }
    if umip {
        println!("    UMIP: sgdt, sidt, smsw and str in ring 3 each a #GP, the process killed");
    } else {
        println!("    skipped: no UMIP (sgdt, sidt, smsw and str ran in ring 3)");
    }
    Ok(())
}
