//! What the kernel learned at boot, gathered once and handed to the
//! self-tests: the loader's information, the normalised memory map, the
//! command line and the CPU's paging features.

use core::fmt;

use crate::arch::cpu::PagingFeatures;
use crate::boot::memmap::{MemoryMap, MemoryMapError};
use crate::boot::multiboot::{self, BootInfo, MemoryMapEntries, MultibootError};
use crate::boot::phys_window::{self, WindowError};

/// Longest command line read (bytes).
const CMDLINE_MAX: usize = 256;

/// Why part of the boot information is unavailable.
#[derive(Clone, Copy, Debug)]
pub enum BootError {
    /// The loader's structures are malformed or incomplete.
    Multiboot(MultibootError),
    /// A structure lies where the boot window cannot reach.
    Window(WindowError),
    /// The memory map could not be normalised.
    MemoryMap(MemoryMapError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Multiboot(error) => error.fmt(f),
            Self::Window(error) => error.fmt(f),
            Self::MemoryMap(error) => error.fmt(f),
        }
    }
}

impl From<MultibootError> for BootError {
    fn from(error: MultibootError) -> Self {
        Self::Multiboot(error)
    }
}

impl From<WindowError> for BootError {
    fn from(error: WindowError) -> Self {
        Self::Window(error)
    }
}

impl From<MemoryMapError> for BootError {
    fn from(error: MemoryMapError) -> Self {
        Self::MemoryMap(error)
    }
}

/// Everything the kernel learned at boot.
pub struct BootContext {
    /// The parsed information structure.
    pub boot_info: Result<BootInfo, BootError>,
    /// The loader's memory map, normalised.
    pub memory_map: Result<MemoryMap, BootError>,
    /// The command line (empty if none or unreadable).
    pub cmdline: &'static str,
    /// Paging features of this CPU.
    pub features: PagingFeatures,
    /// Physical address of the multiboot information (EBX at entry).
    pub info_phys: u32,
}

impl BootContext {
    /// Reads the loader's structures, given EAX and EBX at entry.
    pub fn gather(magic: u32, info_phys: u32) -> Self {
        let boot_info = read_boot_info(magic, info_phys);
        let memory_map = boot_info.and_then(|info| read_memory_map(&info));
        let cmdline = boot_info
            .ok()
            .and_then(|info| info.cmdline)
            .and_then(|phys| phys_window::c_str(phys.into(), CMDLINE_MAX).ok())
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .unwrap_or("");
        Self {
            boot_info,
            memory_map,
            cmdline,
            features: PagingFeatures::detect(),
            info_phys,
        }
    }

    /// The verdict nonce the host passed (`verdict=HEX`): the kernel ends
    /// its summary line with it, so that no user process, which cannot read
    /// it, can print a verdict a judge accepts (`xtask/src/verdict.rs`).
    pub fn verdict_nonce(&self) -> Option<&'static str> {
        self.cmdline
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix("verdict="))
            .filter(|nonce| !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    /// The command line as it may be printed: the verdict nonce replaced by
    /// `<hidden>`.
    pub fn printable_cmdline(&self) -> Redacted {
        Redacted(self.cmdline)
    }

    /// Whether the command line holds the word `option` (e.g. `fault=page`).
    pub fn has_option(&self, option: &str) -> bool {
        self.cmdline
            .split_ascii_whitespace()
            .any(|word| word == option)
    }
}

fn read_boot_info(magic: u32, info_phys: u32) -> Result<BootInfo, BootError> {
    if magic != multiboot::BOOTLOADER_MAGIC {
        return Err(MultibootError::BadMagic(magic).into());
    }
    let bytes = phys_window::bytes(info_phys.into(), multiboot::INFO_SIZE)?;
    Ok(BootInfo::parse(bytes)?)
}

fn read_memory_map(info: &BootInfo) -> Result<MemoryMap, BootError> {
    let (phys, len) = info.memory_map.ok_or(MultibootError::NoMemoryMap)?;
    let bytes = phys_window::bytes(phys.into(), len as usize)?;
    Ok(MemoryMap::from_regions(MemoryMapEntries::new(bytes))?)
}

/// A command line that prints with its verdict nonce hidden.
pub struct Redacted(&'static str);

impl core::fmt::Display for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"")?;
        for (i, word) in self.0.split_ascii_whitespace().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if word.starts_with("verdict=") {
                f.write_str("verdict=<hidden>")?;
            } else {
                f.write_str(word)?;
            }
        }
        f.write_str("\"")
    }
}
