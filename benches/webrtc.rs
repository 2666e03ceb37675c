//! Direct WebRTC calls at real time: N browser-less clients call one `local` backend through
//! `provider_config.webrtc` (the test providers, so that the figures are the transport's and the
//! engine's, not a model's).
//!
//! Each client is a str0m peer connection written here (the client side of a browser call): it
//! offers a send-receive Opus audio line and an `rtvi` data channel, POSTs the offer to
//! `/api/offer` (Pipecat's SmallWebRTC shape, reqwest over HTTP on 127.0.0.1), applies the
//! answer, does ICE and DTLS over UDP loopback, sends one Opus packet every 20 ms (an 800 ms
//! voiced buzz every 4 s, encoded once with the project's Opus encoder, then silence; phases
//! spread over the clients, as `benches/phone.rs` does), says `client-ready` on its channel, and
//! logs the agent's Opus packets and the RTVI messages (`user-transcription`) as they arrive. The
//! clients run on a two-thread tokio runtime (one task per client).
//!
//! - `N` (default 100): the clients run in a child process (this bench binary again,
//!   `--clients`), so that the backend process's CPU is the server's alone. After every call is
//!   up, `VB_WEBRTC_SECONDS` (default 30) are measured: sessions connected, turns completed (a
//!   final `user-transcription` and the agent's audio back, both within 3 s of the end of the
//!   turn's speech), `Backend::health()` (deadline misses, dropped frames, media packets lost and
//!   concealed), CPU of the backend process per session and of the clients' process, the
//!   latency from the end of a turn's speech (the client sending its last voiced packet) to the
//!   first packet of the agent's audio arriving at the client (it includes `turn.silence_ms`,
//!   500 ms, of waiting for the turn to end), and the pacing of the agent's packets. Exit status
//!   1 when a criterion fails (every call connected, every turn completed, 0 deadline misses,
//!   0 dropped frames).
//! - `--latency [TURNS]` (default 20): one client, the same speech every 3 s; then the same
//!   speech through a host session on the same backend (`process_audio` at real-time pace,
//!   `read_audio` polled every millisecond): end of speech (the last voiced frame handed over)
//!   → first agent audio (the first packet arriving / the first non-zero sample read). Prints
//!   both series, p50 / p95 of each and what WebRTC adds at p50; exit status 1 when that is over
//!   60 ms.
//!
//! Run: `cargo bench --features test-providers --bench webrtc -- 100` and
//! `cargo bench --features test-providers --bench webrtc -- --latency 20`.
//! Knobs: `VB_WEBRTC_SESSIONS` (N when no argument gives it), `VB_WEBRTC_SECONDS`,
//! `VB_WEBRTC_RT_THREADS` (`audio.realtime_threads`, default 2), `VB_WEBRTC_RAMP_PER_S` (offers
//! per second, default 50).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::time::MissedTickBehavior;
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::transport::cpu_load::process_cpu_seconds;
use voicebackend::transport::media::opus::{EncoderSettings, FRAME_20MS, MAX_PACKET, OpusEncoder};
use voicebackend::{Backend, Session, SessionConfig};

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

/// One line of the clients' report.
const REPORT_TAG: &str = "@@client ";
/// The clients' process CPU over the measured window.
const CPU_TAG: &str = "@@cpu ";
/// Printed by the clients when every call is up and measuring starts.
const READY_TAG: &str = "@@ready";
/// The voiced part of each utterance.
const SPEECH_MS: u32 = 800;
/// A turn is completed when its transcript and the agent's audio arrive this soon after the end
/// of its speech.
const TURN_WINDOW: Duration = Duration::from_secs(3);
/// 20 ms.
const TICK: Duration = Duration::from_millis(20);

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
    match args.first().map(String::as_str) {
        Some("--clients") => {
            let addr: SocketAddr = args[1].parse().unwrap();
            let n: usize = args[2].parse().unwrap();
            clients(addr, n);
        }
        Some("--latency") => {
            let turns = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
            latency(turns);
        }
        first => {
            let n = first
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| env_u64("VB_WEBRTC_SESSIONS", 100) as usize);
            serve(n);
        }
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

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// The host: takes every call with the echo agent, keeps its session.
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

