//! Shared by the hostile-world tests: the test window, an independent walk
//! of the raw tables written from the SDM (Vol. 3A 4.3 for 32-bit paging,
//! 4.4 for PAE), and a builder of pre-populated hierarchies full of
//! SDM-valid but unusual entries.
//!
//! The walk reads SimRam directly. It does not use paging-core's `Walker`,
//! the backends' entry types or the simulated MMU: it is the oracle the
//! mapper is judged by.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;

use paging_core::{MapFlags, PagingMode, PhysAddr, PhysFrame};
use paging_sim::SimRam;

/// A fresh RAM that lives for the rest of the test.
pub fn leaked_ram() -> &'static SimRam {
    let ram: &'static SimRam = Box::leak(Box::new(SimRam::new()));
    // Miri reports memory nobody can reach at exit as leaked; kept in a
    // static, the deliberately leaked RAM is reachable.
    #[cfg(miri)]
    KEPT.lock().unwrap().push(ram);
    ram
}

/// Every leaked RAM, reachable (under Miri only).
#[cfg(miri)]
static KEPT: std::sync::Mutex<Vec<&'static SimRam>> = std::sync::Mutex::new(Vec::new());

/// Large-page blocks in the window: two below the 1 GiB line, two above (a
/// PDPTE boundary in PAE).
pub const BLOCKS: u32 = 4;

// Entry bits (SDM Vol. 3A tables 4-4 to 4-6 and 4-8 to 4-11).
pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const PS: u64 = 1 << 7;
pub const G: u64 = 1 << 8;
/// Bits 9-11: ignored by the CPU at every level, the software's.
pub const SW: u64 = 0x7 << 9;
/// PAT in a 4 KiB PTE.
pub const PTE_PAT: u64 = 1 << 7;
/// PAT in a PDE that maps a large page.
pub const LARGE_PAT: u64 = 1 << 12;
pub const XD: u64 = 1 << 63;
/// PAE PDPTE: bits 2:1 and 8:5 are reserved (Table 4-8).
pub const PDPTE_RESERVED_LOW: u64 = 0b110 | (0xF << 5);

/// The window one mode is tested in, and what the mode can reach.
#[derive(Debug, Clone, Copy)]
pub struct Geo {
    /// PAE (else 32-bit paging).
    pub pae: bool,
    /// MAXPHYADDR: 32 in 2-level mode (no PSE-36), in PAE the narrower of
    /// the mode's width and the CPU's.
    pub maxphy: u32,
    /// 4 KiB pages per large-page block.
    pub per_block: u32,
    /// Virtual address of the window's first byte.
    pub base: u32,
    /// Bytes per large page.
    pub large: u64,
    /// The CPU the mapper is bound to (and the world is built for).
    pub features: paging_core::CpuFeatures,
}

impl Geo {
    /// The window for mode `M` on a CPU with every feature.
    pub fn of<M: PagingMode>() -> Self {
        Self::on::<M>(paging_core::CpuFeatures::full::<M>())
    }

    /// The window for mode `M` on a CPU with `features`.
    pub fn on<M: PagingMode>(features: paging_core::CpuFeatures) -> Self {
        let pae = !M::PMD_FOLDED;
        let large = M::LARGE_PAGE_SIZE.bytes();
        Self {
            pae,
            maxphy: if pae {
                M::MAX_PHYS_BITS.min(features.max_phys_bits)
            } else {
                32
            },
            per_block: (large / 4096) as u32,
            base: (0x4000_0000 - 2 * large) as u32,
            large,
            features,
        }
    }

    /// EFER.NXE: bit 63 is XD (PAE), else reserved.
    pub fn nxe(&self) -> bool {
        self.pae && self.features.nx
    }

    /// Whether a PDE with PS maps a large page: always in PAE, with CR4.PSE
    /// in 2-level mode (else PS is ignored: SDM Vol. 3A table 4-5).
    pub fn large_pages(&self) -> bool {
        self.pae || self.features.pse
    }

    /// The PAT bits reserved on this CPU: bit 7 of a PTE and bit 12 of a
    /// large-page PDE without the PAT, under PAE or with CR4.PSE (SDM Vol.
    /// 3A 4.3, 4.4.2); `(pte, large)`.
    pub fn pat_reserved(&self) -> (u64, u64) {
        if self.features.pat || !self.large_pages() {
            (0, 0)
        } else {
            (PTE_PAT, LARGE_PAT)
        }
    }

