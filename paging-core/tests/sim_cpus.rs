//! Several simulated CPUs: TLB shootdown, and the model shared across threads.
mod sim_support;

use paging_core::{RawTable, TableAccess, TlbOps};
use paging_sim::{Access, Mmu, SimAccess, SimConfig, SimCpus, SimRam};
use sim_support::*;

const PD: u64 = 0x1000;
const PT: u64 = 0x2000;

fn setup(ram: &SimRam) {
    set32(ram, PD, 0x300, PT | P | RW);
    set32(ram, PT, 0, 0x5000 | P | RW);
}

#[test]
fn a_broadcast_flush_reaches_every_cpu() {
    let ram = SimRam::new();
    setup(&ram);
    let cpus = SimCpus::new(&ram, SimConfig::two_level(), 3);
    assert_eq!(cpus.len(), 3);
    assert!(cpus.cpu(3).is_none());
    cpus.load_cr3_all(PD as u32).unwrap();
    for cpu in cpus.cpus() {
        assert_eq!(
            cpu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
            pa(0x5000)
        );
    }
    set32(&ram, PT, 0, 0x6000 | P | RW);
    // A local invlpg leaves the others stale.
    let cpu0 = cpus.cpu(0).unwrap();
    cpu0.invlpg(va(0xC000_0000));
    assert_eq!(
        cpu0.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x6000)
    );
    let cpu2 = cpus.cpu(2).unwrap();
    assert_eq!(
        cpu2.translate(va(0xC000_0000), Access::READ).unwrap().pa,
        pa(0x5000)
    );
    // A shootdown does not.
    cpus.flush_page(va(0xC000_0000));
    for cpu in cpus.cpus() {
        assert_eq!(
            cpu.translate(va(0xC000_0000), Access::READ).unwrap().pa,
            pa(0x6000)
        );
    }
    let invlpgs: Vec<u64> = cpus.stats().iter().map(|s| s.invlpg).collect();
    assert_eq!(invlpgs, [2, 1, 1]);
    cpus.flush_all();
    cpus.flush_everything();
    for s in cpus.stats() {
        assert_eq!((s.cr3_loads, s.global_flushes), (2, 1));
    }
}

#[test]
fn the_model_is_shared_by_threads() {
    const PAGES: u32 = 8;
    const ROUNDS: u32 = 300;
    let ram = SimRam::new();
    set32(&ram, PD, 0x300, PT | P | RW);
    // Two candidate frames per page, each filled with a marker of its own.
    let frame_of =
        |page: u32, alt: u32| 0x10_0000 + 0x2000 * u64::from(page) + 0x1000 * u64::from(alt);
    for page in 0..PAGES {
        for alt in 0..2 {
            let marker = u64::from(page * 2 + alt) * 0x0101_0101;
            ram.write_u64(pa(frame_of(page, alt)), marker).unwrap();
        }
        set32(&ram, PT, page.into(), frame_of(page, 0) | P | RW);
    }
    let cpus = SimCpus::new(&ram, SimConfig::two_level(), 2);
    cpus.load_cr3_all(PD as u32).unwrap();
    let access = SimAccess::new(&ram);

    std::thread::scope(|s| {
        // The writer repoints each page between its two frames and shoots
        // the old translation down everywhere.
        s.spawn(|| {
            let table = access.table(frame(PT)).unwrap();
            for round in 0..ROUNDS {
                let page = round % PAGES;
                let alt = (round / PAGES + 1) % 2;
                table.swap32(page as usize, (frame_of(page, alt) | P | RW) as u32);
                cpus.flush_page(va(0xC000_0000 + page * 0x1000));
            }
        });
        // Each CPU reads on its own thread; every read must come from one of
        // the page's two frames, never from anything else.
        for cpu in cpus.cpus() {
            let cpu: &Mmu<'_> = cpu;
            s.spawn(move || {
                for i in 0..ROUNDS * 2 {
                    let page = i % PAGES;
                    let got = cpu.read_u32(va(0xC000_0000 + page * 0x1000)).unwrap();
                    let ok = [0, 1].map(|alt| (page * 2 + alt) * 0x0101_0101);
                    assert!(ok.contains(&got), "page {page} read {got:#x}");
                }
            });
        }
    });
    // The writer's last choice is what every CPU sees now.
    for cpu in cpus.cpus() {
        for page in 0..PAGES {
            let want = pa(u64::from(get32(&ram, PT, page.into()) as u32 & !0xFFF));
            assert_eq!(
                cpu.translate(va(0xC000_0000 + page * 0x1000), Access::READ)
                    .unwrap()
                    .pa,
                want
            );
        }
    }
}
