//! Finding the CPUs: the ACPI MADT, with the Intel MultiProcessor table as
//! the fallback (both QEMU and Bochs provide both).
//!
//! The RSDP and the MP floating pointer are searched where the
//! specifications put them (the first KiB of the EBDA, the last KiB of base
//! memory, the BIOS ROM 0xE0000..0xFFFFF), read through the direct map. The
//! tables they point to may lie anywhere in physical memory (QEMU puts the
//! ACPI tables at the top of RAM below 4 GiB, above lowmem when there is
//! much RAM), so they are read page by page through the fixmap slot
//! `FIRMWARE`. Every structure's checksum is verified; a bad one is
//! skipped, as Linux does.

use crate::mm::shootdown::KernelTlb;
use paging_core::{PhysAddr, PhysFrame};

use crate::arch::mode;
use crate::base::config::CPUS;
use crate::mm::early_fixmap::KernelFixmapT;
use crate::mm::layout::{KernelFixmap, PAGE_OFFSET};

/// Where the CPU list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The ACPI MADT.
    Madt,
    /// The Intel MultiProcessor configuration table.
    MpTable,
    /// Neither: only the boot CPU is known.
    None,
}

impl Source {
    /// For the boot log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Madt => "ACPI MADT",
            Self::MpTable => "MP table",
            Self::None => "no firmware table",
        }
    }
}

/// The enabled CPUs the firmware lists, by local APIC ID.
#[derive(Clone, Copy, Debug)]
pub struct CpuList {
    /// Where the list came from.
    pub source: Source,
    /// APIC IDs, in table order (the first `count`).
    pub apic_ids: [u8; CPUS],
    /// How many of `apic_ids` are valid.
    pub count: usize,
    /// Enabled CPUs beyond [`CPUS`], left out.
    pub left_out: usize,
    /// The local APIC's physical address the table gives.
    pub apic_base: u32,
}

impl CpuList {
    const fn empty(source: Source) -> Self {
        Self {
            source,
            apic_ids: [0; CPUS],
            count: 0,
            left_out: 0,
            apic_base: 0,
        }
    }

    fn push(&mut self, apic_id: u8) {
        if self.apic_ids[..self.count].contains(&apic_id) {
            return;
        }
        if self.count < CPUS {
            self.apic_ids[self.count] = apic_id;
            self.count += 1;
        } else {
            self.left_out += 1;
        }
    }

    /// The APIC IDs.
    pub fn ids(&self) -> &[u8] {
        &self.apic_ids[..self.count]
    }
}

/// Reads physical memory through the fixmap slot `FIRMWARE`.
struct PhysReader<'f> {
    fixmap: &'f KernelFixmapT,
}

