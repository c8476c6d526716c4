//! Sparse simulated physical memory covering the whole 52-bit space.
//!
//! Each 4 KiB frame that has ever been written is a `Box<[AtomicU64; 512]>`,
//! found through a three-level radix of [`OnceLock`]s over the 40-bit frame
//! number (12 + 14 + 14 bits). A reader follows `OnceLock::get` three times:
//! no lock and no `unsafe`, and the frame reference lives as long as the
//! `&SimRam` it came from. Reading a frame nobody wrote returns zeros without
//! allocating it.
//!
//! Words are little-endian inside each `AtomicU64`, as on x86: the 32-bit word
//! at byte offset 8k is the low half of qword k, the word at 8k + 4 the high
//! half.

use core::fmt;
use std::boxed::Box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::vec::Vec;

use paging_core::addr::{MAX_PHYS_BITS_ARCH, PAGE_SIZE, PhysAddr, PhysFrame};
use paging_core::table::QWORDS_PER_TABLE;

/// One frame of simulated RAM.
pub(crate) type FrameWords = [AtomicU64; QWORDS_PER_TABLE];

const TOP_BITS: u32 = 12;
const MID_BITS: u32 = 14;
const LEAF_BITS: u32 = 14;
const TOP_MASK: u64 = (1 << TOP_BITS) - 1;
const MID_MASK: u64 = (1 << MID_BITS) - 1;
const LEAF_MASK: u64 = (1 << LEAF_BITS) - 1;
const _: () = assert!(TOP_BITS + MID_BITS + LEAF_BITS == MAX_PHYS_BITS_ARCH - 12);

/// 16384 frames (64 MiB of physical space).
struct Leaf(Box<[OnceLock<Box<FrameWords>>]>);
/// 16384 leaves (1 TiB of physical space).
struct Mid(Box<[OnceLock<Leaf>]>);

fn cells<T>(bits: u32) -> Box<[OnceLock<T>]> {
    (0..1usize << bits).map(|_| OnceLock::new()).collect()
}

fn new_frame() -> Box<FrameWords> {
    Box::new(core::array::from_fn(|_| AtomicU64::new(0)))
}

/// A simulated RAM access was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// `addr` is not a multiple of the access size `align`.
    Unaligned {
        /// The offending address.
        addr: u64,
        /// The required alignment in bytes.
        align: u64,
    },
    /// The access reaches at or past `2^52`, the end of physical space.
    OutOfRange {
        /// The first byte of the access.
        addr: u64,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { addr, align } => {
                write!(
                    f,
                    "simulated access at {addr:#x} is not {align}-byte aligned"
                )
            }
            Self::OutOfRange { addr } => {
                write!(f, "simulated access at {addr:#x} runs past 2^52")
            }
        }
    }
}

impl core::error::Error for SimError {}

/// Sparse simulated physical RAM (all 2^52 bytes, zero until written).
///
/// Every method takes `&self`; a `SimRam` is `Send + Sync` and is shared by
/// the table views ([`SimAccess`](super::SimAccess)), the simulated CPUs
/// ([`Mmu`](super::Mmu)) and test threads.
pub struct SimRam {
    top: Box<[OnceLock<Mid>]>,
    touched: AtomicUsize,
}

impl Default for SimRam {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRam")
            .field("touched_frames", &self.touched_frames())
            .finish()
    }
}

/// Radix indexes of a frame number. Each is masked to its level's width, so
/// indexing the slices built by `cells` cannot go out of bounds.
fn split(pfn: u64) -> (usize, usize, usize) {
    (
        ((pfn >> (MID_BITS + LEAF_BITS)) & TOP_MASK) as usize,
        ((pfn >> LEAF_BITS) & MID_MASK) as usize,
        (pfn & LEAF_MASK) as usize,
    )
}

fn check(pa: PhysAddr, align: u64) -> Result<(PhysFrame, usize), SimError> {
    let addr = pa.as_u64();
    if !addr.is_multiple_of(align) {
        return Err(SimError::Unaligned { addr, align });
    }
    Ok((
        PhysFrame::containing_address(pa),
        (addr % PAGE_SIZE) as usize,
    ))
}