/// A `local` backend on the test providers with direct WebRTC on 127.0.0.1, its host set.
fn webrtc_backend(max_sessions: usize, rt_threads: u64) -> (Backend, Arc<Host>) {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "persistence":{{"path":""}},
            "max_concurrent_sessions":{max_sessions},"rate_limit":{{"sessions_per_second":0}},
            "audio":{{"realtime_threads":{rt_threads}}},
            "provider_config":{{"webrtc":{{"listen":"127.0.0.1:0"}}}}}}"#
    );
    let backend = Backend::from_json(&json).unwrap();
    let host = Arc::new(Host {
        sessions: Mutex::new(Vec::new()),
    });
    backend.set_incoming(host.clone()).unwrap();
    backend.start().unwrap();
    (backend, host)
}

// ---------------------------------------------------------------------------------------------
// The client: a str0m peer connection calling the backend.

/// The speech every client sends, encoded once: one Opus packet per 20 ms of one cycle (the
/// voiced packets first, then silence).
struct Packets {
    cycle: Vec<Vec<u8>>,
    voiced: usize,
}

impl Packets {
    /// `SPEECH_MS` of the buzz, then silence to `cycle_ms`.
    fn new(cycle_ms: u32) -> Packets {
        let mut pcm = common::speech(150.0, SPEECH_MS, 48_000);
        let voiced = pcm.len() / FRAME_20MS;
        pcm.resize(48 * cycle_ms as usize, 0);
        let mut encoder = OpusEncoder::new(EncoderSettings::default()).unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let cycle = pcm
            .chunks(FRAME_20MS)
            .map(|frame| {
                let n = encoder.encode(frame, &mut packet).unwrap();
                packet[..n].to_vec()
            })
            .collect();
        Packets { cycle, voiced }
    }

