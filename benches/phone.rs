//! Concurrent phone calls at real time: N Twilio media streams into one `local` backend (the
//! test providers, so that the figures are the transport's and the engine's, not a model's).
//!
//! The callers run in a child process (this bench binary again, `--callers`), so that the
//! backend's process CPU is the server's alone: N WebSocket calls, each sending 20 ms of μ-law
//! every 20 ms and speaking an 800 ms buzz every 4 s (phases spread over the calls), playing the
//! agent's replies in real time and echoing its marks, as Twilio does. After all calls are up,
//! `VB_PHONE_SECONDS` (default 30) are measured:
//!
//! - CPU of the backend process per call (% of one core) and of the callers' process;
//! - per call: turns spoken, replies heard (marks echoed), the agent's media messages, the
//!   longest gap between two media messages inside a reply (real-time pacing: 20 ms expected),
//!   and the time from the end of each utterance to the first reply audio (voice to voice, as
//!   the caller measures it: it includes `turn.silence_ms`, 500 ms, of waiting for the turn to
//!   end);
//! - `Backend::health()`: deadline misses and dropped frames; the load average before and after.
//!
//! Run: `cargo bench --features test-providers --bench phone -- 500`
//! Knobs: `VB_PHONE_SECONDS`, `VB_PHONE_RT_THREADS` (`audio.realtime_threads`, default 2: a pool;
//! 0 is one realtime thread per call), `VB_PHONE_RAMP_PER_S` (calls placed per second, default
//! 100).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::transport::cpu_load::process_cpu_seconds;
use voicebackend::{Backend, Session};

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::phone::{CallSpec, Caller};

/// One line of the callers' report.
const REPORT_TAG: &str = "@@call ";
/// The callers' process CPU over the measured window.
const CPU_TAG: &str = "@@cpu ";
/// Printed by the callers when every call is up and measuring starts.
const READY_TAG: &str = "@@ready";
/// The voiced part of each utterance (800 ms of silence follow, which end the turn).
const SPEECH: Duration = Duration::from_millis(800);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--callers") {
        let addr: SocketAddr = args[1].parse().unwrap();
        let n: usize = args[2].parse().unwrap();
        callers(addr, n);
        return;
    }
    let n = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    serve(n);
}

/// The host: takes every call, keeps its session.
struct Host {
    sessions: Mutex<Vec<Session>>,
}