fn check_range(pa: PhysAddr, len: usize) -> Result<(), SimError> {
    let addr = pa.as_u64();
    match addr.checked_add(len as u64) {
        Some(end) if end <= 1 << MAX_PHYS_BITS_ARCH => Ok(()),
        _ => Err(SimError::OutOfRange { addr }),
    }
}

impl SimRam {
    /// Empty RAM: every byte reads as zero.
    pub fn new() -> Self {
        Self {
            top: cells(TOP_BITS),
            touched: AtomicUsize::new(0),
        }
    }

    /// The frame's words if it was ever written.
    pub(crate) fn frame(&self, frame: PhysFrame) -> Option<&FrameWords> {
        let (t, m, l) = split(frame.number());
        let leaf = self.top[t].get()?.0[m].get()?;
        leaf.0[l].get().map(|b| &**b)
    }

    /// The frame's words, allocating (zeroed) storage on first use.
    pub(crate) fn frame_or_alloc(&self, frame: PhysFrame) -> &FrameWords {
        let (t, m, l) = split(frame.number());
        let mid = self.top[t].get_or_init(|| Mid(cells(MID_BITS)));
        let leaf = mid.0[m].get_or_init(|| Leaf(cells(LEAF_BITS)));
        leaf.0[l].get_or_init(|| {
            self.touched.fetch_add(1, Ordering::Relaxed);
            new_frame()
        })
    }

    fn qword(&self, frame: PhysFrame, index: usize) -> u64 {
        self.frame(frame)
            .map_or(0, |w| w[index % QWORDS_PER_TABLE].load(Ordering::SeqCst))
    }

    fn cell(&self, frame: PhysFrame, index: usize) -> &AtomicU64 {
        &self.frame_or_alloc(frame)[index % QWORDS_PER_TABLE]
    }

    /// Read the naturally aligned 32-bit word at `pa`.
    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, SimError> {
        let (frame, off) = check(pa, 4)?;
        Ok((self.qword(frame, off / 8) >> (8 * (off % 8))) as u32)
    }

    /// Read the naturally aligned 64-bit word at `pa`.
    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, SimError> {
        let (frame, off) = check(pa, 8)?;
        Ok(self.qword(frame, off / 8))
    }

    /// Write the naturally aligned 32-bit word at `pa` in one atomic step.
    pub fn write_u32(&self, pa: PhysAddr, value: u32) -> Result<(), SimError> {
        let (frame, off) = check(pa, 4)?;
        update_bytes(self.cell(frame, off / 8), off % 8, &value.to_le_bytes());
        Ok(())
    }

    /// Write the naturally aligned 64-bit word at `pa`.
    pub fn write_u64(&self, pa: PhysAddr, value: u64) -> Result<(), SimError> {
        let (frame, off) = check(pa, 8)?;
        self.cell(frame, off / 8).store(value, Ordering::SeqCst);
        Ok(())
    }

    /// Atomically replace the 64-bit word at `pa` with `new` if it holds
    /// `current`. The inner result is that of
    /// [`AtomicU64::compare_exchange`]: `Ok(previous)` on success,
    /// `Err(actual)` if the word held something else.
    pub fn compare_exchange_u64(
        &self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, SimError> {
        let (frame, off) = check(pa, 8)?;
        let cell = self.cell(frame, off / 8);
        Ok(cell.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst))
    }

