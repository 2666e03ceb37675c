//! The process's measured CPU load: CPU time used (user + system, all threads, from
//! `getrusage`) over wall time, as a fraction of the cores the process may use. What a worker
//! reports to the server that dispatches jobs — measured, so that a worker whose sessions cost
//! more gets fewer new ones.

use std::time::Instant;

/// Samples the process's CPU use between calls. Control side only (it reads a clock and makes a
/// system call).
#[derive(Debug)]
pub struct CpuLoad {
    cores: f64,
    last_cpu_s: f64,
    last_at: Instant,
    load: f32,
}

impl CpuLoad {
    /// Starts measuring from now.
    pub fn new() -> CpuLoad {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuLoad {
            cores,
            last_cpu_s: process_cpu_seconds(),
            last_at: Instant::now(),
            load: 0.0,
        }
    }

    /// The load since the previous sample (0 = idle, 1 = every core busy), kept until the next
    /// sample when less than 100 ms passed (too short to measure).
    pub fn sample(&mut self) -> f32 {
        let now = Instant::now();
        let wall = now.duration_since(self.last_at).as_secs_f64();
        if wall < 0.1 {
            return self.load;
        }
        let cpu = process_cpu_seconds();
        let used = (cpu - self.last_cpu_s).max(0.0);
        self.load = (used / (wall * self.cores)).clamp(0.0, 1.0) as f32;
        self.last_cpu_s = cpu;
        self.last_at = now;
        self.load
    }
}

impl Default for CpuLoad {
    fn default() -> Self {
        CpuLoad::new()
    }
}

/// User + system CPU time of the whole process so far, in seconds. Any thread.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time of the calling thread alone, in seconds.
    fn thread_cpu_seconds() -> f64 {
        // SAFETY: an all-zero `timespec` is valid; clock_gettime writes it.
        let mut t: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid clock id and a writable `timespec`.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    #[test]
    fn the_load_counts_at_least_the_cpu_this_thread_burned() {
        // Under a loaded machine the thread gets less than a core; what it did get must show.
        let mut load = CpuLoad::new();
        let wall = Instant::now();
        let cpu = thread_cpu_seconds();
        let mut x = 0u64;
        while thread_cpu_seconds() - cpu < 0.15 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let burned = thread_cpu_seconds() - cpu;
        let measured = load.sample();
        let at_least = burned / (wall.elapsed().as_secs_f64() * load.cores);
        assert!(
            f64::from(measured) >= at_least * 0.95 && measured <= 1.0,
            "load {measured}, this thread alone {at_least:.3}"
        );
    }
}
