//! Deliberate memory accesses whose page faults are caught and reported back
//! to the caller instead of ending the run.
//!
//! A probe stores a *recovery address* (the instruction after the access) in
//! an armed slot, performs one access in inline assembly and disarms the
//! slot. If the access faults, [`catch`] (called by the page-fault handler)
//! records CR2, the error code and the faulting EIP, disarms the slot and
//! returns the recovery address; the handler makes the CPU resume there.
//!
//! The state is per CPU (indexed by [`gdt::cpu_index`]): CPUs probe at the
//! same time without seeing each other's faults.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use paging_core::PageFaultError;

use crate::arch::gdt;
use crate::base::config::CPUS;

/// One CPU's probe state.
struct Probe {
    /// Recovery address of the armed probe, or 0 when no probe is armed.
    recovery_eip: AtomicU32,
    /// Set by [`catch`] when the armed probe faulted.
    faulted: AtomicBool,
    fault_address: AtomicU32,
    fault_error_code: AtomicU32,
    fault_eip: AtomicU32,
}

static PROBES: [Probe; CPUS] = [const {
    Probe {
        recovery_eip: AtomicU32::new(0),
        faulted: AtomicBool::new(false),
        fault_address: AtomicU32::new(0),
        fault_error_code: AtomicU32::new(0),
        fault_eip: AtomicU32::new(0),
    }
}; CPUS];

/// This CPU's probe state.
fn probe() -> &'static Probe {
    &PROBES[gdt::cpu_index() % CPUS]
}

/// A page fault caught by a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting linear address (CR2).
    pub address: u32,
    /// The error code the CPU pushed.
    pub error_code: ErrorCode,
    /// Address of the faulting instruction.
    pub eip: u32,
}

/// A page-fault error code (Intel SDM vol. 3, "Interrupt 14"), as the
/// probes record it; printed and decoded by the crates'
/// [`paging_core::PageFaultError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Bit 0: the page was present (protection violation).
    pub const PRESENT: u32 = PageFaultError::PRESENT.bits();
    /// Bit 1: the access was a write.
    pub const WRITE: u32 = PageFaultError::WRITE.bits();
    /// Bit 2: the access came from user mode.
    pub const USER: u32 = PageFaultError::USER.bits();
    /// Bit 4: the access was an instruction fetch.
    pub const FETCH: u32 = PageFaultError::INSTRUCTION_FETCH.bits();

    /// The crates' type for it.
    pub fn decoded(self) -> PageFaultError {
        PageFaultError::from_bits_retain(self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.decoded(), f)
    }
}

/// Called by the page-fault handler: if a probe is armed, records the fault,
/// disarms the probe and returns where to resume.
pub fn catch(address: u32, error_code: u32, eip: u32) -> Option<u32> {
    let p = probe();
    let resume = p.recovery_eip.swap(0, Ordering::SeqCst);
    if resume == 0 {
        return None;
    }
    p.fault_address.store(address, Ordering::SeqCst);
    p.fault_error_code.store(error_code, Ordering::SeqCst);
    p.fault_eip.store(eip, Ordering::SeqCst);
    p.faulted.store(true, Ordering::SeqCst);
    Some(resume)
}

/// Runs `f` (which may use probes) from inside an interrupt or NMI handler
/// without disturbing a probe the interrupted code may have armed: every
/// probe slot is saved before and put back after.
pub fn preserving<R>(f: impl FnOnce() -> R) -> R {
    let p = probe();
    let saved = (
        p.recovery_eip.swap(0, Ordering::SeqCst),
        p.faulted.load(Ordering::SeqCst),
        p.fault_address.load(Ordering::SeqCst),
        p.fault_error_code.load(Ordering::SeqCst),
        p.fault_eip.load(Ordering::SeqCst),
    );
    let result = f();
    p.fault_address.store(saved.2, Ordering::SeqCst);
    p.fault_error_code.store(saved.3, Ordering::SeqCst);
    p.fault_eip.store(saved.4, Ordering::SeqCst);
    p.faulted.store(saved.1, Ordering::SeqCst);
    p.recovery_eip.store(saved.0, Ordering::SeqCst);
    result
}

