//! Tests that the boot page tables protect what they should and that the
//! page-fault handler reports faults precisely (CR2 and error code).

use crate::arch::fault_probe::{self, ErrorCode, PageFault};
use crate::mm::kernel::Kernel;
use crate::mm::layout;
use crate::selftests::harness::TestResult;
use crate::{ensure, fail, println};

/// An address the final tables leave unmapped (the empty vmalloc area).
const UNMAPPED: usize = layout::UNMAPPED_PROBE as usize;
/// Value of `ro_probe_word` (assembly below).
const RO_PROBE_VALUE: u32 = 0x5EED_1234;

core::arch::global_asm!(
    r#"
    .section .rodata.ro_probe, "a"
    .p2align 2
    .global ro_probe_word
ro_probe_word:
    .long {value}
    "#,
    value = const RO_PROBE_VALUE,
);

unsafe extern "C" {
    /// A word in `.rodata` that no Rust code reads through a reference.
    static ro_probe_word: u32;
}

/// Checks that reading `address` faults with exactly `error_code` and CR2 =
/// `address`, at an instruction inside the kernel.
fn expect_read_fault(address: usize, error_code: u32) -> TestResult {
    // SAFETY: if `address` is (wrongly) mapped, it is kernel RAM in the boot
    // window or nothing at all (no MMIO is mapped), so a read is harmless.
    let result = unsafe { fault_probe::read_u32(address) };
    let fault = match result {
        Ok(value) => fail!("read of {address:#x} succeeded (value {value:#x})"),
        Err(fault) => fault,
    };
    check_fault(fault, address, error_code)
}

/// Checks that `fault` was at CR2 = `address` with exactly `error_code`, at
/// an instruction inside the kernel's read-only image.
pub(super) fn check_fault(fault: PageFault, address: usize, error_code: u32) -> TestResult {
    ensure!(
        fault.address as usize == address,
        "CR2 {:#x}, expected {address:#x}",
        fault.address
    );
    ensure!(
        fault.error_code == ErrorCode(error_code),
        "error code {:#x} ({}), expected {error_code:#x} ({})",
        fault.error_code.0,
        fault.error_code,
        ErrorCode(error_code)
    );
    let text = layout::read_only();
    ensure!(
        text.contains(&(fault.eip as usize)),
        "faulting EIP {:#x} is outside the kernel text",
        fault.eip
    );
    Ok(())
}

pub fn read_of_unmapped_address_faults_not_present(_: &Kernel) -> TestResult {
    // Not present, read, supervisor: error code 0.
    expect_read_fault(UNMAPPED, 0)?;
    expect_read_fault(UNMAPPED + 0x1234, 0)
}

pub fn low_identity_mapping_is_gone(_: &Kernel) -> TestResult {
    // The boot code identity-mapped the kernel for the jump to the higher
    // half and removed that mapping before calling kmain; the final tables
    // have no identity map at all.
    expect_read_fault(layout::kernel_image_phys().start, 0)
}

pub fn stack_guard_pages_are_unmapped(_: &Kernel) -> TestResult {
    let stacks = [
        (
            "boot stack",
            layout::stack_guard_page(),
            layout::boot_stack(),
        ),
        (
            "double-fault stack",
            layout::double_fault_guard_page(),
            layout::double_fault_stack(),
        ),
    ];
    for (name, guard, stack) in stacks {
        ensure!(
            guard.end == stack.start,
            "the {name}'s guard {guard:#x?} is not right below it ({stack:#x?})"
        );
        expect_read_fault(guard.start, 0)?;
        expect_read_fault(guard.end - 4, 0)?;
        // The stack itself, just above the guard, is mapped.
        // SAFETY: the lowest stack word is ordinary kernel RAM.
        let read = unsafe { fault_probe::read_u32(stack.start) };
        ensure!(read.is_ok(), "bottom of the {name} unreadable: {read:?}");
        println!(
            "    {name} {:#x}..{:#x}: guard page {:#x} faults not-present",
            stack.start, stack.end, guard.start
        );
    }
    println!("    NMIs run on the interrupted stack (interrupt gate): no stack of their own");
    Ok(())
}

pub fn write_to_read_only_kernel_page_faults(_: &Kernel) -> TestResult {
    let address = &raw const ro_probe_word as usize;
    ensure!(
        layout::read_only().contains(&address),
        "probe word {address:#x} is not in the read-only range"
    );
    // SAFETY: `ro_probe_word` is never read through a Rust reference, so
    // even a (wrongly) successful write would not break any Rust invariant.
    let result = unsafe { fault_probe::write_u32(address, !RO_PROBE_VALUE) };
    let fault = match result {
        Ok(()) => fail!("write to read-only {address:#x} succeeded"),
        Err(fault) => fault,
    };
    // Present (protection violation), write, supervisor.
    check_fault(fault, address, ErrorCode::PRESENT | ErrorCode::WRITE)?;
    // SAFETY: reading the probe word is a plain RAM read.
    let value = unsafe { fault_probe::read_u32(address) };
    ensure!(
        value == Ok(RO_PROBE_VALUE),
        "probe word changed to {value:?}"
    );
    Ok(())
}
