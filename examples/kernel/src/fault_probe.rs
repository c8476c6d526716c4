//! Deliberate memory accesses whose page faults are caught and reported back
//! to the caller instead of ending the run.
//!
//! A probe stores a *recovery address* (the instruction after the access) in
//! an armed slot, performs one access in inline assembly and disarms the
//! slot. If the access faults, [`catch`] (called by the page-fault handler)
//! records CR2, the error code and the faulting EIP, disarms the slot and
//! returns the recovery address; the handler makes the CPU resume there.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Recovery address of the armed probe, or 0 when no probe is armed.
static RECOVERY_EIP: AtomicU32 = AtomicU32::new(0);
/// Set by [`catch`] when the armed probe faulted.
static FAULTED: AtomicBool = AtomicBool::new(false);
static FAULT_ADDRESS: AtomicU32 = AtomicU32::new(0);
static FAULT_ERROR_CODE: AtomicU32 = AtomicU32::new(0);
static FAULT_EIP: AtomicU32 = AtomicU32::new(0);

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

/// A page-fault error code (Intel SDM vol. 3, "Interrupt 14").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Bit 0: the page was present (protection violation).
    pub const PRESENT: u32 = 1 << 0;
    /// Bit 1: the access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// Bit 2: the access came from user mode.
    pub const USER: u32 = 1 << 2;
    /// Bit 3: a reserved bit was set in a paging entry.
    pub const RESERVED: u32 = 1 << 3;
    /// Bit 4: the access was an instruction fetch.
    pub const FETCH: u32 = 1 << 4;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has = |bit: u32| self.0 & bit != 0;
        f.write_str(if has(Self::PRESENT) {
            "protection"
        } else {
            "not-present"
        })?;
        f.write_str(if has(Self::WRITE) {
            ", write"
        } else {
            ", read"
        })?;
        f.write_str(if has(Self::USER) {
            ", user"
        } else {
            ", supervisor"
        })?;
        if has(Self::RESERVED) {
            f.write_str(", reserved-bit")?;
        }
        if has(Self::FETCH) {
            f.write_str(", fetch")?;
        }
        Ok(())
    }
}

/// Called by the page-fault handler: if a probe is armed, records the fault,
/// disarms the probe and returns where to resume.
pub fn catch(address: u32, error_code: u32, eip: u32) -> Option<u32> {
    let resume = RECOVERY_EIP.swap(0, Ordering::SeqCst);
    if resume == 0 {
        return None;
    }
    FAULT_ADDRESS.store(address, Ordering::SeqCst);
    FAULT_ERROR_CODE.store(error_code, Ordering::SeqCst);
    FAULT_EIP.store(eip, Ordering::SeqCst);
    FAULTED.store(true, Ordering::SeqCst);
    Some(resume)
}

/// Runs `f` (which may use probes) from inside an interrupt or NMI handler
/// without disturbing a probe the interrupted code may have armed: every
/// probe slot is saved before and put back after.
pub fn preserving<R>(f: impl FnOnce() -> R) -> R {
    let saved = (
        RECOVERY_EIP.swap(0, Ordering::SeqCst),
        FAULTED.load(Ordering::SeqCst),
        FAULT_ADDRESS.load(Ordering::SeqCst),
        FAULT_ERROR_CODE.load(Ordering::SeqCst),
        FAULT_EIP.load(Ordering::SeqCst),
    );
    let result = f();
    FAULT_ADDRESS.store(saved.2, Ordering::SeqCst);
    FAULT_ERROR_CODE.store(saved.3, Ordering::SeqCst);
    FAULT_EIP.store(saved.4, Ordering::SeqCst);
    FAULTED.store(saved.1, Ordering::SeqCst);
    RECOVERY_EIP.store(saved.0, Ordering::SeqCst);
    result
}

/// Result of the probe that just ran.
fn outcome() -> Result<(), PageFault> {
    if FAULTED.swap(false, Ordering::SeqCst) {
        Err(PageFault {
            address: FAULT_ADDRESS.load(Ordering::SeqCst),
            error_code: ErrorCode(FAULT_ERROR_CODE.load(Ordering::SeqCst)),
            eip: FAULT_EIP.load(Ordering::SeqCst),
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
    FAULTED.store(false, Ordering::SeqCst);
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
            slot = in(reg) RECOVERY_EIP.as_ptr(),
            address = in(reg) address,
            value = out(reg) value,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
    outcome().map(|()| value)
}

/// Writes `value` to the `u32` at `address`, returning the page fault if it
/// faults.
///
/// # Safety
/// If `address` is mapped and writable, it must be memory that nothing in
/// Rust's view of the program relies on (e.g. a page the kernel owns but
/// never reads through a reference).
pub unsafe fn write_u32(address: usize, value: u32) -> Result<(), PageFault> {
    FAULTED.store(false, Ordering::SeqCst);
    // SAFETY: as in `read_u32`; a write that succeeds lands in memory the
    // caller vouched for.
    unsafe {
        asm!(
            "lea {tmp}, [2f]",
            "mov dword ptr [{slot}], {tmp}",
            "mov dword ptr [{address}], {value}",
            "2:",
            "mov dword ptr [{slot}], 0",
            slot = in(reg) RECOVERY_EIP.as_ptr(),
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
    FAULTED.store(false, Ordering::SeqCst);
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
            slot = in(reg) RECOVERY_EIP.as_ptr(),
            target = in(reg) address,
            saved = out(reg) _,
            tmp = out(reg) _,
        );
    }
    outcome()
}