    /// As [`compare_exchange_u64`](Self::compare_exchange_u64), for the
    /// naturally aligned 32-bit word at `pa` (the other half of its qword is
    /// left as it is, whatever it holds).
    pub fn compare_exchange_u32(
        &self,
        pa: PhysAddr,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, SimError> {
        let (frame, off) = check(pa, 4)?;
        let shift = 8 * (off % 8) as u32;
        let mask = 0xFFFF_FFFFu64 << shift;
        let cell = self.cell(frame, off / 8);
        let result = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
            ((q >> shift) as u32 == current).then(|| (q & !mask) | (u64::from(new) << shift))
        });
        Ok(result
            .map(|q| (q >> shift) as u32)
            .map_err(|q| (q >> shift) as u32))
    }

    /// Copy `buf.len()` bytes starting at `pa` (any alignment, may cross
    /// frames) into `buf`.
    pub fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), SimError> {
        check_range(pa, buf.len())?;
        for (addr, byte) in (pa.as_u64()..).zip(buf.iter_mut()) {
            let frame = PhysFrame::containing_address(PhysAddr::new_truncate(addr));
            let off = (addr % PAGE_SIZE) as usize;
            *byte = (self.qword(frame, off / 8) >> (8 * (off % 8))) as u8;
        }
        Ok(())
    }

    /// Copy `buf` to RAM starting at `pa` (any alignment, may cross frames).
    /// Each 8-byte word is updated in one atomic step.
    pub fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<(), SimError> {
        check_range(pa, buf.len())?;
        let mut addr = pa.as_u64();
        let mut rest = buf;
        while !rest.is_empty() {
            let frame = PhysFrame::containing_address(PhysAddr::new_truncate(addr));
            let off = (addr % PAGE_SIZE) as usize;
            let n = rest.len().min(PAGE_SIZE as usize - off);
            let (chunk, tail) = rest.split_at(n);
            self.write_in_frame(frame, off, chunk);
            rest = tail;
            addr += n as u64;
        }
        Ok(())
    }

    /// Copy bytes of `frame` from byte offset `off` into `buf` (bytes past
    /// the frame read as zero; the caller keeps `off + buf.len() <= 4096`).
    pub(crate) fn read_in_frame(&self, frame: PhysFrame, off: usize, buf: &mut [u8]) {
        let words = self.frame(frame);
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = off + i;
            *byte = match words.and_then(|w| w.get(at / 8)) {
                Some(q) => (q.load(Ordering::SeqCst) >> (8 * (at % 8))) as u8,
                None => 0,
            };
        }
    }

    /// Copy `bytes` into `frame` at byte offset `off` (the caller keeps
    /// `off + bytes.len() <= 4096`; anything past the frame is dropped).
    pub(crate) fn write_in_frame(&self, frame: PhysFrame, off: usize, bytes: &[u8]) {
        let words = self.frame_or_alloc(frame);
        let mut off = off;
        let mut rest = bytes;
        while !rest.is_empty() && off < PAGE_SIZE as usize {
            let in_word = off % 8;
            let n = rest.len().min(8 - in_word);
            let (chunk, tail) = rest.split_at(n);
            update_bytes(&words[off / 8], in_word, chunk);
            rest = tail;
            off += n;
        }
    }

    /// Set every byte of `frame` to `byte`.
    pub fn fill_frame(&self, frame: PhysFrame, byte: u8) {
        let word = u64::from_ne_bytes([byte; 8]);
        for cell in self.frame_or_alloc(frame) {
            cell.store(word, Ordering::SeqCst);
        }
    }

    /// A snapshot of the 512 qwords of `frame` (zeros if never written), for
    /// "byte-for-byte unchanged" checks.
    pub fn frame_words(&self, frame: PhysFrame) -> [u64; QWORDS_PER_TABLE] {
        match self.frame(frame) {
            Some(words) => core::array::from_fn(|i| words[i].load(Ordering::SeqCst)),
            None => [0; QWORDS_PER_TABLE],
        }
    }

    /// How many frames have storage (were written, or reached through a
    /// table view, at least once).
    pub fn touched_frames(&self) -> usize {
        self.touched.load(Ordering::Relaxed)
    }

    /// The frames that have storage, in address order.
    pub fn frames_with_storage(&self) -> Vec<PhysFrame> {
        let mut out = Vec::new();
        for (t, mid) in self.top.iter().enumerate() {
            let Some(mid) = mid.get() else { continue };
            for (m, leaf) in mid.0.iter().enumerate() {
                let Some(leaf) = leaf.get() else { continue };
                for (l, slot) in leaf.0.iter().enumerate() {
                    if slot.get().is_some() {
                        let pfn = ((t as u64) << (MID_BITS + LEAF_BITS))
                            | ((m as u64) << LEAF_BITS)
                            | l as u64;
                        out.extend(PhysFrame::from_number(pfn).ok());
                    }
                }
            }
        }
        out
    }
}