    /// Why this CPU cannot take a leaf with `flags` (of the large size if
    /// `large`), if it cannot: the rule of `paging_core::features`, stated
    /// from the SDM's reserved bits. XD without NX is dropped instead under
    /// the drop policy (see [`effective`](Self::effective)).
    pub fn cpu_refuses(&self, flags: MapFlags, large: bool) -> Option<&'static str> {
        if large && !self.large_pages() {
            Some("no PSE for a large page")
        } else if flags.contains(MapFlags::PAT) && !self.features.pat {
            Some("no PAT for the PAT bit")
        } else if self.pae
            && flags.contains(MapFlags::NO_EXECUTE)
            && !self.features.nx
            && self.features.nx_policy == paging_core::NxPolicy::Refuse
        {
            Some("no NX for XD")
        } else {
            None
        }
    }

    /// The flags a leaf asked for with `flags` gets: XD dropped on a PAE
    /// CPU without NX under the drop policy.
    pub fn effective(&self, flags: MapFlags) -> MapFlags {
        if self.pae && !self.features.nx {
            flags - MapFlags::NO_EXECUTE
        } else {
            flags
        }
    }

    /// Pages in the window.
    pub fn pages(&self) -> u32 {
        BLOCKS * self.per_block
    }

    /// Virtual address of window page `page`.
    pub fn va(&self, page: u32) -> u32 {
        self.base + page * 4096
    }

    /// Block of window page `page`.
    pub fn block(&self, page: u32) -> u32 {
        page / self.per_block
    }

    /// Index of block `b`'s entry in the top-level table.
    pub fn pgd_index(&self, b: u32) -> u64 {
        let va = u64::from(self.va(b * self.per_block));
        if self.pae { va >> 30 } else { va >> 22 }
    }

    /// Index of block `b`'s PDE in its page directory.
    pub fn pde_index(&self, b: u32) -> u64 {
        let va = u64::from(self.va(b * self.per_block));
        if self.pae { (va >> 21) & 511 } else { va >> 22 }
    }

    /// Bytes per entry.
    pub fn entry_bytes(&self) -> u64 {
        if self.pae { 8 } else { 4 }
    }

    /// Bits 63:MAXPHYADDR.
    pub fn above_maxphy(&self) -> u64 {
        !((1u64 << self.maxphy) - 1)
    }

    /// The address bits of an entry (bits MAXPHYADDR-1:0).
    pub fn addr_mask(&self) -> u64 {
        !self.above_maxphy()
    }

    /// Whether a paging structure at `addr` can be pointed at by a table
    /// entry of this mode (PAE: below 2^MAXPHYADDR; 32-bit: below 4 GiB).
    pub fn table_in_reach(&self, addr: u64) -> bool {
        addr >> self.maxphy == 0
    }

    /// Whether `len` bytes from `pa` can be mapped.
    pub fn leaf_in_reach(&self, pa: u64, len: u64) -> bool {
        (pa + len - 1) >> self.maxphy == 0
    }

    /// The flags an op's bits ask for: bit 0 W, 1 U, 2 G, 3 PCD, 4 PWT,
    /// 5 PAT, 6 NX.
    pub fn flags_of(bits: u8) -> MapFlags {
        let mut f = MapFlags::empty();
        for (bit, flag) in [
            (1, MapFlags::WRITABLE),
            (2, MapFlags::USER),
            (4, MapFlags::GLOBAL),
            (8, MapFlags::CACHE_DISABLE),
            (16, MapFlags::WRITE_THROUGH),
            (32, MapFlags::PAT),
            (64, MapFlags::NO_EXECUTE),
        ] {
            if bits & bit != 0 {
                f |= flag;
            }
        }
        f
    }

    /// Whether the mode can express `flags` (NX needs PAE).
    pub fn expressible(&self, flags: MapFlags) -> bool {
        self.pae || !flags.contains(MapFlags::NO_EXECUTE)
    }

    /// Whether a table entry `pde` (present, not a large page) lets a leaf
    /// with `flags` have exactly those rights: R/W and U/S are ANDed, XD is
    /// ORed over the levels (SDM 4.6).
    pub fn table_allows(&self, pde: u64, flags: MapFlags) -> bool {
        (!flags.contains(MapFlags::WRITABLE) || pde & RW != 0)
            && (!flags.contains(MapFlags::USER) || pde & US != 0)
            && (!self.pae || flags.contains(MapFlags::NO_EXECUTE) || pde & XD == 0)
    }
}

