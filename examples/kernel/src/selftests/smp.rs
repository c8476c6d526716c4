//! The application processors: every CPU the firmware lists is online (or
//! reported and left out), each runs in the kernel's own tables with the
//! boot CPU's paging set-up and its own GDT, TSS and guarded stacks.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::base::config::CPUS;
use crate::mm::kernel::Kernel;
use crate::selftests::harness::TestResult;
use crate::smp::firmware;
use crate::smp::{self, CpuState};
use crate::{arch::fault_probe, arch::gdt, ensure, fail, println};

/// Bit `i` set when CPU `i` ran the posted work.
static RAN: AtomicU32 = AtomicU32::new(0);

pub fn smp_every_listed_cpu_is_online_in_the_kernel_tables(kernel: &Kernel) -> TestResult {
    let Some(report) = smp::report() else {
        fail!("the SMP start-up did not run");
    };
    let online = smp::online_count();
    if let Some(why) = smp::no_apic() {
        // The firmware may list more CPUs, but none can be started.
        ensure!(
            online == 1 && report.started == 0,
            "{online} online, {} started without a local APIC",
            report.started
        );
        println!(
            "    {} lists {}; cpus: 1 online: {why}",
            report.list.source.name(),
            report.list.count
        );
        return Ok(());
    }
    let expected_timeouts = usize::from(kernel.context.cmdline.contains("smp.ap-timeout-test="));
    ensure!(
        report.timed_out == expected_timeouts,
        "{} AP(s) timed out, expected {expected_timeouts}",
        report.timed_out
    );
    ensure!(
        online == 1 + report.started
            && report.started + report.timed_out + 1 == report.list.count.max(1),
        "{online} online, {} started, {} timed out, {} listed",
        report.started,
        report.timed_out,
        report.list.count
    );
    RAN.store(0, Ordering::SeqCst);
    crate::smp::work::run_on_all(
        |cpu, _| {
            if gdt::cpu_index() == cpu {
                RAN.fetch_or(1 << cpu, Ordering::SeqCst);
            }
        },
        0,
    );
    let ran = RAN.load(Ordering::SeqCst);
    ensure!(
        ran.count_ones() as usize == online,
        "work ran on CPUs {ran:#b}, {online} online"
    );
    let boot = CpuState::read();
    let mut gdts = [0u32; CPUS];
    gdts[0] = boot.gdt_base;
    for cpu in 1..smp::known() {
        if !smp::is_online(cpu) {
            continue;
        }
        let Some(ap) = smp::state_at_start(cpu) else {
            fail!("CPU {cpu} is online but recorded nothing");
        };
        ensure!(ap.index == cpu, "CPU {cpu} reads index {}", ap.index);
        ensure!(
            Some(ap.apic_id) == smp::apic_id(cpu) && ap.apic_id != boot.apic_id,
            "CPU {cpu}: APIC ID {} (expected {:?}, boot CPU {})",
            ap.apic_id,
            smp::apic_id(cpu),
            boot.apic_id
        );
        ensure!(
            ap.cr3 == boot.cr3 && ap.cr4 == boot.cr4 && ap.cr0 == boot.cr0 && ap.nxe == boot.nxe,
            "CPU {cpu}: CR0 {:#x} CR3 {:#x} CR4 {:#x} NXE {} vs boot CPU {:#x} {:#x} {:#x} {}",
            ap.cr0,
            ap.cr3,
            ap.cr4,
            ap.nxe,
            boot.cr0,
            boot.cr3,
            boot.cr4,
            boot.nxe
        );
        ensure!(
            ap.pat == boot.pat,
            "CPU {cpu}: PAT {:x?} vs {:x?}",
            ap.pat,
            boot.pat
        );
        ensure!(
            ap.task_register == gdt::MAIN_TSS && !gdts.contains(&ap.gdt_base),
            "CPU {cpu}: TR {:#x}, GDT at {:#x} (shared with another CPU?)",
            ap.task_register,
            ap.gdt_base
        );
        gdts[cpu] = ap.gdt_base;
        let Some([stack, _]) = smp::stacks(cpu) else {
            fail!("CPU {cpu} has no stack");
        };
        ensure!(
            (stack.0..stack.1).contains(&ap.esp),
            "CPU {cpu} ran on ESP {:#x}, outside its stack {:#x}..{:#x}",
            ap.esp,
            stack.0,
            stack.1
        );
    }
    println!(
        "    {} lists {}; cpus: {online} online ({} started, {} left out); each in CR3 {:#x} with CR4 {:#x}, NXE {}, its own GDT and TSS",
        report.list.source.name(),
        report.list.count,
        report.started,
        report.timed_out,
        boot.cr3,
        boot.cr4,
        boot.nxe
    );
    Ok(())
}

