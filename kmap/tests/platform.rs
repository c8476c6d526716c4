//! The short names a kernel uses: a [`Platform`] implemented once, then
//! a pool and local slots declared in statics with one short line each, and
//! used from there through the simulated MMU.

mod support;

use std::sync::OnceLock;

use kmap::{
    FlushPolicy, GlobalFlush, KmapTask, Local, LocalKmap, NowaitKmap, PerPage, PersistentPool,
    Platform, Pool, PoolSize, SpinWait, ValidPoolSize,
};
use paging_core::NativeHooks;
use paging_sim::{Mmu, SimAccess, SimRam};
use paging_x86_pae::Pae;
use support::{CPUS, DEPTH, Kernel, TestFixmap, reads_frame, va};

/// The test kernel's kmap types, as a kernel would name its own.
enum Sim {}

impl Platform for Sim {
    type Mode = Pae;
    type Access = SimAccess<'static>;
    type Tlb = &'static Mmu<'static>;
    type Hooks = NativeHooks;
    type Fixmap = TestFixmap;
}

static KERNEL: OnceLock<&'static Kernel<'static, Pae>> = OnceLock::new();
static POOL: OnceLock<Pool<Sim, 8>> = OnceLock::new();
static PER_PAGE: OnceLock<Pool<Sim, 16, PerPage>> = OnceLock::new();
static LOCAL: OnceLock<Local<'static, Sim, DEPTH, CPUS>> = OnceLock::new();

/// The machine, built once and kept for the whole run (as a kernel's is).
fn kernel() -> &'static Kernel<'static, Pae> {
    KERNEL.get_or_init(|| {
        let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
        Box::leak(Box::new(Kernel::<Pae>::new(ram)))
    })
}

fn pool() -> &'static Pool<Sim, 8> {
    POOL.get_or_init(|| {
        let k = kernel();
        Pool::<Sim, 8>::new(
            &k.window,
            va(support::PKMAP_BASE),
            k.direct,
            SimAccess::new(k.ram()),
            &k.m.mmu,
            GlobalFlush,
            SpinWait,
        )
        .unwrap()
    })
}

fn local() -> &'static Local<'static, Sim, DEPTH, CPUS> {
    LOCAL.get_or_init(|| {
        let k = kernel();
        Local::<Sim, DEPTH, CPUS>::new(&k.fixmap, TestFixmap::KMAP_LOCAL, true, k.direct, &k.m.mmu)
            .unwrap()
    })
}

#[test]
fn the_aliases_name_the_full_types() {
    // `Pool<K, N>` is `PersistentPool` with the platform's types and the
    // default policy and wait; `Local<'f, K, D, C>` is `LocalSlots`.
    let full: &PersistentPool<
        Pae,
        SimAccess<'static>,
        &'static Mmu<'static>,
        GlobalFlush,
        SpinWait,
        8,
    > = pool();
    assert_eq!(full.slots(), 8);
    let full: &kmap::LocalSlots<
        'static,
        TestFixmap,
        Pae,
        SimAccess<'static>,
        NativeHooks,
        &'static Mmu<'static>,
        DEPTH,
        CPUS,
    > = local();
    assert_eq!(full.depth(0), Some(0));
}

#[test]
fn statics_map_through_the_mmu() {
    let k = kernel();
    let mmu = &k.m.mmu;
    // Pages of their own: the tests of this file share the machine.
    let (p, q) = (k.high_page(100), k.high_page(101));
    // SAFETY: this test's thread has no other token.
    let mut task = unsafe { KmapTask::new() };
    {
        let mapped = pool().map(&mut task, p).unwrap();
        assert!(!mapped.is_direct());
        assert!(reads_frame(mmu, mapped.va(), p));
    }
    // Local slots from their static; CPU 1, which no other test uses.
    let mapped: LocalKmap<'static> = local().map(1, q).unwrap();
    assert!(reads_frame(mmu, mapped.va(), q));
    assert_eq!(local().depth(1), Some(1));
    mapped.try_unmap().unwrap();
    assert_eq!(local().depth(1), Some(0));
}

#[test]
fn a_pool_with_its_own_policy_is_one_line_too() {
    let k = kernel();
    let pool = PER_PAGE.get_or_init(|| {
        PersistentPool::new(
            &k.window,
            va(support::PKMAP_BASE + 8 * 4096),
            k.direct,
            SimAccess::new(k.ram()),
            &k.m.mmu,
            PerPage,
            SpinWait,
        )
        .unwrap()
    });
    let page = k.high_page(102);
    // SAFETY: this test's thread has no other token.
    let task = unsafe { KmapTask::new() };
    // CPU 2's local slots are the fallback, unused while the pool has room.
    let mapped = pool.map_nowait(&task, local(), 2, page).unwrap();
    assert!(matches!(mapped, NowaitKmap::Persistent(_)));
    assert!(reads_frame(&k.m.mmu, mapped.va(), page));
    assert_eq!(pool.policy().name(), PerPage.name());
}

/// Every size a pool may have satisfies the bound `new` states.
#[test]
fn every_power_of_two_from_2_to_32768_is_a_valid_size() {
    fn slots<const N: usize>() -> usize
    where
        PoolSize<N>: ValidPoolSize,
    {
        N
    }
    let sizes = [
        slots::<2>(),
        slots::<4>(),
        slots::<8>(),
        slots::<16>(),
        slots::<32>(),
        slots::<64>(),
        slots::<128>(),
        slots::<256>(),
        slots::<512>(),
        slots::<1024>(),
        slots::<2048>(),
        slots::<4096>(),
        slots::<8192>(),
        slots::<16384>(),
        slots::<32768>(),
    ];
    for (i, n) in sizes.into_iter().enumerate() {
        assert_eq!(n, 2 << i);
    }
}