/// Replace bytes `at..at + bytes.len()` of `cell` in one atomic step.
pub(crate) fn update_bytes(cell: &AtomicU64, at: usize, bytes: &[u8]) {
    let mut mask = 0u64;
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(8usize.saturating_sub(at)) {
        let shift = 8 * (at + i);
        mask |= 0xFF << shift;
        value |= u64::from(b) << shift;
    }
    // `fetch_update` is a compare-exchange loop: no other thread can see a
    // state with only some of the bytes replaced.
    let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
        Some((q & !mask) | value)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(x: u64) -> PhysAddr {
        PhysAddr::new(x).unwrap()
    }

    #[test]
    fn words_are_little_endian_halves_of_qwords() {
        let ram = SimRam::new();
        ram.write_u64(pa(0x1000), 0x1122_3344_5566_7788).unwrap();
        assert_eq!(ram.read_u32(pa(0x1000)).unwrap(), 0x5566_7788);
        assert_eq!(ram.read_u32(pa(0x1004)).unwrap(), 0x1122_3344);
        ram.write_u32(pa(0x1004), 0xAABB_CCDD).unwrap();
        assert_eq!(ram.read_u64(pa(0x1000)).unwrap(), 0xAABB_CCDD_5566_7788);
        let mut b = [0u8; 3];
        ram.read_bytes(pa(0x1003), &mut b).unwrap();
        assert_eq!(b, [0x55, 0xDD, 0xCC]);
    }

    #[test]
    fn untouched_frames_read_as_zero_without_allocating() {
        let ram = SimRam::new();
        let high = pa((1 << 52) - 8);
        assert_eq!(ram.read_u64(high).unwrap(), 0);
        assert_eq!(ram.touched_frames(), 0);
        ram.write_u64(high, 5).unwrap();
        assert_eq!(ram.read_u64(high).unwrap(), 5);
        assert_eq!(ram.touched_frames(), 1);
        assert_eq!(
            ram.frames_with_storage(),
            [PhysFrame::containing_address(high)]
        );
    }

    #[test]
    fn bad_accesses_are_errors_not_panics() {
        let ram = SimRam::new();
        assert_eq!(
            ram.read_u32(pa(0x1002)),
            Err(SimError::Unaligned {
                addr: 0x1002,
                align: 4
            })
        );
        assert!(ram.write_u64(pa(0x1004), 1).is_err());
        assert!(ram.compare_exchange_u64(pa(4), 0, 1).is_err());
        let last = pa((1 << 52) - 2);
        assert_eq!(
            ram.write_bytes(last, &[1, 2, 3]),
            Err(SimError::OutOfRange {
                addr: last.as_u64()
            })
        );
        assert!(ram.write_bytes(last, &[1, 2]).is_ok());
        assert_eq!(ram.touched_frames(), 1);
    }

    #[test]
    fn bytes_cross_frames_and_compare_exchange_reports_actual() {
        let ram = SimRam::new();
        let data: Vec<u8> = (0..20).collect();
        ram.write_bytes(pa(0x1FF6), &data).unwrap();
        let mut back = [0u8; 20];
        ram.read_bytes(pa(0x1FF6), &mut back).unwrap();
        assert_eq!(&back[..], &data[..]);
        assert_eq!(ram.read_u32(pa(0x2000)).unwrap(), 0x0D0C_0B0A);
        assert_eq!(
            ram.compare_exchange_u32(pa(0x2000), 1, 2).unwrap(),
            Err(0x0D0C_0B0A)
        );
        assert_eq!(
            ram.compare_exchange_u32(pa(0x2000), 0x0D0C_0B0A, 2)
                .unwrap(),
            Ok(0x0D0C_0B0A)
        );
        assert_eq!(ram.read_u64(pa(0x2000)).unwrap(), 0x1110_0F0E_0000_0002);
        let f = PhysFrame::containing_address(pa(0x2000));
        ram.fill_frame(f, 0xAB);
        assert!(
            ram.frame_words(f)
                .iter()
                .all(|&w| w == 0xABAB_ABAB_ABAB_ABAB)
        );
    }
}
