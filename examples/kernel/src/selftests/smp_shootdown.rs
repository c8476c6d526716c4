//! TLB shootdown, checked on every CPU (design point 2 on real
//! processors): a CPU remaps kernel and user pages that the other CPUs have
//! just read, and after the flush returns none of them reads the old frame.
//! On Bochs, whose TLB keeps entries until told, this is a real check; a
//! control round with a local-only flush shows what the shootdown
//! prevents. A flush naming an offline CPU is refused.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use paging_core::cpu::NativeTlb;
use paging_core::{FrameAllocator, MapFlags, Page, PhysFrame, VirtAddr, Zone};
use tlb_shootdown::{CpuSet, ShootdownError, Targets};

use super::memory_access::{pattern, read_word, write_word};
use crate::base::config::CPUS;
use crate::mm::address_space::AddressSpace;
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::layout::PAGE_OFFSET;
use crate::mm::shootdown::{self, AddressSpaceTlb, KernelTlb, SHOOTDOWN};
use crate::selftests::harness::{Failure, TestResult};
use crate::{arch::cpu, arch::mode, ensure, failure, mm::frames, mm::vmalloc, println, smp};

/// Rounds of read-remap-read.
const ROUNDS: u32 = 16;
/// Where the user page is mapped in the test address space.
const USER_VA: u32 = 0x4000_0000;

/// Shared by the boot CPU (which remaps) and the readers.
struct Remap {
    kernel_va: usize,
    user_root: u64,
    /// The round the boot CPU has published (readers read after it).
    round: AtomicU32,
    /// Readers done with the current phase.
    acks: AtomicUsize,
    readers: usize,
    /// Frames: the word the current mapping must show.
    expect_kernel: AtomicU32,
    expect_user: AtomicU32,
    stale_kernel: AtomicU32,
    stale_user: AtomicU32,
    stop: AtomicBool,
}

pub fn smp_shootdown_no_cpu_reads_the_old_frame(_: &Kernel) -> TestResult {
    let mut frames = frames::lock();
    let mut pool = [PhysFrame::containing_address(Default::default()); 4];
    for frame in pool.iter_mut() {
        *frame = frames
            .allocate_frame(Zone::Lowmem)
            .ok_or_else(|| failure!("out of lowmem"))?;
        // SAFETY: a lowmem frame just allocated for this test.
        unsafe {
            write_word(
                PAGE_OFFSET as usize + frame.start_address().as_u64() as usize,
                pattern(frame.number()),
            )
        };
    }
    let region = vmalloc::reserve_region()?;
    let mut space = AddressSpace::create(DirectMapAccess, Zone::Lowmem, &mut *frames)?;
    drop(frames);
    let result = run(region, &mut space, &pool);
    let mut frames = frames::lock();
    let _ = vmalloc::unmap(region);
    space.destroy(&mut *frames)?;
    for frame in pool {
        // SAFETY: a frame this self-test took from `frames`; nothing maps or uses it any more.
        unsafe { frames.deallocate_frame(frame) };
    }
    result
}

fn run(
    region: VirtAddr,
    space: &mut AddressSpace<DirectMapAccess>,
    pool: &[PhysFrame; 4],
) -> TestResult {
    let user = Page::containing_address(VirtAddr::new(USER_VA));
    vmalloc::map_frame(region, pool[0], &mut frames::lock())?;
    space
        .mapper()
        .map(
            user,
            pool[1],
            MapFlags::KERNEL_RW.union(MapFlags::USER),
            &mut *frames::lock(),
        )
        .map_err(|e| failure!("user map: {e}"))?
        .ignore(); // no CPU has loaded this space yet
    let online = smp::online_count();
    let remap = Remap {
        kernel_va: region.as_u32() as usize,
        user_root: space.root().as_u64(),
        round: AtomicU32::new(0),
        acks: AtomicUsize::new(0),
        readers: online - 1,
        expect_kernel: AtomicU32::new(pattern(pool[0].number())),
        expect_user: AtomicU32::new(pattern(pool[1].number())),
        stale_kernel: AtomicU32::new(0),
        stale_user: AtomicU32::new(0),
        stop: AtomicBool::new(false),
    };
    // The readers run the space: they are the CPUs its user flush targets.
    let readers: CpuSet = (1..smp::known()).filter(|&c| smp::is_online(c)).collect();
    let space_tlb = AddressSpaceTlb(readers);
    let mut outcome: Result<(u64, u64), Failure> = Ok((0, 0));
    let context = (&remap, &mut *space, pool, space_tlb, &mut outcome, region);
    crate::smp::work::run_on_all(worker, &context as *const _ as usize);
    let (ipis, rounds) = outcome?;
    let stale = (
        remap.stale_kernel.load(Ordering::SeqCst),
        remap.stale_user.load(Ordering::SeqCst),
    );
    ensure!(
        stale == (0, 0),
        "after the shootdown returned, {} kernel and {} user reads saw the old frame",
        stale.0,
        stale.1
    );
    // Offline or unknown CPUs are refused before anything is sent.
    let before = SHOOTDOWN.stats();
    let offline = (0..CPUS).find(|&c| !smp::is_online(c)).unwrap_or(CPUS - 1);
    let refused = cpu::without_interrupts(|| {
        SHOOTDOWN.flush(
            paging_core::Flush::page(region),
            Targets::Cpus(CpuSet::single(offline)),
            &NativeTlb,
        )
    });
    ensure!(
        refused == Err(ShootdownError::Offline { cpu: offline }),
        "a flush to offline CPU {offline}: {refused:?}"
    );
    ensure!(
        SHOOTDOWN.stats().ipis_sent == before.ipis_sent,
        "the refused flush sent IPIs"
    );
    println!(
        "    {ROUNDS} rounds: {} reader CPUs read a vmalloc page and a user page, cpu 0 remapped both; {ipis} IPIs in {rounds} shootdowns (user flushes to the {} CPUs that ran the space only), 0 stale reads; a flush naming offline CPU {offline} is refused",
        remap.readers,
        readers.len()
    );
    Ok(())
}