/// Result of the probe that just ran.
fn outcome() -> Result<(), PageFault> {
    let p = probe();
    if p.faulted.swap(false, Ordering::SeqCst) {
        Err(PageFault {
            address: p.fault_address.load(Ordering::SeqCst),
            error_code: ErrorCode(p.fault_error_code.load(Ordering::SeqCst)),
            eip: p.fault_eip.load(Ordering::SeqCst),
        })
    } else {
        Ok(())
    }
}

/// Reads the `u32` at `address`, returning the page fault if it faults.
///
/// # Safety
/// If `address` is mapped, it must be ordinary memory that may be read as a
/// `u32` (not MMIO with read side effects).
pub unsafe fn read_u32(address: usize) -> Result<u32, PageFault> {
    let value: u32;
    let p = probe();
    p.faulted.store(false, Ordering::SeqCst);
    // SAFETY: the read either succeeds on ordinary memory (caller's
    // contract) or faults; the page-fault handler then resumes at label 2
    // (the recovery address stored first). The slot is disarmed either way.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "mov {value}, dword ptr [{address}]",
            "2:",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) p.recovery_eip.as_ptr(),
            address = in(reg) address,
            value = out(reg) value,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
    outcome().map(|()| value)
}

/// Reads the byte at `address`, returning the page fault if it faults.
///
/// # Safety
/// As [`read_u32`].
pub unsafe fn read_u8(address: usize) -> Result<u8, PageFault> {
    let value: u32;
    let p = probe();
    p.faulted.store(false, Ordering::SeqCst);
    // SAFETY: as in `read_u32`, for one byte.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "xor {value:e}, {value:e}",
            "mov {value:l}, byte ptr [{address}]",
            "2:",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) p.recovery_eip.as_ptr(),
            address = in(reg) address,
            value = out(reg_abcd) value,
            tmp = out(reg) _,
            options(nostack),
        );
    }
    outcome().map(|()| value as u8)
}

/// Writes the byte `value` at `address`, returning the page fault if it
/// faults.
///
/// # Safety
/// As [`write_u32`].
pub unsafe fn write_u8(address: usize, value: u8) -> Result<(), PageFault> {
    let p = probe();
    p.faulted.store(false, Ordering::SeqCst);
    // SAFETY: as in `write_u32`, for one byte.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "mov byte ptr [{address}], {value}",
            "2:",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) p.recovery_eip.as_ptr(),
            address = in(reg) address,
            value = in(reg_byte) value,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
    outcome()
}

/// Writes `value` to the `u32` at `address`, returning the page fault if it
/// faults.
///
/// # Safety
/// If `address` is mapped and writable, it must be memory that nothing in
/// Rust's view of the program relies on (e.g. a page the kernel owns but
/// never reads through a reference).
pub unsafe fn write_u32(address: usize, value: u32) -> Result<(), PageFault> {
    let p = probe();
    p.faulted.store(false, Ordering::SeqCst);
    // SAFETY: as in `read_u32`; a write that succeeds lands in memory the
    // caller vouched for.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "mov dword ptr [{address}], {value}",
            "2:",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) p.recovery_eip.as_ptr(),
            address = in(reg) address,
            value = in(reg) value,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
    outcome()
}

/// Calls the code at `address`, returning the page fault if fetching it
/// faults (an instruction fetch from a no-execute page, say).
///
/// The `call` has pushed its return address when the fetch faults, so the
/// stack pointer is saved before the call and put back at the recovery
/// address.
///
/// # Safety
/// If `address` is executable, the code there must return at once and
/// change nothing but the flags (a lone `ret`).
pub unsafe fn call(address: usize) -> Result<(), PageFault> {
    let p = probe();
    p.faulted.store(false, Ordering::SeqCst);
    // SAFETY: the callee returns at once (caller's contract), or the fetch
    // faults and the handler resumes at label 2 with ESP four bytes lower,
    // which the `mov esp` undoes. `saved` holds ESP across the call: the
    // callee clobbers no register, and on a fault the handler's `popad`
    // restores every register as it was at the fault.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "mov {saved}, esp",
            "call {target}",
            "2:",
            "mov esp, {saved}",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) p.recovery_eip.as_ptr(),
            target = in(reg) address,
            saved = out(reg) _,
            tmp = out(reg) _,
        );
    }
    outcome()
}
