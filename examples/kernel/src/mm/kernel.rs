//! What the boot sequence built, handed to the self-tests.

use fixmap::ContiguousWindow;
use paging_core::PhysAddr;

use crate::arch::mode::Mode;
use crate::boot::context::BootContext;
use crate::mm::early_fixmap::KernelFixmapT;
use crate::mm::layout::Layout;

/// The booted kernel.
pub struct Kernel {
    /// What the loader told the kernel.
    pub context: BootContext,
    /// Where lowmem ends.
    pub layout: Layout,
    /// Physical root of the final kernel tables (CR3).
    pub root: PhysAddr,
    /// The fixmap, on its final contiguous window.
    pub fixmap: &'static KernelFixmapT,
    /// That window.
    pub window: ContiguousWindow<Mode>,
    /// The VGA banner written on the early console, before the handover.
    pub banner: &'static str,
}
