//! Page tables in highmem (pte-highmem): a [`TableAccess`] for the
//! `paging-core` mapper that reaches lowmem tables through the direct map
//! and highmem tables through a local kmap held only while the table is in
//! use.
//!
//! The mapper holds one table at a time, so one local slot per CPU is enough,
//! and the guard's drop (clear PTE, invalidate) always runs in LIFO order.

use paging_core::{AccessError, PhysFrame, RawTable, TableAccess, VirtTables};

use crate::direct::DirectMap;
use crate::error::KmapError;
use crate::local::{LocalKmap, LocalMapper};

/// Reaches tables in any frame: lowmem directly, highmem through local kmaps
/// on the CPU `cpu()` names.
#[derive(Debug)]
pub struct HighmemTables<'l, S, V, C> {
    local: &'l S,
    virt: V,
    direct: DirectMap,
    cpu: C,
}

impl<'l, S, V, C> HighmemTables<'l, S, V, C>
where
    S: LocalMapper,
    V: VirtTables,
    C: Fn() -> usize,
{
    /// Tables reached through `local` slots, virtual addresses through
    /// `virt`, lowmem through `direct`; `cpu` says which CPU runs.
    ///
    /// # Safety
    /// Every address these three values will give for a frame is one
    /// [`VirtTables::table_at`] may be called with: `direct`'s address of
    /// every frame below its limit, and the address of every mapping
    /// `local` makes, are mapped (by the CPU `virt` dereferences through)
    /// writable to that frame for as long as it is used, and the tables in
    /// those frames are accessed by nothing else but atomically or by the
    /// MMU. The proof covers every later `table(frame)` call: they only
    /// pick among the addresses promised here. Over an
    /// [`IsolatedVirt`](paging_core::IsolatedVirt), use
    /// [`new_isolated`](Self::new_isolated).
    #[allow(unsafe_code)]
    pub const unsafe fn new(local: &'l S, virt: V, direct: DirectMap, cpu: C) -> Self {
        Self {
            local,
            virt,
            direct,
            cpu,
        }
    }
}

impl<'l, S, V, C> HighmemTables<'l, S, V, C>
where
    S: LocalMapper,
    V: paging_core::IsolatedVirt,
    C: Fn() -> usize,
{
    /// [`new`](Self::new) over virtual addresses that are not this
    /// program's memory (the host model's CPU).
    pub const fn new_isolated(local: &'l S, virt: V, direct: DirectMap, cpu: C) -> Self {
        // SAFETY: an isolated `virt` reaches only memory this program does
        // not use, whatever the address.
        #[allow(unsafe_code)]
        unsafe {
            Self::new(local, virt, direct, cpu)
        }
    }
}

/// A table view, plus the local kmap keeping it mapped (if highmem). The
/// view is dropped before the mapping.
#[derive(Debug)]
pub struct HighmemTable<'a, R> {
    view: R,
    _mapping: Option<LocalKmap<'a>>,
}

impl<R: RawTable> RawTable for HighmemTable<'_, R> {
    fn load32(&self, word: usize) -> u32 {
        self.view.load32(word)
    }
    fn store32(&self, word: usize, value: u32) {
        self.view.store32(word, value)
    }
    fn swap32(&self, word: usize, value: u32) -> u32 {
        self.view.swap32(word, value)
    }
    fn compare_exchange32(&self, word: usize, current: u32, new: u32) -> Result<u32, u32> {
        self.view.compare_exchange32(word, current, new)
    }
    fn store_run32(&self, first: usize, count: usize, value: u32, step: u32) {
        self.view.store_run32(first, count, value, step)
    }
    fn store_run64(&self, first: usize, count: usize, value: u64, step: u64) {
        self.view.store_run64(first, count, value, step)
    }
    #[allow(unsafe_code)]
    unsafe fn store_run32_unshared(&self, first: usize, count: usize, value: u32, step: u32) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.view.store_run32_unshared(first, count, value, step) }
    }
    #[allow(unsafe_code)]
    unsafe fn store_run64_unshared(&self, first: usize, count: usize, value: u64, step: u64) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.view.store_run64_unshared(first, count, value, step) }
    }
    fn load64(&self, entry: usize) -> u64 {
        self.view.load64(entry)
    }
    fn store64(&self, entry: usize, value: u64) {
        self.view.store64(entry, value)
    }
    fn swap64(&self, entry: usize, value: u64) -> u64 {
        self.view.swap64(entry, value)
    }
}

// SAFETY: every table is reached through `V`, whose addresses are not this
// program's memory (`IsolatedVirt`).
#[allow(unsafe_code)]
unsafe impl<S, V, C> paging_core::IsolatedTables for HighmemTables<'_, S, V, C>
where
    S: LocalMapper,
    V: paging_core::IsolatedVirt,
    C: Fn() -> usize,
{
}

impl<'l, S, V, C> TableAccess for HighmemTables<'l, S, V, C>
where
    S: LocalMapper,
    V: VirtTables,
    C: Fn() -> usize,
{
    type Table<'a>
        = HighmemTable<'a, V::Table<'a>>
    where
        Self: 'a;

    fn table(&self, frame: PhysFrame) -> Result<Self::Table<'_>, AccessError> {
        if let Some(va) = self.direct.direct_va(frame) {
            return Ok(HighmemTable {
                // SAFETY: `direct`'s address of a frame below its limit:
                // promised to `new`.
                #[allow(unsafe_code)]
                view: unsafe { self.virt.table_at(va) },
                _mapping: None,
            });
        }
        let mapping = self
            .local
            .map_local((self.cpu)(), frame)
            .map_err(|e| match e {
                KmapError::Exhausted => AccessError::NoSlot,
                _ => AccessError::Unreachable(frame),
            })?;
        Ok(HighmemTable {
            // SAFETY: a mapping `local` made of `frame`, held in
            // `_mapping` for as long as the view lives (it is dropped
            // after the view): promised to `new`.
            #[allow(unsafe_code)]
            view: unsafe { self.virt.table_at(mapping.va()) },
            _mapping: Some(mapping),
        })
    }
}
