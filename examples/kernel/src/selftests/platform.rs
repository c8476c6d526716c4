//! Tests of the platform the kernel stands on: console, CPU state, CPU
//! features.

use crate::arch::cpu;
use crate::mm::kernel::Kernel;
use crate::mm::layout;
use crate::selftests::harness::TestResult;
use crate::{arch::serial, ensure, println};

pub fn serial_loopback_echoes_a_byte(_: &Kernel) -> TestResult {
    for byte in [0xA5, 0x5A] {
        let echoed = serial::loopback_echo(byte);
        ensure!(
            echoed == Some(byte),
            "sent {byte:#x} in loopback mode, received {echoed:?}"
        );
    }
    Ok(())
}

pub fn kernel_runs_in_higher_half_with_write_protect(kernel: &Kernel) -> TestResult {
    let code = kernel_runs_in_higher_half_with_write_protect as *const () as usize;
    ensure!(
        code >= layout::PAGE_OFFSET as usize,
        "code at {code:#x} is below PAGE_OFFSET"
    );
    let cr0 = cpu::cr0();
    ensure!(cr0 & cpu::CR0_PG != 0, "paging is off (CR0 {cr0:#x})");
    ensure!(cr0 & cpu::CR0_WP != 0, "CR0.WP is clear (CR0 {cr0:#x})");
    let cr3 = cpu::cr3() as usize;
    let root = kernel.root.as_u64() as usize;
    ensure!(
        cr3 & !0x1F == root,
        "CR3 {cr3:#x} is not the root of the final kernel tables {root:#x}"
    );
    Ok(())
}

pub fn cpu_has_paging_features_for_mode(kernel: &Kernel) -> TestResult {
    let features = kernel.context.features;
    if cfg!(feature = "mode-2level") {
        ensure!(features.pse, "no PSE: the 2-level tables use 4 MiB pages");
        ensure!(cpu::cr4() & cpu::CR4_PSE != 0, "CR4.PSE is off after boot");
    } else {
        ensure!(features.pae, "PAE mode on a CPU without PAE ({features:?})");
        let pae = cpu::cr4() & (1 << 5) != 0;
        ensure!(pae, "CR4.PAE is off in a PAE kernel");
        // NX is optional: with it EFER.NXE must be on; without it EFER.NXE
        // stays off and the XD bit is reserved (the W^X test checks that no
        // kernel entry sets it).
        ensure!(
            crate::arch::mode::nx_enabled() == features.nx,
            "the CPU {} NX but EFER.NXE is {}",
            if features.nx { "has" } else { "lacks" },
            if crate::arch::mode::nx_enabled() {
                "on"
            } else {
                "off"
            }
        );
    }
    let all = cpu::features();
    println!("    {all}");
    if cfg!(feature = "mode-pae") && !features.nx {
        println!(
            "    PAE without NX: EFER.NXE off, bit 63 (XD) is reserved and never set; data stays executable"
        );
    }
    Ok(())
}