    fn silence(&self) -> &[u8] {
        self.cycle.last().unwrap()
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    /// Why the call failed (the offer refused, ICE never up, …).
    failed: Option<String>,
    /// When ICE and DTLS came up.
    connected_at: Option<Instant>,
    /// `bot-ready` arrived on the data channel.
    bot_ready: bool,
    /// Each utterance: when its first and its last voiced packet were sent.
    utterances: Vec<(Instant, Instant)>,
    /// When each packet of the agent's audio arrived.
    audio_at: Vec<Instant>,
    /// When each final `user-transcription` arrived.
    finals_at: Vec<Instant>,
    /// RTVI messages received.
    messages: u64,
    /// Packets sent.
    sent: u64,
}

/// What all clients share: when speaking starts, and the end.
#[derive(Default)]
struct Shared {
    /// From when clients speak (before: silence).
    go: OnceLock<Instant>,
    stop: AtomicBool,
}

/// One client's call, until `shared.stop`. Speaks every `packets.cycle` from `phase` ticks
/// after `shared.go`.
async fn client(
    http: reqwest::Client,
    addr: SocketAddr,
    packets: Arc<Packets>,
    phase: u64,
    log: Arc<Mutex<ClientLog>>,
    shared: Arc<Shared>,
) {
    if let Err(e) = call(http, addr, &packets, phase, &log, &shared).await {
        log.lock().unwrap().failed = Some(e);
    }
}

async fn call(
    http: reqwest::Client,
    addr: SocketAddr,
    packets: &Packets,
    phase: u64,
    log: &Mutex<ClientLog>,
    shared: &Shared,
) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid: Mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let channel = api.add_channel("rtvi".into());
    let (offer, pending) = api.apply().unwrap();
    let body = json!({"sdp": offer.to_sdp_string(), "type": "offer"}).to_string();
    let response = http
        .post(format!("http://{addr}/api/offer"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST /api/offer: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("offer refused: {status} {text}"));
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("answer: {e}"))?;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap_or_default())
        .map_err(|e| format!("answer SDP: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accepting the answer: {e}"))?;

    let mut buf = vec![0u8; 2048];
    let mut clock = tokio::time::interval(TICK);
    clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Ticks since the connection came up (the RTP clock), and since this client began speaking.
    let mut ticks: u64 = 0;
    let mut spoken: Option<u64> = None;
    let mut utterance_start = None;
    let mut channel_open = false;
    let give_up = Instant::now() + Duration::from_secs(30);
    while !shared.stop.load(Ordering::Relaxed) {
        // Send what str0m produced, take its events.
        let timeout = loop {
            match rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
                Output::Timeout(at) => break at,
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(event) => match event {
                    Event::Connected => log.lock().unwrap().connected_at = Some(Instant::now()),
                    Event::MediaData(data) if data.params.spec().codec == Codec::Opus => {
                        log.lock().unwrap().audio_at.push(Instant::now());
                    }
                    Event::ChannelOpen(id, _) if id == channel => {
                        channel_open = true;
                        let ready = json!({"label": "rtvi-ai", "type": "client-ready", "id": "1",
                            "data": {"version": "2.2.0"}})
                        .to_string();
                        if let Some(mut ch) = rtc.channel(channel) {
                            let _ = ch.write(false, ready.as_bytes());
                        }
                    }
                    Event::ChannelData(data) => {
                        let at = Instant::now();
                        let message: Value =
                            serde_json::from_slice(&data.data).unwrap_or(Value::Null);
                        let mut log = log.lock().unwrap();
                        log.messages += 1;
                        match message["type"].as_str() {
                            Some("bot-ready") => log.bot_ready = true,
                            Some("user-transcription") if message["data"]["final"] == true => {
                                log.finals_at.push(at)
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                },
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received {
                    if let Ok(contents) = buf[..n].try_into() {
                        let receive = Receive { proto: Protocol::Udp, source, destination: local, contents };
                        rtc.handle_input(Input::Receive(Instant::now(), receive))
                            .map_err(|e| format!("str0m input: {e}"))?;
                    }
                }
            }
            () = tokio::time::sleep_until(timeout.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| format!("str0m timer: {e}"))?;
            }
            _ = clock.tick() => {
                if !rtc.is_connected() || !channel_open {
                    if Instant::now() > give_up {
                        return Err("not connected after 30 s".into());
                    }
                    continue;
                }
                ticks += 1;
                let now = Instant::now();
                // Speaking starts `phase` ticks after `go`.
                let index = match (shared.go.get(), spoken) {
                    (_, Some(k)) => Some(k),
                    (Some(&go), None) if now >= go + TICK * phase as u32 => Some(0),
                    _ => None,
                };
                let packet = match index {
                    Some(k) => {
                        spoken = Some(k + 1);
                        let i = (k % packets.cycle.len() as u64) as usize;
                        if i == 0 {
                            utterance_start = Some(now);
                        } else if i + 1 == packets.voiced {
                            if let Some(start) = utterance_start.take() {
                                log.lock().unwrap().utterances.push((start, now));
                            }
                        }
                        &packets.cycle[i][..]
                    }
                    None => packets.silence(),
                };
                let Some(writer) = rtc.writer(mid) else { continue };
                let Some(pt) = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt())
                else {
                    continue;
                };
                writer
                    .write(pt, now, MediaTime::new(ticks * FRAME_20MS as u64, Frequency::FORTY_EIGHT_KHZ), packet.to_vec())
                    .map_err(|e| format!("sending audio: {e}"))?;
                log.lock().unwrap().sent += 1;
            }
        }
    }
    rtc.disconnect();
    Ok(())
}

/// The turns of `log` that started at or after `from` and were over (with `TURN_WINDOW` to be
/// answered) by `to`: per turn, whether it was completed, and its latency (ms) when the agent's
/// audio came back.
fn turns(log: &ClientLog, from: Instant, to: Instant) -> Vec<(bool, Option<f64>)> {
    log.utterances
        .iter()
        .filter(|(start, end)| *start >= from && *end + TURN_WINDOW <= to)
        .map(|&(start, end)| {
            let within = |at: &&Instant| **at > end && **at <= end + TURN_WINDOW;
            let transcribed = log
                .finals_at
                .iter()
                .any(|&at| at > start && at <= end + TURN_WINDOW);
            let first_audio = log.audio_at.iter().find(within);
            let latency = first_audio.map(|&at| (at - end).as_secs_f64() * 1000.0);
            (transcribed && latency.is_some(), latency)
        })
        .collect()
}

/// The longest gap between two of the agent's packets inside one reply (gaps over 1 s are
/// between replies), ms.
fn max_gap_ms(log: &ClientLog, from: Instant) -> f64 {
    log.audio_at
        .iter()
        .filter(|&&at| at >= from)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (*w[1] - *w[0]).as_secs_f64() * 1000.0)
        .filter(|&g| g < 1000.0)
        .fold(0.0, f64::max)
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// N calls.

