//! Waking a session task when its realtime thread has left news in the rings — without a lock on
//! the realtime thread.
//!
//! A session task sleeps until something happens; the realtime thread is one of the things that
//! happen (speech frames, turn events, room in the reply ring, dropped audio). Waking a tokio task
//! from outside the runtime takes the scheduler's locks, which the realtime rules forbid, so the
//! wake-up takes two steps:
//!
//! 1. the realtime thread rings its session's [`Bell`]: one atomic swap, and only when the bell
//!    was quiet, a push of the session's slot number onto a lock-free queue and an unpark of the
//!    backend's doorbell thread (one futex wake when it sleeps) — no allocation, no lock;
//! 2. the doorbell thread (`vb-doorbell`, one per backend) pops slot numbers and wakes the tasks.
//!
//! The task clears the bell before it reads the rings, so news left while it reads rings again.
//! A bell rung many times before its task runs wakes it once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::error::{Error, Result, VbStatus};
use crate::rt::wake::IoWake;

/// Longest sleep of an idle doorbell thread (a safety net; every ring unparks it).
const IDLE_PARK: Duration = Duration::from_millis(250);

/// The backend's doorbell: the thread that turns rings into task wake-ups, and the table of bells.
pub struct Doorbell {
    shared: Arc<DoorbellShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct DoorbellShared {
    /// Slot numbers of rung bells, pushed by realtime threads.
    rung: ArrayQueue<u32>,
    /// The bell of each slot; `None` for a free slot. Locked by the doorbell thread and by the
    /// control side (sessions coming and going), never by a realtime thread.
    slots: Mutex<Slots>,
    thread: OnceLock<Thread>,
    sleeping: AtomicBool,
    stop: AtomicBool,
    /// Rings the queue had no room for (never expected: each slot is queued at most once).
    overflows: AtomicU64,
}

#[derive(Default)]
struct Slots {
    bells: Vec<Option<Arc<BellState>>>,
    free: Vec<u32>,
}

struct BellState {
    slot: u32,
    rung: AtomicBool,
    notify: Notify,
    /// Live [`Bell`] handles; the last one to go frees the slot.
    handles: AtomicUsize,
}

/// One session's bell: rung by its realtime thread, awaited by its session task. Dropping the
/// last handle frees the slot.
pub struct Bell {
    state: Arc<BellState>,
    doorbell: Arc<DoorbellShared>,
}

impl Doorbell {
    /// A doorbell for at most `sessions` bells at a time. Its thread starts with the first bell.
    pub fn new(sessions: u32) -> Doorbell {
        Doorbell {
            shared: Arc::new(DoorbellShared {
                // Every bell is queued at most once; the margin covers a slot freed and reused
                // while its old number still waits in the queue.
                rung: ArrayQueue::new(sessions as usize * 2 + 16),
                slots: Mutex::new(Slots::default()),
                thread: OnceLock::new(),
                sleeping: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                overflows: AtomicU64::new(0),
            }),
            thread: Mutex::new(None),
        }
    }

    /// A new bell for a session. `VB_ERR_INTERNAL` when the doorbell thread cannot start.
    pub fn bell(&self) -> Result<Bell> {
        self.ensure_thread()?;
        let mut slots = self.shared.lock_slots();
        let slot = match slots.free.pop() {
            Some(slot) => slot,
            None => {
                slots.bells.push(None);
                (slots.bells.len() - 1) as u32
            }
        };
        let state = Arc::new(BellState {
            slot,
            rung: AtomicBool::new(false),
            notify: Notify::new(),
            handles: AtomicUsize::new(1),
        });
        slots.bells[slot as usize] = Some(state.clone());
        Ok(Bell {
            state,
            doorbell: self.shared.clone(),
        })
    }

    /// Rings the queue could not take so far (0 unless the bookkeeping is wrong).
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.load(Ordering::Relaxed)
    }

