//! A set of CPU indices: the targets of a shootdown.

use core::fmt;

/// A set of CPUs by index, 0 to [`CpuSet::MAX`]` - 1`: one bit each.
///
/// `Debug` lists the indices: `{0, 2}`.
///
/// ```
/// use tlb_shootdown::CpuSet;
///
/// let mut set = CpuSet::single(0).union(CpuSet::single(3));
/// set.insert(5);
/// assert!(set.contains(3) && !set.contains(4));
/// assert_eq!(set.minus(CpuSet::single(3)).iter().collect::<Vec<_>>(), [0, 5]);
/// assert_eq!(format!("{set:?}"), "{0, 3, 5}");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(u64);

impl CpuSet {
    /// How many CPUs a set can name.
    pub const MAX: usize = 64;

    /// No CPU.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// CPUs `0..count` (all of them if `count` is [`MAX`](Self::MAX) or more).
    pub const fn first(count: usize) -> Self {
        if count >= Self::MAX {
            Self(u64::MAX)
        } else {
            Self((1u64 << count) - 1)
        }
    }

    /// Only `cpu` (no CPU if `cpu` is [`MAX`](Self::MAX) or more).
    pub const fn single(cpu: usize) -> Self {
        if cpu >= Self::MAX {
            Self(0)
        } else {
            Self(1 << cpu)
        }
    }

    /// The set whose bit `i` is bit `i` of `bits`.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Bit `i` is set if CPU `i` is in the set.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Add `cpu`; returns whether it was absent. An index of
    /// [`MAX`](Self::MAX) or more is ignored (and returns `false`).
    pub fn insert(&mut self, cpu: usize) -> bool {
        let added = !self.contains(cpu) && cpu < Self::MAX;
        self.0 |= Self::single(cpu).0;
        added
    }

    /// Remove `cpu`; returns whether it was present.
    pub fn remove(&mut self, cpu: usize) -> bool {
        let present = self.contains(cpu);
        self.0 &= !Self::single(cpu).0;
        present
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        self.0 & Self::single(cpu).0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many CPUs are in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The CPUs in either set.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The CPUs in both sets.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The CPUs of `self` that are not in `other`.
    pub const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether every CPU of `self` is in `other`.
    pub const fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// The lowest index in the set.
    pub const fn first_cpu(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize)
        }
    }

    /// The indices in the set, lowest first.
    pub fn iter(self) -> CpuSetIter {
        CpuSetIter(self.0)
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl IntoIterator for CpuSet {
    type Item = usize;
    type IntoIter = CpuSetIter;
    fn into_iter(self) -> CpuSetIter {
        self.iter()
    }
}

impl FromIterator<usize> for CpuSet {
    /// The set of the indices (those of [`CpuSet::MAX`] or more are ignored).
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut set = Self::empty();
        for cpu in iter {
            set.insert(cpu);
        }
        set
    }
}

/// The indices of a [`CpuSet`], lowest first.
#[derive(Debug, Clone)]
pub struct CpuSetIter(u64);

impl Iterator for CpuSetIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let cpu = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(cpu)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for CpuSetIter {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::vec::Vec;

    #[test]
    fn insert_remove_contains() {
        let mut s = CpuSet::empty();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(63));
        assert!(!s.insert(64), "beyond MAX is ignored");
        assert_eq!(s.len(), 2);
        assert!(s.contains(3) && s.contains(63) && !s.contains(64) && !s.contains(0));
        assert!(s.remove(3));
        assert!(!s.remove(3));
        assert_eq!(s, CpuSet::single(63));
        assert_eq!(CpuSet::single(64), CpuSet::empty());
    }

    #[test]
    fn set_algebra_and_order() {
        let a: CpuSet = [0, 2, 4].into_iter().collect();
        let b: CpuSet = [2, 3].into_iter().collect();
        assert_eq!(a.union(b).iter().collect::<Vec<_>>(), [0, 2, 3, 4]);
        assert_eq!(a.intersection(b), CpuSet::single(2));
        assert_eq!(a.minus(b).iter().collect::<Vec<_>>(), [0, 4]);
        assert!(CpuSet::single(4).is_subset(a) && !b.is_subset(a));
        assert_eq!(a.first_cpu(), Some(0));
        assert_eq!(CpuSet::empty().first_cpu(), None);
        assert_eq!(a.iter().len(), 3);
        assert_eq!(CpuSet::first(3).bits(), 0b111);
        assert_eq!(CpuSet::first(64).len(), 64);
        assert_eq!(CpuSet::first(0), CpuSet::empty());
        assert_eq!(CpuSet::from_bits(0b101).iter().collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn debug_shows_indices() {
        assert_eq!(
            format!("{:?}", CpuSet::first(2).union(CpuSet::single(9))),
            "{0, 1, 9}"
        );
        assert_eq!(format!("{:?}", CpuSet::empty()), "{}");
    }
}
