//! Soak: many sessions talking for a long time in one process — does anything grow, leak, stall
//! or go unreported?
//!
//! `VB_SOAK_SESSIONS` (default 500) sessions at 16 kHz on one backend; one driver thread pushes a
//! 20 ms frame into every session every 20 ms: 1 s of voiced speech every 4 s (phases spread
//! over the sessions), reading the agent's audio and polling events as it goes. Every 10 s it
//! samples RSS, open file descriptors, threads, and the backend's deadline misses and dropped
//! frames. After `VB_SOAK_SECONDS` (default 600) the speech stops and every session must be back
//! in LISTENING within 30 s.
//!
//! `--faults` (or `VB_SOAK_FAULTS=1`): speech goes to a network STT — a local server speaking
//! Deepgram's streaming protocol (`tests/servers/deepgram`, with a cheap transcriber instead of
//! Whisper) that drops every open connection every 30 s without a Close frame — and the host's
//! agent fails every 17th call and overruns `agent_timeout_ms` (1 s) every 23rd. Every injected
//! failure must reach the host as a `VB_EVENT_ERROR` with its status. The server runs in a child
//! process (this program again, with `VB_SOAK_DEEPGRAM_SERVER=1`): it records every connection,
//! and its memory must not count as the engine's.
//!
//! Pass criteria (the exit status is 1 when one fails): RSS growth after the warm-up
//! (`VB_SOAK_WARMUP_SECONDS`, default the time each session takes to fill its history window of
//! `VB_SOAK_HISTORY_TURNS` turns — `history_max_turns`, default 50 as in the engine, so 220 s;
//! at least 60 s) under 2 %; file descriptors and threads flat after the
//! warm-up (threads within 2 of the count at its end, 8 with `--faults`, whose stalling agents
//! borrow blocking threads for a while; descriptors within ±2; in `--faults` a network connection per turn under
//! way comes and goes, so there at most one per session more than at the start), and the
//! descriptors back to the start's count once quiet; 0 deadline misses; every dropped frame
//! reported (the backend's `frames_dropped` equals what `process_audio` returned plus the
//! `VB_EVENT_AUDIO_DROPPED` events); no session stuck out of LISTENING.
//!
//! Run: `cargo bench --features test-providers --bench soak [-- --faults]`
//! (`scripts/soak.sh` runs both). Not in CI: it takes 10 minutes per run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use voicebackend::{
    Agent, Backend, Error, Reply, Session, SessionConfig, VbEventKind, VbSessionState, VbStatus,
};

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/servers/mod.rs"]
mod servers;

use servers::deepgram::{DeepgramFault, DeepgramServer, DeepgramServerOptions};

const RATE: u32 = 16_000;
const FRAME_MS: u64 = 20;
const CYCLE_FRAMES: usize = 200; // 4 s
const SPEECH_FRAMES: usize = 50; // 1 s
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Every n-th agent call fails (`--faults`).
const FAIL_EVERY: u64 = 17;
/// Every n-th agent call overruns the agent timeout (`--faults`).
const STALL_EVERY: u64 = 23;
const AGENT_TIMEOUT_MS: u64 = 1000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The heap glibc's malloc has handed out, in KiB (see [`Sample::heap_kib`]).
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters; it takes no pointer.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64 / 1024
}

/// One line of `/proc/self/status` as a number (`VmRSS:` in KiB, `Threads:`).
fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// What was sampled at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at_s: u64,
    rss_kib: u64,
    /// What glibc's malloc has handed out and not taken back (`mallinfo2`: `uordblks` +
    /// `hblkhd`): RSS growing while this stays level is fragmentation, not a leak.
    heap_kib: u64,
    /// Tasks alive on the backend's I/O runtime.
    tasks: u64,
    fds: u64,
    threads: u64,
    misses: u64,
    dropped: u64,
}

/// Counts of what the agent was asked to do wrong.
#[derive(Default)]
struct Injected {
    calls: AtomicU64,
    failures: AtomicU64,
    stalls: AtomicU64,
}

/// The echo agent, failing and stalling on schedule when `faults`.
fn agent(faults: bool, injected: Arc<Injected>) -> Arc<dyn Agent> {
    Arc::new(move |transcript: &str, reply: &mut Reply| {
        let n = injected.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if faults && n % FAIL_EVERY == 0 {
            injected.failures.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                VbStatus::VB_ERR_PROVIDER,
                "the soak's agent fails on purpose",
            ));
        }
        if faults && n % STALL_EVERY == 0 {
            injected.stalls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(AGENT_TIMEOUT_MS + 300));
        }
        reply.write("you said ")?;
        reply.write(transcript)?;
        reply.end()
    })
}

