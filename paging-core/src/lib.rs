#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod access;
pub mod addr;
pub mod alloc;
pub mod cache;
#[cfg(any(target_arch = "x86", doc))]
#[cfg_attr(docsrs, doc(cfg(target_arch = "x86")))]
pub mod cpu;
pub mod entry;
pub mod error;
pub mod fault;
pub mod features;
pub mod flags;
pub mod flush;
pub mod hooks;
pub mod mapper;
pub mod mappings;
pub mod mode;
pub mod pgtbuf;
pub mod range;
pub mod sync;
pub mod table;
pub mod walk;

pub use access::{
    AccessError, DirectVirt, IsolatedTables, IsolatedVirt, OffsetAccess, TableAccess, VirtTables,
};
pub use addr::{AddrError, PAGE_SIZE, Page, PageSize, PhysAddr, PhysFrame, VirtAddr};
pub use alloc::{FrameAllocator, NoFrames, Zone};
pub use cache::{CacheType, CacheTypeError, PatLayout};
pub use entry::{Entry, EntryError, Level, PgdEntry, PmdEntry, PteEntry};
pub use error::{
    AnyError, AttrError, Detail, ErrorKind, FreeError, InstallError, MapError, PagingError,
    RootError, TranslateError, UnmapError, UpdateFlagsError,
};
pub use fault::PageFaultError;
pub use features::{CpuFeature, CpuFeatures, NxPolicy};
pub use flags::MapFlags;
pub use flush::{Flush, FlushBatch, TlbMark, TlbOps};
pub use hooks::{NativeHooks, TableHooks};
pub use mapper::{
    AttrChange, AttrStats, FreeStats, FreshTables, HarvestStats, LargePages, Mapper, MergeStats,
    ProtectStats, Replaced, StatusBit, TEARDOWN_BATCH, UnmapStats, Unmapped,
};
pub use mappings::{Dump, Mapping, Mappings};
pub use mode::PagingMode;
pub use pgtbuf::{PgtBuf, PgtBufReport};
pub use range::{FrameRange, PageRange};
pub use sync::{
    KernelSync, SyncError, SyncOutcome, SyncedAttrStats, SyncedMergeStats, sync_kernel_entry,
};
pub use table::{PtrTable, RawTable};
pub use walk::{Slot, Translation, Walk, Walker};
