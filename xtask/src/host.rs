//! The machine xtask runs on: how much memory a QEMU boot may take.
//!
//! QEMU allocates guest RAM lazily, but the example kernel touches most of
//! it (its frame bitmap, the highmem sweep, 64 processes' pages): a PAE boot
//! at `-m 8G` peaks near 8 GiB of host memory. A boot is sized, or skipped,
//! against `MemAvailable` in `/proc/meminfo`.

/// Host memory a boot needs beyond its guest RAM (QEMU itself, TCG's code
/// cache).
const OVERHEAD: u64 = 512 << 20;

/// Guest sizes `cargo xtask run` falls back to, largest first.
const FALLBACK_SIZES: [&str; 9] = ["8G", "6G", "4G", "3G", "2G", "1G", "512M", "256M", "128M"];

/// Bytes of a QEMU `-m` size: `8G`, `512M`, or a plain number of MiB.
pub fn size_bytes(size: &str) -> Option<u64> {
    let (digits, unit) = match size.chars().last()? {
        'G' | 'g' => (&size[..size.len() - 1], 1u64 << 30),
        'M' | 'm' => (&size[..size.len() - 1], 1 << 20),
        _ => (size, 1 << 20),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Host memory a boot at `-m size` needs (guest RAM plus QEMU's own).
pub fn needs(size: &str) -> Option<u64> {
    size_bytes(size).map(|bytes| bytes + OVERHEAD)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (`None` where there is no
/// such file: then every boot is assumed to fit).
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_available(&text)
}

fn parse_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// `4.1 GiB`.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Why a boot at `-m size` does not fit in `available` bytes, or `None`
/// if it fits (or the size or the free memory is unknown).
pub fn too_big(size: &str, available: Option<u64>) -> Option<String> {
    let (need, free) = (needs(size)?, available?);
    (need > free).then(|| {
        format!(
            "-m {size} needs about {} of host memory, {} free here",
            gib(need),
            gib(free)
        )
    })
}

/// The guest RAM for a boot whose default is `default`: the default if it
/// fits in `available`, else the largest smaller size that does; and the
/// sentence that says so.
pub fn fit(default: &str, available: Option<u64>) -> (String, String) {
    let Some(free) = available else {
        return (
            default.to_string(),
            format!("-m {default} (free memory unknown here)"),
        );
    };
    if too_big(default, available).is_none() {
        return (
            default.to_string(),
            format!("-m {default} ({} free here)", gib(free)),
        );
    }
    let default_bytes = size_bytes(default).unwrap_or(u64::MAX);
    let chosen = FALLBACK_SIZES
        .iter()
        .filter(|size| size_bytes(size).is_some_and(|b| b < default_bytes))
        .find(|size| too_big(size, available).is_none())
        .or(FALLBACK_SIZES.last())
        .map_or(default, |size| *size);
    (
        chosen.to_string(),
        format!(
            "-m {chosen} ({} free here; -m {default} needs about {}; --mem to choose)",
            gib(free),
            gib(needs(default).unwrap_or(0))
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_parse_as_qemu_reads_them() {
        assert_eq!(size_bytes("8G"), Some(8 * GIB));
        assert_eq!(size_bytes("512M"), Some(512 << 20));
        assert_eq!(size_bytes("256"), Some(256 << 20));
        assert_eq!(size_bytes("G"), None);
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:    4299162 kB\n";
        assert_eq!(parse_available(meminfo), Some(4_299_162 * 1024));
        assert_eq!(parse_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn the_default_is_kept_where_it_fits_and_shrunk_where_not() {
        let (mem, why) = fit("8G", Some(24 * GIB));
        assert_eq!(mem, "8G");
        assert!(why.contains("24.0 GiB free"), "{why}");
        let (mem, why) = fit("8G", Some(4 * GIB + GIB / 10));
        assert_eq!(mem, "3G");
        assert!(
            why.contains("4.1 GiB free here; -m 8G needs about 8.5 GiB"),
            "{why}"
        );
        assert_eq!(fit("2G", Some(GIB)).0, "512M");
        assert_eq!(fit("2G", Some(1)).0, "128M", "the smallest, whatever");
        assert_eq!(fit("8G", None).0, "8G");
    }

    #[test]
    fn too_big_names_the_need_and_the_free_memory() {
        assert_eq!(too_big("8G", Some(16 * GIB)), None);
        let why = too_big("8G", Some(6 * GIB)).unwrap();
        assert_eq!(
            why,
            "-m 8G needs about 8.5 GiB of host memory, 6.0 GiB free here"
        );
        assert_eq!(too_big("8G", None), None);
    }
}
