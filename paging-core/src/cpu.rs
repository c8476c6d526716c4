//! The real x86 instructions (32-bit targets only).
//!
//! The module is compiled for `target_arch = "x86"` only: its functions run
//! privileged instructions that no other target has. `cargo doc` shows it
//! on every target (it is declared under `cfg(any(target_arch = "x86",
//! doc))`), so the guide's [`NativeTlb`], [`CpuPaging`] and
//! [`PagingFeatures`] are in a host's docs too; off x86 it exists only in
//! documentation builds, which compile no code, so nothing in it can be
//! called there.
//!
//! Small wrappers around the privileged instructions paging needs: control
//! registers, MSRs (IA32_PAT included: [`write_pat`]), `invlpg`, and `cpuid`,
//! plus [`NativeTlb`], the
//! [`TlbOps`] of a bare-metal uniprocessor kernel.
//!
//! Reading a register and invalidating TLB entries cannot break memory
//! safety, so those wrappers are safe functions. They still need CPL 0: run
//! in ring 3 (a user-space test, for example) they raise #GP. Writing a
//! control register or an MSR changes how every later memory access is
//! translated, so those are `unsafe fn`s.

use core::arch::asm;

use crate::addr::{PhysAddr, VirtAddr};
use crate::cache::PatLayout;
use crate::flush::TlbOps;

/// CR0.WP (bit 16): supervisor writes honour read-only pages.
pub const CR0_WP: u32 = 1 << 16;
/// CR0.NW (bit 29): not write-through (with CD, the cache stops being
/// coherent; never set here).
pub const CR0_NW: u32 = 1 << 29;
/// CR0.CD (bit 30): cache disable (no-fill cache mode while NW is clear).
pub const CR0_CD: u32 = 1 << 30;
/// CR0.PG (bit 31): paging enabled.
pub const CR0_PG: u32 = 1 << 31;

/// CR4.PSE (bit 4): 4 MiB pages in 2-level paging.
pub const CR4_PSE: u32 = 1 << 4;
/// CR4.PAE (bit 5): PAE paging (64-bit entries) when CR0.PG is set.
pub const CR4_PAE: u32 = 1 << 5;
/// CR4.PGE (bit 7): global pages survive CR3 reloads.
pub const CR4_PGE: u32 = 1 << 7;

/// The IA32_PAT model-specific register (0x277): the eight Page Attribute
/// Table entries (see [`PatLayout`]).
pub const IA32_PAT: u32 = 0x277;

/// The IA32_EFER model-specific register.
pub const IA32_EFER: u32 = 0xC000_0080;
/// IA32_EFER.NXE (bit 11): bit 63 of PAE entries is XD instead of reserved.
pub const EFER_NXE: u64 = 1 << 11;

