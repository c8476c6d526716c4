//! Memory types as the PAT selects them (SDM Vol. 3A 11.12), written from
//! the manual, independently of `paging_core::cache`.

/// A memory type encoding of IA32_PAT (SDM Vol. 3A table 11-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// 00H, Uncacheable (UC).
    Uc,
    /// 01H, Write Combining (WC).
    Wc,
    /// 04H, Write Through (WT).
    Wt,
    /// 05H, Write Protected (WP).
    Wp,
    /// 06H, Write Back (WB).
    Wb,
    /// 07H, Uncached (UC-).
    UcMinus,
}

impl MemoryType {
    /// The type a PAT entry's byte encodes; `None` for the reserved
    /// encodings (02H, 03H, 08H-FFH), which WRMSR refuses with #GP.
    pub const fn from_encoding(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::Uc),
            0x01 => Some(Self::Wc),
            0x04 => Some(Self::Wt),
            0x05 => Some(Self::Wp),
            0x06 => Some(Self::Wb),
            0x07 => Some(Self::UcMinus),
            _ => None,
        }
    }
}

/// IA32_PAT after power-up or reset (SDM table 11-12): PA0..PA7 =
/// WB, WT, UC-, UC, WB, WT, UC-, UC.
pub const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;

/// The first PAT entry whose byte is a reserved encoding, if any.
pub(crate) fn invalid_pat_entry(pat: u64) -> Option<usize> {
    (0..8).find(|i| MemoryType::from_encoding((pat >> (8 * i)) as u8).is_none())
}

/// The memory type PAT entry `index` (0-7) of `pat` holds. `pat` has been
/// checked by [`invalid_pat_entry`]; a reserved byte reads as UC.
pub(crate) fn pat_entry(pat: u64, index: u64) -> MemoryType {
    MemoryType::from_encoding((pat >> (8 * (index & 7))) as u8).unwrap_or(MemoryType::Uc)
}
