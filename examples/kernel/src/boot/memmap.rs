//! A normalised physical memory map: sorted, non-overlapping, adjacent
//! regions of the same kind merged, empty regions dropped.
//!
//! Firmware maps may be unsorted and may overlap. Where regions overlap, the
//! most restrictive kind wins (see [`RegionKind`]'s order: usable <
//! ACPI-reclaimable < ACPI-NVS < reserved < defective), so a byte is never
//! called usable if any entry says otherwise.

use core::fmt;

use super::multiboot::{MultibootError, Region, RegionKind};

/// Most regions a [`MemoryMap`] accepts from the loader.
pub const MAX_REGIONS: usize = 64;
/// Capacity of the normalised map: `n` regions have at most `2n` distinct
/// boundaries, so at most `2n - 1` pieces.
const CAPACITY: usize = 2 * MAX_REGIONS;

/// Why a map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMapError {
    /// The loader's map is malformed.
    Malformed(MultibootError),
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions,
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(error) => write!(f, "malformed memory map: {error}"),
            Self::TooManyRegions => write!(f, "more than {MAX_REGIONS} memory regions"),
        }
    }
}

/// A normalised memory map (fixed capacity, no allocation).
#[derive(Clone, Debug)]
pub struct MemoryMap {
    regions: [Region; CAPACITY],
    len: usize,
}

const EMPTY: Region = Region {
    base: 0,
    len: 0,
    kind: RegionKind::Reserved,
};

impl MemoryMap {
    /// Normalises `regions` (as yielded by the multiboot parser).
    pub fn from_regions(
        regions: impl IntoIterator<Item = Result<Region, MultibootError>>,
    ) -> Result<Self, MemoryMapError> {
        let mut input = [EMPTY; MAX_REGIONS];
        let mut count = 0;
        for region in regions {
            let region = region.map_err(MemoryMapError::Malformed)?;
            if region.base.checked_add(region.len).is_none() {
                return Err(MemoryMapError::Malformed(MultibootError::RegionOverflows {
                    base: region.base,
                }));
            }
            let slot = input.get_mut(count).ok_or(MemoryMapError::TooManyRegions)?;
            *slot = region;
            count += 1;
        }
        Ok(Self::normalise(&input[..count]))
    }

    /// Sweeps the sorted region boundaries; each gap between two boundaries
    /// takes the most restrictive kind of the regions covering it.
    fn normalise(input: &[Region]) -> Self {
        let mut bounds = [0u64; 2 * MAX_REGIONS];
        let mut bound_count = 0;
        for region in input.iter().filter(|r| r.len > 0) {
            for point in [region.base, region.end()] {
                if !bounds[..bound_count].contains(&point) {
                    bounds[bound_count] = point;
                    bound_count += 1;
                }
            }
        }
        let bounds = &mut bounds[..bound_count];
        bounds.sort_unstable();

        let mut map = Self {
            regions: [EMPTY; CAPACITY],
            len: 0,
        };
        for pair in bounds.windows(2) {
            let (start, end) = (pair[0], pair[1]);
            let covering = input
                .iter()
                .filter(|r| r.len > 0 && r.base <= start && start < r.end())
                .map(|r| r.kind)
                .max();
            if let Some(kind) = covering {
                map.push(Region {
                    base: start,
                    len: end - start,
                    kind,
                });
            }
        }
        map
    }

    /// Appends a region above all others, merging it with the last one if
    /// they touch and have the same kind.
    fn push(&mut self, region: Region) {
        if let Some(last) = self.regions[..self.len].last_mut()
            && last.kind == region.kind
            && last.end() == region.base
        {
            last.len += region.len;
            return;
        }
        // At most CAPACITY - 1 pieces exist (see CAPACITY), so this always
        // has room; `get_mut` keeps it panic-free regardless.
        if let Some(slot) = self.regions.get_mut(self.len) {
            *slot = region;
            self.len += 1;
        }
    }

    /// The regions, sorted by base.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// Total bytes of usable RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.usable_bytes_above(0)
    }

    /// Bytes of usable RAM at or above physical `address`.
    pub fn usable_bytes_above(&self, address: u64) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable && r.end() > address)
            .map(|r| r.end() - r.base.max(address))
            .sum()
    }

    /// Whether the invariants hold: sorted, non-empty regions, no overlap, and
    /// no two touching regions of the same kind.
    pub fn is_normalised(&self) -> bool {
        self.regions().iter().all(|r| r.len > 0)
            && self.regions().windows(2).all(|pair| {
                let (a, b) = (pair[0], pair[1]);
                a.end() <= b.base && !(a.end() == b.base && a.kind == b.kind)
            })
    }
}