/// A present leaf as the CPU would use it: effective rights combined over
/// the walk, the leaf's cache bits, status and software bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Physical address of the 4 KiB page.
    pub pa: u64,
    /// Mapped by a large page.
    pub large: bool,
    pub w: bool,
    pub u: bool,
    pub nx: bool,
    pub g: bool,
    pub a: bool,
    pub d: bool,
    pub pat: bool,
    pub pcd: bool,
    pub pwt: bool,
    /// Bits 9-11 of the leaf.
    pub sw: u8,
}

impl Leaf {
    /// The leaf a mapping of `pa` with `flags` should give (A, D and
    /// software bits zero).
    pub fn wanted(pa: u64, large: bool, flags: MapFlags) -> Self {
        Self {
            pa,
            large,
            w: flags.contains(MapFlags::WRITABLE),
            u: flags.contains(MapFlags::USER),
            nx: flags.contains(MapFlags::NO_EXECUTE),
            g: flags.contains(MapFlags::GLOBAL),
            a: false,
            d: false,
            pat: flags.contains(MapFlags::PAT),
            pcd: flags.contains(MapFlags::CACHE_DISABLE),
            pwt: flags.contains(MapFlags::WRITE_THROUGH),
            sw: 0,
        }
    }

    /// The same leaf with A, D and the software bits cleared.
    pub fn without_status(self) -> Self {
        Self {
            a: false,
            d: false,
            sw: 0,
            ..self
        }
    }
}

/// What one 4 KiB page of the window is, according to the raw tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageView {
    /// The walk stopped at a non-present entry holding this raw value (zero
    /// for an empty entry at any level).
    Unmapped(u64),
    /// A reserved bit is set in the entry at this level (0 PDPTE, 1 PDE,
    /// 2 PTE): the CPU faults with RSVD, or the CR3 load #GPs.
    Reserved(u8),
    /// Mapped.
    Mapped(Leaf),
}

/// The upper entries over one block of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHier {
    /// Address of the top-level entry (the PDPTE in PAE, the PDE in 2-level).
    pub pgd_slot: u64,
    /// Its raw value.
    pub pgd: u64,
    /// Address of the PDE (`None` in PAE when the PDPTE is not present).
    pub pde_slot: Option<u64>,
    /// The PDE (zero if there is no page directory).
    pub pde: u64,
}

/// What the block's PDE holds, for deciding what an operation may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// No PDE, or an empty one.
    Empty,
    /// A non-present, non-empty PDPTE (PAE).
    SoftPgd,
    /// A non-present, non-empty PDE.
    SoftPde,
    /// A PDE pointing at a page table.
    Table,
    /// A PDE mapping a large page.
    Large,
}

impl BlockHier {
    /// What the block's upper entries hold.
    pub fn kind(&self, geo: &Geo) -> BlockKind {
        if geo.pae && self.pgd & P == 0 && self.pgd != 0 {
            return BlockKind::SoftPgd;
        }
        match (
            self.pde & P != 0,
            self.pde & PS != 0 && geo.large_pages(),
            self.pde == 0,
        ) {
            (_, _, true) => BlockKind::Empty,
            (false, _, false) => BlockKind::SoftPde,
            (true, false, _) => BlockKind::Table,
            (true, true, _) => BlockKind::Large,
        }
    }

    /// Address of the page table (for [`BlockKind::Table`]).
    pub fn pt(&self, geo: &Geo) -> u64 {
        self.pde & geo.addr_mask() & !0xFFF & if geo.pae { u64::MAX } else { 0xFFFF_F000 }
    }
}

fn frame_of(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new_truncate(addr))
}

fn read(ram: &SimRam, geo: &Geo, addr: u64) -> u64 {
    let pa = PhysAddr::new_truncate(addr);
    if geo.pae {
        ram.read_u64(pa).unwrap()
    } else {
        u64::from(ram.read_u32(pa).unwrap())
    }
}

/// Entry `i` of a table whose 512 qwords are `words`.
fn entry(geo: &Geo, words: &[u64; 512], i: usize) -> u64 {
    if geo.pae {
        words[i]
    } else {
        (words[i / 2] >> (32 * (i % 2))) & 0xFFFF_FFFF
    }
}

