//! Many sessions at real-time pace on one backend.
//!
//! For each session count N (argv, or `VB_SCALE_SESSIONS="100,500"`; default 100 and 500) and each
//! scheduling mode (`VB_SCALE_PRIORITY`: `off`, `on` or `both`; default `both` as root, else `off`)
//! a fresh child process (so that RSS starts clean) measures:
//! 1. RSS per idle session: VmRSS after creating and starting N sessions (and letting them settle)
//!    minus VmRSS before creating them, divided by N;
//! 2. idle CPU per session over `VB_SCALE_IDLE_SECONDS` (default 5) with no audio;
//! 3. `VB_SCALE_SECONDS` (default 60) of audio: one driver thread pushes a 20 ms frame into every
//!    session every 20 ms (a 4 s cycle per session: 1 s of speech, 3 s of silence, phases spread
//!    over the sessions so turns, transcripts and replies happen throughout), reads their reply
//!    audio and polls their events. Reports CPU per session (getrusage RUSAGE_SELF user+sys / N /
//!    seconds, as % of one core), split by thread group (realtime threads, I/O runtime, driver),
//!    wake-ups of the realtime threads, deadline misses and dropped frames from
//!    `Backend::health()`, frames processed vs expected, the driver's own lateness, and the
//!    voice-to-voice latency of the turns (`VB_EVENT_TURN_METRICS`).
//!
//! Run: `VB_SCALE_SECONDS=20 cargo bench --features test-providers --bench scale [-- 100 500]`
//! Other knobs: `VB_SCALE_RATE` (host rate in and out, default 48000), `VB_SCALE_RT_THREADS`
//! (`audio.realtime_threads`: 0, the default, is one realtime thread per session; N a pool of N;
//! a list such as `0,2` runs each), `VB_SCALE_INPUT` (`speech`, the default: the 4 s cycle above;
//! `noise`: quiet white noise in every frame, no speech, so no turns: the cost of the realtime
//! path alone).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use voicebackend::{Backend, Session, SessionConfig, VbEventKind, VbHealth};

#[path = "../tests/common/mod.rs"]
mod common;

const FRAME_MS: u64 = 20;
const CYCLE_FRAMES: usize = 200; // 4 s
const SPEECH_FRAMES: usize = 50; // 1 s
/// Marks the one machine-readable line a child prints for the parent's summary.
const SUMMARY_TAG: &str = "@@summary ";

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn session_counts() -> Vec<usize> {
    let from_args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    if !from_args.is_empty() {
        return from_args;
    }
    if let Ok(list) = std::env::var("VB_SCALE_SESSIONS") {
        let parsed: Vec<usize> = list
            .split([',', ' '])
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        if !parsed.is_empty() {
            return parsed;
        }
    }
    vec![100, 500]
}

/// `audio.realtime_threads` values to run (`VB_SCALE_RT_THREADS`, default 0).
fn rt_thread_modes() -> Vec<u32> {
    let parsed: Vec<u32> = std::env::var("VB_SCALE_RT_THREADS")
        .unwrap_or_default()
        .split([',', ' '])
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if parsed.is_empty() { vec![0] } else { parsed }
}

fn priority_modes() -> Vec<bool> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let default = if root { "both" } else { "off" };
    match std::env::var("VB_SCALE_PRIORITY")
        .unwrap_or_else(|_| default.into())
        .as_str()
    {
        "on" => vec![true],
        "both" => vec![false, true],
        _ => vec![false],
    }
}

/// VmRSS of this process in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, Default)]
struct Usage {
    cpu_s: f64,
    csw: u64,
}

fn rusage(who: libc::c_int) -> Usage {
    // SAFETY: getrusage writes into the zeroed struct we pass; `who` is RUSAGE_SELF/THREAD.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        csw: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    }
}

