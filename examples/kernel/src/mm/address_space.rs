//! Address spaces as a process gets them: a new directory whose kernel half
//! is registered with [`crate::mm::kernel_sync`] at creation, and that is torn
//! down with `Mapper::teardown` at exit.
//!
//! Demonstrates `Mapper::create`, `KernelSync::register`/`unregister` and
//! `Mapper::teardown` (every user mapping removed, every user table and the
//! directory given back, the shared kernel half left alone).

use paging_core::cpu::NativeTlb;
use paging_core::{FrameAllocator, FreeStats, Mapper, PhysAddr, TableAccess, VirtAddr, Zone};

use crate::arch::mode::{self, Mode};
use crate::base::error::Error;
use crate::failure;
use crate::mm::kernel_sync;
use crate::mm::layout::PAGE_OFFSET;

/// One address space: its directory, registered for the kernel half.
pub struct AddressSpace<A: TableAccess> {
    mapper: Mapper<Mode, A>,
}

impl<A: TableAccess> AddressSpace<A> {
    /// A new address space: an empty directory (from lowmem), the kernel
    /// half copied in by registration; its user PTE tables will come from
    /// `zone`, reached through `access`.
    pub fn create<F: FrameAllocator + ?Sized>(
        access: A,
        zone: Zone,
        frames: &mut F,
    ) -> Result<Self, Error> {
        let sync = kernel_sync::get().ok_or_else(|| failure!("kernel sync not set up"))?;
        // SAFETY: `access` reaches every frame `frames` hands out. The
        // binding contract: an address space maps only its own frames below
        // PAGE_OFFSET (user or test pages, never kernel memory), and its
        // kernel half is the reference's, copied by the registry.
        let mapper =
            unsafe { Mapper::<Mode, A>::create(access, crate::arch::mode::cpu_features(), frames) }
                .map_err(|e| failure!("new directory: {e}"))?
                .with_pte_zone(zone);
        if let Err(e) = sync.register(mapper.root()) {
            let root = mapper.root();
            // Nothing is mapped yet: teardown only gives the directory back.
            let _ = mapper.teardown(VirtAddr::new(PAGE_OFFSET), &NativeTlb, frames);
            return Err(failure!("registering {root}: {e}"));
        }
        Ok(Self { mapper })
    }

    /// The directory (what goes in CR3).
    pub fn root(&self) -> PhysAddr {
        self.mapper.root()
    }

    /// The mapper, for the user half.
    pub fn mapper(&mut self) -> &mut Mapper<Mode, A> {
        &mut self.mapper
    }

    /// Runs `f` with this address space loaded, then reloads the directory
    /// that was loaded before.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = mode::current_root();
        // SAFETY: the directory was registered at creation, so its kernel
        // half maps the kernel's code, stack, data and fault handler
        // exactly as the reference does; kernel entries made since then
        // are filled in by the lazy path on first touch. The user half is
        // only reached through fault probes.
        unsafe { load(self.root()) };
        let result = f();
        // SAFETY: `previous` was loaded a moment ago and still is a
        // complete directory (nobody frees a loaded one).
        unsafe { load(previous) };
        result
    }

    /// Tears the address space down, as at process exit: unregistered,
    /// every user mapping removed, every user table and the directory freed
    /// (`Mapper::teardown`). The frames the user mappings pointed at stay
    /// the caller's.
    pub fn destroy<F: FrameAllocator + ?Sized>(self, frames: &mut F) -> Result<FreeStats, Error> {
        let root = self.root();
        if mode::current_root() == root {
            return Err(failure!("tearing down {root} while it is loaded"));
        }
        if let Some(sync) = kernel_sync::get() {
            sync.unregister(root)
                .map_err(|e| failure!("unregistering {root}: {e}"))?;
        }
        self.mapper
            .teardown(VirtAddr::new(PAGE_OFFSET), &NativeTlb, frames)
            .map_err(|e| failure!("tearing down {root}: {e}"))
    }
}

impl<A: TableAccess> AddressSpace<A> {
    /// As [`destroy`](Self::destroy), and every user page is handed to
    /// `release` (after the flush through `tlb`, which must reach every CPU
    /// that ran the space): a process's exit
    /// (`Mapper::teardown_releasing`).
    pub fn destroy_releasing<T, F, R>(
        self,
        tlb: &T,
        frames: &mut F,
        release: R,
    ) -> Result<FreeStats, Error>
    where
        T: paging_core::TlbOps + ?Sized,
        F: FrameAllocator + ?Sized,
        R: FnMut(VirtAddr, paging_core::Unmapped),
    {
        let root = self.root();
        if mode::current_root() == root {
            return Err(failure!("tearing down {root} while it is loaded"));
        }
        if let Some(sync) = kernel_sync::get() {
            sync.unregister(root)
                .map_err(|e| failure!("unregistering {root}: {e}"))?;
        }
        self.mapper
            .teardown_releasing(VirtAddr::new(PAGE_OFFSET), tlb, frames, release)
            .map(|(_, freed)| freed)
            .map_err(|e| failure!("tearing down {root}: {e}"))
    }
}

/// Loads the directory at `root`.
///
/// # Safety
/// As `mode::load_root`.
unsafe fn load(root: PhysAddr) {
    // SAFETY: the caller's contract. A root that passed `Mapper::create`
    // (or came from CR3) is always a valid CR3 value.
    if let Err(e) = unsafe { crate::mm::shootdown::load_root(root) } {
        crate::println!("cannot load {root}: {e}");
    }
}
