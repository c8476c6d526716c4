//! Tests of the multiboot memory map: the real one the loader passed, and
//! forged maps fed to the parser and the normaliser.

use crate::boot::memmap::MemoryMap;
use crate::boot::multiboot::{BootInfo, MemoryMapEntries, MultibootError, Region, RegionKind};
use crate::mm::kernel::Kernel;
use crate::selftests::harness::TestResult;
use crate::{ensure, fail};

const MIB: u64 = 1 << 20;

pub fn multiboot_memory_map_is_sane(kernel: &Kernel) -> TestResult {
    let map = match &kernel.context.memory_map {
        Ok(map) => map,
        Err(error) => fail!("no usable memory map: {error}"),
    };
    ensure!(map.is_normalised(), "normalised map breaks its invariants");
    ensure!(!map.regions().is_empty(), "memory map is empty");
    let above_1m = map.usable_bytes_above(MIB);
    ensure!(
        above_1m >= MIB,
        "only {above_1m:#x} bytes usable above 1 MiB"
    );
    if let Ok(BootInfo {
        mem_kib: Some((_, upper_kib)),
        ..
    }) = kernel.context.boot_info
    {
        // mem_upper counts KiB from 1 MiB to the first hole. The map's usable
        // RAM above 1 MiB covers at least that, less what the firmware keeps
        // at the top of low RAM (SeaBIOS: 128 KiB); allow 1 MiB for that.
        let upper = u64::from(upper_kib) * 1024;
        ensure!(
            above_1m + MIB >= upper,
            "map has {above_1m:#x} usable bytes above 1 MiB, mem_upper says {upper:#x}"
        );
    }
    Ok(())
}

/// Writes one map entry (`size` field, then base, length, type) at `at`;
/// returns the offset after it.
fn put_entry(buf: &mut [u8], at: usize, size: u32, base: u64, len: u64, kind: u32) -> usize {
    buf[at..at + 4].copy_from_slice(&size.to_le_bytes());
    buf[at + 4..at + 12].copy_from_slice(&base.to_le_bytes());
    buf[at + 12..at + 20].copy_from_slice(&len.to_le_bytes());
    buf[at + 20..at + 24].copy_from_slice(&kind.to_le_bytes());
    at + 4 + size as usize
}

pub fn normalises_unsorted_overlapping_regions(_: &Kernel) -> TestResult {
    const USABLE: u32 = 1;
    const RESERVED: u32 = 2;
    const ACPI: u32 = 3;
    let mut buf = [0u8; 256];
    let mut at = 0;
    // Unsorted; a reserved hole and an ACPI block inside usable RAM; one
    // entry with a 4-byte larger `size` (the parser must step by `size`).
    at = put_entry(&mut buf, at, 20, 0x10_0000, 0x70_0000, USABLE);
    at = put_entry(&mut buf, at, 20, 0x9_F000, 0x6_1000, RESERVED);
    at = put_entry(&mut buf, at, 24, 0x88_0000, 0x2_0000, ACPI);
    at = put_entry(&mut buf, at, 20, 0x40_0000, 0x10_0000, RESERVED);
    at = put_entry(&mut buf, at, 20, 0x80_0000, 0x10_0000, USABLE);
    at = put_entry(&mut buf, at, 20, 0x0, 0x9_F000, USABLE);
    at = put_entry(&mut buf, at, 20, 0x1234_0000, 0, USABLE);
    let map = match MemoryMap::from_regions(MemoryMapEntries::new(&buf[..at])) {
        Ok(map) => map,
        Err(error) => fail!("valid forged map rejected: {error}"),
    };
    let region = |base: u64, end: u64, kind| Region {
        base,
        len: end - base,
        kind,
    };
    let expected = [
        region(0x0, 0x9_F000, RegionKind::Usable),
        region(0x9_F000, 0x10_0000, RegionKind::Reserved),
        region(0x10_0000, 0x40_0000, RegionKind::Usable),
        region(0x40_0000, 0x50_0000, RegionKind::Reserved),
        region(0x50_0000, 0x88_0000, RegionKind::Usable),
        region(0x88_0000, 0x8A_0000, RegionKind::AcpiReclaimable),
        region(0x8A_0000, 0x90_0000, RegionKind::Usable),
    ];
    ensure!(
        map.regions() == expected,
        "normalised to {:?}",
        map.regions()
    );
    ensure!(map.is_normalised(), "result breaks the invariants");
    let usable = 0x9_F000 + 0x30_0000 + 0x38_0000 + 0x6_0000;
    ensure!(
        map.usable_bytes() == usable,
        "usable bytes {:#x}, expected {usable:#x}",
        map.usable_bytes()
    );
    Ok(())
}

pub fn parser_rejects_malformed_maps(_: &Kernel) -> TestResult {
    let mut buf = [0u8; 64];
    let good_end = put_entry(&mut buf, 0, 20, 0x10_0000, 0x10_0000, 1);

    // Second entry claims 40 bytes but the map ends after 24.
    put_entry(&mut buf, good_end, 40, 0, 0x1000, 1);
    expect_error(
        &buf[..good_end + 24],
        MultibootError::EntryOverruns { offset: 24 },
    )?;
    // Second entry's size is too small to hold base, length and type.
    let end = put_entry(&mut buf, good_end, 8, 0, 0x1000, 1);
    expect_error(
        &buf[..end + 12],
        MultibootError::EntryTooShort {
            offset: 24,
            size: 8,
        },
    )?;
    // The map ends two bytes into the second entry's size field.
    expect_error(
        &buf[..good_end + 2],
        MultibootError::EntryOverruns { offset: 24 },
    )?;
    // A region wrapping past 2^64.
    let end = put_entry(&mut buf, good_end, 20, u64::MAX - 0xFFF, 0x2000, 1);
    expect_error(
        &buf[..end],
        MultibootError::RegionOverflows {
            base: u64::MAX - 0xFFF,
        },
    )?;
    // An information structure too short to hold the map fields.
    ensure!(
        BootInfo::parse(&buf[..40]).err() == Some(MultibootError::InfoTruncated(40)),
        "truncated info structure accepted"
    );
    Ok(())
}

/// Checks that `map` yields the valid first entry, then exactly `expected`,
/// then nothing.
fn expect_error(map: &[u8], expected: MultibootError) -> TestResult {
    let mut entries = MemoryMapEntries::new(map);
    let first = entries.next();
    ensure!(
        matches!(first, Some(Ok(region)) if region.base == 0x10_0000),
        "first (valid) entry parsed as {first:?}"
    );
    let second = entries.next();
    ensure!(
        second == Some(Err(expected)),
        "expected {expected:?}, got {second:?}"
    );
    let third = entries.next();
    ensure!(third.is_none(), "parser went on after an error: {third:?}");
    ensure!(
        MemoryMap::from_regions(MemoryMapEntries::new(map)).is_err(),
        "normaliser accepted a malformed map"
    );
    Ok(())
}
