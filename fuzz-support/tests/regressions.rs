//! Replays, in the normal `cargo test` run, every input saved under
//! `fuzz/regressions/<target>/` (inputs that once broke something, named
//! `crash-*`, and `seed-*`: the largest inputs of the fuzzer's corpus,
//! which reach deep into each target), plus a few hand-made seeds that walk
//! the main paths of each target. Each entry point panics on a broken
//! invariant, so a replay that returns is a pass.

use std::path::PathBuf;

use fuzz_support::{kmap_ops, mapper_ops, multiboot};

/// Run every file of `fuzz/regressions/<target>/` through `check`;
/// returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            panic!("regression input {} fails again", path.display());
        }
    }
    files.len()
}

/// Little-endian bytes of a `u16`, as the decoders read them.
fn w(x: u16) -> [u8; 2] {
    x.to_le_bytes()
}

/// Mapper seeds: for each mode, map a page, translate it, re-flag it, unmap
/// it, free its table; a large page and a range over it; a failing
/// allocator under a map; raw addresses.
fn mapper_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for mode in [0u8, 1] {
        let mut s = vec![mode];
        // map page 5 -> frame 7, writable
        s.extend([0, 0]);
        s.extend(w(5));
        s.push(0);
        s.extend(w(7));
        s.push(1);
        // translate page 5
        s.extend([8, 0]);
        s.extend(w(5));
        // update_flags page 5: user
        s.extend([6, 0]);
        s.extend(w(5));
        s.push(2);
        // unmap page 5
        s.extend([4, 0]);
        s.extend(w(5));
        // free empty tables from the window's start
        s.extend([7, 0]);
        s.extend(w(0));
        s.push(0);
        s.extend(w(4095));
        // map_large block 1 -> large page 3, then a range over it (refused)
        s.extend([2, 0, 1, 0, 3, 1]);
        s.extend([3, 0]);
        s.extend(w(1100));
        s.push(0);
        s.extend(w(2000));
        s.extend([0, 0]);
        s.extend(w(9));
        s.push(1);
        // allocator fails at once; a map that needs a table is refused
        s.extend([9, 0]);
        s.extend([0, 0]);
        s.extend(w(6000));
        s.push(0);
        s.extend(w(1));
        s.push(0);
        // allocator healthy again; raw (unaligned, beyond the mode) map
        s.extend([9, 200]);
        s.extend([0, 250]);
        s.extend(0x1234_5678u32.to_le_bytes());
        s.push(250);
        s.extend(0xFFFF_FFFF_F000u64.to_le_bytes());
        s.push(0);
        seeds.push(s);
    }
    seeds
}

/// kmap seeds: for each mode and policy, fill the pool with `try_map`,
/// overflow it, nest through a reservation, push and pop local slots out of
/// order, save and restore a CPU, and unmap what is not mapped.
fn kmap_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for setup in [0u8, 1, 2, 3, 5, 7, 9, 17, 24, 31] {
        let mut s = vec![setup];
        for page in 0..5 {
            s.extend([0, page]); // try_map highmem pages 0..4 (the 5th fails)
        }
        s.extend([4, 0, 0, 4, 0, 0]); // drop two held guards
        s.extend([2, 2, 2, 6, 0, 7, 1]); // reserve 2, map pages 6 (raw), 7
        s.extend([5, 0, 0, 0]); // kunmap_raw the raw one
        s.extend([5, 1, 5]); // stray kunmap_raw of a page nobody holds
        s.extend([6, 0, 1, 6, 0, 2, 6, 0, 3, 6, 0, 4]); // 3 local maps on CPU 0, a 4th refused
        s.extend([7, 0, 0, 0]); // try_unmap the bottom: refused
        s.extend([8, 1, 0, 1]); // drop the second: deferred
        s.extend([9, 0, 6, 0, 5, 10, 0]); // save CPU 0, map on it, restore (refused)
        s.extend([7, 0, 0, 0, 10, 0]); // unmap the new one, restore
        s.extend([3, 1, 8, 3, 2, 9, 11, 6, 11, 2]); // nowait (lowmem; bad CPU), try_reserve
        seeds.push(s);
    }
    seeds
}

/// Multiboot seeds: a well-formed structure with an overlapping memory map,
/// a map whose second entry is cut short, and a structure too short to be
/// one.
fn multiboot_seeds() -> Vec<Vec<u8>> {
    let entry = |base: u64, len: u64, kind: u32| {
        let mut e = 20u32.to_le_bytes().to_vec();
        e.extend(base.to_le_bytes());
        e.extend(len.to_le_bytes());
        e.extend(kind.to_le_bytes());
        e
    };
    let info = |map_len: u32| {
        let mut i = vec![0u8; 52];
        i[0] = 0x45; // memory, cmdline, memory map
        i[44..48].copy_from_slice(&map_len.to_le_bytes());
        i
    };
    let map = [
        entry(0, 0x9_F000, 1),
        entry(0x10_0000, 0x7FF0_0000, 1),
        entry(0x7000_0000, 0x1000_0000, 2),
        entry(0xFFFF_FFFF_FFFF_0000, 0x1_0000, 3),
    ]
    .concat();
    let mut good = info(map.len() as u32);
    good.extend(&map);
    let mut cut = info(30);
    cut.extend(&map[..30]);
    vec![good, cut, vec![1, 2, 3]]
}

#[test]
fn mapper_ops_regressions_and_seeds() {
    let n = replay("mapper_ops", mapper_ops);
    for seed in mapper_seeds() {
        mapper_ops(&seed);
    }
    println!("mapper_ops: {n} regression inputs");
}

#[test]
fn kmap_ops_regressions_and_seeds() {
    let n = replay("kmap_ops", kmap_ops);
    for seed in kmap_seeds() {
        kmap_ops(&seed);
    }
    println!("kmap_ops: {n} regression inputs");
}

#[test]
fn multiboot_regressions_and_seeds() {
    let n = replay("multiboot", multiboot);
    for seed in multiboot_seeds() {
        multiboot(&seed);
    }
    println!("multiboot: {n} regression inputs");
}
