//! Two threads passing the same CPU index to `LocalSlots::map` (issue 19,
//! item 9). That breaks the per-CPU rule, but it is a safe call, so it must
//! not corrupt the stack: the depth only moves by compare-and-swap, a move
//! that loses leaves its slot to whoever pops down to it, and a slot's PTE
//! is only cleared by the push that set it. Before, a pop's load-then-store
//! of the depth could lose a concurrent push (two guards then shared a
//! slot, or the depth stayed up with nothing mapped), and a failed push's
//! `fetch_sub` could drop the depth under a live slot.

mod support;

use std::sync::Barrier;
use std::thread;

use kmap::KmapError;
use paging_sim::SimRam;
use support::{DEPTH, Kernel, ModeUnderTest};

fn two_threads_on_one_cpu_index<M: ModeUnderTest>() {
    let ram = SimRam::new();
    let k = Kernel::<M>::new(&ram);
    let local = k.local(false, k.direct);
    let rounds = if cfg!(miri) { 4 } else { 20_000 };
    let start = Barrier::new(2);
    thread::scope(|s| {
        for t in 0..2 {
            let (local, k, start) = (&local, &k, &start);
            s.spawn(move || {
                let page = k.high_page(t);
                start.wait();
                for _ in 0..rounds {
                    match local.map(0, page) {
                        Ok(g) => {
                            // Its slot maps its own frame while it lives.
                            let idx = k.fixmap.virt_to_fix(g.va()).unwrap();
                            let mapped = k.fixmap.get(idx).unwrap().map(|(f, _)| f);
                            assert_eq!(mapped, Some(page), "slot {} shared", g.depth());
                            drop(g);
                        }
                        // A slot left released by the other thread may
                        // still be on the stack for a moment.
                        Err(KmapError::Exhausted) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
        }
    });
    // Everything was popped: the depth is back to 0, every slot is clear.
    assert_eq!(local.depth(0), Some(0));
    for d in 0..DEPTH {
        assert_eq!(k.pte(local.slot_va(0, d).unwrap()), 0, "slot {d} still set");
    }
}

paging_sim::for_each_mode!(two_threads_on_one_cpu_index);

mod scheduled {
    //! The lost push, scheduled deterministically: thread 1's pop is
    //! stopped right after its first store (clearing its slot's PTE) while
    //! thread 2 pushes on the same CPU index. Before, the pop's store of
    //! the depth then erased the push: the depth went to 0 under thread 2's
    //! live slot, its unmap was refused as out of order, and the slot stayed
    //! mapped for good.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex, PoisonError};
    use std::thread;

    use fixmap::{Fixmap, WindowBuilder, fixmap_layout};
    use kmap::{DirectMap, LocalSlots};
    use paging_core::{PagingMode, PhysAddr, PhysFrame, VirtAddr};
    use paging_sim::{Machine, ObservedStore, SimAccess, SimRam};

    fixmap_layout! {
        /// Two local slots for one CPU.
        pub struct Fix {
            top: 0xFFFF_F000;
            /// The stack.
            LOCAL[2];
        }
    }

    fn frame(x: u64) -> PhysFrame {
        PhysFrame::from_start_address(PhysAddr::new(x).unwrap()).unwrap()
    }

    /// A barrier for two threads that a panicking thread breaks: a wait on
    /// a broken one panics as well. With `std::sync::Barrier`, a failed
    /// assertion on one thread left the other waiting for ever, so the
    /// test hung instead of failing.
    struct Rendezvous {
        /// Threads arrived in this round, the round, and whether broken.
        state: Mutex<(usize, u64, bool)>,
        turned: Condvar,
    }

    impl Rendezvous {
        fn new() -> Self {
            Rendezvous {
                state: Mutex::new((0, 0, false)),
                turned: Condvar::new(),
            }
        }

        fn wait(&self) {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let round = s.1;
            s.0 += 1;
            if s.0 == 2 {
                *s = (0, round + 1, s.2);
                self.turned.notify_all();
            }
            while s.1 == round && !s.2 {
                s = self.turned.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            assert_eq!(s.1, round + 1, "the other thread panicked");
        }

        fn break_it(&self) {
            self.state.lock().unwrap_or_else(PoisonError::into_inner).2 = true;
            self.turned.notify_all();
        }
    }

    /// Breaks every rendezvous of the thread holding it if it unwinds.
    struct BreakOnUnwind<'a>([&'a Rendezvous; 3]);

    impl Drop for BreakOnUnwind<'_> {
        fn drop(&mut self) {
            if thread::panicking() {
                self.0.iter().for_each(|r| r.break_it());
            }
        }
    }

    /// Stops the first store made on `thread` once armed.
    struct Pause {
        armed: AtomicBool,
        thread: std::sync::OnceLock<thread::ThreadId>,
        go: Rendezvous,
        done: Rendezvous,
    }

    fn a_push_during_a_pop<M: PagingMode + Send + Sync>() {
        let ram = SimRam::new();
        let pause = Pause {
            armed: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
            go: Rendezvous::new(),
            done: Rendezvous::new(),
        };
        let observer = |_: ObservedStore| {
            if pause.thread.get() == Some(&thread::current().id())
                && pause.armed.swap(false, Ordering::SeqCst)
            {
                pause.go.wait();
                pause.done.wait();
            }
        };
        let mut m = Machine::<M>::new(&ram);
        let (window, _) = WindowBuilder::new(VirtAddr::new(0xFFE0_0000), 1 << 32)
            .unwrap()
            .build(&mut m.mapper, &m.mmu, &mut m.alloc)
            .unwrap();
        let mut fix = Fixmap::<Fix, M, _>::new(SimAccess::observed(&ram, &observer));
        fix.attach(window).unwrap();
        let direct = DirectMap::new(0xC000_0000, 0);
        let local = LocalSlots::<_, _, _, _, _, 2, 1>::new(&fix, Fix::LOCAL, false, direct, &m.mmu)
            .unwrap();
        let (a, b) = (frame(0x1000_0000), frame(0x1000_1000));
        let popped = Rendezvous::new();
        let all = [&pause.go, &pause.done, &popped];
        let missed = thread::scope(|s| {
            s.spawn(|| {
                let _broken = BreakOnUnwind(all);
                pause.go.wait();
                let g = local.map(0, b).unwrap();
                assert_eq!(g.depth(), 1, "pushed above the slot being popped");
                pause.done.wait();
                popped.wait();
                drop(g);
            });
            let _broken = BreakOnUnwind(all);
            let g = local.map(0, a).unwrap();
            pause.thread.set(thread::current().id()).unwrap();
            pause.armed.store(true, Ordering::SeqCst);
            drop(g);
            // A pop that never made a store would leave the other thread at
            // `go` for ever: let it run, so that the test fails instead of
            // hanging.
            let missed = pause.armed.swap(false, Ordering::SeqCst);
            if missed {
                pause.go.wait();
                pause.done.wait();
            }
            popped.wait();
            missed
        });
        assert!(!missed, "the race was run");
        assert_eq!(local.depth(0), Some(0));
        for d in 0..2 {
            let idx = fix.virt_to_fix(local.slot_va(0, d).unwrap()).unwrap();
            assert_eq!(fix.get(idx), Ok(None), "slot {d} still mapped");
        }
        assert_eq!(local.stats().lifo_violations, 0);
    }

    paging_sim::for_each_mode!(a_push_during_a_pop);
}