type Context<'a> = (
    &'a Remap,
    &'a mut AddressSpace<DirectMapAccess>,
    &'a [PhysFrame; 4],
    AddressSpaceTlb,
    &'a mut Result<(u64, u64), Failure>,
    VirtAddr,
);

fn worker(cpu: usize, arg: usize) {
    if cpu == 0 {
        // SAFETY: `arg` is the context on this CPU's stack; only this CPU
        // uses its mutable parts.
        let context = unsafe { &mut *(arg as *mut Context<'_>) };
        let result = remapper(context);
        *context.4 = result;
        context.0.stop.store(true, Ordering::SeqCst);
        return;
    }
    // SAFETY: as above; readers use the shared `Remap` only.
    let remap = unsafe { (*(arg as *const Context<'_>)).0 };
    let previous = mode::current_root();
    // SAFETY: the space is registered (kernel half shared); its user page
    // is read only here.
    let _ = unsafe { shootdown::load_root(paging_core::PhysAddr::new_truncate(remap.user_root)) };
    let mut seen_round = 0;
    while !remap.stop.load(Ordering::SeqCst) {
        let round = remap.round.load(Ordering::SeqCst);
        if round == seen_round {
            core::hint::spin_loop();
            continue;
        }
        seen_round = round;
        // SAFETY: both addresses are mapped to test frames holding words.
        let (k, u) = unsafe { (read_word(remap.kernel_va), read_word(USER_VA as usize)) };
        if k != remap.expect_kernel.load(Ordering::SeqCst) {
            remap.stale_kernel.fetch_add(1, Ordering::SeqCst);
        }
        if u != remap.expect_user.load(Ordering::SeqCst) {
            remap.stale_user.fetch_add(1, Ordering::SeqCst);
        }
        remap.acks.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: back to the directory this CPU ran on.
    let _ = unsafe { shootdown::load_root(previous) };
}

/// Each round: publish, wait for every reader to read (caching both
/// translations), remap both pages to the other frame, flush, publish.
fn remapper(context: &mut Context<'_>) -> Result<(u64, u64), Failure> {
    let (remap, space, pool, space_tlb, _, region) = context;
    let before = SHOOTDOWN.stats();
    let mut acked = 0;
    for round in 1..=ROUNDS {
        // Readers read the current mapping (and cache it).
        remap.round.store(round * 2 - 1, Ordering::SeqCst);
        acked += remap.readers;
        wait_acks(remap, acked)?;
        let (k_old, k_new) = if round % 2 == 1 {
            (pool[0], pool[2])
        } else {
            (pool[2], pool[0])
        };
        let (u_old, u_new) = if round % 2 == 1 {
            (pool[1], pool[3])
        } else {
            (pool[3], pool[1])
        };
        let _ = (k_old, u_old);
        // Kernel page: every CPU (vmalloc is kernel space).
        vmalloc::remap_frame(*region, k_new, &KernelTlb)?;
        remap
            .expect_kernel
            .store(pattern(k_new.number()), Ordering::SeqCst);
        // User page: only the CPUs that ran the space.
        let user = Page::containing_address(VirtAddr::new(USER_VA));
        let (_, flush) = space
            .mapper()
            .unmap(user)
            .map_err(|e| failure!("user unmap: {e}"))?;
        flush.flush(space_tlb);
        space
            .mapper()
            .map(
                user,
                u_new,
                MapFlags::KERNEL_RW.union(MapFlags::USER),
                &mut *frames::lock(),
            )
            .map_err(|e| failure!("user map: {e}"))?
            .flush(space_tlb);
        remap
            .expect_user
            .store(pattern(u_new.number()), Ordering::SeqCst);
        // Readers read again: they must see the new frames.
        remap.round.store(round * 2, Ordering::SeqCst);
        acked += remap.readers;
        wait_acks(remap, acked)?;
    }
    let after = SHOOTDOWN.stats();
    Ok((
        after.ipis_sent - before.ipis_sent,
        after.shootdowns - before.shootdowns,
    ))
}

fn wait_acks(remap: &Remap, target: usize) -> Result<(), Failure> {
    for _ in 0..200_000_000u32 {
        if remap.acks.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(failure!("readers stopped answering"))
}