pub fn smp_ap_stacks_have_guard_pages(_: &Kernel) -> TestResult {
    let mut checked = 0;
    for cpu in 1..smp::known() {
        let Some(stacks) = smp::stacks(cpu) else {
            continue;
        };
        for (bottom, top) in stacks {
            let guard = (bottom - 4096) as usize;
            // SAFETY: probes of kernel addresses; a fault is caught.
            let below = unsafe { fault_probe::read_u32(guard) };
            ensure!(
                below.is_err_and(|f| f.error_code.0 & fault_probe::ErrorCode::PRESENT == 0),
                "CPU {cpu}: guard page {guard:#x} below stack {bottom:#x}..{top:#x}: {below:?}"
            );
            // SAFETY: as above; the stack's lowest word is mapped RAM.
            let lowest = unsafe { fault_probe::read_u32(bottom as usize) };
            ensure!(
                lowest.is_ok(),
                "CPU {cpu}: stack bottom {bottom:#x} unmapped"
            );
            checked += 1;
        }
    }
    if checked == 0 {
        println!("    one CPU: no AP stacks");
    } else {
        println!(
            "    {checked} AP stacks (kernel and double-fault): each guard page faults not-present"
        );
    }
    Ok(())
}

pub fn smp_firmware_tables_agree(kernel: &Kernel) -> TestResult {
    if let Some(why) = crate::smp::no_apic() {
        println!("    skipped: {why}");
        return Ok(());
    }
    let madt = firmware::from_madt(kernel.fixmap);
    let mp = firmware::from_mp_table(kernel.fixmap);
    let (Some(madt), Some(mp)) = (madt, mp) else {
        println!(
            "    MADT {}, MP table {}: nothing to compare",
            if madt.is_some() { "found" } else { "absent" },
            if mp.is_some() { "found" } else { "absent" }
        );
        ensure!(
            madt.is_some() || mp.is_some(),
            "neither an MADT nor an MP table"
        );
        return Ok(());
    };
    let boot = CpuState::read().apic_id;
    ensure!(
        madt.ids().contains(&(boot as u8)) && mp.ids().contains(&(boot as u8)),
        "the boot CPU (APIC ID {boot}) is missing: MADT {:?}, MP {:?}",
        madt.ids(),
        mp.ids()
    );
    ensure!(
        mp.ids().iter().all(|id| madt.ids().contains(id)),
        "the MP table lists a CPU the MADT does not: MP {:?}, MADT {:?}",
        mp.ids(),
        madt.ids()
    );
    ensure!(
        madt.apic_base == 0xFEE0_0000 && mp.apic_base == madt.apic_base,
        "local APIC at {:#x} (MADT) and {:#x} (MP)",
        madt.apic_base,
        mp.apic_base
    );
    println!(
        "    MADT: APIC IDs {:?}; MP table: {:?} ({}); local APIC {:#x}",
        madt.ids(),
        mp.ids(),
        if mp.count == madt.count {
            "the same CPUs"
        } else {
            "a subset: SeaBIOS under QEMU lists only the boot CPU there"
        },
        madt.apic_base
    );
    Ok(())
}