impl IncomingHandler for Host {
    fn on_session(&self, session: Session, _: &Value) -> voicebackend::Result<Accepted> {
        self.sessions.lock().unwrap().push(session);
        Ok(Accepted {
            agent: Some(common::echo_agent()),
            on_event: None,
        })
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn serve(n: usize) {
    let seconds = env_u64("VB_PHONE_SECONDS", 30);
    let rt_threads = env_u64("VB_PHONE_RT_THREADS", 2);
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "max_concurrent_sessions":{},"rate_limit":{{"sessions_per_second":0}},
            "audio":{{"realtime_threads":{rt_threads}}},
            "provider_config":{{"phone":{{"listen":"127.0.0.1:0","start_timeout_ms":30000}}}}}}"#,
        n + 10
    );
    let backend = Backend::from_json(&json).unwrap();
    let host = Arc::new(Host {
        sessions: Mutex::new(Vec::new()),
    });
    backend.set_incoming(host.clone()).unwrap();
    backend.start().unwrap();
    let addr = backend.listening_address().unwrap();
    eprintln!(
        "phone bench: {n} calls, {seconds} s measured, audio.realtime_threads {rt_threads}, load average {}",
        load_average()
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--callers", &addr.to_string(), &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // A poller drains every session's events (a host would), as the scale bench does.
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let host = host.clone();
        let polling = polling.clone();
        std::thread::spawn(move || {
            while polling.load(std::sync::atomic::Ordering::Acquire) {
                for session in host.sessions.lock().unwrap().iter() {
                    while let Ok(Some(_)) = session.poll_event() {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut reports = Vec::new();
    let mut window: Option<(Instant, f64, voicebackend::VbHealth, String)> = None;
    let mut cpu_callers = 0.0;
    let mut server_cpu = 0.0;
    let mut wall = 0.0;
    let mut health_end = None;
    for line in lines.map_while(Result::ok) {
        if line == READY_TAG {
            window = Some((
                Instant::now(),
                process_cpu_seconds(),
                backend.health(),
                load_average(),
            ));
            eprintln!(
                "phone bench: {} sessions up; measuring {seconds} s",
                backend.active_sessions()
            );
        } else if let Some(cpu) = line.strip_prefix(CPU_TAG) {
            cpu_callers = cpu.parse().unwrap();
            if let Some((at, cpu0, _, _)) = &window {
                wall = at.elapsed().as_secs_f64();
                server_cpu = process_cpu_seconds() - cpu0;
                health_end = Some(backend.health());
            }
        } else if let Some(report) = line.strip_prefix(REPORT_TAG) {
            reports.push(serde_json::from_str::<Value>(report).unwrap());
        }
    }
    let _ = child.wait();
    polling.store(false, std::sync::atomic::Ordering::Release);
    let _ = poller.join();
    let (_, _, h0, load0) = window.expect("the callers never got ready");
    let h1 = health_end.expect("the callers never reported their CPU");
    summarize(n, wall, server_cpu, cpu_callers, &reports);
    println!(
        "health over the window: deadline misses {}, frames dropped {}, frames processed {} (expected about {})",
        h1.deadline_misses - h0.deadline_misses,
        h1.frames_dropped - h0.frames_dropped,
        h1.frames_processed - h0.frames_processed,
        (wall * 50.0 * n as f64) as u64
    );
    println!(
        "load average: {load0} at the start of the window, {} at the end",
        load_average()
    );
    drop(backend);
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn summarize(n: usize, wall: f64, server_cpu: f64, callers_cpu: f64, reports: &[Value]) {
    let sum = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_u64().unwrap())
            .sum::<u64>()
    };
    let mut latencies: Vec<f64> = reports
        .iter()
        .flat_map(|r| r["latencies_ms"].as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut gaps: Vec<f64> = reports
        .iter()
        .map(|r| r["max_gap_ms"].as_f64().unwrap())
        .collect();
    let answered_all = reports
        .iter()
        .filter(|r| r["turns"].as_u64() == r["replies"].as_u64() && r["turns"].as_u64() > Some(0))
        .count();
    let refused = reports
        .iter()
        .filter(|r| r["refused"] != Value::Null)
        .count();
    println!(
        "calls: {} reported, {refused} refused, {answered_all} had every turn answered (heard to the mark)",
        reports.len()
    );
    println!(
        "turns spoken {}, replies heard to the end {}, media messages from the agent {}, clears {}",
        sum("turns"),
        sum("replies"),
        sum("media"),
        sum("clears")
    );
    println!(
        "voice to voice (end of the caller's speech → first reply audio at the caller): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms over {} turns",
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95),
        percentile(&mut latencies, 1.0),
        latencies.len()
    );
    println!(
        "pacing: longest gap between two reply frames per call: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; calls with a gap over 100 ms: {}",
        percentile(&mut gaps, 0.5),
        percentile(&mut gaps, 0.99),
        percentile(&mut gaps, 1.0),
        gaps.iter().filter(|&&g| g > 100.0).count()
    );
    println!(
        "CPU over {wall:.1} s: backend process {:.1} % of one core in all = {:.3} % per call; callers' process {:.1} % of one core",
        server_cpu / wall * 100.0,
        server_cpu / wall * 100.0 / n as f64,
        callers_cpu / wall * 100.0
    );
}

/// The callers' process: N calls on a two-thread runtime.
fn callers(addr: SocketAddr, n: usize) {
    let seconds = env_u64("VB_PHONE_SECONDS", 30);
    let ramp = env_u64("VB_PHONE_RAMP_PER_S", 100).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let spec = CallSpec {
            record: false,
            ..CallSpec::twilio(i)
        };
        calls.push(Caller::dial_on(runtime.handle(), addr, spec));
        std::thread::sleep(Duration::from_micros(1_000_000 / ramp));
    }
    // Every call up (its session answered the upgrade and `start`): measure from now.
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls
        .iter()
        .any(|c| !c.log().connected && c.log().refused.is_none())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let turn = common::utterance(150.0, SPEECH.as_millis() as u32, 8000);
    let out = std::io::stdout();
    writeln!(out.lock(), "{READY_TAG}").unwrap();
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    // Each call speaks every 4 s, its phase spread over the calls.
    let cycle = Duration::from_secs(4);
    let mut next: Vec<Instant> = (0..n)
        .map(|i| start + cycle.mul_f64(i as f64 / n as f64))
        .collect();
    let mut turns = vec![0u64; n];
    // When each call's voiced part ended: the buzz starts at the caller's next 20 ms tick.
    let mut speech_ends: Vec<Vec<Instant>> = vec![Vec::new(); n];
    // The last utterance starts early enough to be answered inside the window.
    let last_turn = start + Duration::from_secs(seconds.saturating_sub(4));
    while start.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        for (i, call) in calls.iter().enumerate() {
            if now >= next[i] && now < last_turn {
                call.speak(&turn);
                speech_ends[i].push(now + SPEECH + Duration::from_millis(10));
                turns[i] += 1;
                next[i] += cycle;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    writeln!(out.lock(), "{CPU_TAG}{}", process_cpu_seconds() - cpu0).unwrap();
    for (i, call) in calls.iter().enumerate() {
        let log = call.log();
        // Voice to voice: from the end of each buzz (± 10 ms: the caller's tick) to the first
        // reply frame after it.
        let latencies: Vec<f64> = speech_ends[i]
            .iter()
            .filter_map(|&end| {
                log.media_at
                    .iter()
                    .find(|&&m| m > end)
                    .map(|&m| (m - end).as_secs_f64() * 1000.0)
            })
            .collect();
        // Pacing: the longest gap between consecutive frames of one reply (gaps over 1 s are
        // between replies).
        let max_gap = log
            .media_at
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
            .filter(|&g| g < 1000.0)
            .fold(0.0, f64::max);
        let report = json!({
            "call": i,
            "refused": log.refused,
            "closed": log.closed,
            "turns": turns[i],
            "replies": log.echoed.len(),
            "media": log.media_at.len(),
            "clears": log.clears.len(),
            "latencies_ms": latencies,
            "max_gap_ms": max_gap,
            "wrong": log.wrong.len(),
        });
        writeln!(out.lock(), "{REPORT_TAG}{report}").unwrap();
    }
    for call in &calls {
        call.stop();
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(calls);
    runtime.shutdown_timeout(Duration::from_secs(2));
}
