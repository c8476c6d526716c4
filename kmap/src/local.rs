//! Local (atomic) kmaps: per-CPU stacks of fixmap slots, for contexts that
//! cannot wait (interrupts, page-fault handlers, page-table walks).
//!
//! Each CPU owns `DEPTH` consecutive slots of a fixmap range. A map pushes:
//! it writes the slot's PTE and invalidates that one page. An unmap pops: it
//! clears the PTE (and invalidates) *before* the slot is free again, so an
//! interrupt that maps in between never reuses a live slot. Unmaps must be
//! LIFO: [`LocalKmap::try_unmap`] refuses an out-of-order unmap with a typed
//! error and changes nothing; dropping a guard out of order defers its unmap
//! until everything above it is gone and counts a LIFO violation.
//!
//! With `guard_slots`, every other slot is left unmapped, so each mapping
//! has an unmapped page on both sides and an overrun off either end of it
//! faults instead of reading the neighbouring mapping (Linux's
//! `DEBUG_KMAP_LOCAL`).

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use fixmap::{FixIndex, FixRange, Fixmap, FixmapError, FixmapLayout};
use paging_core::{
    MapFlags, PAGE_SIZE, PagingMode, PhysFrame, TableAccess, TableHooks, TlbOps, VirtAddr,
};

use crate::direct::DirectMap;
use crate::error::KmapError;
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, dekker_fence};

/// Something that hands out local kmaps (implemented by [`LocalSlots`]).
pub trait LocalMapper {
    /// Map `frame` on `cpu`'s stack (or return its direct-map address).
    /// `cpu` is the CPU running the call, and the task stays on it while
    /// the guard lives (see [`LocalSlots::map`]).
    fn map_local(&self, cpu: usize, frame: PhysFrame) -> Result<LocalKmap<'_>, KmapError>;
}

/// A frame number kept as two 32-bit halves: on i586 a 64-bit atomic load
/// compiles to x87 `fild`/`fistp`, and kernel code must not touch the FPU.
/// Only the owning CPU writes and reads it, so the halves need no ordering
/// between them.
struct PfnCell {
    lo: AtomicU32,
    hi: AtomicU32,
}

impl PfnCell {
    fn new() -> Self {
        Self {
            lo: AtomicU32::new(0),
            hi: AtomicU32::new(0),
        }
    }

    fn set(&self, pfn: u64) {
        self.lo.store(pfn as u32, Ordering::Relaxed);
        self.hi.store((pfn >> 32) as u32, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        u64::from(self.lo.load(Ordering::Relaxed))
            | u64::from(self.hi.load(Ordering::Relaxed)) << 32
    }
}

/// The per-CPU state of one stack.
///
/// Used as documented, one CPU index is only ever used by one thread of
/// execution at a time plus its nested interrupts, which push and pop
/// above it: every change of `depth` is then undone, LIFO, before the
/// interrupted code looks again. Two threads passing the same index break
/// that (issue 19, item 9), so `depth` only moves by compare-and-swap from
/// the value the mover expects; a move that finds another value leaves its
/// slot *released*, and whoever next lowers the stack to that slot (the
/// owner of the slot above, or the mover itself if that is already gone)
/// pops it. A slot's PTE is cleared only by the push that set it (`owned`).
/// The accounting stays consistent, a full stack stays
/// [`KmapError::Exhausted`], and no slot is cleared under a live guard.
struct CpuStack<const D: usize> {
    depth: AtomicUsize,
    frames: [PfnCell; D],
    released: [AtomicBool; D],
    owned: [AtomicBool; D],
}

// Not `const`: under `--cfg loom` the atomics are loom's, made at run time.
impl<const D: usize> CpuStack<D> {
    fn new() -> Self {
        Self {
            depth: AtomicUsize::new(0),
            frames: core::array::from_fn(|_| PfnCell::new()),
            released: core::array::from_fn(|_| AtomicBool::new(false)),
            owned: core::array::from_fn(|_| AtomicBool::new(false)),
        }
    }
}

/// Counters of the local slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Successful local maps (slot or direct).
    pub maps: u64,
    /// Guards dropped out of LIFO order (their unmap was deferred).
    pub lifo_violations: u64,
}

/// Local mappings of one task, taken off a CPU at a context switch by
/// [`LocalSlots::save`] and put back by [`LocalSlots::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLocal<const D: usize> {
    cpu: usize,
    depth: usize,
    frames: [u64; D],
    released: [bool; D],
}