fn serve(n: usize) {
    let seconds = env_u64("VB_WEBRTC_SECONDS", 30);
    let rt_threads = env_u64("VB_WEBRTC_RT_THREADS", 2);
    let (backend, host) = webrtc_backend(n + 10, rt_threads);
    let addr = backend.listening_address().unwrap();
    eprintln!(
        "webrtc bench: {n} calls, {seconds} s measured, audio.realtime_threads {rt_threads}, load average {}",
        load_average()
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--clients", &addr.to_string(), &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // A poller drains every session's events (a host would), as the other benches do.
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let host = host.clone();
        let polling = polling.clone();
        std::thread::spawn(move || {
            while polling.load(Ordering::Acquire) {
                for session in host.sessions.lock().unwrap().iter() {
                    while let Ok(Some(_)) = session.poll_event() {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut reports = Vec::new();
    let mut window: Option<(Instant, f64, voicebackend::VbHealth, String)> = None;
    let mut clients_cpu = 0.0;
    let mut server_cpu = 0.0;
    let mut wall = 0.0;
    let mut health_end = None;
    let mut sessions_up = 0;
    for line in lines.map_while(Result::ok) {
        if line == READY_TAG {
            sessions_up = backend.active_sessions();
            window = Some((
                Instant::now(),
                process_cpu_seconds(),
                backend.health(),
                load_average(),
            ));
            eprintln!("webrtc bench: {sessions_up} sessions up; measuring {seconds} s");
        } else if let Some(cpu) = line.strip_prefix(CPU_TAG) {
            clients_cpu = cpu.parse().unwrap();
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
    polling.store(false, Ordering::Release);
    let _ = poller.join();
    let (_, _, h0, load0) = window.expect("the clients never got ready");
    let h1 = health_end.expect("the clients never reported their CPU");

    let sum = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let connected = reports.iter().filter(|r| r["connected"] == true).count();
    let failed: Vec<&Value> = reports.iter().filter(|r| !r["failed"].is_null()).collect();
    let mut latencies: Vec<f64> = reports
        .iter()
        .flat_map(|r| r["latencies_ms"].as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut gaps: Vec<f64> = reports
        .iter()
        .map(|r| r["max_gap_ms"].as_f64().unwrap())
        .collect();
    let (spoken, completed) = (sum("turns"), sum("completed"));
    let misses = h1.deadline_misses - h0.deadline_misses;
    let dropped = h1.frames_dropped - h0.frames_dropped;
    println!(
        "calls: {} reported, {connected} connected (ICE + DTLS + data channel), {} failed{}; {} sessions up at the start of the window",
        reports.len(),
        failed.len(),
        failed
            .first()
            .map(|r| format!(" (first: {})", r["failed"]))
            .unwrap_or_default(),
        sessions_up
    );
    println!(
        "turns spoken {spoken}, completed {completed} (final user-transcription + agent audio within 3 s); agent packets received {}, RTVI messages {}, bot-ready {} of {}",
        sum("audio_packets"),
        sum("messages"),
        reports.iter().filter(|r| r["bot_ready"] == true).count(),
        reports.len()
    );
    println!(
        "end of speech → first agent audio packet at the client: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms over {} turns (includes turn.silence_ms 500)",
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95),
        percentile(&mut latencies, 1.0),
        latencies.len()
    );
    println!(
        "pacing: longest gap between two agent packets in a reply, per call: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; calls with a gap over 100 ms: {}",
        percentile(&mut gaps, 0.5),
        percentile(&mut gaps, 0.99),
        percentile(&mut gaps, 1.0),
        gaps.iter().filter(|&&g| g > 100.0).count()
    );
    println!(
        "health over the window: deadline misses {misses}, frames dropped {dropped}, frames processed {} (expected about {}), media packets received {} lost {} concealed {}",
        h1.frames_processed - h0.frames_processed,
        (wall * 50.0 * n as f64) as u64,
        h1.media_packets_received - h0.media_packets_received,
        h1.media_packets_lost - h0.media_packets_lost,
        h1.media_frames_concealed - h0.media_frames_concealed,
    );
    println!(
        "CPU over {wall:.1} s: backend process {:.1} % of one core in all = {:.3} % per session (the engine, str0m, SRTP, Opus both ways, the host's event poller; no client); clients' process {:.1} % of one core ({:.3} % per client: str0m, SRTP, no Opus decoding)",
        server_cpu / wall * 100.0,
        server_cpu / wall * 100.0 / n as f64,
        clients_cpu / wall * 100.0,
        clients_cpu / wall * 100.0 / n as f64,
    );
    println!(
        "load average: {load0} at the start of the window, {} at the end",
        load_average()
    );
    let verdicts = [
        (
            format!("{connected} of {n} calls connected"),
            connected == n,
        ),
        (
            format!("{completed} of {spoken} turns completed"),
            spoken > 0 && completed == spoken,
        ),
        (format!("deadline misses: {misses}"), misses == 0),
        (format!("frames dropped: {dropped}"), dropped == 0),
    ];
    let mut ok = true;
    for (what, pass) in &verdicts {
        println!("{} {what}", if *pass { "PASS" } else { "FAIL" });
        ok &= pass;
    }
    drop(backend);
    std::process::exit(if ok { 0 } else { 1 });
}

/// The clients' process: N calls on a two-thread runtime.
fn clients(addr: SocketAddr, n: usize) {
    let seconds = env_u64("VB_WEBRTC_SECONDS", 30);
    let ramp = env_u64("VB_WEBRTC_RAMP_PER_S", 50).max(1);
    let runtime = client_runtime();
    let http = http_client();
    let cycle = 4000;
    let packets = Arc::new(Packets::new(cycle));
    let shared = Arc::new(Shared::default());
    let cycle_ticks = u64::from(cycle) / 20;
    let logs: Vec<Arc<Mutex<ClientLog>>> = (0..n).map(|_| Arc::default()).collect();
    let mut tasks = Vec::with_capacity(n);
    for (i, log) in logs.iter().enumerate() {
        tasks.push(runtime.spawn(client(
            http.clone(),
            addr,
            packets.clone(),
            i as u64 * cycle_ticks / n as u64,
            log.clone(),
            shared.clone(),
        )));
        std::thread::sleep(Duration::from_micros(1_000_000 / ramp));
    }
    // Every call up (connected, or failed): measure from now.
    let deadline = Instant::now() + Duration::from_secs(60);
    while logs.iter().any(|l| {
        let l = l.lock().unwrap();
        !l.bot_ready && l.failed.is_none()
    }) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = std::io::stdout();
    writeln!(out.lock(), "{READY_TAG}").unwrap();
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    shared.go.set(start).unwrap();
    std::thread::sleep(Duration::from_secs(seconds));
    let end = Instant::now();
    writeln!(out.lock(), "{CPU_TAG}{}", process_cpu_seconds() - cpu0).unwrap();
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let turns = turns(&log, start, end);
        let report = json!({
            "client": i,
            "failed": log.failed,
            "connected": log.connected_at.is_some() && log.bot_ready,
            "bot_ready": log.bot_ready,
            "turns": turns.len(),
            "completed": turns.iter().filter(|t| t.0).count(),
            "latencies_ms": turns.iter().filter_map(|t| t.1).collect::<Vec<_>>(),
            "max_gap_ms": max_gap_ms(&log, start),
            "audio_packets": log.audio_at.iter().filter(|&&at| at >= start && at <= end).count(),
            "messages": log.messages,
            "sent": log.sent,
        });
        writeln!(out.lock(), "{REPORT_TAG}{report}").unwrap();
    }
    shared.stop.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_millis(200));
    runtime.shutdown_timeout(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Added latency: WebRTC vs a host session on the same backend.

fn latency(turns_wanted: usize) {
    let (backend, host) = webrtc_backend(10, 2);
    let addr = backend.listening_address().unwrap();
    eprintln!(
        "webrtc bench --latency: {turns_wanted} turns each way, load average {}",
        load_average()
    );
    // Over WebRTC: one client speaking every 3 s.
    let runtime = client_runtime();
    let cycle = 3000;
    let shared = Arc::new(Shared::default());
    let log: Arc<Mutex<ClientLog>> = Arc::default();
    runtime.spawn(client(
        http_client(),
        addr,
        Arc::new(Packets::new(cycle)),
        0,
        log.clone(),
        shared.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap().bot_ready {
        if let Some(e) = &log.lock().unwrap().failed {
            panic!("the call failed: {e}");
        }
        assert!(Instant::now() < deadline, "the call never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let poller = host.sessions.lock().unwrap().pop();
    let start = Instant::now();
    shared.go.set(start).unwrap();
    let run = Duration::from_millis(u64::from(cycle) * turns_wanted as u64) + TURN_WINDOW;
    while start.elapsed() < run {
        if let Some(session) = &poller {
            while let Ok(Some(_)) = session.poll_event() {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let end = Instant::now();
    shared.stop.store(true, Ordering::Release);
    let (over_webrtc, completed): (Vec<f64>, usize) = {
        let log = log.lock().unwrap();
        let turns = turns(&log, start, end);
        (
            turns.iter().filter_map(|t| t.1).collect(),
            turns.iter().filter(|t| t.0).count(),
        )
    };
    std::thread::sleep(Duration::from_millis(200));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Some(session) = poller {
        let _ = session.stop();
    }
    // The same speech through a host session on the same backend.
    let local = host_latency(&backend, turns_wanted, cycle);
    let (w50, w95) = (
        percentile(&mut over_webrtc.clone(), 0.5),
        percentile(&mut over_webrtc.clone(), 0.95),
    );
    let (h50, h95) = (
        percentile(&mut local.clone(), 0.5),
        percentile(&mut local.clone(), 0.95),
    );
    println!(
        "turns: {} over WebRTC ({completed} completed), {} through the host session",
        over_webrtc.len(),
        local.len()
    );
    println!(
        "end of speech → first agent audio over WebRTC, at the client (ms): {over_webrtc:.0?}"
    );
    println!("end of speech → first agent audio on a host session (ms):          {local:.0?}");
    println!("p50 / p95: WebRTC {w50:.0} / {w95:.0} ms, host session {h50:.0} / {h95:.0} ms");
    let added = w50 - h50;
    println!("added by WebRTC at p50: {added:.0} ms");
    println!("load average at the end: {}", load_average());
    let ok = over_webrtc.len() == turns_wanted && local.len() == turns_wanted && added <= 60.0;
    println!(
        "{} added latency at p50 {added:.0} ms (≤ 60 ms), {} and {} of {turns_wanted} turns answered",
        if ok { "PASS" } else { "FAIL" },
        over_webrtc.len(),
        local.len()
    );
    drop(backend);
    std::process::exit(if ok { 0 } else { 1 });
}

/// The same speech through a host session on `backend`, at 48 kHz: pushed one 20 ms frame per
/// 20 ms (speech, then silence to `cycle_ms`), `read_audio` polled every millisecond; per turn,
/// ms from the last voiced frame handed over to the first non-zero reply sample read.
fn host_latency(backend: &Backend, turns: usize, cycle_ms: u32) -> Vec<f64> {
    let config = SessionConfig {
        input_sample_rate: 48_000,
        output_sample_rate: 48_000,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(common::echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    let mut pcm = common::speech(150.0, SPEECH_MS, 48_000);
    let voiced = pcm.len() / FRAME_20MS;
    pcm.resize(48 * cycle_ms as usize, 0);
    let mut out = vec![0i16; 4800];
    let mut result = Vec::new();
    let mut next = Instant::now();
    for _ in 0..turns {
        let mut ended = None;
        let mut measured = false;
        for (k, frame) in pcm.chunks(FRAME_20MS).enumerate() {
            session.process_audio(frame).unwrap();
            if k + 1 == voiced {
                ended = Some(Instant::now());
            }
            next += TICK;
            // Until the next frame is due, read the reply as it comes.
            loop {
                let n = session.read_audio(&mut out).unwrap_or(0);
                if let Some(end) = ended {
                    if !measured && out[..n].iter().any(|&s| s != 0) {
                        result.push(end.elapsed().as_secs_f64() * 1000.0);
                        measured = true;
                    }
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                std::thread::sleep((next - now).min(Duration::from_millis(1)));
            }
            while session.poll_event().ok().flatten().is_some() {}
        }
    }
    let _ = session.stop();
    result
}
