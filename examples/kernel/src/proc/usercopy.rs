//! The one path from the kernel to user memory: [`copy_from_user`] and
//! [`copy_to_user`]. Every system call that reads or writes user memory
//! goes through them, and no other kernel code touches a user page (the
//! scheduler and the fault handler reach user frames through kmaps, never
//! through user addresses).
//!
//! - **Range check.** The whole range must lie in the user half, below
//!   `PAGE_OFFSET`, without wrapping: otherwise [`err::FAULT`] and nothing
//!   is touched. This is what keeps a user pointer from naming the kernel,
//!   the fixmap, the pkmap window or the local APIC.
//! - **Fault probe.** Each byte is read or written through a
//!   [`fault_probe`] access: a page the process could fault in
//!   (demand-zero, copy-on-write) is resolved by the page-fault handler as
//!   for ring 3, anything else ends the copy with [`err::FAULT`] instead of
//!   a kernel fault.
//! - **SMAP.** While [`crate::arch::guards`] has SMAP on, the copy runs between
//!   `stac` and `clac` (EFLAGS.AC): any other supervisor access to a user
//!   page faults.

use crate::arch::fault_probe;
use crate::mm::layout::PAGE_OFFSET;
use crate::proc::user::err;

/// Whether `[address, address + len)` lies in the user half.
pub fn user_range(address: u32, len: usize) -> bool {
    u32::try_from(len)
        .ok()
        .and_then(|len| address.checked_add(len))
        .is_some_and(|end| end <= PAGE_OFFSET)
}

/// Copies `dst.len()` bytes from user address `src` into `dst`.
/// [`err::FAULT`] if the range leaves the user half or a page cannot be
/// read (`dst` may then hold part of the data).
pub fn copy_from_user(dst: &mut [u8], src: u32) -> Result<(), u32> {
    if !user_range(src, dst.len()) {
        return Err(err::FAULT);
    }
    crate::arch::guards::user_access(|| {
        for (i, byte) in dst.iter_mut().enumerate() {
            // SAFETY: a user address (checked above) of the address space
            // loaded now; user pages are ordinary memory, and a fault the
            // handler cannot resolve is caught by the probe.
            *byte = unsafe { fault_probe::read_u8(src as usize + i) }.map_err(|_| err::FAULT)?;
        }
        Ok(())
    })
}

/// Copies `src` to user address `dst`. [`err::FAULT`] if the range leaves
/// the user half or a page cannot be written (a read-only or unmapped one:
/// part of the data may have been written).
pub fn copy_to_user(dst: u32, src: &[u8]) -> Result<(), u32> {
    if !user_range(dst, src.len()) {
        return Err(err::FAULT);
    }
    crate::arch::guards::user_access(|| {
        for (i, byte) in src.iter().enumerate() {
            // SAFETY: a user address (checked above) of the address space
            // loaded now: memory of the process, which nothing in the
            // kernel holds a reference to.
            unsafe { fault_probe::write_u8(dst as usize + i, *byte) }.map_err(|_| err::FAULT)?;
        }
        Ok(())
    })
}