impl<const D: usize> SavedLocal<D> {
    /// How many mappings were saved.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The CPU they belong to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

/// `CPUS` stacks of `DEPTH` local kmap slots in a fixmap range.
pub struct LocalSlots<'f, L, M, A, H, T, const DEPTH: usize, const CPUS: usize>
where
    L: FixmapLayout,
    M: PagingMode,
    A: TableAccess,
    H: TableHooks,
{
    fixmap: &'f Fixmap<L, M, A, H>,
    first: usize,
    stride: usize,
    direct: DirectMap,
    flags: MapFlags,
    tlb: T,
    cpus: [CpuStack<DEPTH>; CPUS],
    /// Reports, not part of the protocol: plain atomics under loom too.
    maps: core::sync::atomic::AtomicUsize,
    lifo_violations: core::sync::atomic::AtomicUsize,
}

impl<L, M, A, H, T, const DEPTH: usize, const CPUS: usize> fmt::Debug
    for LocalSlots<'_, L, M, A, H, T, DEPTH, CPUS>
where
    L: FixmapLayout,
    M: PagingMode,
    A: TableAccess,
    H: TableHooks,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depths: [usize; CPUS] =
            core::array::from_fn(|c| self.cpus[c].depth.load(Ordering::Relaxed));
        f.debug_struct("LocalSlots")
            .field("first", &self.first)
            .field("guard_slots", &(self.stride == 2))
            .field("depths", &depths)
            .field("maps", &self.maps.load(Ordering::Relaxed))
            .field(
                "lifo_violations",
                &self.lifo_violations.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// A fixmap refusal as a kmap error. `new` has checked the layout, so what
/// remains is a slot someone else set behind our back (`SlotInUse`: no slot
/// for us) and the entry and access errors.
fn fixmap_error(e: FixmapError) -> KmapError {
    match e {
        FixmapError::Entry(e) => KmapError::Entry(e),
        FixmapError::Access(e) => KmapError::Access(e),
        _ => KmapError::Exhausted,
    }
}

impl<'f, L, M, A, H, T, const DEPTH: usize, const CPUS: usize>
    LocalSlots<'f, L, M, A, H, T, DEPTH, CPUS>
where
    L: FixmapLayout,
    M: PagingMode,
    A: TableAccess + Sync,
    H: TableHooks + Sync,
    T: TlbOps + Sync,
{
    /// Stacks in the fixmap range `range`, which must hold
    /// `CPUS * DEPTH` slots (twice that with `guard_slots`): a smaller one
    /// is [`KmapError::RangeTooSmall`], with both counts. A range whose
    /// slots the fixmap's window does not reach is
    /// [`KmapError::BadLayout`], with the first slot it misses.
    pub fn new<const FIRST: usize, const LEN: usize>(
        fixmap: &'f Fixmap<L, M, A, H>,
        range: FixRange<L, FIRST, LEN>,
        guard_slots: bool,
        direct: DirectMap,
        tlb: T,
    ) -> Result<Self, KmapError> {
        let stride = if guard_slots { 2 } else { 1 };
        let needed = CPUS * DEPTH * stride;
        if needed > range.len() {
            return Err(KmapError::RangeTooSmall {
                needed,
                slots: range.len(),
            });
        }
        // Every slot's PTE must be reachable now: the fixmap is borrowed
        // shared from here on, so its tables cannot be attached later.
        if needed > 0 {
            let low = FixIndex::<L>::new(FIRST + needed - 1).map_err(fixmap_error)?;
            let high = FixIndex::<L>::new(FIRST).map_err(fixmap_error)?;
            let (start, end) = (fixmap.virt(low), fixmap.virt(high).as_u64() + PAGE_SIZE);
            if !fixmap.window().is_some_and(|w| w.covers(start, end)) {
                return Err(KmapError::BadLayout { va: start });
            }
        }
        Ok(Self {
            fixmap,
            first: FIRST,
            stride,
            direct,
            flags: MapFlags::KERNEL_RW | MapFlags::ACCESSED | MapFlags::DIRTY,
            tlb,
            cpus: core::array::from_fn(|_| CpuStack::new()),
            maps: core::sync::atomic::AtomicUsize::new(0),
            lifo_violations: core::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Write slot PTEs with `flags` (`PRESENT` is added) instead of the
    /// default writable + accessed + dirty: for example with `NO_EXECUTE` on
    /// a PAE kernel that keeps data non-executable (pick it from the CPU's
    /// features: `features.no_execute()`). Flags the mode cannot express,
    /// or that the CPU of the fixmap's window cannot carry (if a window is
    /// attached), are refused here rather than at the first map.
    pub fn with_flags(mut self, flags: MapFlags) -> Result<Self, KmapError> {
        let flags = flags | MapFlags::PRESENT;
        let probe = PhysFrame::containing_address(paging_core::PhysAddr::ZERO);
        <M::Pte as paging_core::PteEntry>::page(probe, flags).map_err(KmapError::Entry)?;
        if let Some(window) = self.fixmap.window() {
            window.pte(probe, flags).map_err(KmapError::Entry)?;
        }
        self.flags = flags;
        Ok(self)
    }

    /// The flags slot PTEs are written with.
    pub const fn flags(&self) -> MapFlags {
        self.flags
    }

    /// The fixmap index of `cpu`'s slot at `depth`. With guard slots the
    /// slot is the second of its pair: fixmap addresses grow downwards, so
    /// the guard of the pair sits *above* the slot and the next pair's guard
    /// below it, and an overrun in either direction faults.
    fn index(&self, cpu: usize, depth: usize) -> Result<FixIndex<L>, KmapError> {
        FixIndex::new(self.first + (cpu * DEPTH + depth) * self.stride + self.stride - 1)
            .map_err(fixmap_error)
    }

    /// The address of `cpu`'s slot at `depth` (for tests and debuggers).
    pub fn slot_va(&self, cpu: usize, depth: usize) -> Option<VirtAddr> {
        (cpu < CPUS && depth < DEPTH)
            .then(|| self.index(cpu, depth).ok().map(|i| self.fixmap.virt(i)))
            .flatten()
    }

    /// How many local maps `cpu` holds now.
    pub fn depth(&self, cpu: usize) -> Option<usize> {
        self.cpus.get(cpu).map(|s| s.depth.load(Ordering::Acquire))
    }

    /// Counters so far.
    pub fn stats(&self) -> LocalStats {
        LocalStats {
            maps: self.maps.load(Ordering::Relaxed) as u64,
            lifo_violations: self.lifo_violations.load(Ordering::Relaxed) as u64,
        }
    }

    /// Map `frame` on `cpu`: push a slot, write its PTE, invalidate it.
    /// Never waits; a full stack is [`KmapError::Exhausted`].
    ///
    /// # The per-CPU rule
    ///
    /// The slot is pushed on `cpu`'s stack and invalidated in the TLB of the
    /// CPU that runs this call, so:
    ///
    /// - `cpu` must be the CPU running the call (its own index, as Linux's
    ///   `kmap_local_page` uses `smp_processor_id`);
    /// - the task must not migrate to another CPU while it holds the guard
    ///   (disable migration, or preemption, around the mapping);
    /// - if it is preempted meanwhile, the context switch must take its
    ///   local mappings off the CPU with [`save`](Self::save) and put them
    ///   back with [`restore`](Self::restore) (or the next task's maps and
    ///   unmaps interleave with its own on one stack);
    /// - interrupts may map and unmap on the same CPU in between: they push
    ///   above the task's slots and pop before returning.
    ///
    /// What the types enforce: the guard is neither `Send` nor `Sync`
    /// ([`LocalKmap`]), so it cannot be handed to, or shared with, another
    /// thread of execution, and it borrows these slots, so they outlive it.
    /// Which CPU runs the call is the kernel's to know: a wrong `cpu` below
    /// the CPU count is not detected. [`map_on`](Self::map_on) takes a
    /// [`ThisCpu`](crate::ThisCpu) token instead, which only code that
    /// promised (`unsafe`) to be on that CPU can make and which cannot move
    /// to another thread.
    pub fn map(&self, cpu: usize, frame: PhysFrame) -> Result<LocalKmap<'_>, KmapError> {
        let stack = self.cpus.get(cpu).ok_or(KmapError::BadCpu { cpu })?;
        if let Some(va) = self.direct.direct_va(frame) {
            self.maps.fetch_add(1, Ordering::Relaxed);
            return Ok(LocalKmap {
                owner: None,
                cpu,
                depth: 0,
                va,
                frame,
                _on_this_cpu: PhantomData,
            });
        }
        // Claim the depth first: an interrupt arriving after this point
        // pushes above us instead of onto our slot.
        let mut depth = stack.depth.load(Ordering::SeqCst);
        loop {
            if depth >= DEPTH {
                return Err(KmapError::Exhausted);
            }
            match stack
                .depth
                .compare_exchange(depth, depth + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => depth = now,
            }
        }
        let set = self.index(cpu, depth).and_then(|idx| {
            self.fixmap
                .set(idx, frame, self.flags, &self.tlb)
                .map_err(fixmap_error)
                .map(|()| idx)
        });
        let idx = match set {
            Ok(idx) => idx,
            Err(e) => {
                // Give the depth back; if someone pushed above meanwhile
                // (a second thread on this CPU index), leave the slot
                // released for whoever pops down to it. It is not ours, so
                // nobody clears its PTE.
                if stack
                    .depth
                    .compare_exchange(depth + 1, depth, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    self.defer(stack, cpu, depth);
                }
                return Err(e);
            }
        };
        stack.frames[depth].set(frame.number());
        stack.released[depth].store(false, Ordering::SeqCst);
        stack.owned[depth].store(true, Ordering::Release);
        self.maps.fetch_add(1, Ordering::Relaxed);
        Ok(LocalKmap {
            owner: Some(self),
            cpu,
            depth,
            va: self.fixmap.virt(idx),
            frame,
            _on_this_cpu: PhantomData,
        })
    }

    /// [`map`](Self::map) on the CPU `cpu` stands for: the per-CPU rule's
    /// first part ("`cpu` is the CPU running the call") is the token's
    /// contract, and the token cannot leave this thread. The rest of the
    /// rule (no migration while the guard lives, [`save`](Self::save) and
    /// [`restore`](Self::restore) at a context switch) is unchanged. An
    /// index at or above the CPU count is still [`KmapError::BadCpu`].
    pub fn map_on(
        &self,
        cpu: crate::ThisCpu,
        frame: PhysFrame,
    ) -> Result<LocalKmap<'_>, KmapError> {
        self.map(cpu.index(), frame)
    }

    /// Pop `cpu`'s top slot if it is `depth`, then every deferred slot below.
    fn pop(&self, cpu: usize, depth: usize) -> Result<(), KmapError> {
        let stack = self.cpus.get(cpu).ok_or(KmapError::BadCpu { cpu })?;
        let top = stack.depth.load(Ordering::SeqCst);
        if top != depth + 1 {
            return Err(KmapError::OutOfOrder {
                depth,
                top: top.saturating_sub(1),
            });
        }
        self.pop_from(stack, cpu, depth);
        Ok(())
    }

    /// Pop slot `d`, the top of `stack`, then every released slot below
    /// it. Each slot is cleared (and invalidated) before the depth drops
    /// below it, so a push never finds a live PTE in its slot.
    fn pop_from(&self, stack: &CpuStack<DEPTH>, cpu: usize, mut d: usize) {
        loop {
            if stack.owned[d].swap(false, Ordering::AcqRel)
                && let Ok(idx) = self.index(cpu, d)
            {
                let _ = self.fixmap.clear(idx, &self.tlb);
            }
            stack.released[d].store(false, Ordering::SeqCst);
            if stack
                .depth
                .compare_exchange(d + 1, d, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // Someone pushed above in between: only a second thread on
                // this CPU index can. Whoever pops down to `d` finishes.
                self.defer(stack, cpu, d);
                return;
            }
            // The depth's store-buffering handshake with `defer` (nothing
            // outside the model checker, see `sync::dekker_fence`).
            dekker_fence();
            // Claim the slot below if its guard is gone (exactly one of us
            // and a concurrent `defer` of it wins the swap).
            if d == 0 || !stack.released[d - 1].swap(false, Ordering::SeqCst) {
                return;
            }
            d -= 1;
        }
    }

    /// Leave slot `d` released: the pop that lowers the stack to it pops it
    /// too. If that pop already happened (the stack is at `d + 1` now),
    /// nobody would look again, so pop it here. The flag and the depth are
    /// written and read sequentially consistently: of this check and that
    /// pop's, at least one sees the other's write.
    fn defer(&self, stack: &CpuStack<DEPTH>, cpu: usize, d: usize) {
        // A swap rather than a store: the same `xchg` on x86 (a
        // sequentially consistent store is one), and loom orders it with the
        // other side's swap of the flag exactly (it places a plain store
        // concurrent with a read-modify-write loosely, and reported a stack
        // left at depth 1 that no sequentially consistent order allows).
        stack.released[d].swap(true, Ordering::SeqCst);
        dekker_fence();
        if stack.depth.load(Ordering::SeqCst) == d + 1
            && stack.released[d].swap(false, Ordering::SeqCst)
        {
            self.pop_from(stack, cpu, d);
        }
    }

    /// Take every local mapping off `cpu` (clearing and invalidating each
    /// slot) so another task can use the slots; put them back with
    /// [`restore`](Self::restore). The task must not migrate meanwhile: its
    /// guards keep the addresses of this CPU's slots.
    pub fn save(&self, cpu: usize) -> Result<SavedLocal<DEPTH>, KmapError> {
        let stack = self.cpus.get(cpu).ok_or(KmapError::BadCpu { cpu })?;
        let depth = stack.depth.load(Ordering::Acquire);
        let mut saved = SavedLocal {
            cpu,
            depth,
            frames: [0; DEPTH],
            released: [false; DEPTH],
        };
        for d in (0..depth).rev() {
            saved.frames[d] = stack.frames[d].get();
            saved.released[d] = stack.released[d].load(Ordering::Relaxed);
            if stack.owned[d].swap(false, Ordering::AcqRel)
                && let Ok(idx) = self.index(cpu, d)
            {
                let _ = self.fixmap.clear(idx, &self.tlb);
            }
            stack.depth.store(d, Ordering::Release);
        }
        Ok(saved)
    }

    /// Put back mappings taken off `saved.cpu()` by [`save`](Self::save).
    /// The CPU's stack must be empty.
    pub fn restore(&self, saved: &SavedLocal<DEPTH>) -> Result<(), KmapError> {
        let cpu = saved.cpu;
        let stack = self.cpus.get(cpu).ok_or(KmapError::BadCpu { cpu })?;
        if stack.depth.load(Ordering::Acquire) != 0 {
            return Err(KmapError::RestoreMismatch { cpu });
        }
        for d in 0..saved.depth {
            let frame = PhysFrame::from_number(saved.frames[d])
                .map_err(|_| KmapError::RestoreMismatch { cpu })?;
            let idx = self.index(cpu, d)?;
            if let Err(e) = self.fixmap.set(idx, frame, self.flags, &self.tlb) {
                // Undo what was restored so far: the stack stays empty.
                for u in (0..d).rev() {
                    stack.owned[u].store(false, Ordering::Release);
                    if let Ok(i) = self.index(cpu, u) {
                        let _ = self.fixmap.clear(i, &self.tlb);
                    }
                }
                stack.depth.store(0, Ordering::Release);
                return Err(fixmap_error(e));
            }
            stack.frames[d].set(saved.frames[d]);
            stack.owned[d].store(true, Ordering::Release);
            stack.released[d].store(saved.released[d], Ordering::Relaxed);
            stack.depth.store(d + 1, Ordering::Release);
        }
        Ok(())
    }
}

impl<L, M, A, H, T, const DEPTH: usize, const CPUS: usize> LocalMapper
    for LocalSlots<'_, L, M, A, H, T, DEPTH, CPUS>
where
    L: FixmapLayout,
    M: PagingMode,
    A: TableAccess + Sync,
    H: TableHooks + Sync,
    T: TlbOps + Sync,
{
    fn map_local(&self, cpu: usize, frame: PhysFrame) -> Result<LocalKmap<'_>, KmapError> {
        self.map(cpu, frame)
    }
}

/// What a guard needs from its slots, without their type parameters.
trait LocalOps: Sync {
    fn pop_dyn(&self, cpu: usize, depth: usize) -> Result<(), KmapError>;
    fn defer_dyn(&self, cpu: usize, depth: usize);
}

impl<L, M, A, H, T, const DEPTH: usize, const CPUS: usize> LocalOps
    for LocalSlots<'_, L, M, A, H, T, DEPTH, CPUS>
where
    L: FixmapLayout,
    M: PagingMode,
    A: TableAccess + Sync,
    H: TableHooks + Sync,
    T: TlbOps + Sync,
{
    fn pop_dyn(&self, cpu: usize, depth: usize) -> Result<(), KmapError> {
        self.pop(cpu, depth)
    }

    fn defer_dyn(&self, cpu: usize, depth: usize) {
        if let Some(stack) = self.cpus.get(cpu) {
            self.defer(stack, cpu, depth % DEPTH);
        }
        self.lifo_violations.fetch_add(1, Ordering::Relaxed);
    }
}

/// A local mapping: valid on its CPU until unmapped, in LIFO order.
///
/// # Neither `Send` nor `Sync`
///
/// The guard stays on the CPU (thread of execution) that mapped it. Its slot
/// is an entry of that CPU's per-CPU stack: unmapping it on another CPU would
/// pop the *other* CPU's stack (failing as out of order, or worse, freeing a
/// slot that CPU still uses while this one stays mapped), and the slot's PTE
/// was only invalidated in the mapping CPU's TLB, so another CPU reading
/// through [`va`](Self::va) may see a stale translation. So the guard
/// cannot be sent to another thread, nor shared with one:
///
/// ```compile_fail
/// # use fixmap::{Fixmap, WindowBuilder, fixmap_layout};
/// # use kmap::{DirectMap, LocalSlots};
/// # use paging_core::{PhysAddr, PhysFrame, VirtAddr};
/// # use paging_sim::{Machine, SimAccess, SimRam};
/// # use paging_x86_pae::Pae;
/// # fixmap_layout! { pub struct Fix { top: 0xFFFF_F000; LOCAL[2]; } }
/// # let ram = SimRam::new();
/// # let mut m = Machine::<Pae>::new(&ram);
/// # let (window, _) = WindowBuilder::new(VirtAddr::new(0xFFE0_0000), 1 << 32).unwrap()
/// #     .build(&mut m.mapper, &m.mmu, &mut m.alloc).unwrap();
/// # let mut fix = Fixmap::<Fix, Pae, _>::new(SimAccess::new(&ram));
/// # fix.attach(window).unwrap();
/// # let direct = DirectMap::new(0xC000_0000, 0);
/// # let slots = LocalSlots::<_, _, _, _, _, 2, 1>::new(&fix, Fix::LOCAL, false, direct, &m.mmu).unwrap();
/// # let page = PhysFrame::from_start_address(PhysAddr::new(0x1000_0000).unwrap()).unwrap();
/// let mapped = slots.map(0, page).unwrap();
/// std::thread::scope(|s| {
///     // error[E0277]: `*const ()` cannot be sent between threads safely
///     s.spawn(move || drop(mapped));
/// });
/// ```
///
/// (A pool mapping, [`Kmap`](crate::Kmap), is a shared slot and may move.)
#[must_use = "dropping the guard unmaps the page immediately"]
pub struct LocalKmap<'a> {
    owner: Option<&'a dyn LocalOps>,
    cpu: usize,
    depth: usize,
    va: VirtAddr,
    frame: PhysFrame,
    /// Neither `Send` nor `Sync`: the mapping belongs to its CPU.
    _on_this_cpu: PhantomData<*const ()>,
}

impl fmt::Debug for LocalKmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKmap")
            .field("cpu", &self.cpu)
            .field("depth", &self.depth)
            .field("va", &self.va)
            .field("frame", &self.frame)
            .finish()
    }
}

impl LocalKmap<'_> {
    /// Where the page is mapped.
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// The mapped page.
    pub fn frame(&self) -> PhysFrame {
        self.frame
    }

    /// Position on the CPU's stack (0 for direct-mapped lowmem).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether the page is reached through the direct map (no slot used).
    pub fn is_direct(&self) -> bool {
        self.owner.is_none()
    }

    /// Unmap now. Out of LIFO order this fails with
    /// [`KmapError::OutOfOrder`], changes nothing, and gives the guard back.
    pub fn try_unmap(self) -> Result<(), (Self, KmapError)> {
        let Some(owner) = self.owner else {
            return Ok(());
        };
        match owner.pop_dyn(self.cpu, self.depth) {
            Ok(()) => {
                core::mem::forget(self);
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }
}

impl Drop for LocalKmap<'_> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner
            && owner.pop_dyn(self.cpu, self.depth).is_err()
        {
            owner.defer_dyn(self.cpu, self.depth);
        }
    }
}