/// The upper entries of every block of the window, under the root `root`
/// (the CR3 value).
pub fn hierarchy(ram: &SimRam, geo: &Geo, root: u64) -> Vec<BlockHier> {
    (0..BLOCKS)
        .map(|b| {
            if geo.pae {
                let pdpt = root & 0xFFFF_FFE0;
                let pgd_slot = pdpt + 8 * geo.pgd_index(b);
                let pgd = read(ram, geo, pgd_slot);
                if pgd & P == 0 {
                    return BlockHier {
                        pgd_slot,
                        pgd,
                        pde_slot: None,
                        pde: 0,
                    };
                }
                let pd = pgd & geo.addr_mask() & !0xFFF & ((1 << 52) - 1);
                let pde_slot = pd + 8 * geo.pde_index(b);
                BlockHier {
                    pgd_slot,
                    pgd,
                    pde_slot: Some(pde_slot),
                    pde: read(ram, geo, pde_slot),
                }
            } else {
                let slot = (root & 0xFFFF_F000) + 4 * geo.pde_index(b);
                let pde = read(ram, geo, slot);
                BlockHier {
                    pgd_slot: slot,
                    pgd: pde,
                    pde_slot: Some(slot),
                    pde,
                }
            }
        })
        .collect()
}

/// Every page of the window as the CPU would see it (SDM 4.3 / 4.4, with
/// CR4.PSE on in 2-level mode and EFER.NXE on in PAE), from the upper
/// entries `hier`.
pub fn view(ram: &SimRam, geo: &Geo, hier: &[BlockHier]) -> Vec<PageView> {
    let mut out = Vec::with_capacity(geo.pages() as usize);
    let per = geo.per_block as usize;
    for h in hier {
        if geo.pae {
            if h.pgd & P == 0 {
                out.extend(std::iter::repeat_n(PageView::Unmapped(h.pgd), per));
                continue;
            }
            if h.pgd & (PDPTE_RESERVED_LOW | geo.above_maxphy()) != 0 {
                out.extend(std::iter::repeat_n(PageView::Reserved(0), per));
                continue;
            }
        }
        let pde = h.pde;
        if pde & P == 0 {
            out.extend(std::iter::repeat_n(PageView::Unmapped(pde), per));
            continue;
        }
        // PAE: bits 62:M are reserved in present PDEs and PTEs; bit 63 is
        // XD with NXE, else reserved too. 32-bit: no reserved bits but in a
        // 4 MiB PDE, and the PAT bits without the PAT (with CR4.PSE).
        let reserved = match (geo.pae, geo.nxe()) {
            (true, true) => geo.above_maxphy() & !XD,
            (true, false) => geo.above_maxphy(),
            (false, _) => 0,
        };
        let (pte_pat_rsvd, large_pat_rsvd) = geo.pat_reserved();
        if pde & reserved != 0 {
            out.extend(std::iter::repeat_n(PageView::Reserved(1), per));
            continue;
        }
        let xd = |e: u64| geo.nxe() && e & XD != 0;
        if pde & PS != 0 && geo.large_pages() {
            // 2 MiB PDE: bits 20:13 reserved; 4 MiB PDE without PSE-36:
            // bits 21:13 reserved.
            let (low_reserved, base_mask) = if geo.pae {
                (0xFFu64 << 13, geo.addr_mask() & !0x1F_FFFF)
            } else {
                (0x1FFu64 << 13, 0xFFC0_0000)
            };
            if pde & (low_reserved | large_pat_rsvd) != 0 {
                out.extend(std::iter::repeat_n(PageView::Reserved(1), per));
                continue;
            }
            let base = pde & base_mask;
            for i in 0..per {
                out.push(PageView::Mapped(Leaf {
                    pa: base + i as u64 * 4096,
                    large: true,
                    w: pde & RW != 0,
                    u: pde & US != 0,
                    nx: xd(pde),
                    g: pde & G != 0,
                    a: pde & A != 0,
                    d: pde & D != 0,
                    pat: pde & LARGE_PAT != 0,
                    pcd: pde & PCD != 0,
                    pwt: pde & PWT != 0,
                    sw: ((pde & SW) >> 9) as u8,
                }));
            }
            continue;
        }
        let pt = h.pt(geo);
        let words = ram.frame_words(frame_of(pt));
        let leaf_mask = if geo.pae {
            geo.addr_mask() & !0xFFF
        } else {
            0xFFFF_F000
        };
        for i in 0..per {
            let pte = entry(geo, &words, i);
            out.push(if pte & P == 0 {
                PageView::Unmapped(pte)
            } else if pte & (reserved | pte_pat_rsvd) != 0 {
                PageView::Reserved(2)
            } else {
                PageView::Mapped(Leaf {
                    pa: pte & leaf_mask,
                    large: false,
                    w: pde & RW != 0 && pte & RW != 0,
                    u: pde & US != 0 && pte & US != 0,
                    nx: xd(pde) || xd(pte),
                    g: pte & G != 0,
                    a: pte & A != 0,
                    d: pte & D != 0,
                    pat: pte & PTE_PAT != 0,
                    pcd: pte & PCD != 0,
                    pwt: pte & PWT != 0,
                    sw: ((pte & SW) >> 9) as u8,
                })
            });
        }
    }
    out
}

