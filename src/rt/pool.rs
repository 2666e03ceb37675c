//! The pooled realtime mode (`audio.realtime_threads` > 0): a few realtime threads, each running
//! the realtime loops of many sessions, instead of one thread per session.
//!
//! A pool thread wakes on a fixed schedule, every half frame period, and runs every one of its
//! loops once per wake-up ([`RealtimeLoop::run_once`]: all the frames and controls that wait,
//! playout). No producer wakes it, so the cost of a wake-up (tens of µs in a VM) is paid twice per
//! frame period per pool thread instead of once per frame per session; in exchange a frame waits
//! up to half a period (10 ms at 20 ms frames) before it is processed — under the one-period
//! deadline that health counts, whatever the phase of the host's pushes.
//!
//! Sessions come and go without a lock on the pool thread: the control side sends a boxed loop
//! through a lock-free queue ([`RealtimePool::attach`]), and the pool thread, once it sees the
//! session's `shutdown` flag, hands the loop back through the session's own one-slot queue
//! ([`PoolTicket::leave`]), so that it is dropped on the control side. The rings, the rules and the
//! health accounting are the ones of a dedicated thread: the pool thread does the same work inside
//! the same realtime sections. Loops are visited in a rotating order, so that none is always last.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::core::RealtimeLoop;
use super::shared::{RtShared, realtime_section};
use super::thread::elevate_current_thread;

/// How long [`PoolTicket::leave`] waits for the pool thread to hand a loop back before it gives
/// up (only a pool thread that died could take that long; see `exited`).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool: `threads` realtime threads, started with the first session. Any thread.
pub struct RealtimePool {
    threads: Box<[PoolThread]>,
    /// Loops one pool thread can hold (its share of the backend's session limit).
    capacity: usize,
    tick: Duration,
    elevate: bool,
    /// Serializes the choice of a thread (control side only).
    choosing: Mutex<()>,
}

struct PoolThread {
    shared: Arc<PoolShared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// What a pool thread shares with the control side.
struct PoolShared {
    /// Loops on their way in.
    inbox: ArrayQueue<Box<Member>>,
    /// Loops attached and not yet handed back (control side's count, for the choice).
    load: AtomicUsize,
    thread: OnceLock<Thread>,
    /// A control-side event (a loop to admit or to hand back) wants a pass before the next tick.
    poked: AtomicBool,
    stop: AtomicBool,
    /// The thread has ended (normally or by a panic): nobody will hand loops back.
    exited: AtomicBool,
}

/// One session's loop inside the pool.
struct Member {
    rt: RealtimeLoop,
    shared: Arc<RtShared>,
    home: Arc<Home>,
}

/// Where a pool thread hands a session's loop back.
struct Home {
    slot: ArrayQueue<Box<Member>>,
    /// The control thread waiting in [`PoolTicket::leave`].
    waiter: OnceLock<Thread>,
}

/// A session's place in the pool, kept by its wiring until the session stops.
pub struct PoolTicket {
    pool_thread: Arc<PoolShared>,
    home: Arc<Home>,
}

impl RealtimePool {
    /// A pool of `threads` threads for at most `max_sessions` loops, each thread waking every half
    /// of `frame_period`, asking for SCHED_FIFO when `elevate`. No thread starts yet.
    pub fn new(threads: usize, max_sessions: usize, frame_period: Duration, elevate: bool) -> Self {
        let threads = threads.max(1);
        // Each new loop goes to the least loaded thread, so no thread ever holds more than its
        // share rounded up.
        let capacity = max_sessions.div_ceil(threads).max(1);
        RealtimePool {
            threads: (0..threads)
                .map(|_| PoolThread {
                    shared: Arc::new(PoolShared {
                        inbox: ArrayQueue::new(capacity),
                        load: AtomicUsize::new(0),
                        thread: OnceLock::new(),
                        poked: AtomicBool::new(false),
                        stop: AtomicBool::new(false),
                        exited: AtomicBool::new(false),
                    }),
                    handle: Mutex::new(None),
                })
                .collect(),
            capacity,
            tick: frame_period / 2,
            elevate,
            choosing: Mutex::new(()),
        }
    }