/// Read CR0.
pub fn read_cr0() -> u32 {
    let value: u32;
    // SAFETY: reading CR0 has no side effect on memory or flags.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Write CR0.
///
/// # Safety
/// The new value must describe a state the running code survives: enabling
/// paging (PG) needs CR3 to point at tables that map the currently executing
/// code, its stack and its data at their current addresses; clearing WP lets
/// the kernel write through read-only mappings.
pub unsafe fn write_cr0(value: u32) {
    // SAFETY: the caller upholds the contract above. No `nomem`: the write
    // must stay ordered with the memory accesses around it.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Read CR3 (the physical address of the current PGD, plus PWT/PCD).
pub fn read_cr3() -> u32 {
    let value: u32;
    // SAFETY: reading CR3 has no side effect on memory or flags.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Write CR3: switch to another hierarchy and flush every non-global TLB
/// entry (in PAE mode, also re-read the four PDPTEs).
///
/// # Safety
/// `value` must hold the physical address of a valid PGD (page directory or
/// PAE PDPT) for the current mode, whose tables map the executing code, its
/// stack and every piece of memory the kernel goes on to use. In PAE mode,
/// the PDPTEs must not have reserved bits set (the load raises #GP).
pub unsafe fn write_cr3(value: u32) {
    // SAFETY: the caller upholds the contract above; no `nomem`, so table
    // writes made before it are not moved past it.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Read CR4.
pub fn read_cr4() -> u32 {
    let value: u32;
    // SAFETY: reading CR4 has no side effect on memory or flags.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Write CR4.
///
/// # Safety
/// Changing PAE or PSE while paging is on changes how every entry is read:
/// the tables must be valid for the new format. Setting a bit the CPU does
/// not support raises #GP.
pub unsafe fn write_cr4(value: u32) {
    // SAFETY: the caller upholds the contract above.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Read the model-specific register `msr`.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP), and reading it must not have a
/// side effect the caller is not prepared for (some MSRs clear on read).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller promised the MSR exists and may be read.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (hi as u64) << 32 | lo as u64
}

/// Write the model-specific register `msr`.
///
/// # Safety
/// The MSR must exist and accept `value` (else #GP), and the new setting must
/// be one the running code is prepared for (for example clearing
/// EFER.NXE while entries carry XD makes those entries reserved-bit faults).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags));
    }
}

/// The four registers `cpuid` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Run `cpuid` with EAX = `leaf` and ECX = `subleaf`.
///
/// Every CPU this crate targets (i586 and later) has `cpuid`. A leaf above
/// the CPU's maximum returns the data of its highest basic leaf, so check
/// leaf 0 (or 0x8000_0000 for extended leaves) first.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx);
    // SAFETY: `cpuid` only writes the four named registers. On x86-32, EBX
    // may be an operand (LLVM reserves ESI, not EBX, as its base pointer).
    unsafe {
        asm!("cpuid", inout("eax") leaf => eax, out("ebx") ebx, inout("ecx") subleaf => ecx,
            out("edx") edx, options(nomem, nostack, preserves_flags));
    }
    CpuidResult { eax, ebx, ecx, edx }
}

/// CPUID.1:EDX.PSE (bit 3): 4 MiB pages in 2-level paging.
pub const CPUID_1_EDX_PSE: u32 = 1 << 3;
/// CPUID.1:EDX.PAE (bit 6): PAE paging.
pub const CPUID_1_EDX_PAE: u32 = 1 << 6;
/// CPUID.1:EDX.PGE (bit 13): global pages.
pub const CPUID_1_EDX_PGE: u32 = 1 << 13;
/// CPUID.1:EDX.PAT (bit 16): the Page Attribute Table and IA32_PAT.
pub const CPUID_1_EDX_PAT: u32 = 1 << 16;
/// CPUID.80000001H:EDX.NX (bit 20): the XD bit and EFER.NXE.
pub const CPUID_80000001_EDX_NX: u32 = 1 << 20;
/// CPUID.1:EDX.PSE-36 (bit 17): physical address bits 39:32 in 4 MiB
/// 2-level entries.
pub const CPUID_1_EDX_PSE36: u32 = 1 << 17;

/// MAXPHYADDR, as SDM Vol. 3A 4.1.4 says to find it: CPUID.80000008H:EAX
/// bits 7:0 if that leaf exists; otherwise 36 if the CPU has PAE or PSE-36,
/// else 32.
pub fn max_phys_addr() -> u32 {
    if cpuid(0x8000_0000, 0).eax >= 0x8000_0008 {
        return cpuid(0x8000_0008, 0).eax & 0xFF;
    }
    if basic_features() & (CPUID_1_EDX_PAE | CPUID_1_EDX_PSE36) != 0 {
        36
    } else {
        32
    }
}

impl crate::CpuFeatures {
    /// The features of this CPU once paging runs in mode `M` with
    /// `enabled` (what [`CpuPaging::enable`] was given): NX, PSE and PGE as
    /// enabled (EFER.NXE, CR4.PSE and CR4.PGE are what the CPU honours, not
    /// what CPUID offers), PAT and PSE-36 from CPUID, and MAXPHYADDR
    /// ([`max_phys_addr`]). `NO_EXECUTE` is refused without NX
    /// ([`NxPolicy::Refuse`](crate::NxPolicy::Refuse)); opt in to dropping
    /// it with [`with_nx_policy`](crate::CpuFeatures::with_nx_policy).
    pub fn from_cpuid<M: crate::PagingMode>(enabled: PagingFeatures) -> Self {
        let edx = basic_features();
        Self {
            nx: M::SUPPORTS_NX && enabled.no_execute,
            pat: edx & CPUID_1_EDX_PAT != 0,
            pge: enabled.global_pages,
            pse: enabled.large_pages,
            pse36: edx & CPUID_1_EDX_PSE36 != 0,
            max_phys_bits: max_phys_addr(),
            nx_policy: crate::NxPolicy::Refuse,
        }
    }
}

/// CPUID.1:EDX, the basic feature flags (PSE, PAE, PGE, ...).
pub fn basic_features() -> u32 {
    cpuid(1, 0).edx
}

/// Whether the CPU has the XD bit (CPUID.80000001H:EDX bit 20).
pub fn has_nx() -> bool {
    cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && cpuid(0x8000_0001, 0).edx & CPUID_80000001_EDX_NX != 0
}

/// Whether the CPU has the Page Attribute Table (CPUID.1:EDX bit 16).
/// Without it, IA32_PAT does not exist and the PAT bit of an entry is
/// ignored or reserved.
pub fn has_pat() -> bool {
    basic_features() & CPUID_1_EDX_PAT != 0
}

/// The raw IA32_PAT value, or `None` if the CPU has no PAT.
pub fn read_pat_msr() -> Option<u64> {
    if !has_pat() {
        return None;
    }
    // SAFETY: CPUID says IA32_PAT exists; reading it has no side effect.
    Some(unsafe { rdmsr(IA32_PAT) })
}

/// The current PAT layout, or `None` if the CPU has no PAT. An IA32_PAT
/// value with a reserved entry cannot be there (WRMSR refuses it), so it
/// also reads as `None`.
pub fn read_pat() -> Option<PatLayout> {
    read_pat_msr().and_then(|value| PatLayout::from_msr(value).ok())
}

/// `wbinvd`: write back and invalidate every cache of this CPU.
fn wbinvd() {
    // SAFETY: write-back-and-invalidate keeps memory's contents (dirty lines
    // are written first); it only costs time. No `nomem`: stores before it
    // must reach the cache before it is flushed.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) };
}

/// Program IA32_PAT with `layout`, on this CPU, following the cache and TLB
/// procedure the SDM requires for a PAT change (Vol. 3A 11.12.4, which
/// refers to the MTRR procedure of 11.11.8): with interrupts off, enter
/// no-fill cache mode (CR0.CD = 1, NW = 0), `wbinvd`, flush the TLB
/// (global entries included), write the MSR, `wbinvd` and flush the TLB
/// again, then restore CR0 and the interrupt flag.
///
/// # Safety
/// - The CPU must have the PAT ([`has_pat`]): without it the MSR write
///   raises #GP.
/// - Every CPU of the system must end up with the same PAT (the SDM's
///   rule): on a multiprocessor system the caller runs this on every CPU,
///   with the others held in a rendezvous so that none uses a page whose
///   type is changing meanwhile. This function only handles the CPU it
///   runs on.
/// - No live mapping may change to a type that breaks what the code using
///   it assumes (for example, a page that becomes WC loses ordering of
///   its writes), and no physical page may end up mapped with two
///   conflicting types (the SDM does not support aliasing; a WC page must
///   never alias a cacheable one). [`PatLayout::RECOMMENDED`] only changes
///   entries 4 and 5 from the power-on layout, so mappings made without the
///   PAT bit keep their type.
pub unsafe fn write_pat(layout: PatLayout) {
    without_interrupts(|| {
        let cr0 = read_cr0();
        // SAFETY: CD with NW clear is the no-fill mode the SDM's procedure
        // asks for; caches stay coherent, only slower. CR0 is restored below.
        unsafe { write_cr0((cr0 | CR0_CD) & !CR0_NW) };
        wbinvd();
        NativeTlb.flush_everything();
        // SAFETY: the caller promised the CPU has the PAT, and `to_msr` only
        // produces defined encodings with reserved bits clear, so WRMSR
        // accepts it; the caller's contract covers what the new types mean
        // for existing mappings.
        unsafe { wrmsr(IA32_PAT, layout.to_msr()) };
        wbinvd();
        NativeTlb.flush_everything();
        // SAFETY: the CR0 value the CPU had on entry.
        unsafe { write_cr0(cr0) };
    });
}

/// Invalidate the TLB entries (global ones included) and the
/// paging-structure-cache entries for the page containing `va`.
pub fn invlpg(va: VirtAddr) {
    // SAFETY: `invlpg` only drops cached translations; the next access
    // re-walks the tables. No `nomem`: table writes before it stay before it.
    unsafe { asm!("invlpg [{}]", in(reg) va.as_u32(), options(nostack, preserves_flags)) };
}

/// EFLAGS.IF (bit 9).
const EFLAGS_IF: u32 = 1 << 9;

/// Run `f` with maskable interrupts disabled, restoring IF afterwards.
fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let flags: u32;
    // SAFETY: saves EFLAGS through the stack (balanced push/pop) and clears
    // IF; the previous IF is restored below.
    unsafe { asm!("pushfd", "pop {}", "cli", out(reg) flags, options(nomem)) };
    let result = f();
    if flags & EFLAGS_IF != 0 {
        // SAFETY: interrupts were enabled on entry; this re-enables them.
        unsafe { asm!("sti", options(nomem, nostack)) };
    }
    result
}

/// The TLB of the CPU this code runs on: `invlpg`, a CR3 reload, and a
/// CR4.PGE toggle.
///
/// This is the uniprocessor implementation. A multiprocessor kernel wraps it
/// with shootdown IPIs to the other CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeTlb;

impl TlbOps for NativeTlb {
    fn flush_page(&self, va: VirtAddr) {
        invlpg(va);
    }

    fn flush_all(&self) {
        // SAFETY: reloading the value CR3 already holds keeps the same
        // hierarchy; the only effect is the flush (and a PDPTE re-read,
        // which is the point in PAE mode).
        unsafe { write_cr3(read_cr3()) };
    }

    fn flush_everything(&self) {
        without_interrupts(|| {
            let cr4 = read_cr4();
            if cr4 & CR4_PGE != 0 {
                // SAFETY: clearing and restoring PGE only flushes the TLB,
                // global entries included (SDM 4.10.4.1); interrupts are off
                // so nothing runs between the two writes.
                unsafe {
                    write_cr4(cr4 & !CR4_PGE);
                    write_cr4(cr4);
                }
            } else {
                // SAFETY: as in `flush_all`: same CR3, only a flush. Without
                // PGE there are no global entries for it to miss.
                unsafe { write_cr3(read_cr3()) };
            }
        });
    }
}

/// What to turn on with paging, the same in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagingFeatures {
    /// Large pages at the PMD level (CR4.PSE in 2-level mode; always there
    /// in PAE mode).
    pub large_pages: bool,
    /// Global pages (CR4.PGE).
    pub global_pages: bool,
    /// Execute-disable (EFER.NXE; PAE only).
    pub no_execute: bool,
}