/// Every paging-structure frame reachable from `root` (the whole
/// hierarchy, not only the window): the root's frame, every page directory
/// and every page table.
pub fn reachable_tables(ram: &SimRam, geo: &Geo, root: u64) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let phys = (1u64 << 52) - 1;
    out.insert(root >> 12);
    let mut dirs = Vec::new();
    if geo.pae {
        let pdpt = root & 0xFFFF_FFE0;
        for i in 0..4 {
            let e = read(ram, geo, pdpt + 8 * i);
            if e & P != 0 {
                dirs.push(e & phys & !0xFFF);
            }
        }
    } else {
        dirs.push(root & 0xFFFF_F000);
    }
    let entries = if geo.pae { 512 } else { 1024 };
    for dir in dirs {
        out.insert(dir >> 12);
        let words = ram.frame_words(frame_of(dir));
        for i in 0..entries {
            let e = entry(geo, &words, i);
            if e & P != 0 && e & PS == 0 {
                let pt = if geo.pae {
                    e & phys & !0xFFF
                } else {
                    e & 0xFFFF_F000
                };
                out.insert(pt >> 12);
            }
        }
    }
    out
}

/// Whether every entry of the table at `addr` is zero.
pub fn table_is_zero(ram: &SimRam, addr: u64) -> bool {
    ram.frame_words(frame_of(addr)).iter().all(|&w| w == 0)
}

/// SplitMix64: a tiny deterministic generator for world contents.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `bit` with probability `pct`%, else 0.
    pub fn bit(&mut self, bit: u64, pct: u64) -> u64 {
        if self.chance(pct) { bit } else { 0 }
    }
}

/// Frame-number ranges frames are drawn from: ordinary low memory, and the
/// edges of each mode's reach.
pub const REGIONS: [(u64, u64); 6] = [
    // 1 MiB .. 64 MiB.
    (0x100, 0x4000),
    // The last 4 MiB below 4 GiB.
    (0xF_FC00, 0x10_0000),
    // The first 4 MiB above 4 GiB.
    (0x10_0000, 0x10_0400),
    // The last 4 MiB below 2^36.
    (0xFF_FC00, 0x100_0000),
    // The first 4 MiB above 2^36.
    (0x100_0000, 0x100_0400),
    // The last 4 MiB of the 52-bit space.
    (0xFF_FFFF_FC00, 0x100_0000_0000),
];

/// How hostile the allocator's script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocStyle {
    /// Low memory only.
    Friendly,
    /// Half low memory, half anywhere.
    Mixed,
    /// Mostly beyond reach.
    Hostile,
}

/// A pre-populated hierarchy written into RAM.
#[derive(Debug, Clone)]
pub struct World {
    /// The CR3 value (PAE: a PDPT anywhere 32-byte aligned in its frame).
    pub root: u64,
    /// Frames the hierarchy uses as paging structures.
    pub owned: Vec<PhysFrame>,
    /// The allocator's script.
    pub pool: Vec<PhysFrame>,
}

struct Builder<'a> {
    ram: &'a SimRam,
    geo: Geo,
    rng: Rng,
    used: BTreeSet<u64>,
    owned: Vec<PhysFrame>,
    plain: bool,
    low_tables: bool,
}

