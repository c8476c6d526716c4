//! TLB shootdown on this kernel: the `tlb-shootdown` crate's protocol,
//! with the local APIC as the way an IPI is sent.
//!
//! - [`SHOOTDOWN`] is the one `tlb_shootdown::Shootdown` of the kernel;
//!   each CPU brings itself online in it as it starts
//!   ([`crate::smp`]), with interrupts off.
//! - The IPI on [`SHOOTDOWN_VECTOR`] calls
//!   [`interrupt`] (an interrupt gate: IF is clear, which is the crate's
//!   masking rule), which services this CPU's mailbox.
//! - [`KernelTlb`] is the `TlbOps` every kernel mapping change flushes
//!   through (the kmap pool, vmalloc, the fixmap's shared slots): each call
//!   is one shootdown round to every online CPU, made with interrupts off.
//!   Local kmaps flush with `NativeTlb` alone: their slots are per CPU.
//! - [`AddressSpaceTlb`] flushes the CPUs that have run one address space.
//! - [`load_root`] is the kernel's CR3 switch: the kmap pool's slots are
//!   not global, so a CR3 load drops them, and the switch is recorded as a
//!   full flush for the per-CPU TLB generations (the pool's `Generations`
//!   policy then skips this CPU for slots cleared before the switch).

use core::sync::atomic::{AtomicUsize, Ordering};

use paging_core::cpu::NativeTlb;
use paging_core::{PhysAddr, TlbMark, TlbOps, VirtAddr};
use tlb_shootdown::{CpuSet, IpiPlatform, Shootdown, ShootdownTlb};

use crate::base::config::CPUS;
use crate::{arch::apic, arch::cpu, arch::gdt, arch::mode};

/// Vector of the TLB-shootdown IPI.
pub const SHOOTDOWN_VECTOR: u8 = 0xF0;

/// CPU index to local APIC ID (`fn(usize) -> Option<u32>`, registered by
/// [`crate::smp`], which starts the CPUs: [`set_apic_ids`]); 0 until then.
static APIC_IDS: AtomicUsize = AtomicUsize::new(0);

/// Registers how a CPU's index maps to its local APIC ID.
pub fn set_apic_ids(apic_id: fn(usize) -> Option<u32>) {
    APIC_IDS.store(apic_id as usize, Ordering::Release);
}

/// CPU `cpu`'s local APIC ID, once [`crate::smp`] registered the map.
fn apic_id(cpu: usize) -> Option<u32> {
    let apic_id = APIC_IDS.load(Ordering::Acquire);
    if apic_id == 0 {
        return None;
    }
    // SAFETY: stored from a `fn(usize) -> Option<u32>` by `set_apic_ids`.
    let apic_id: fn(usize) -> Option<u32> = unsafe { core::mem::transmute(apic_id) };
    apic_id(cpu)
}

/// How a shootdown IPI is sent: one fixed-vector IPI per target, by APIC ID.
pub struct ApicIpi;

impl IpiPlatform for ApicIpi {
    fn current_cpu(&self) -> usize {
        gdt::cpu_index()
    }

    fn send(&self, targets: CpuSet) {
        let Some(apic) = apic::get() else { return };
        for cpu in targets {
            if let Some(id) = apic_id(cpu) {
                // A refused IPI shows as a missing acknowledgement.
                let _ = apic.send_fixed(id, SHOOTDOWN_VECTOR);
            }
        }
    }

    fn relax(&self) {
        crate::base::spin::spin("TLB shootdown acknowledgements", 0);
        core::hint::spin_loop();
    }

    fn acked(&self) {
        crate::base::spin::progress();
    }
}

/// The kernel's shootdown.
pub static SHOOTDOWN: Shootdown<ApicIpi, CPUS> = Shootdown::new(ApicIpi);

/// Called for the shootdown vector, with interrupts off.
pub fn interrupt() {
    SHOOTDOWN.service(&NativeTlb);
}

/// Brings the running CPU online in [`SHOOTDOWN`] (flushing its TLB).
/// Called once per CPU, with interrupts off.
pub fn cpu_online() {
    let _ = SHOOTDOWN.set_online(gdt::cpu_index(), &NativeTlb);
}

/// Every online CPU's TLB: kernel mappings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelTlb;

fn kernel<R>(f: impl FnOnce(&ShootdownTlb<'_, ApicIpi, NativeTlb, CPUS>) -> R) -> R {
    cpu::without_interrupts(|| f(&ShootdownTlb::kernel(&SHOOTDOWN, &NativeTlb)))
}

impl TlbOps for KernelTlb {
    fn flush_page(&self, va: VirtAddr) {
        kernel(|t| t.flush_page(va));
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        kernel(|t| t.flush_range(start, pages));
    }
    fn flush_all(&self) {
        kernel(|t| t.flush_all());
    }
    fn flush_everything(&self) {
        kernel(|t| t.flush_everything());
    }
    fn mark(&self) -> TlbMark {
        SHOOTDOWN.mark()
    }
    fn flush_range_since(&self, start: VirtAddr, pages: u32, since: TlbMark) {
        kernel(|t| t.flush_range_since(start, pages, since));
    }
}

/// The TLBs of the CPUs that have run one address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpaceTlb(pub CpuSet);

impl AddressSpaceTlb {
    fn with<R>(&self, f: impl FnOnce(&ShootdownTlb<'_, ApicIpi, NativeTlb, CPUS>) -> R) -> R {
        cpu::without_interrupts(|| f(&ShootdownTlb::address_space(&SHOOTDOWN, &NativeTlb, self.0)))
    }
}

impl TlbOps for AddressSpaceTlb {
    fn flush_page(&self, va: VirtAddr) {
        self.with(|t| t.flush_page(va));
    }
    fn flush_range(&self, start: VirtAddr, pages: u32) {
        self.with(|t| t.flush_range(start, pages));
    }
    fn flush_all(&self) {
        self.with(|t| t.flush_all());
    }
    fn flush_everything(&self) {
        self.with(|t| t.flush_everything());
    }
}

/// Loads the directory at `root` on this CPU, recorded as a full flush of
/// the non-global entries the generations track (the pool's slots).
///
/// # Safety
/// As `mode::load_root`.
pub unsafe fn load_root(root: PhysAddr) -> Result<(), &'static str> {
    cpu::without_interrupts(|| {
        let start = SHOOTDOWN.begin_full_flush();
        // SAFETY: the caller's contract.
        let result = unsafe { mode::load_root(root) };
        if result.is_ok() {
            SHOOTDOWN.record_full_flush(start);
        }
        result
    })
}