    /// Hands `rt` (whose state is `shared`) to the least loaded pool thread, starting that thread
    /// if it has not started yet. Control side. The loop runs from the thread's next wake-up (it
    /// is poked, so at once).
    pub fn attach(&self, rt: RealtimeLoop, shared: Arc<RtShared>) -> std::io::Result<PoolTicket> {
        let _choosing = self.choosing.lock().unwrap_or_else(|p| p.into_inner());
        let (index, chosen) = self
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.shared.load.load(Ordering::Relaxed))
            .ok_or_else(|| std::io::Error::other("the realtime pool has no thread"))?;
        if chosen.shared.load.load(Ordering::Relaxed) >= self.capacity {
            return Err(std::io::Error::other(format!(
                "the realtime pool is full ({} loops per thread)",
                self.capacity
            )));
        }
        // Every loop of a pool has its backend's configuration: the first decides whether the
        // thread prepares for noise suppressors.
        self.ensure_started(index, chosen, rt.suppresses_noise())?;
        let home = Arc::new(Home {
            slot: ArrayQueue::new(1),
            waiter: OnceLock::new(),
        });
        let member = Box::new(Member {
            rt,
            shared,
            home: home.clone(),
        });
        // Cannot be full: the inbox holds `capacity` and the load is below it.
        if chosen.shared.inbox.push(member).is_err() {
            return Err(std::io::Error::other("the realtime pool's inbox is full"));
        }
        chosen.shared.load.fetch_add(1, Ordering::Relaxed);
        chosen.shared.poke();
        Ok(PoolTicket {
            pool_thread: chosen.shared.clone(),
            home,
        })
    }

    /// Number of pool threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    fn ensure_started(
        &self,
        index: usize,
        thread: &PoolThread,
        denoise: bool,
    ) -> std::io::Result<()> {
        let mut handle = thread.handle.lock().unwrap_or_else(|p| p.into_inner());
        if handle.is_some() {
            return Ok(());
        }
        let shared = thread.shared.clone();
        let (capacity, tick, elevate) = (self.capacity, self.tick, self.elevate);
        *handle = Some(
            std::thread::Builder::new()
                .name(format!("vb-rt-pool-{index}"))
                .stack_size(256 * 1024)
                .spawn(move || shared.run(capacity, tick, elevate, denoise))?,
        );
        Ok(())
    }
}

impl Drop for RealtimePool {
    /// Stops and joins the pool threads. Loops still attached (sessions that were never stopped)
    /// are dropped with their thread.
    fn drop(&mut self) {
        for t in self.threads.iter() {
            t.shared.stop.store(true, Ordering::Release);
            t.shared.poke();
        }
        for t in self.threads.iter_mut() {
            let handle = t.handle.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

impl PoolShared {
    /// Asks for a pass now (control side).
    fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// The pool thread; `denoise`: its loops run noise suppressors.
    fn run(&self, capacity: usize, tick: Duration, elevate: bool, denoise: bool) {
        struct Exited<'a>(&'a AtomicBool);
        impl Drop for Exited<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _exited = Exited(&self.exited);
        let elevated = elevate && elevate_current_thread();
        let _ = self.thread.set(std::thread::current());
        // Every buffer the thread needs is allocated here, before any realtime work.
        if denoise {
            super::denoise::prepare_thread();
        }
        let mut members: Vec<Box<Member>> = Vec::with_capacity(capacity);
        let mut passes = 0usize;
        let mut next = Instant::now() + tick;
        while !self.stop.load(Ordering::Acquire) {
            realtime_section(|| self.pass(&mut members, passes, elevated));
            passes = passes.wrapping_add(1);
            // Sleep until the next tick, or until the control side pokes (a pass out of turn,
            // which leaves the schedule as it is).
            while !self.stop.load(Ordering::Acquire) {
                if self.poked.swap(false, Ordering::AcqRel) {
                    break;
                }
                let now = Instant::now();
                if now >= next {
                    // A thread that fell behind (a long preemption) starts again from now
                    // instead of running the ticks it missed back to back.
                    next += tick;
                    if next <= now {
                        next = now + tick;
                    }
                    break;
                }
                std::thread::park_timeout(next - now);
            }
        }
    }

    /// One wake-up's work: admits new loops, hands back the loops of stopped sessions, runs every
    /// other loop once. Realtime-safe: no allocation (`members` never grows past its capacity,
    /// the boxes move by pointer), no lock.
    #[allow(
        clippy::vec_box,
        reason = "the boxes arrive from the inbox and leave through a slot: moving them by pointer \
                  keeps the pool thread from allocating or freeing"
    )]
    fn pass(&self, members: &mut Vec<Box<Member>>, passes: usize, elevated: bool) {
        while members.len() < members.capacity() {
            let Some(member) = self.inbox.pop() else {
                break;
            };
            member.shared.elevated.store(elevated, Ordering::Relaxed);
            members.push(member);
        }
        let mut i = 0;
        while i < members.len() {
            if members[i].shared.shutdown.load(Ordering::Acquire) {
                let member = members.swap_remove(i);
                member.hand_back();
            } else {
                i += 1;
            }
        }
        let n = members.len();
        if n == 0 {
            return;
        }
        let first = passes % n;
        for k in 0..n {
            let index = if first + k < n {
                first + k
            } else {
                first + k - n
            };
            members[index].rt.run_once();
        }
    }
}