/// Per-thread CPU time (ns) and voluntary context switches (≈ wake-ups after a park),
/// keyed by thread id, with the thread's group.
#[derive(Default)]
struct Threads(HashMap<u32, (&'static str, u64, u64)>);

fn thread_group(tid: u32, comm: &str) -> &'static str {
    if tid == std::process::id() {
        "driver"
    } else if comm.starts_with("vb-rt-") {
        "realtime"
    } else if comm.starts_with("vb-io") {
        "io runtime"
    } else if comm.starts_with("vb-doorbell") {
        "doorbell"
    } else {
        "other"
    }
}

fn threads() -> Threads {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Threads(map);
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        // First field of schedstat: time on CPU in ns (exact, unlike the tick-sampled utime).
        let on_cpu_ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let voluntary = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        map.insert(tid, (thread_group(tid, comm.trim()), on_cpu_ns, voluntary));
    }
    Threads(map)
}

/// CPU seconds and voluntary switches per thread group between two snapshots (threads that
/// exited in between are missing: the caller reports the rest of RUSAGE_SELF as "exited").
fn group_delta(a: &Threads, b: &Threads) -> BTreeMap<&'static str, (f64, u64)> {
    let mut out: BTreeMap<&'static str, (f64, u64)> = BTreeMap::new();
    for (tid, &(group, ns, vol)) in &b.0 {
        let (t0, v0) = a.0.get(tid).map_or((0, 0), |&(_, t, v)| (t, v));
        let e = out.entry(group).or_default();
        e.0 += ns.saturating_sub(t0) as f64 / 1e9;
        e.1 += vol.saturating_sub(v0);
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the CPU split by thread group as % of one core per session.
fn print_groups(
    label: &str,
    groups: &BTreeMap<&'static str, (f64, u64)>,
    total_cpu: f64,
    wall: f64,
    n: usize,
) {
    let per = |s: f64| s / wall / n as f64 * 100.0;
    let mut parts: Vec<String> = groups
        .iter()
        .map(|(g, (cpu, _))| format!("{g} {:.3}%", per(*cpu)))
        .collect();
    let known: f64 = groups.values().map(|(c, _)| c).sum();
    parts.push(format!(
        "threads that exited {:.3}%",
        per(total_cpu - known)
    ));
    println!(
        "  {label} CPU per session by thread group: {}",
        parts.join(", ")
    );
    if let Some((_, vol)) = groups.get("realtime") {
        println!(
            "  {label} realtime thread wake-ups (voluntary context switches): {:.1} per session per second ({:.2} per 20 ms frame)",
            *vol as f64 / wall / n as f64,
            *vol as f64 / wall / n as f64 * FRAME_MS as f64 / 1000.0
        );
    }
}

/// One configuration, in this (child) process; prints its report and one summary line.
fn run_child(
    n: usize,
    priority: bool,
    rt_threads: u32,
    seconds: f64,
    idle_seconds: f64,
    rate: u32,
) {
    let frame_len = (rate as u64 * FRAME_MS / 1000) as usize;
    let speech: Vec<Vec<i16>> = common::speech(150.0, 1000, rate)
        .chunks_exact(frame_len)
        .map(<[i16]>::to_vec)
        .collect();
    assert_eq!(speech.len(), SPEECH_FRAMES);
    let silence = vec![0i16; frame_len];
    // `VB_SCALE_INPUT=noise`: every frame is quiet white noise (about -50 dBFS: the VAD hears no
    // speech), a different stretch for each of 50 frames.
    let noise_input = std::env::var("VB_SCALE_INPUT").is_ok_and(|v| v.trim() == "noise");
    let mut seed = 0x9e37_79b9u32;
    let noise: Vec<Vec<i16>> = (0..SPEECH_FRAMES)
        .map(|_| {
            (0..frame_len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed >> 24) as i16 - 128
                })
                .collect()
        })
        .collect();

    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","max_concurrent_sessions":{},"rate_limit":{{"sessions_per_second":0}},"audio":{{"realtime_priority":{priority},"realtime_threads":{rt_threads}}}}}"#,
        n.max(1000)
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().expect("backend start");
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = vm_rss_kib();

    let t = Instant::now();
    let sessions: Vec<Session> = (0..n)
        .map(|_| {
            let config = SessionConfig {
                input_sample_rate: rate,
                output_sample_rate: rate,
                ..SessionConfig::default()
            };
            let s = backend
                .create_session(config, Some(common::echo_agent()), None)
                .expect("create_session");
            s.start().expect("session start");
            s
        })
        .collect();
    let create_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = vm_rss_kib();
    let per_idle = rss_idle.saturating_sub(rss_before) as f64 / n as f64;

    println!(
        "\n-- {n} sessions, realtime_priority {priority} ({} sessions on elevated threads), {} --",
        backend.health().realtime_threads_elevated,
        if rt_threads == 0 {
            "one realtime thread per session".to_owned()
        } else {
            format!("a pool of {rt_threads} realtime threads")
        }
    );
    println!("create+start of {n} sessions: {create_s:.2} s");
    println!(
        "RSS: {rss_before} KiB before sessions, {rss_idle} KiB with {n} idle sessions: {per_idle:.1} KiB per idle session"
    );

    // Idle: started sessions, no audio.
    let (u0, th0, t) = (rusage(libc::RUSAGE_SELF), threads(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(idle_seconds));
    let (u1, th1, idle_wall) = (
        rusage(libc::RUSAGE_SELF),
        threads(),
        t.elapsed().as_secs_f64(),
    );
    let idle_cpu_pct = (u1.cpu_s - u0.cpu_s) / idle_wall / n as f64 * 100.0;
    println!(
        "idle ({idle_seconds} s, no audio): {idle_cpu_pct:.3}% of a core per session ({:.0}% of one core for all {n})",
        idle_cpu_pct * n as f64
    );
    print_groups(
        "idle:",
        &group_delta(&th0, &th1),
        u1.cpu_s - u0.cpu_s,
        idle_wall,
        n,
    );
    for s in &sessions {
        while s.poll_event().expect("poll_event").is_some() {}
    }

    // Audio at real-time pace.
    let ticks = (seconds * 1000.0 / FRAME_MS as f64).round() as usize;
    let h0: VbHealth = backend.health();
    let (u0, d0, th0) = (
        rusage(libc::RUSAGE_SELF),
        rusage(libc::RUSAGE_THREAD),
        threads(),
    );
    let mut out = vec![0i16; frame_len * 4];
    let mut lags = Vec::with_capacity(ticks);
    let mut busy = Vec::with_capacity(ticks);
    let mut events: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut v2v_ms = Vec::new();
    let mut push_dropped = 0u64;
    let mut last_misses = h0.deadline_misses;
    let (mut miss_ticks, mut miss_ticks_driver_late) = (0, 0);
    let start = Instant::now();
    for tick in 0..ticks {
        let due = start + Duration::from_millis(FRAME_MS * tick as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let began = Instant::now();
        let lag = began.saturating_duration_since(due).as_secs_f64() * 1e3;
        lags.push(lag);
        for (i, s) in sessions.iter().enumerate() {
            let phase = (tick + i * CYCLE_FRAMES / n.max(1)) % CYCLE_FRAMES;
            let frame = if noise_input {
                &noise[phase % SPEECH_FRAMES]
            } else if phase < SPEECH_FRAMES {
                &speech[phase]
            } else {
                &silence
            };
            push_dropped += s.process_audio(frame).expect("process_audio").dropped as u64;
            while s.read_audio(&mut out).expect("read_audio") == out.len() {}
            while let Some(e) = s.poll_event().expect("poll_event") {
                *events.entry(common::event_kind_name(e.kind)).or_default() += 1;
                match e.kind {
                    VbEventKind::VB_EVENT_TURN_METRICS if e.metrics.first_output_audio_us > 0 => {
                        v2v_ms.push(e.metrics.first_output_audio_us as f64 / 1e3);
                    }
                    VbEventKind::VB_EVENT_ERROR | VbEventKind::VB_EVENT_AUDIO_DROPPED => {
                        let text = e.text.unwrap_or_default();
                        *errors.entry(format!("{:?}: {text}", e.error)).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
        busy.push(began.elapsed().as_secs_f64() * 1e3);
        // Which ticks saw new deadline misses (one health() call per tick, outside `busy`).
        let misses = backend.health().deadline_misses;
        if misses > last_misses {
            miss_ticks += 1;
            if lag > FRAME_MS as f64 {
                miss_ticks_driver_late += 1;
            }
            last_misses = misses;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (u1, d1, th1) = (
        rusage(libc::RUSAGE_SELF),
        rusage(libc::RUSAGE_THREAD),
        threads(),
    );
    // Let the last frames through before reading the counters.
    std::thread::sleep(Duration::from_millis(100));
    let h1 = backend.health();
    let rss_after = vm_rss_kib();

    let t = Instant::now();
    drop(sessions);
    drop(backend);
    let stop_s = t.elapsed().as_secs_f64();

    lags.sort_by(f64::total_cmp);
    busy.sort_by(f64::total_cmp);
    v2v_ms.sort_by(f64::total_cmp);
    let cpu = u1.cpu_s - u0.cpu_s;
    let driver_cpu = d1.cpu_s - d0.cpu_s;
    let cpu_pct = cpu / wall / n as f64 * 100.0;
    let engine_pct = (cpu - driver_cpu) / wall / n as f64 * 100.0;
    let expected = (n * ticks) as u64;
    let processed = h1.frames_processed - h0.frames_processed;
    let dropped = h1.frames_dropped - h0.frames_dropped;
    let misses = h1.deadline_misses - h0.deadline_misses;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    println!(
        "audio ({wall:.1} s): CPU per session {cpu_pct:.3}% of a core (engine only, without the driver thread: {engine_pct:.3}%); \
         whole process {:.0}% of one core ({:.0}% of the {cores} cores)",
        cpu_pct * n as f64,
        cpu_pct * n as f64 / cores as f64
    );
    print_groups("audio:", &group_delta(&th0, &th1), cpu, wall, n);
    println!(
        "  process context switches: {:.0} per session per second",
        (u1.csw - u0.csw) as f64 / wall / n as f64
    );
    println!(
        "frames: {processed} processed of {expected} expected ({:.2}%), {dropped} dropped (health) + {push_dropped} samples \
         refused by process_audio, {misses} deadline misses ({:.3}% of frames)",
        processed as f64 / expected.max(1) as f64 * 100.0,
        misses as f64 / expected.max(1) as f64 * 100.0
    );
    println!(
        "deadline misses appeared in {miss_ticks} of the driver's ticks ({miss_ticks_driver_late} of them with the driver itself more than a frame late)"
    );
    println!(
        "driver: tick lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; time to serve all sessions per tick p50 {:.2} ms, p99 {:.2} ms",
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(0.0),
        percentile(&busy, 50.0),
        percentile(&busy, 99.0)
    );
    println!("events: {events:?}");
    for (text, count) in &errors {
        println!("  error/drop event x{count}: {text}");
    }
    println!(
        "voice-to-voice (turn metrics: end of user speech to first reply sample readable): n={} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        v2v_ms.len(),
        percentile(&v2v_ms, 50.0),
        percentile(&v2v_ms, 99.0),
        v2v_ms.last().copied().unwrap_or(f64::NAN)
    );
    println!("RSS after the run: {rss_after} KiB; stop+drop of all sessions: {stop_s:.2} s");
    println!(
        "{SUMMARY_TAG}{n} {rt_threads} {} {} {cpu_pct:.3} {idle_cpu_pct:.3} {per_idle:.1} {misses} {} {:.2} {:.0} {:.1}",
        if priority { "on" } else { "off" },
        h1.realtime_threads_elevated,
        dropped + push_dropped,
        processed as f64 / expected.max(1) as f64 * 100.0,
        percentile(&v2v_ms, 50.0),
        percentile(&lags, 99.0),
    );
}

fn main() {
    let seconds = env_f64("VB_SCALE_SECONDS", 60.0);
    let idle_seconds = env_f64("VB_SCALE_IDLE_SECONDS", 5.0);
    let rate = env_f64("VB_SCALE_RATE", 48000.0) as u32;
    if let Ok(child) = std::env::var("VB_SCALE_CHILD") {
        let mut parts = child.split(',');
        let (n, priority, rt_threads) = (parts.next(), parts.next(), parts.next());
        run_child(
            n.and_then(|n| n.parse().ok())
                .expect("VB_SCALE_CHILD=<n>,<on|off>,<rt threads>"),
            priority == Some("on"),
            rt_threads.and_then(|t| t.parse().ok()).unwrap_or(0),
            seconds,
            idle_seconds,
            rate,
        );
        return;
    }

    let counts = session_counts();
    let modes = priority_modes();
    let pools = rt_thread_modes();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let input = if std::env::var("VB_SCALE_INPUT").is_ok_and(|v| v.trim() == "noise") {
        "quiet noise, no speech"
    } else {
        "4 s cycle per session: 1 s speech, 3 s silence"
    };
    println!(
        "scale: sessions {counts:?}, realtime_priority {modes:?}, {seconds} s of audio at {rate} Hz \
         ({input}), audio.realtime_threads {pools:?}, {cores} cores; one child process per configuration"
    );
    let exe = std::env::current_exe().expect("current_exe");
    let mut summaries = Vec::new();
    let runs = counts.iter().flat_map(|&n| {
        let pools = &pools;
        modes
            .iter()
            .flat_map(move |&p| pools.iter().map(move |&t| (n, p, t)))
    });
    for (n, priority, rt_threads) in runs {
        {
            eprintln!(
                "scale: running {n} sessions, realtime_priority {priority}, realtime_threads {rt_threads} ..."
            );
            let mut child = Command::new(&exe)
                .env(
                    "VB_SCALE_CHILD",
                    format!("{n},{},{rt_threads}", if priority { "on" } else { "off" }),
                )
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning the child");
            let stdout = child.stdout.take().expect("child stdout");
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("child output");
                match line.strip_prefix(SUMMARY_TAG) {
                    Some(summary) => summaries.push(summary.to_owned()),
                    None => println!("{line}"),
                }
            }
            let status = child.wait().expect("child");
            assert!(status.success(), "the {n}-session run failed: {status}");
        }
    }
    println!(
        "\n== summary (targets: no deadline misses, no dropped frames; CPU per session: % of one core) =="
    );
    println!(
        "{:>8} {:>10} {:>8} {:>8} {:>10} {:>10} {:>12} {:>7} {:>8} {:>10} {:>9} {:>14}",
        "sessions",
        "rt threads",
        "priority",
        "elevated",
        "cpu%/sess",
        "idle%/sess",
        "KiB/idle",
        "misses",
        "dropped",
        "processed",
        "v2v p50",
        "driver lag p99"
    );
    for s in &summaries {
        let f: Vec<&str> = s.split_whitespace().collect();
        if let [
            n,
            pool,
            prio,
            elev,
            cpu,
            idle,
            rss,
            misses,
            dropped,
            processed,
            v2v,
            lag,
        ] = f[..]
        {
            println!(
                "{n:>8} {:>10} {prio:>8} {elev:>8} {cpu:>10} {idle:>10} {rss:>12} {misses:>7} {dropped:>8} {processed:>9}% {v2v:>7}ms {lag:>12}ms",
                if pool == "0" { "own" } else { pool }
            );
        }
    }
}