/// Turning paging on and switching roots, written once for every mode: a
/// kernel generic over `M: CpuPaging` boots in either. The backends
/// implement it (`paging_x86_2level::TwoLevel`, `paging_x86_pae::Pae`).
///
/// ```no_run
/// use paging_core::cpu::{CpuPaging, PagingFeatures};
/// use paging_core::{AnyError, PhysAddr};
///
/// /// Paging on, whichever mode the kernel was built for.
/// fn paging_on<M: CpuPaging>(root: PhysAddr) -> Result<(), AnyError> {
///     let supported = M::supported()?;
///     let features = PagingFeatures { global_pages: supported.global_pages, ..supported };
///     // SAFETY: (the kernel's own reasons) paging is off, and the
///     // hierarchy at `root` maps this code, its stack and its data.
///     unsafe { M::enable(root, features) }
/// }
/// ```
pub trait CpuPaging: crate::PagingMode {
    /// What this CPU supports in this mode (an error if it cannot run the
    /// mode at all, like PAE on a CPU without it).
    fn supported() -> Result<PagingFeatures, crate::AnyError>;

    /// Turn paging on with the hierarchy at `root`, with `features` (a
    /// feature the CPU or the mode lacks is refused, changing nothing).
    ///
    /// # Safety
    /// Paging is off, and the hierarchy at `root` is a complete one of this
    /// mode that maps the code executing this call, its stack and
    /// everything touched next, at the addresses they are used at; no
    /// entry uses a feature not in `features` (PS without `large_pages`, XD
    /// without `no_execute`, G without `global_pages` is harmless).
    unsafe fn enable(root: PhysAddr, features: PagingFeatures) -> Result<(), crate::AnyError>;

    /// Switch the running CPU to the hierarchy at `root` (a CR3 load; in PAE
    /// mode the CPU re-reads the four PDPTEs).
    ///
    /// # Safety
    /// Paging is on in this mode, and the hierarchy at `root` maps the
    /// running code, its stack and everything it touches next as the
    /// current one does (the kernel half, typically, shared by sync), with
    /// no reserved bit in a PAE PDPTE.
    unsafe fn load_root(root: PhysAddr) -> Result<(), crate::AnyError>;

    /// The root the running CPU uses (CR3's address bits).
    fn current_root() -> PhysAddr;
}
