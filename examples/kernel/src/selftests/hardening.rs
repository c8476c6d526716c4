//! Kernel hardening: W^X (only `.text` executable, nothing both writable
//! and executable where the CPU has NX), no user bit anywhere in the
//! kernel half, and the faults that prove it: a write to `.text`, and an
//! instruction fetch from data.

use core::ops::Range;

use paging_core::{MapFlags, PagingMode, PhysAddr, PhysFrame, PteEntry, Walker};

use super::kernel_walk::{Leaf, walk_kernel_half};
use super::page_faults::check_fault;
use crate::arch::fault_probe::{self, ErrorCode};
use crate::arch::mode::{self, Mode};
use crate::mm::direct_map::DirectMapAccess;
use crate::mm::kernel::Kernel;
use crate::mm::layout::{self, KernelFixmap, PKMAP_BASE};
use crate::selftests::harness::{Failure, TestResult};
use crate::{ensure, fail, failure, println};

/// Pages of 4 KiB in `range`.
fn pages(range: &Range<usize>) -> u64 {
    (range.end - range.start) as u64 / 4096
}

/// Checks one leaf against the kernel's rules (`global`: it must have G);
/// returns its 4 KiB pages that are executable and writable+executable.
fn check_leaf(leaf: Leaf, nx: bool, global: bool) -> Result<(u64, u64), Failure> {
    let (va, flags) = (leaf.va.as_u32() as usize, leaf.flags);
    let range = va..va + leaf.size as usize;
    let overlaps = |r: &Range<usize>| range.start < r.end && r.start < range.end;
    let inside = |r: &Range<usize>| r.start <= range.start && range.end <= r.end;
    let (text, rodata) = (layout::text(), layout::rodata());
    let writable = flags.contains(MapFlags::WRITABLE);
    let executable = !flags.contains(MapFlags::NO_EXECUTE);
    if flags.contains(MapFlags::USER) {
        return Err(failure!("{} is user-accessible: {flags:?}", leaf.va));
    }
    if overlaps(&text) || overlaps(&rodata) {
        if inside(&text) {
            ensure!(
                !writable && executable,
                ".text page {} is {flags:?}, expected read-only executable",
                leaf.va
            );
        } else if inside(&rodata) {
            ensure!(
                !writable && executable != nx,
                ".rodata page {} is {flags:?}, expected read-only{}",
                leaf.va,
                if nx { " no-execute" } else { "" }
            );
        } else {
            fail!("{} ({} bytes) straddles .text/.rodata", leaf.va, leaf.size);
        }
    } else if nx {
        ensure!(
            !executable,
            "{} outside .text is executable: {flags:?}",
            leaf.va
        );
    }
    // Without EFER.NXE bit 63 is reserved: an entry with XD set would
    // fault (RSVD) at its first use.
    ensure!(
        nx || executable,
        "{} has XD set although EFER.NXE is off (a reserved bit): {flags:?}",
        leaf.va
    );
    if global {
        ensure!(
            flags.contains(MapFlags::GLOBAL),
            "kernel mapping {} is not global: {flags:?}",
            leaf.va
        );
    }
    let n = leaf.size / 4096;
    Ok((
        if executable { n } else { 0 },
        if executable && writable { n } else { 0 },
    ))
}

pub fn kernel_mappings_are_w_xor_x_and_never_user(kernel: &Kernel) -> TestResult {
    let nx = mode::nx_enabled();
    let global = mode::global_pages_enabled();
    // The kernel's own mappings (direct map, vmalloc, fixmap MMIO) must be
    // global; kmap slots are not (see `kmap_policy`).
    let mmio = [KernelFixmap::VGA_CONSOLE, KernelFixmap::LOCAL_APIC].map(|i| kernel.fixmap.virt(i));
    let own = |leaf: &Leaf| leaf.va.as_u32() < PKMAP_BASE || mmio.contains(&leaf.va);
    let (mut executable, mut writable_executable) = (0, 0);
    let walk = walk_kernel_half(kernel.root, |leaf| {
        let (x, wx) = check_leaf(leaf, nx, global && own(&leaf))?;
        executable += x;
        writable_executable += wx;
        Ok(())
    })?;
    let text = layout::text();
    println!(
        "    kernel half: top-level entries {}, large pages {}, 4 KiB pages {} in {} PTE tables; no user bit on any leaf or table entry; user half empty",
        walk.pgd_entries, walk.large_pages, walk.pages, walk.pte_tables
    );
    if nx {
        ensure!(
            executable == pages(&text) && writable_executable == 0,
            "{executable} executable pages ({writable_executable} writable), expected exactly the {} of .text",
            pages(&text)
        );
        println!(
            "    W^X: the {executable} executable pages are exactly .text {:#x}..{:#x}; .rodata read-only NX; every writable page NX",
            text.start, text.end
        );
    } else if !<Mode as PagingMode>::SUPPORTS_NX {
        println!(
            "    W^X: .text and .rodata read-only; 2-level entries have no NX bit, so {writable_executable} writable pages (data, stacks, direct map) stay executable"
        );
    } else {
        ensure!(
            !crate::arch::cpu::features().paging.nx,
            "NX is off although the CPU has it"
        );
        println!(
            "    W^X: this CPU has no NX (EFER.NXE off): checked .text and .rodata read-only and no XD bit (reserved here) on any leaf; could not check that data is not executable: {writable_executable} writable pages (data, stacks, direct map) stay executable"
        );
    }
    println!(
        "    global pages: CR4.PGE {}; {}",
        if global { "on" } else { "off (no PGE)" },
        if global {
            "every direct-map, vmalloc and fixmap MMIO leaf has G; kmap slots are not global"
        } else {
            "no G bits are relied on"
        }
    );
    Ok(())
}

