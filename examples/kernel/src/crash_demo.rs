//! Deliberate crashes, selected on the kernel command line, that show the
//! fatal-exception paths at work (each ends the run with the failure code):
//!
//! - `fault=page`: reads an unmapped address with no probe armed; the
//!   page-fault handler reports CR2, the error code and EIP.
//! - `fault=stack-overflow`: recurses until the stack runs into its guard
//!   page. The CPU cannot push the page-fault frame onto the full stack, so
//!   it raises a double fault, which the double-fault task reports from its
//!   own stack instead of the CPU triple-faulting.

use crate::{BootContext, println};

/// An address the boot page tables leave unmapped.
const UNMAPPED: usize = 0xE000_0000;

/// Runs the crash named on the command line, if any (never returns then).
pub fn run_if_requested(context: &BootContext) {
    if context.has_option("fault=page") {
        println!("crash demo: reading unmapped address {UNMAPPED:#x}");
        let value: u32;
        // SAFETY: a read in assembly touches no Rust object; the address is
        // unmapped, so it faults and the fatal page-fault handler ends the
        // run without returning here.
        unsafe {
            core::arch::asm!(
                "mov {value}, dword ptr [{address}]",
                address = in(reg) UNMAPPED,
                value = out(reg) value,
                options(nostack, readonly, preserves_flags),
            );
        }
        println!("crash demo: read {value:#x}, expected a page fault");
    }
    if context.has_option("fault=stack-overflow") {
        println!("crash demo: overflowing the boot stack");
        let depth = recurse(0);
        println!("crash demo: returned from depth {depth}, expected a double fault");
    }
}

/// Uses 256 bytes of stack per level, forever in practice.
fn recurse(depth: u32) -> u32 {
    let frame = core::hint::black_box([depth; 64]);
    if depth == u32::MAX {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(core::hint::black_box(frame)[63])
}
