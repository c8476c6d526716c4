//! Naming a kernel's kmap types once: [`Platform`], and the short aliases
//! [`Pool`] and [`Local`] built on it.

use fixmap::FixmapLayout;
use paging_core::{PagingMode, TableAccess, TableHooks, TlbOps};

use crate::local::LocalSlots;
use crate::policy::GlobalFlush;
use crate::pool::PersistentPool;
use crate::wait::SpinWait;

/// The types a kernel's kmap is built from, named once so that a pool or a
/// local-slot set is one short line ([`Pool`], [`Local`]).
///
/// A kernel implements it on a type of its own (an empty `enum` will do);
/// its statics are then one short line each:
///
/// ```
/// use fixmap::fixmap_layout;
/// use paging_core::NativeHooks;
/// use paging_sim::{Mmu, SimAccess};
/// use paging_x86_pae::Pae;
///
/// fixmap_layout! {
///     /// The kernel's fixmap.
///     pub struct KernelFixmap { top: 0xFFFF_F000; KMAP_LOCAL[32]; }
/// }
///
/// /// This kernel's kmap types.
/// pub enum Kernel {}
///
/// impl kmap::Platform for Kernel {
///     type Mode = Pae;
///     // How page tables are reached: through the direct map on hardware
///     // (`paging_core::OffsetAccess`), the simulator's RAM here.
///     type Access = SimAccess<'static>;
///     // `paging_core::cpu::NativeTlb` on the real CPU.
///     type Tlb = &'static Mmu<'static>;
///     type Hooks = NativeHooks;
///     type Fixmap = KernelFixmap;
/// }
///
/// // 1024 slots, Linux's policy (a global flush per wrap), spinning waits.
/// static POOL: spin::Once<kmap::Pool<Kernel, 1024>> = spin::Once::new();
/// // 8 local slots on each of 4 CPUs, in the fixmap's `KMAP_LOCAL` range.
/// static LOCAL: spin::Once<kmap::Local<'static, Kernel, 8, 4>> = spin::Once::new();
/// ```
///
/// Both need run-time inputs (the window's tables, the attached fixmap, the
/// lowmem limit the firmware reports), so they are created once at boot,
/// into a static whose own `new` is `const`. `tests/platform.rs` builds
/// both in such statics and maps through them.
pub trait Platform {
    /// The paging mode.
    type Mode: PagingMode;
    /// How the pool and the fixmap reach page tables (the kernel's direct
    /// map, on hardware).
    type Access: TableAccess + Sync;
    /// The TLB operations: flushes of every CPU for the pool, of the local
    /// CPU for local slots (`paging_core::cpu::NativeTlb` on a
    /// uniprocessor).
    type Tlb: TlbOps + Sync;
    /// The fixmap's table hooks (`paging_core::NativeHooks` unless the
    /// kernel runs paravirtualised).
    type Hooks: TableHooks + Sync;
    /// The fixmap layout the local slots live in.
    type Fixmap: FixmapLayout;
}

/// A persistent pool of `N` slots on platform `K`, with flush policy `P`
/// (Linux's global flush unless said) and wait hook `W` (spinning unless
/// said): [`PersistentPool`] with the platform's mode, access and TLB.
pub type Pool<K, const N: usize, P = GlobalFlush, W = SpinWait> =
    PersistentPool<<K as Platform>::Mode, <K as Platform>::Access, <K as Platform>::Tlb, P, W, N>;

/// `CPUS` stacks (one unless said) of `DEPTH` local kmap slots on platform
/// `K`, borrowing the fixmap for `'f`: [`LocalSlots`] with the platform's
/// fixmap layout, mode, access, hooks and TLB.
pub type Local<'f, K, const DEPTH: usize, const CPUS: usize = 1> = LocalSlots<
    'f,
    <K as Platform>::Fixmap,
    <K as Platform>::Mode,
    <K as Platform>::Access,
    <K as Platform>::Hooks,
    <K as Platform>::Tlb,
    DEPTH,
    CPUS,
>;
