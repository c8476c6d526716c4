//! The Page Attribute Table: programmed at boot with
//! `PatLayout::RECOMMENDED`, so that write-combining (entry 4) and
//! write-protected (entry 5) can be asked for by name
//! (`MapFlags::with_cache`).

use paging_core::PatLayout;
use paging_core::cpu;

use crate::println;

/// The PAT every later mapping's cache bits are read against: the
/// recommended layout once [`init`] programmed it, the power-on one on a
/// CPU without PAT.
static LAYOUT: spin::Once<PatLayout> = spin::Once::new();

/// Programs IA32_PAT with the recommended layout if the CPU has a PAT, and
/// prints what it did. Called once, early in boot.
pub fn init() {
    let layout = if crate::arch::cpu::features().pat {
        // SAFETY: CPUID says the CPU has the PAT. One CPU runs (the kernel
        // never starts the others), so every CPU has this PAT. Entries 0-3,
        // the only ones a mapping made so far uses (no kernel mapping sets the
        // PAT bit), keep their types, so no live mapping changes type and no
        // alias of conflicting types appears; `write_pat` does the cache and
        // TLB flushes of the SDM's procedure.
        unsafe { cpu::write_pat(PatLayout::RECOMMENDED) };
        let programmed = cpu::read_pat();
        match programmed {
            Some(layout) => {
                print_layout("programmed", &layout);
                layout
            }
            None => {
                println!("PAT: IA32_PAT unreadable after programming; assuming power-on types");
                PatLayout::POWER_ON
            }
        }
    } else {
        println!(
            "PAT: not supported by this CPU (CPUID.1:EDX.PAT clear): \
             power-on types only, no write-combining"
        );
        PatLayout::POWER_ON
    };
    LAYOUT.call_once(|| layout);
}

/// Programs this application processor's IA32_PAT with the layout the boot
/// CPU programmed: the PAT is per CPU, and every CPU must read the kernel's
/// cache bits the same way.
pub fn init_ap() {
    if let Some(layout) = LAYOUT.get()
        && crate::arch::cpu::features().pat
    {
        // SAFETY: CPUID says this CPU has the PAT; it is being started and
        // has made no access through a mapping with PAT-selected types yet
        // (only write-back kernel memory); `write_pat` follows the SDM's
        // procedure on this CPU.
        unsafe { cpu::write_pat(*layout) };
    }
}

/// The PAT in force (power-on before [`init`]).
pub fn layout() -> PatLayout {
    LAYOUT.get().copied().unwrap_or(PatLayout::POWER_ON)
}

fn print_layout(what: &str, layout: &PatLayout) {
    let e = layout.entries();
    println!(
        "PAT: {what} IA32_PAT {:#018x}: PA0-PA7 = {} {} {} {} {} {} {} {}",
        layout.to_msr(),
        e[0],
        e[1],
        e[2],
        e[3],
        e[4],
        e[5],
        e[6],
        e[7]
    );
}