pub fn write_to_kernel_text_faults_protection_write(_: &Kernel) -> TestResult {
    let address = write_to_kernel_text_faults_protection_write as *const () as usize;
    ensure!(
        layout::text().contains(&address),
        "{address:#x} is not in .text"
    );
    // SAFETY: code bytes are ordinary readable memory.
    let before = unsafe { fault_probe::read_u32(address) }
        .map_err(|f| failure!("reading .text at {address:#x}: {f:?}"))?;
    // SAFETY: writes back the bytes just read, so even a (wrongly)
    // successful write leaves the code as it was.
    let result = unsafe { fault_probe::write_u32(address, before) };
    let Err(fault) = result else {
        fail!("a write to .text at {address:#x} succeeded");
    };
    // Present (protection violation), write, supervisor.
    check_fault(fault, address, ErrorCode::PRESENT | ErrorCode::WRITE)?;
    println!(
        "    write to .text at {address:#x}: page fault, error code {:#x} ({})",
        fault.error_code.0, fault.error_code
    );
    Ok(())
}

/// A data buffer that gets one `ret` instruction.
static mut EXEC_PROBE: [u8; 16] = [0; 16];

/// The `ret` opcode.
const RET: u8 = 0xC3;

pub fn execute_from_data_faults_with_nx(kernel: &Kernel) -> TestResult {
    let address = &raw mut EXEC_PROBE as usize;
    // SAFETY: the buffer is this test's; no reference to it exists.
    unsafe { (address as *mut u8).write_volatile(RET) };
    let translation = Walker::<Mode, _>::new(kernel.root, DirectMapAccess)
        .translate(paging_core::VirtAddr::new(address as u32))
        .map_err(|e| failure!("translating {address:#x}: {e}"))?;
    ensure!(
        translation.flags.contains(MapFlags::WRITABLE),
        "the buffer is mapped {:?}",
        translation.flags
    );
    // SAFETY: the buffer holds a lone `ret`: if the fetch is allowed it
    // returns at once and changes nothing.
    let result = unsafe { fault_probe::call(address) };
    if mode::nx_enabled() {
        ensure!(
            translation.flags.contains(MapFlags::NO_EXECUTE),
            "data at {address:#x} is mapped without NX: {:?}",
            translation.flags
        );
        let Err(fault) = result else {
            fail!("the `ret` in data at {address:#x} ran although the page is NX");
        };
        let expected = ErrorCode(ErrorCode::PRESENT | ErrorCode::FETCH);
        ensure!(
            fault.address as usize == address && fault.eip as usize == address,
            "fault at CR2 {:#x}, EIP {:#x}, expected both {address:#x}",
            fault.address,
            fault.eip
        );
        ensure!(
            fault.error_code == expected,
            "error code {:#x} ({}), expected {:#x} ({expected})",
            fault.error_code.0,
            fault.error_code,
            expected.0
        );
        println!(
            "    call into a `ret` in data at {address:#x} (NX): page fault, error code {:#x} ({}), CR2 = EIP = the buffer; recovered",
            fault.error_code.0, fault.error_code
        );
    } else if <Mode as PagingMode>::SUPPORTS_NX {
        ensure!(!paging_core::cpu::has_nx(), "the CPU has NX but it is off");
        ensure!(result.is_ok(), "the `ret` in data faulted: {result:?}");
        println!("    PAE without NX on this CPU: data is executable (the `ret` ran)");
    } else {
        let refused = <Mode as PagingMode>::Pte::page(
            PhysFrame::containing_address(PhysAddr::ZERO),
            MapFlags::KERNEL_RW | MapFlags::NO_EXECUTE,
        );
        ensure!(
            refused.is_err(),
            "the 2-level backend accepted NO_EXECUTE: {refused:?}"
        );
        ensure!(
            result.is_ok(),
            "the `ret` in data faulted without NX: {result:?}"
        );
        println!(
            "    2-level: no NX (PagingMode::SUPPORTS_NX is false, a NO_EXECUTE entry is refused: {:?}); the `ret` in data ran",
            refused.err()
        );
    }
    Ok(())
}