impl Builder<'_> {
    fn frame_in(&mut self, region: usize) -> u64 {
        let (lo, hi) = REGIONS[region];
        loop {
            let f = lo + self.rng.below(hi - lo);
            if self.used.insert(f) {
                return f;
            }
        }
    }

    /// A frame a table entry of this mode can point at.
    fn table_frame(&mut self) -> u64 {
        let regions: &[usize] = if self.geo.pae && self.geo.maxphy >= 36 && !self.low_tables {
            &[0, 1, 2, 3]
        } else {
            &[0, 1]
        };
        let r = regions[self.rng.below(regions.len() as u64) as usize];
        let f = self.frame_in(r);
        self.owned.push(PhysFrame::from_number(f).unwrap());
        f
    }

    fn write(&self, addr: u64, value: u64) {
        let pa = PhysAddr::new_truncate(addr);
        if self.geo.pae {
            self.ram.write_u64(pa, value).unwrap();
        } else {
            self.ram.write_u32(pa, value as u32).unwrap();
        }
    }

    /// A non-present, non-zero entry (software contents: any bit but P).
    /// This is the only place bits 52-62 are set in PAE: in a present PAE
    /// entry bits 62:MAXPHYADDR are reserved (SDM Vol. 3A tables 4-8 to
    /// 4-11; unlike 4-level paging, PAE ignores none of them), so a leaf
    /// with software bits up there would fault with RSVD.
    fn soft(&mut self) -> u64 {
        let mask = if self.geo.pae { !P } else { 0xFFFF_FFFE };
        (self.rng.next() & mask).max(2)
    }

    fn sw(&mut self) -> u64 {
        if self.rng.chance(50) {
            self.rng.below(8) << 9
        } else {
            0
        }
    }

    fn xd(&mut self, pct: u64) -> u64 {
        if self.geo.nxe() {
            self.rng.bit(XD, pct)
        } else {
            0
        }
    }

    /// A present leaf PTE for a random frame the mode can map.
    fn pte(&mut self) -> u64 {
        let frames = 1u64 << (self.geo.maxphy - 12);
        let pa = self.rng.below(frames) << 12;
        let r = &mut self.rng;
        let bits = P
            | r.bit(RW, 50)
            | r.bit(US, 50)
            | r.bit(PWT, 20)
            | r.bit(PCD, 20)
            | r.bit(A, 50)
            | r.bit(D, 30)
            | r.bit(PTE_PAT, 20)
            | r.bit(G, 20);
        let pat = if self.geo.features.pat { 0 } else { PTE_PAT };
        (pa | bits | self.sw() | self.xd(40)) & !pat
    }

    /// A present PDE mapping a large page.
    fn large(&mut self) -> u64 {
        let shift = self.geo.large.trailing_zeros();
        let pa = self.rng.below(1 << (self.geo.maxphy - shift)) << shift;
        let r = &mut self.rng;
        let bits = P
            | PS
            | r.bit(RW, 50)
            | r.bit(US, 50)
            | r.bit(PWT, 20)
            | r.bit(PCD, 20)
            | r.bit(A, 50)
            | r.bit(D, 30)
            | r.bit(LARGE_PAT, 20)
            | r.bit(G, 20);
        let pat = if self.geo.features.pat { 0 } else { LARGE_PAT };
        (pa | bits | self.sw() | self.xd(40)) & !pat
    }

    /// A page table filled with a random density of leaves and software
    /// entries; returns the PDE pointing at it, with random restrictive,
    /// cache, ignored and software bits.
    fn table_pde(&mut self) -> u64 {
        let pt = self.table_frame();
        let entries = if self.geo.pae { 512 } else { 1024 };
        let (present, soft) = match self.rng.below(4) {
            0 => (0, 0),
            1 => (3, 2),
            2 => (30, 10),
            _ => (0, 5),
        };
        for i in 0..entries {
            let e = if self.rng.chance(present) {
                self.pte()
            } else if self.rng.chance(soft) {
                self.soft()
            } else {
                0
            };
            if e != 0 {
                self.write((pt << 12) + i * self.geo.entry_bytes(), e);
            }
        }
        if self.plain {
            return (pt << 12) | P | RW | US | A;
        }
        let r = &mut self.rng;
        let bits = P
            | r.bit(RW, 50)
            | r.bit(US, 50)
            | r.bit(PWT, 20)
            | r.bit(PCD, 20)
            | r.bit(A, 50)
            | r.bit(D, 20)
            | r.bit(G, 20);
        (pt << 12) | bits | self.sw() | self.xd(30)
    }

    /// A PDE for a window slot (`window`) or any other slot (no large page
    /// on a 2-level CPU without PSE: PS would be ignored).
    fn pde(&mut self, window: bool) -> u64 {
        let roll = self.rng.below(100);
        let large = self.geo.large_pages();
        if window {
            match roll {
                0..30 => 0,
                30..40 => self.soft(),
                40..85 => self.table_pde(),
                _ if large => self.large(),
                _ => self.table_pde(),
            }
        } else {
            match roll {
                0..82 => 0,
                82..90 => self.soft(),
                90..97 if large => self.large(),
                90..97 => 0,
                _ => self.table_pde(),
            }
        }
    }

    fn directory(&mut self, pd: u64, window_slots: &[u64]) {
        let entries = if self.geo.pae { 512 } else { 1024 };
        for i in 0..entries {
            let e = self.pde(window_slots.contains(&i));
            if e != 0 {
                self.write((pd << 12) + i * self.geo.entry_bytes(), e);
            }
        }
    }
}