/// The cheap transcriber of the local Deepgram server: the segment's length.
fn length_transcript(audio: &[i16]) -> String {
    format!(
        "{} ms of speech",
        audio.len() as u64 * 1000 / u64::from(RATE)
    )
}

/// The local Deepgram-protocol server in a process of its own: prints its URL, serves until its
/// standard input closes, then prints `connections N dropped M`.
fn serve_deepgram() {
    use std::io::{BufRead, Write};
    let server = DeepgramServer::start(DeepgramServerOptions {
        fault: DeepgramFault::DropEvery {
            period_ms: 30_000,
            // VB_SOAK_SPREAD_DROPS=1: each connection at its own moment of the period.
            spread: std::env::var("VB_SOAK_SPREAD_DROPS").is_ok_and(|v| v.trim() == "1"),
        },
        transcriber: Some(length_transcript),
        ..DeepgramServerOptions::default()
    });
    println!("{}", server.base_url());
    let _ = std::io::stdout().flush();
    for _ in std::io::stdin().lock().lines() {}
    let connections = server.connections();
    let dropped = connections.iter().filter(|c| c.dropped).count();
    println!("connections {} dropped {dropped}", connections.len());
}

/// The child process running [`serve_deepgram`], and its URL.
struct DeepgramChild {
    child: std::process::Child,
    url: String,
}

impl DeepgramChild {
    fn start() -> DeepgramChild {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env("VB_SOAK_DEEPGRAM_SERVER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Deepgram-protocol server process");
        let mut url = String::new();
        let stdout = child.stdout.as_mut().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut url)
            .expect("the server's URL");
        DeepgramChild {
            child,
            url: url.trim().to_owned(),
        }
    }

    fn base_url(&self) -> &str {
        &self.url
    }

    /// Stops the server; (connections, dropped without a Close frame).
    fn finish(mut self) -> (u64, u64) {
        use std::io::Read;
        drop(self.child.stdin.take());
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = self.child.wait();
        let numbers: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (
            numbers.first().copied().unwrap_or(0),
            numbers.get(1).copied().unwrap_or(0),
        )
    }
}

