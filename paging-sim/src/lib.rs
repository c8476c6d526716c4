#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
//!
//! # What is in it
//!
//! The module map (the crate docs above, from the README, say what it is
//! for):
//!
//! Tests use it to state what the *hardware* would see, not what the library
//! believes:
//!
//! - [`SimRam`]: sparse physical memory over the whole 52-bit space.
//! - [`SimAccess`] / [`SimTable`]: the physical view of that RAM as the
//!   crate's [`TableAccess`](paging_core::TableAccess) / [`RawTable`](paging_core::RawTable),
//!   optionally limited to lowmem, optionally reporting every store to a
//!   closure ([`ObservedStore`]) so a test can run the MMU on every
//!   intermediate state of an update.
//! - [`Mmu`]: one CPU. It walks the tables exactly as SDM Vol. 3A ch. 4
//!   describes 32-bit and PAE paging (PDPTE latching at CR3 load, reserved
//!   bits, rights combined over levels, Accessed/Dirty updates with
//!   compare-exchange), with a [`Tlb`] that keeps stale translations and
//!   cached PDEs until an `invlpg`, a CR3 load or a CR4.PGE toggle removes
//!   them. It implements [`TlbOps`](paging_core::TlbOps) and counts every flush
//!   ([`TlbStats`]). Each translation reports the [`MemoryType`] the leaf's
//!   PAT/PCD/PWT bits select in the CPU's IA32_PAT ([`SimConfig::pat`],
//!   [`PAT_POWER_ON`] by default). [`SimCpus`] is several CPUs with shootdown.
//! - [`MmuVirt`]: kernel virtual addresses as tables
//!   ([`VirtTables`](paging_core::VirtTables)), every access translated by one
//!   simulated CPU and its TLB (what a kmap'd page table looks like).
//! - [`ZonedAllocator`] and [`ScatteredAllocator`]: test
//!   [`FrameAllocator`](paging_core::FrameAllocator)s with leak and double-free
//!   tracking and failure injection; the scattered one never hands out two
//!   adjacent frames.
//! - [`HostileAccess`] and [`ScriptedAllocator`]: a hostile world for
//!   property tests: table access that counts, records every store and
//!   fails at the k-th call; an allocator that hands out any frame in the
//!   52-bit space, in any order, and runs dry on command.
//!
//! The model is written from the manual, independently of the backends'
//! entry code, and contains no `unsafe` code (only the `unsafe impl`s that
//! mark its table accesses as [`IsolatedTables`](paging_core::IsolatedTables)).
//!
//! ```
//! use paging_sim::{Access, Mmu, SimConfig, SimRam};
//! use paging_core::{PhysAddr, VirtAddr};
//!
//! let ram = SimRam::new();
//! let pa = |x| PhysAddr::new(x).unwrap();
//! // Page directory at 0x1000, page table at 0x2000, page at 0x5000.
//! ram.write_u32(pa(0x1000 + 4 * 0x300), 0x2000 | 0b011).unwrap(); // P | RW
//! ram.write_u32(pa(0x2000 + 4 * 0x001), 0x5000 | 0b011).unwrap();
//! let cpu = Mmu::new(&ram, SimConfig::two_level());
//! cpu.load_cr3(0x1000).unwrap();
//!
//! let va = VirtAddr::new(0xC000_1234);
//! assert_eq!(cpu.translate(va, Access::WRITE).unwrap().pa, pa(0x5234));
//! // The CPU set Accessed on both entries and Dirty on the PTE.
//! assert_eq!(ram.read_u32(pa(0x2004)).unwrap(), 0x5000 | 0x63);
//! // A user access to a supervisor page faults with P | U.
//! assert_eq!(cpu.translate(va, Access::USER_READ).unwrap_err().code, 0b101);
//! ```

mod alloc;
mod config;
mod cpus;
mod fault;
mod hostile;
mod linear;
mod machine;
mod memtype;
mod mmu;
mod ram;
mod table;
mod tlb;
mod virt;
mod walk;
mod xen;

pub use alloc::{Contiguous, ScatteredAllocator, ZonedAllocator};
pub use config::{SimConfig, SimPaging};
pub use cpus::SimCpus;
pub use fault::{Access, Cr3Fault, GeneralProtection, PageFault};
pub use hostile::{HostileAccess, HostileTable, ScriptedAllocator, StoreRecord, net_changes, undo};
pub use machine::{MACHINE_HIGHMEM, MACHINE_LOWMEM, Machine};
pub use memtype::{MemoryType, PAT_POWER_ON};
pub use mmu::{HwTranslation, Mmu};
pub use ram::{SimError, SimRam};
pub use table::{ObservedStore, SimAccess, SimTable, StoreObserver, StoreOp};
pub use tlb::{PdeCacheEntry, Tlb, TlbEntry, TlbStats};
pub use virt::{MmuVirt, VirtTable};
pub use xen::{GuestHooks, HypercallAccess, HypercallTable, Hypervisor, Violation};

// Tests share the model between threads.
static_assertions::assert_impl_all!(SimRam: Send, Sync);
static_assertions::assert_impl_all!(Mmu<'static>: Send, Sync);
static_assertions::assert_impl_all!(SimCpus<'static>: Send, Sync);
static_assertions::assert_impl_all!(MmuVirt<'static>: Send, Sync);
static_assertions::assert_impl_all!(SimAccess<'static>: Send, Sync, Copy);
static_assertions::assert_impl_all!(SimTable<'static>: Send, Sync, Copy);
static_assertions::assert_impl_all!(ZonedAllocator: Send, Sync);
static_assertions::assert_impl_all!(ScatteredAllocator: Send, Sync);
