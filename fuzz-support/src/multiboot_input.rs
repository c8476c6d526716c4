//! The example kernel's Multiboot parser and memory-map normaliser on
//! arbitrary bytes.
//!
//! The bytes are the information structure followed by the memory map (cut
//! to the structure's `mmap_length`, as the kernel reads it). Nothing may
//! panic or read out of bounds (slices make that a panic); and what comes
//! out must be right:
//! - the information structure parses exactly when it is long enough, and
//!   each optional field is there exactly when its `flags` bit is set;
//! - the entry iterator yields at most one error and then stops, never
//!   yields more entries than the bytes can hold, and never a region whose
//!   end overflows;
//! - the normalised map is sorted, disjoint, merged, covers exactly the
//!   bytes the loader's regions cover, and gives each of them the most
//!   restrictive kind any region gives it; it is refused exactly when an
//!   entry is malformed or there are too many regions.

use crate::memmap::{MAX_REGIONS, MemoryMap, MemoryMapError};
use crate::multiboot::{BootInfo, INFO_SIZE, MemoryMapEntries, MultibootError, Region, RegionKind};

/// Parse `data` as the kernel does; panics only on a broken invariant.
pub fn multiboot(data: &[u8]) {
    let map = match BootInfo::parse(data) {
        Ok(info) => {
            check_info(data, &info);
            let rest = &data[INFO_SIZE..];
            match info.memory_map {
                Some((_, len)) => &rest[..rest.len().min(len as usize)],
                None => rest,
            }
        }
        Err(e) => {
            assert!(
                data.len() < INFO_SIZE,
                "{} bytes refused: {e:?}",
                data.len()
            );
            assert_eq!(e, MultibootError::InfoTruncated(data.len()));
            data
        }
    };
    let regions = check_entries(map);
    check_normalised(map, &regions);
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Each optional field is present exactly when its flag says so, with the
/// value at its offset.
fn check_info(data: &[u8], info: &BootInfo) {
    assert!(data.len() >= INFO_SIZE);
    let flags = le32(data, 0);
    let mem = (flags & 1 != 0).then(|| (le32(data, 4), le32(data, 8)));
    assert_eq!(info.mem_kib, mem);
    assert_eq!(info.cmdline, (flags & 4 != 0).then(|| le32(data, 16)));
    let mmap = (flags & 64 != 0).then(|| (le32(data, 48), le32(data, 44)));
    assert_eq!(info.memory_map, mmap);
}

/// The regions the iterator yields before its first error (if any).
fn check_entries(map: &[u8]) -> Vec<Region> {
    let mut regions = Vec::new();
    let mut entries = MemoryMapEntries::new(map);
    let mut errors = 0;
    for entry in entries.by_ref() {
        match entry {
            Ok(region) => {
                assert_eq!(errors, 0, "an entry after an error");
                assert!(region.base.checked_add(region.len).is_some(), "{region:?}");
                regions.push(region);
            }
            Err(_) => errors += 1,
        }
        // Each entry is at least its 4-byte size field plus 20 bytes.
        assert!(regions.len() <= map.len() / 24, "more entries than bytes");
    }
    assert!(errors <= 1, "{errors} errors from one map");
    assert!(entries.next().is_none(), "the iterator restarted");
    regions
}

/// The normalised map against the regions it came from.
fn check_normalised(map: &[u8], regions: &[Region]) {
    let malformed = MemoryMapEntries::new(map).any(|e| e.is_err());
    match MemoryMap::from_regions(MemoryMapEntries::new(map)) {
        Err(MemoryMapError::Malformed(_)) => {
            assert!(malformed, "a well-formed map was called malformed");
        }
        Err(MemoryMapError::TooManyRegions) => {
            assert!(
                regions.len() > MAX_REGIONS,
                "{} regions refused",
                regions.len()
            );
        }
        Ok(normal) => {
            assert!(
                !malformed && regions.len() <= MAX_REGIONS,
                "a bad map was accepted"
            );
            assert!(normal.is_normalised(), "{normal:?}");
            check_cover(regions, &normal);
            // Cannot overflow: the regions are disjoint within 2^64.
            let _ = normal.usable_bytes();
        }
    }
}

/// The most restrictive kind the loader gives `point`, if any region covers it.
fn kind_at(regions: &[Region], point: u64) -> Option<RegionKind> {
    regions
        .iter()
        .filter(|r| r.len > 0 && r.base <= point && point - r.base < r.len)
        .map(|r| r.kind)
        .max()
}

/// Both maps give every byte the same kind (or none). Both are constant
/// between consecutive region boundaries, and every such stretch starts at
/// some region's base or end, so checking those bytes (and the ones just
/// before them) checks every byte.
fn check_cover(regions: &[Region], normal: &MemoryMap) {
    let out = normal.regions();
    let points = regions
        .iter()
        .chain(out)
        .filter(|r| r.len > 0)
        .flat_map(|r| {
            [
                r.base,
                r.base + (r.len - 1),
                r.base.wrapping_sub(1),
                r.base + r.len,
            ]
        });
    for p in points {
        assert_eq!(
            kind_at(out, p),
            kind_at(regions, p),
            "byte {p:#x}: normalised kind differs from the loader's"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One memory-map entry: `size`, then base, length and type.
    fn entry(size: u32, base: u64, len: u64, kind: u32) -> Vec<u8> {
        let mut e = size.to_le_bytes().to_vec();
        e.extend(base.to_le_bytes());
        e.extend(len.to_le_bytes());
        e.extend(kind.to_le_bytes());
        e
    }

    fn first_error(map: &[u8]) -> Option<MultibootError> {
        MemoryMapEntries::new(map).find_map(Result::err)
    }

    #[test]
    fn each_malformed_structure_gets_its_error() {
        assert_eq!(
            BootInfo::parse(&[0; INFO_SIZE - 1]).err(),
            Some(MultibootError::InfoTruncated(INFO_SIZE - 1))
        );
        let good = entry(20, 0x10_0000, 0x1000, 1);
        let short = [good.clone(), entry(12, 0, 0, 1)].concat();
        assert_eq!(
            first_error(&short),
            Some(MultibootError::EntryTooShort {
                offset: 24,
                size: 12
            })
        );
        let cut = [good.clone(), good[..10].to_vec()].concat();
        assert_eq!(
            first_error(&cut),
            Some(MultibootError::EntryOverruns { offset: 24 })
        );
        let wraps = entry(20, u64::MAX - 0xFFF, 0x2000, 1);
        assert_eq!(
            first_error(&wraps),
            Some(MultibootError::RegionOverflows {
                base: u64::MAX - 0xFFF
            })
        );
        // The iterator stops after its error: nothing past it is read.
        assert_eq!(MemoryMapEntries::new(&cut).count(), 2);
        let many: Vec<u8> = (0..=MAX_REGIONS as u64)
            .flat_map(|i| entry(20, i << 20, 0x1000, 1))
            .collect();
        assert!(matches!(
            MemoryMap::from_regions(MemoryMapEntries::new(&many)),
            Err(MemoryMapError::TooManyRegions)
        ));
        // Each of them passes the fuzz target's checks too.
        for map in [short, cut, wraps, many] {
            multiboot(&map);
        }
    }
}