fn main() {
    if std::env::var_os("VB_SOAK_DEEPGRAM_SERVER").is_some() {
        return serve_deepgram();
    }
    let n = env_u64("VB_SOAK_SESSIONS", 500) as usize;
    let seconds = env_u64("VB_SOAK_SECONDS", 600);
    // Each session keeps its last `history_max_turns` turns (default 50): its memory grows until
    // that window is full, a turn every 4 s, then stays flat. The warm-up covers that.
    let history_turns = env_u64("VB_SOAK_HISTORY_TURNS", 50).max(1);
    let cycle_s = CYCLE_FRAMES as u64 * FRAME_MS / 1000;
    let warmup = env_u64(
        "VB_SOAK_WARMUP_SECONDS",
        (history_turns * cycle_s + 20).max(60),
    )
    .min(seconds / 2);
    let faults = std::env::args().any(|a| a == "--faults")
        || std::env::var("VB_SOAK_FAULTS").is_ok_and(|v| v.trim() == "1");

    let server = faults.then(DeepgramChild::start);
    let stt = match &server {
        Some(server) => format!(
            r#""stt_provider":"deepgram","stt_config":{{"api_key":"local-deepgram-key","base_url":"{}","interim_results":false}}"#,
            server.base_url()
        ),
        None => r#""stt_provider":"test-pitch-stt""#.to_owned(),
    };
    let json = format!(
        r#"{{"provider":"local",{stt},"tts_provider":"test-tone-tts","max_concurrent_sessions":{},"agent_timeout_ms":{AGENT_TIMEOUT_MS},"history_max_turns":{history_turns},"rate_limit":{{"sessions_per_second":0}},"persistence":{{"path":""}}}}"#,
        n.max(1)
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().expect("backend start");
    let injected = Arc::new(Injected::default());
    let sessions: Vec<Session> = (0..n)
        .map(|_| {
            let config = SessionConfig {
                input_sample_rate: RATE,
                output_sample_rate: RATE,
                ..SessionConfig::default()
            };
            let s = backend
                .create_session(config, Some(agent(faults, injected.clone())), None)
                .expect("create_session");
            s.start().expect("session start");
            s
        })
        .collect();
    println!(
        "soak: {n} sessions, {seconds} s, warm-up {warmup} s, {}",
        if faults {
            "faults: Deepgram-protocol STT dropping every connection every 30 s, agent failing every 17th and stalling every 23rd call"
        } else {
            "test providers"
        }
    );

    let frame_len = (RATE as u64 * FRAME_MS / 1000) as usize;
    let speech: Vec<Vec<i16>> = common::speech(150.0, 1000, RATE)
        .chunks_exact(frame_len)
        .map(<[i16]>::to_vec)
        .collect();
    let silence = vec![0i16; frame_len];
    let mut out = vec![0i16; frame_len * 4];
    let mut events: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_status: BTreeMap<i32, u64> = BTreeMap::new();
    let (mut push_dropped, mut event_dropped) = (0u64, 0u64);
    let mut samples: Vec<Sample> = Vec::new();
    let dropped0 = backend.health().frames_dropped;
    let sample = |at_s: u64, backend: &Backend| {
        let h = backend.health();
        Sample {
            at_s,
            rss_kib: proc_status("VmRSS:"),
            heap_kib: heap_in_use_kib(),
            tasks: backend.io_tasks().unwrap_or(0) as u64,
            fds: open_fds(),
            threads: proc_status("Threads:"),
            misses: h.deadline_misses,
            dropped: h.frames_dropped,
        }
    };
    let mut drain = |s: &Session,
                     out: &mut [i16],
                     events: &mut BTreeMap<&'static str, u64>,
                     event_dropped: &mut u64| {
        while s.read_audio(out).expect("read_audio") == out.len() {}
        while let Some(e) = s.poll_event().expect("poll_event") {
            *events.entry(common::event_kind_name(e.kind)).or_default() += 1;
            match e.kind {
                VbEventKind::VB_EVENT_ERROR => {
                    *error_status.entry(e.error as i32).or_default() += 1;
                    let text = e.text.unwrap_or_default();
                    *errors.entry(format!("{:?}: {text}", e.error)).or_default() += 1;
                }
                VbEventKind::VB_EVENT_AUDIO_DROPPED => {
                    *event_dropped += e.dropped_samples.div_ceil(frame_len as u64);
                }
                _ => {}
            }
        }
    };

    let ticks = seconds * 1000 / FRAME_MS;
    let start = Instant::now();
    let mut next_sample = start;
    let mut late_ticks = 0u64;
    for tick in 0..ticks {
        let due = start + Duration::from_millis(FRAME_MS * tick);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else if Instant::now() - due > Duration::from_millis(FRAME_MS) {
            late_ticks += 1;
        }
        for (i, s) in sessions.iter().enumerate() {
            let phase = (tick as usize + i * CYCLE_FRAMES / n.max(1)) % CYCLE_FRAMES;
            let frame = if phase < SPEECH_FRAMES {
                &speech[phase]
            } else {
                &silence
            };
            push_dropped += s.process_audio(frame).expect("process_audio").dropped as u64;
            drain(s, &mut out, &mut events, &mut event_dropped);
        }
        if Instant::now() >= next_sample {
            let s = sample(start.elapsed().as_secs(), &backend);
            println!(
                "  t={:>4} s  RSS {:>7} KiB  heap {:>7} KiB  tasks {:>5}  fds {:>5}  threads {:>5}  deadline misses {}  frames dropped {}",
                s.at_s,
                s.rss_kib,
                s.heap_kib,
                s.tasks,
                s.fds,
                s.threads,
                s.misses,
                s.dropped - dropped0
            );
            samples.push(s);
            next_sample += SAMPLE_EVERY;
        }
    }

    // The speech stops: every session must come back to LISTENING.
    let quiet = Instant::now();
    let mut stuck: Vec<(usize, VbSessionState)> = Vec::new();
    while quiet.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(FRAME_MS));
        for s in &sessions {
            let _ = s.process_audio(&silence);
            drain(s, &mut out, &mut events, &mut event_dropped);
        }
        stuck = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.state()))
            .filter(|(_, state)| *state != VbSessionState::VB_STATE_LISTENING)
            .collect();
        if stuck.is_empty() && quiet.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let last = sample(start.elapsed().as_secs(), &backend);
    samples.push(last);

    // Verdicts.
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warmup).collect();
    let base = after.first().copied().copied().unwrap_or(last);
    let rss_growth = (last.rss_kib as f64 - base.rss_kib as f64) / base.rss_kib as f64 * 100.0;
    let span = |f: fn(&Sample) -> u64| {
        let values: Vec<u64> = after.iter().map(|s| f(s)).collect();
        (
            values.iter().copied().min().unwrap_or(0),
            values.iter().copied().max().unwrap_or(0),
        )
    };
    let (fd_min, fd_max) = span(|s| s.fds);
    let (th_min, th_max) = span(|s| s.threads);
    // Once quiet, the descriptors are those of the start (idle sessions, no connection open);
    // while talking, network STT holds one connection per turn under way.
    let first = samples[0];
    let fds_flat = last.fds <= first.fds + 2
        && if faults {
            fd_max <= first.fds + n as u64 + 10
        } else {
            fd_max <= base.fds + 2 && fd_min + 2 >= base.fds
        };
    // Agents that block run on the I/O runtime's blocking pool, which grows while they stall and
    // lets idle threads go after 10 s: with `--faults` a few come and go.
    let thread_slack = if faults { 8 } else { 2 };
    let threads_flat = th_max <= base.threads + thread_slack && th_min + 2 >= base.threads;
    let misses = last.misses;
    let engine_dropped = last.dropped - dropped0;
    let drops_reported = engine_dropped <= push_dropped + event_dropped;
    let calls = injected.calls.load(Ordering::Relaxed);
    let (failed, stalled) = (
        injected.failures.load(Ordering::Relaxed),
        injected.stalls.load(Ordering::Relaxed),
    );
    let provider_errors = error_status
        .get(&(VbStatus::VB_ERR_PROVIDER as i32))
        .copied()
        .unwrap_or(0);
    let timeouts = error_status
        .get(&(VbStatus::VB_ERR_TIMEOUT as i32))
        .copied()
        .unwrap_or(0);
    let failures_reported = provider_errors >= failed && timeouts >= stalled;
    let (connections, drops) = server.map_or((0, 0), DeepgramChild::finish);

    println!("\nevents: {events:?}");
    // Where the memory is (information, not a verdict): the heap malloc handed out, and the
    // tasks alive on the I/O runtime.
    let heap_growth =
        (last.heap_kib as f64 - base.heap_kib as f64) / base.heap_kib.max(1) as f64 * 100.0;
    let (tasks_min, tasks_max) = span(|s| s.tasks);
    println!(
        "heap in use after warm-up: {} → {} KiB ({heap_growth:+.2} %); I/O tasks {tasks_min}–{tasks_max} after warm-up, {} once quiet",
        base.heap_kib, last.heap_kib, last.tasks
    );
    for (text, count) in &errors {
        println!("  error ×{count}: {text}");
    }
    println!(
        "agent calls {calls} (failed on purpose {failed}, stalled past the timeout {stalled}); late driver ticks {late_ticks}"
    );
    if faults {
        println!(
            "network STT: {connections} connections, {drops} dropped by the server without a Close frame"
        );
    }
    let verdicts = [
        (
            format!(
                "RSS growth after warm-up < 2 %: {:.2} % ({} → {} KiB)",
                rss_growth, base.rss_kib, last.rss_kib
            ),
            rss_growth < 2.0,
        ),
        (
            format!(
                "open file descriptors flat: {} at the start, {fd_min}–{fd_max} after warm-up, {} once quiet",
                first.fds, last.fds
            ),
            fds_flat,
        ),
        (
            format!(
                "threads flat: {th_min}–{th_max} after warm-up (at most {thread_slack} over {})",
                base.threads
            ),
            threads_flat,
        ),
        (format!("deadline misses: {misses}"), misses == 0),
        (
            format!(
                "dropped frames all reported: engine {engine_dropped}, returned by process_audio {push_dropped}, in AUDIO_DROPPED events {event_dropped}"
            ),
            drops_reported,
        ),
        (
            format!(
                "every injected failure an event: {failed} failures → {provider_errors} VB_ERR_PROVIDER, {stalled} stalls → {timeouts} VB_ERR_TIMEOUT"
            ),
            failures_reported,
        ),
        (
            format!(
                "no session stuck out of LISTENING: {} stuck {:?}",
                stuck.len(),
                stuck.iter().take(5).collect::<Vec<_>>()
            ),
            stuck.is_empty(),
        ),
    ];
    let mut ok = true;
    println!();
    for (what, pass) in &verdicts {
        println!("{} {what}", if *pass { "PASS" } else { "FAIL" });
        ok &= pass;
    }
    drop(sessions);
    drop(backend);
    std::process::exit(if ok { 0 } else { 1 });
}