/// Build a random valid hierarchy for `geo` from `seed` into `ram`, and an
/// allocator script of `pool_len` frames in `style`. With `plain_tables`,
/// every pre-built table entry is present, writable and user with nothing
/// else set (no restriction, cache or software bits on table entries).
/// With `low_tables`, every pre-built paging structure is below 4 GiB.
pub fn build_world(
    ram: &SimRam,
    geo: Geo,
    seed: u64,
    style: AllocStyle,
    pool_len: usize,
    plain_tables: bool,
    low_tables: bool,
) -> World {
    let mut b = Builder {
        ram,
        geo,
        rng: Rng(seed),
        used: BTreeSet::new(),
        owned: Vec::new(),
        plain: plain_tables,
        low_tables,
    };
    let region = if b.rng.chance(50) { 0 } else { 1 };
    let root_frame = b.frame_in(region);
    b.owned.push(PhysFrame::from_number(root_frame).unwrap());
    let window_pgd: BTreeSet<u64> = (0..BLOCKS).map(|x| geo.pgd_index(x)).collect();
    let root = if geo.pae {
        // The PDPT somewhere in its frame; the rest of the frame is data
        // the mapper must not touch.
        let off = b.rng.below(128) * 32;
        for i in 0..512u64 {
            if i * 8 < off || i * 8 >= off + 32 {
                let v = b.rng.next();
                ram.write_u64(PhysAddr::new_truncate((root_frame << 12) + i * 8), v)
                    .unwrap();
            }
        }
        let root = (root_frame << 12) + off;
        for i in 0..4u64 {
            let window = window_pgd.contains(&i);
            let roll = b.rng.below(100);
            let e = match roll {
                0..25 => 0,
                25..35 => b.soft(),
                _ => {
                    let pd = b.table_frame();
                    let slots: Vec<u64> = (0..BLOCKS)
                        .filter(|&x| geo.pgd_index(x) == i)
                        .map(|x| geo.pde_index(x))
                        .collect();
                    b.directory(pd, if window { &slots } else { &[] });
                    if b.plain {
                        (pd << 12) | P
                    } else {
                        let r = &mut b.rng;
                        (pd << 12) | P | r.bit(PWT, 25) | r.bit(PCD, 25) | b.sw()
                    }
                }
            };
            ram.write_u64(PhysAddr::new_truncate(root + 8 * i), e)
                .unwrap();
        }
        root
    } else {
        let slots: Vec<u64> = (0..BLOCKS).map(|x| geo.pde_index(x)).collect();
        b.directory(root_frame, &slots);
        root_frame << 12
    };
    let mut pool = Vec::with_capacity(pool_len);
    for _ in 0..pool_len {
        let region = match style {
            AllocStyle::Friendly => 0,
            AllocStyle::Mixed if b.rng.chance(50) => 0,
            AllocStyle::Hostile if b.rng.chance(20) => 0,
            _ => b.rng.below(REGIONS.len() as u64) as usize,
        };
        pool.push(PhysFrame::from_number(b.frame_in(region)).unwrap());
    }
    World {
        root,
        owned: b.owned,
        pool,
    }
}
