//! The floor a kmap hit is compared with: one uncontended lock round trip
//! plus one hash lookup, with the same lock and map types the pool uses,
//! the same map content, and the same key.

use heapless::index_map::FnvIndexMap;

use crate::kmap_host::{MISS_PAGES, SLOTS, WARM_PAGES, highmem_frame, hit_frame};

/// A `spin::Mutex` around a page→slot map filled as a warm pool's is.
pub struct LockLookup {
    map: spin::Mutex<FnvIndexMap<u64, u16, SLOTS>>,
}

impl core::fmt::Debug for LockLookup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockLookup")
            .field("entries", &self.map.lock().len())
            .finish()
    }
}

impl LockLookup {
    /// The map holds the page numbers a warmed pool's map holds
    /// ([`KmapHost::warm`](crate::KmapHost::warm)), inserted in the same
    /// order, so a lookup probes exactly as the pool's does.
    pub fn new() -> Self {
        let mut map = FnvIndexMap::new();
        for (slot, pfn) in warm_pfns().enumerate() {
            // Cannot fail: WARM_PAGES < SLOTS, the map's capacity.
            let _ = map.insert(pfn, slot as u16 + 1);
        }
        Self {
            map: spin::Mutex::new(map),
        }
    }

    /// The page number the kmap hit benchmarks map (the first warmed page).
    pub fn present_key(&self) -> u64 {
        hit_frame().map_or(0, |f| f.number())
    }

    /// Lock, look `key` up, unlock.
    #[inline]
    pub fn lookup(&self, key: u64) -> Option<u16> {
        self.map.lock().get(&key).copied()
    }
}

/// The page numbers [`KmapHost::warm`](crate::KmapHost::warm) maps, in order.
fn warm_pfns() -> impl Iterator<Item = u64> {
    (0..WARM_PAGES).filter_map(|i| highmem_frame(MISS_PAGES - 1 - i).map(|f| f.number()))
}

impl Default for LockLookup {
    fn default() -> Self {
        Self::new()
    }
}