impl Member {
    /// Pool thread: puts the loop in its session's slot and wakes the session's waiting control
    /// thread (one futex wake). The slot holds one loop and gets only this one.
    fn hand_back(self: Box<Self>) {
        let home = self.home.clone();
        if let Err(member) = home.slot.push(self) {
            // Unreachable (one loop per slot); never free on this thread: leak rather than drop.
            std::mem::forget(member);
        }
        if let Some(waiter) = home.waiter.get() {
            waiter.unpark();
        }
    }
}

impl PoolTicket {
    /// Control side, once the session's `shutdown` flag is set: waits until the pool thread has
    /// let go of the session's loop (at its next pass: it is poked, so at once) and drops the loop
    /// here. Returns at once if the pool thread has ended.
    pub fn leave(self) {
        let _ = self.home.waiter.set(std::thread::current());
        self.pool_thread.poke();
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        loop {
            if let Some(member) = self.home.slot.pop() {
                self.pool_thread.load.fetch_sub(1, Ordering::Relaxed);
                drop(member);
                return;
            }
            let now = Instant::now();
            if self.pool_thread.exited.load(Ordering::Acquire) || now >= deadline {
                return;
            }
            std::thread::park_timeout((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use crate::rt::core::{EdgeEnds, IoEnds, build_session};
    use crate::rt::frame::FrameSpec;
    use crate::rt::processor::ProcessorChain;
    use crate::rt::shared::EngineCounters;
    use crate::rt::wake::NoWake;

    /// A session's loop at 48 kHz in, and the ends the edge and the I/O side keep.
    fn session(
        counters: &Arc<EngineCounters>,
    ) -> ((EdgeEnds, IoEnds), RealtimeLoop, Arc<RtShared>) {
        let config = BackendConfig::from_json(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b"}"#,
        )
        .unwrap();
        let spec = FrameSpec {
            frame_ms: 20,
            internal_rate: 16000,
            input_rate: 48000,
            output_rate: 48000,
        };
        let shared = Arc::new(RtShared::default());
        let (edge, io, rt) = build_session(
            &config,
            spec,
            ProcessorChain::default(),
            shared.clone(),
            counters.clone(),
            Arc::new(NoWake),
        );
        ((edge, io), rt, shared)
    }

    #[test]
    fn loops_run_without_being_woken_and_come_back_to_be_dropped() {
        let counters = Arc::new(EngineCounters::default());
        let pool = RealtimePool::new(1, 2, Duration::from_millis(20), false);
        let (mut a_edge, a_rt, a_shared) = session(&counters);
        let (_b_edge, b_rt, b_shared) = session(&counters);
        let (_c_edge, c_rt, c_shared) = session(&counters);
        let a = pool.attach(a_rt, a_shared.clone()).unwrap();
        let b = pool.attach(b_rt, b_shared.clone()).unwrap();
        let full = pool.attach(c_rt, c_shared).err().unwrap();
        assert!(full.to_string().contains("is full"), "{full}");

        // Frames pushed with no wake-up are processed by the pool's ticks.
        for _ in 0..3 {
            a_edge
                .0
                .input
                .write_chunk_uninit(960)
                .unwrap()
                .fill_from_iter(std::iter::repeat(0));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.frames_processed.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "the pool did not run the loop");
            std::thread::sleep(Duration::from_millis(5));
        }

        // A stopped session's loop is handed back; its place can be taken again.
        a_shared.shutdown.store(true, Ordering::Release);
        a.leave();
        assert_eq!(pool.threads[0].shared.load.load(Ordering::Relaxed), 1);
        let (_d_edge, d_rt, d_shared) = session(&counters);
        let d = pool.attach(d_rt, d_shared.clone()).unwrap();
        for (ticket, shared) in [(b, b_shared), (d, d_shared)] {
            shared.shutdown.store(true, Ordering::Release);
            ticket.leave();
        }
        assert_eq!(pool.threads[0].shared.load.load(Ordering::Relaxed), 0);
        assert_eq!(pool.threads(), 1);
    }
}