impl PhysReader<'_> {
    /// Copies `buf.len()` bytes from physical `phys`.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let mut done = 0;
        while done < buf.len() {
            let at = phys + done as u64;
            let frame = PhysFrame::containing_address(
                PhysAddr::new(at).map_err(|_| "address beyond the physical range")?,
            );
            let offset = (at & 0xFFF) as usize;
            let take = (4096 - offset).min(buf.len() - done);
            self.fixmap
                .set(
                    KernelFixmap::FIRMWARE,
                    frame,
                    paging_core::MapFlags::KERNEL_RW | mode::no_execute(),
                    &KernelTlb,
                )
                .map_err(|_| "cannot map the firmware slot")?;
            let va = self.fixmap.virt(KernelFixmap::FIRMWARE).as_u32() as usize + offset;
            for (i, byte) in buf[done..done + take].iter_mut().enumerate() {
                // SAFETY: the slot was just mapped readable to the frame
                // holding `at`; firmware tables are plain memory no Rust
                // object owns; volatile because the mapping changes.
                *byte = unsafe { ((va + i) as *const u8).read_volatile() };
            }
            done += take;
        }
        self.fixmap
            .clear(KernelFixmap::FIRMWARE, &KernelTlb)
            .map_err(|_| "cannot clear the firmware slot")?;
        Ok(())
    }

    fn u32_at(&self, phys: u64) -> Result<u32, &'static str> {
        let mut b = [0; 4];
        self.read(phys, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Low memory (below 1 MiB), through the direct map.
fn low(phys: u32, len: usize) -> &'static [u8] {
    // SAFETY: physical 0..1 MiB is lowmem, mapped readable by the direct
    // map for the kernel's life; the BIOS areas read here are never written
    // by the kernel (the frame allocator reserves the first MiB).
    unsafe { core::slice::from_raw_parts((PAGE_OFFSET + phys) as *const u8, len) }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

/// The areas the RSDP and the MP floating pointer may be in.
fn search_areas() -> [(u32, usize); 3] {
    let ebda = u32::from(u16::from_le_bytes([low(0x40E, 2)[0], low(0x40E, 2)[1]])) << 4;
    let ebda = if (0x8_0000..0xA_0000).contains(&ebda) {
        ebda
    } else {
        0x9_FC00
    };
    [(ebda, 1024), (0x9_FC00, 1024), (0xE_0000, 0x2_0000)]
}

/// The first 16-byte aligned structure starting with `signature` whose
/// first `len` bytes sum to zero.
fn find_low(signature: &[u8], len: usize) -> Option<u32> {
    search_areas().into_iter().find_map(|(base, size)| {
        (0..size.saturating_sub(len))
            .step_by(16)
            .map(|off| base + off as u32)
            .find(|&at| {
                let bytes = low(at, len);
                bytes.starts_with(signature) && checksum_ok(bytes)
            })
    })
}

/// The CPUs the ACPI MADT lists (enabled or online-capable), if there is
/// a valid one.
pub fn from_madt(fixmap: &KernelFixmapT) -> Option<CpuList> {
    let rsdp = find_low(b"RSD PTR ", 20)?;
    let rsdp = low(rsdp, 36);
    let rsdt = u32::from_le_bytes([rsdp[16], rsdp[17], rsdp[18], rsdp[19]]);
    let reader = PhysReader { fixmap };
    let mut header = [0u8; 36];
    reader.read(u64::from(rsdt), &mut header).ok()?;
    if &header[..4] != b"RSDT" {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let entries = len.saturating_sub(36) / 4;
    for i in 0..entries.min(64) {
        let table = reader.u32_at(u64::from(rsdt) + 36 + 4 * i as u64).ok()?;
        let mut head = [0u8; 8];
        reader.read(u64::from(table), &mut head).ok()?;
        if &head[..4] != b"APIC" {
            continue;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut madt = [0u8; 4096];
        if !(44..=madt.len()).contains(&len) {
            return None;
        }
        let madt = &mut madt[..len];
        reader.read(u64::from(table), madt).ok()?;
        if !checksum_ok(madt) {
            return None;
        }
        let mut list = CpuList::empty(Source::Madt);
        list.apic_base = u32::from_le_bytes([madt[36], madt[37], madt[38], madt[39]]);
        let mut at = 44;
        while at + 2 <= len {
            let (kind, entry_len) = (madt[at], usize::from(madt[at + 1]));
            if entry_len < 2 || at + entry_len > len {
                break;
            }
            // Type 0: processor local APIC; flags bit 0 enabled, bit 1
            // online capable.
            if kind == 0 && entry_len >= 8 && madt[at + 4] & 0b11 != 0 {
                list.push(madt[at + 3]);
            }
            at += entry_len;
        }
        return Some(list);
    }
    None
}

/// The CPUs the MP configuration table lists as enabled, if there is a
/// valid one.
pub fn from_mp_table(fixmap: &KernelFixmapT) -> Option<CpuList> {
    let pointer = find_low(b"_MP_", 16)?;
    let pointer = low(pointer, 16);
    let config = u32::from_le_bytes([pointer[4], pointer[5], pointer[6], pointer[7]]);
    if config == 0 {
        return None; // a default configuration: not used by QEMU or Bochs
    }
    let reader = PhysReader { fixmap };
    let mut head = [0u8; 44];
    reader.read(u64::from(config), &mut head).ok()?;
    if &head[..4] != b"PCMP" {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([head[4], head[5]]));
    let mut table = [0u8; 4096];
    if !(44..=table.len()).contains(&len) {
        return None;
    }
    let table = &mut table[..len];
    reader.read(u64::from(config), table).ok()?;
    if !checksum_ok(table) {
        return None;
    }
    let mut list = CpuList::empty(Source::MpTable);
    list.apic_base = u32::from_le_bytes([table[36], table[37], table[38], table[39]]);
    let count = usize::from(u16::from_le_bytes([table[34], table[35]]));
    let mut at = 44;
    for _ in 0..count {
        let Some(&kind) = table.get(at) else { break };
        // Type 0: processor, 20 bytes; the others are 8.
        if kind == 0 {
            if at + 20 > len {
                break;
            }
            if table[at + 3] & 1 != 0 {
                list.push(table[at + 1]);
            }
            at += 20;
        } else {
            at += 8;
        }
    }
    Some(list)
}

/// The CPUs: the MADT, else the MP table (or the MP table first if
/// `prefer_mp`), else only the boot CPU.
pub fn cpus(fixmap: &KernelFixmapT, prefer_mp: bool) -> CpuList {
    let found = if prefer_mp {
        from_mp_table(fixmap).or_else(|| from_madt(fixmap))
    } else {
        from_madt(fixmap).or_else(|| from_mp_table(fixmap))
    };
    found.unwrap_or(CpuList::empty(Source::None))
}
