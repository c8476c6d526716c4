//! Tests of the platform the kernel stands on: console, CPU state, CPU
//! features.

use crate::cpu;
use crate::layout;
use crate::test::TestResult;
use crate::{BootContext, ensure, serial};

pub fn serial_loopback_echoes_a_byte(_: &BootContext) -> TestResult {
    for byte in [0xA5, 0x5A] {
        let echoed = serial::loopback_echo(byte);
        ensure!(
            echoed == Some(byte),
            "sent {byte:#x} in loopback mode, received {echoed:?}"
        );
    }
    Ok(())
}

pub fn kernel_runs_in_higher_half_with_write_protect(_: &BootContext) -> TestResult {
    let code = kernel_runs_in_higher_half_with_write_protect as *const () as usize;
    ensure!(
        code >= crate::boot::PAGE_OFFSET,
        "code at {code:#x} is below PAGE_OFFSET"
    );
    let cr0 = cpu::cr0();
    ensure!(cr0 & cpu::CR0_PG != 0, "paging is off (CR0 {cr0:#x})");
    ensure!(cr0 & cpu::CR0_WP != 0, "CR0.WP is clear (CR0 {cr0:#x})");
    let cr3 = cpu::cr3() as usize;
    let boot_pd = layout::boot_page_directory_phys();
    ensure!(
        cr3 & !0xFFF == boot_pd,
        "CR3 {cr3:#x} is not the boot page directory {boot_pd:#x}"
    );
    Ok(())
}

pub fn cpu_has_paging_features_for_mode(context: &BootContext) -> TestResult {
    let features = context.features;
    ensure!(features.pse, "no PSE: the boot tables need 4 MiB pages");
    ensure!(cpu::cr4() & cpu::CR4_PSE != 0, "CR4.PSE is off after boot");
    if cfg!(feature = "mode-pae") {
        ensure!(features.pae, "PAE mode on a CPU without PAE ({features:?})");
        ensure!(features.nx, "PAE mode on a CPU without NX ({features:?})");
    }
    Ok(())
}