    fn ensure_thread(&self) -> Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_some() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("vb-doorbell".into())
            .stack_size(128 * 1024)
            .spawn(move || shared.run())
            .map_err(|e| {
                Error::new(
                    VbStatus::VB_ERR_INTERNAL,
                    format!("could not start the doorbell thread: {e}"),
                )
            })?;
        *thread = Some(handle);
        Ok(())
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.shared.thread.get() {
            thread.unpark();
        }
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl DoorbellShared {
    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The doorbell thread: wakes the task of every rung slot, then sleeps until the next ring.
    fn run(&self) {
        let _ = self.thread.set(std::thread::current());
        while !self.stop.load(Ordering::Acquire) {
            if self.rung.is_empty() {
                self.sleeping.store(true, Ordering::SeqCst);
                // Pairs with the fence in `ring`: either the ringer sees `sleeping` and unparks
                // us, or we see its slot in the queue here.
                fence(Ordering::SeqCst);
                if self.rung.is_empty() && !self.stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(IDLE_PARK);
                }
                self.sleeping.store(false, Ordering::SeqCst);
            }
            let slots = self.lock_slots();
            while let Some(slot) = self.rung.pop() {
                if let Some(Some(bell)) = slots.bells.get(slot as usize) {
                    bell.notify.notify_one();
                }
            }
        }
    }

    fn ring(&self, state: &BellState) {
        if state.rung.swap(true, Ordering::AcqRel) {
            return; // rung already: the task has not cleared it, it will see this news too
        }
        if self.rung.push(state.slot).is_err() {
            // Let the next ring try again rather than leave the bell stuck on "rung".
            state.rung.store(false, Ordering::Release);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return;
        }
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

impl Bell {
    /// Resolves once the bell was rung since it was last cleared (at once if it was). Cancel-safe.
    pub async fn rung(&self) {
        if self.state.rung.load(Ordering::Acquire) {
            return;
        }
        self.state.notify.notified().await;
    }

    /// Marks the news as taken: call before reading the rings.
    pub fn clear(&self) {
        self.state.rung.store(false, Ordering::Release);
        // A later ring must be seen by the reads that follow.
        fence(Ordering::SeqCst);
    }
}

impl IoWake for Bell {
    fn wake_io(&self) {
        self.doorbell.ring(&self.state);
    }
}

impl Clone for Bell {
    fn clone(&self) -> Self {
        self.state.handles.fetch_add(1, Ordering::Relaxed);
        Bell {
            state: self.state.clone(),
            doorbell: self.doorbell.clone(),
        }
    }
}

impl Drop for Bell {
    /// Control side only (the realtime loop's handle is dropped after its thread ended).
    fn drop(&mut self) {
        if self.state.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut slots = self.doorbell.lock_slots();
            slots.bells[self.state.slot as usize] = None;
            slots.free.push(self.state.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_wakes_the_waiting_task_once_per_clear() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let doorbell = Doorbell::new(4);
        let bell = doorbell.bell().unwrap();
        let ringer = bell.clone();
        runtime.block_on(async {
            let waiting = tokio::spawn({
                let bell = bell.clone();
                async move { bell.rung().await }
            });
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                ringer.wake_io();
                ringer.wake_io(); // once queued, more rings add nothing
            });
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the ring woke the task")
                .unwrap();
            bell.clear();
            let quiet = tokio::time::timeout(Duration::from_millis(50), bell.rung()).await;
            assert!(
                quiet.is_err(),
                "a cleared bell stays quiet until rung again"
            );
            bell.wake_io();
            tokio::time::timeout(Duration::from_secs(5), bell.rung())
                .await
                .expect("a second ring after clearing wakes again");
        });
        assert_eq!(doorbell.overflows(), 0);
    }

    #[test]
    fn slots_are_reused_once_every_handle_is_gone() {
        let doorbell = Doorbell::new(2);
        let a = doorbell.bell().unwrap();
        let a_slot = a.state.slot;
        let a2 = a.clone();
        drop(a);
        let b = doorbell.bell().unwrap();
        assert_ne!(
            b.state.slot, a_slot,
            "a slot still in use is not handed out"
        );
        drop(a2);
        let c = doorbell.bell().unwrap();
        assert_eq!(c.state.slot, a_slot);
        drop((b, c));
    }
}
