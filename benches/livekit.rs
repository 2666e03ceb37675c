//! The `livekit` backend under a real livekit-server with Go SDK users (`tests/livekit/peer`),
//! on the test providers (so that the figures are the transport's and the engine's, not a
//! model's).
//!
//! - `latency [TURNS]` (default 10): the same speech (an 800 ms voiced buzz), the same providers
//!   and agent, TURNS turns each way: over LiveKit, the voice-to-voice latency the Go user
//!   measures (end of its speech → first audible reply); on `local`, what a host measures (the
//!   last speech sample pushed in real time → the first reply sample read). The difference is
//!   what LiveKit adds (Opus both ways, the network, both jitter buffers, both pacers). Prints
//!   both series and p50/p95 of each and of the difference.
//! - `scale N` (default 100): N sessions in N rooms, one Go user per room speaking every 4 s for
//!   30 s; prints this process's CPU per session over the busy 20 s, what health counted
//!   (dropped frames, deadline misses, media packets lost and concealed) and what the users
//!   received (packets, losses, concealment of the agent's track).
//!
//! - `dispatch N` (default 50): a worker-mode backend (in this process) takes N rooms the server
//!   dispatches, five at a time; its host greets each user (`say`) as soon as the session has
//!   started. Prints, per room and as p50/p95, the time from the job reaching the host
//!   (`on_session`) to the user hearing the agent's first audio — the agent joining the room,
//!   ICE, DTLS, publishing, TTS and Opus included.
//!
//! Run: `scripts/bench-livekit.sh` (all three), or
//! `cargo bench --features test-providers --bench livekit -- latency 10`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use voicebackend::{Backend, Session, SessionConfig, VbEventKind as K};

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::livekit::{LiveKitServer, Peer, backend_json, cpu_seconds_of, wav};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("latency") | None => latency(arg(&args, 10)),
        Some("scale") => scale(arg(&args, 100)),
        Some("dispatch") => dispatch(arg(&args, 50)),
        Some(other) => panic!("unknown mode {other}: latency [TURNS] | scale [N] | dispatch [N]"),
    }
}

fn arg(args: &[String], default: usize) -> usize {
    args.get(1).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn backend(server: &LiveKitServer) -> Backend {
    let json = backend_json(
        &server.url(),
        r#","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","max_concurrent_sessions":1000,
            "rate_limit":{"sessions_per_second":1000,"burst":1000,"per_user_sessions_per_minute":1000}"#,
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    backend
}

fn session(backend: &Backend, room: &str) -> Session {
    let config = SessionConfig {
        transport: "webrtc".into(),
        room: Some(room.into()),
        user_id: format!("user-{room}"),
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(common::echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    session
}

/// `--speak` arguments: `turns` utterances of `file`, every `every_ms` from 500 ms on.
fn speak_args(file: &std::path::Path, turns: usize, every_ms: usize) -> Vec<String> {
    (0..turns)
        .flat_map(|i| {
            [
                "--speak".to_owned(),
                format!("{}@{}", file.display(), 500 + i * every_ms),
            ]
        })
        .collect()
}

/// Drains a session's events and audio copy until `until` (the peer has ended), keeping turn
/// metrics.
fn first_output_ms(
    session: &Session,
    peer: Peer,
    patience: Duration,
) -> (Vec<f64>, serde_json::Value) {
    let session = Arc::new(session);
    std::thread::scope(|scope| {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let watcher = scope.spawn(move || {
            let mut metrics = Vec::new();
            let mut buf = vec![0i16; 4800];
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                while session.read_audio(&mut buf).is_ok_and(|n| n > 0) {}
                while let Ok(Some(e)) = session.poll_event() {
                    if e.kind == K::VB_EVENT_TURN_METRICS {
                        metrics.push(e.metrics.first_output_audio_us as f64 / 1000.0);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            metrics
        });
        let report = peer.finish(patience);
        done.store(true, std::sync::atomic::Ordering::Release);
        (watcher.join().unwrap(), report)
    })
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn latency(turns: usize) {
    let server = LiveKitServer::start();
    let backend = backend(&server);
    let session = session(&backend, "latency");
    let speech = wav(
        "bench-utterance",
        &common::speech(150.0, 800, 48_000),
        48_000,
    );
    let mut args = speak_args(&speech, turns, 3000);
    args.extend([
        "--wait-subscriber".into(),
        "--duration-ms".into(),
        (turns * 3000 + 4000).to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = Peer::start(&server, "latency", "user-latency", &args);
    let (engine, report) = first_output_ms(&session, peer, Duration::from_secs(120));
    let utterances = report["utterances"].as_array().unwrap();
    let audible = report["audible"].as_array().unwrap();
    let mut over_livekit = Vec::new();
    for u in utterances {
        let end = u["start_ms"].as_f64().unwrap() + u["audio_ms"].as_f64().unwrap();
        if let Some(span) = audible
            .iter()
            .find(|s| s["start_ms"].as_f64().unwrap() > end)
        {
            over_livekit.push(span["start_ms"].as_f64().unwrap() - end);
        }
    }
    assert_eq!(over_livekit.len(), engine.len(), "one reply per turn");
    let mut local = local_latency(turns);
    let (lk50, lk95) = (
        percentile(&mut over_livekit.clone(), 0.5),
        percentile(&mut over_livekit.clone(), 0.95),
    );
    let (lo50, lo95) = (
        percentile(&mut local.clone(), 0.5),
        percentile(&mut local, 0.95),
    );
    println!("turns: {turns}");
    println!("voice to voice over LiveKit, as the user hears it (ms): {over_livekit:.0?}");
    println!("voice to voice on local, as the host hears it (ms):     {local:.0?}");
    println!("engine's own figure over LiveKit (ms):                  {engine:.0?}");
    println!("p50 / p95: LiveKit {lk50:.0} / {lk95:.0}, local {lo50:.0} / {lo95:.0}");
    println!("added by LiveKit at p50: {:.0} ms", lk50 - lo50);
}

/// The same turns on `local`: a host pushes the speech at real-time pace, then silence, reading
/// the reply as it goes; returns, per turn, ms from the last speech sample pushed to the first
/// reply sample read.
fn local_latency(turns: usize) -> Vec<f64> {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let session = common::session_at(&backend, 48_000);
    let speech = common::speech(150.0, 800, 48_000);
    let silence = vec![0i16; 960];
    let mut out = vec![0i16; 4800];
    let mut result = Vec::new();
    let period = Duration::from_millis(20);
    let mut next = Instant::now();
    for _ in 0..turns {
        let mut ended = None;
        let mut frames = speech.chunks(960).chain(std::iter::repeat(&silence[..]));
        for k in 0.. {
            session.process_audio(frames.next().unwrap()).unwrap();
            if k + 1 == speech.len() / 960 {
                ended = Some(Instant::now());
            }
            let n = session.read_audio(&mut out).unwrap();
            if n > 0 && out[..n].iter().any(|&s| s != 0) {
                if let Some(end) = ended {
                    result.push(end.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        // Let the reply play out and the session listen again.
        for _ in 0..150 {
            session.process_audio(&silence).unwrap();
            while session.read_audio(&mut out).unwrap_or(0) > 0 {}
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        while session.poll_event().ok().flatten().is_some() {}
    }
    result
}

fn scale(n: usize) {
    let server = LiveKitServer::start_for(2 * n as u16);
    let backend = backend(&server);
    let started = Instant::now();
    let sessions: Vec<Session> = (0..n)
        .map(|i| session(&backend, &format!("room-{i}")))
        .collect();
    println!(
        "{n} sessions joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let speech = wav("bench-scale", &common::speech(150.0, 800, 48_000), 48_000);
    let mut args = speak_args(&speech, 8, 4000);
    args.extend([
        "--wait-subscriber".into(),
        "--duration-ms".into(),
        "36000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let peers: Vec<Peer> = (0..n)
        .map(|i| {
            Peer::start(
                &server,
                &format!("room-{i}"),
                &format!("user-room-{i}"),
                &args,
            )
        })
        .collect();
    // Keep every session's event queue and audio copy drained, as a host would.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let turns = std::thread::scope(|scope| {
        let flag = stop.clone();
        let sessions = &sessions;
        let drainer = scope.spawn(move || {
            let mut turns = 0;
            let mut buf = vec![0i16; 4800];
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                for s in sessions {
                    while s.read_audio(&mut buf).is_ok_and(|n| n > 0) {}
                    while let Ok(Some(e)) = s.poll_event() {
                        turns += usize::from(e.kind == K::VB_EVENT_TURN_METRICS);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            turns
        });
        std::thread::sleep(Duration::from_secs(8));
        let others = |server: &LiveKitServer, peers: &[Peer]| {
            let peers: f64 = peers.iter().map(|p| cpu_seconds_of(p.pid())).sum();
            (cpu_seconds_of(server.pid()), peers)
        };
        let (cpu0, t0, h0) = (
            voicebackend::transport::cpu_load::process_cpu_seconds(),
            Instant::now(),
            backend.health(),
        );
        let (server0, peers0) = others(&server, &peers);
        std::thread::sleep(Duration::from_secs(20));
        let (cpu1, t1, h1) = (
            voicebackend::transport::cpu_load::process_cpu_seconds(),
            Instant::now(),
            backend.health(),
        );
        let (server1, peers1) = others(&server, &peers);
        let window = (t1 - t0).as_secs_f64();
        let share = (cpu1 - cpu0) / window * 100.0;
        println!(
            "CPU over 20 s, % of one core: this process (the engine) {share:.1} ({:.3} per session), livekit-server {:.1}, the {n} Go users {:.1}",
            share / n as f64,
            (server1 - server0) / window * 100.0,
            (peers1 - peers0) / window * 100.0,
        );
        println!(
            "health over the window: frames dropped {}, deadline misses {}, media packets received {}, lost {}, frames concealed {}",
            h1.frames_dropped - h0.frames_dropped,
            h1.deadline_misses - h0.deadline_misses,
            h1.media_packets_received - h0.media_packets_received,
            h1.media_packets_lost - h0.media_packets_lost,
            h1.media_frames_concealed - h0.media_frames_concealed
        );
        let reports: Vec<serde_json::Value> = peers
            .into_iter()
            .map(|p| p.finish(Duration::from_secs(120)))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Release);
        let turns = drainer.join().unwrap();
        let track = |r: &serde_json::Value, key: &str| -> u64 {
            r["subscribed_tracks"]
                .as_array()
                .map_or(0, |t| t.iter().map(|t| t[key].as_u64().unwrap_or(0)).sum())
        };
        let (packets, lost, plc): (u64, u64, u64) = reports.iter().fold((0, 0, 0), |a, r| {
            (
                a.0 + track(r, "packets"),
                a.1 + track(r, "lost"),
                a.2 + track(r, "plc_frames"),
            )
        });
        println!(
            "users received {packets} packets of the agents' tracks: {lost} lost, {plc} frames concealed"
        );
        turns
    });
    println!("turns answered: {turns} (8 per user)");
}

/// Milliseconds since the Unix epoch (the Go users report absolute times the same way).
fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The host of the dispatch bench: takes every session, notes when, greets the user.
struct Greeter {
    taken: std::sync::Mutex<std::collections::HashMap<String, f64>>,
}

impl voicebackend::backend::IncomingHandler for Greeter {
    fn on_session(
        &self,
        session: Session,
        info: &serde_json::Value,
    ) -> voicebackend::Result<voicebackend::backend::Accepted> {
        let room = info["room"].as_str().unwrap_or_default().to_owned();
        self.taken.lock().unwrap().insert(room, unix_ms());
        std::thread::spawn(move || {
            while session.state() == voicebackend::VbSessionState::VB_STATE_IDLE {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = session.say("Hello there, welcome to the demo room. How can I help you today?");
            let mut buf = vec![0i16; 4800];
            while session.state() != voicebackend::VbSessionState::VB_STATE_STOPPED {
                while session.read_audio(&mut buf).is_ok_and(|n| n > 0) {}
                while let Ok(Some(_)) = session.poll_event() {}
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Ok(voicebackend::backend::Accepted {
            agent: Some(common::echo_agent()),
            on_event: None,
        })
    }
}

fn dispatch(n: usize) {
    // Two peer connections per participant, two participants per room; ports are freed late.
    let server = LiveKitServer::start_for(4 * n as u16);
    let json = backend_json(
        &server.url(),
        r#","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","persistence":{"path":"/tmp/voicebackend-bench-dispatch.redb"}"#,
    )
    .replacen(r#""api_secret":"secret"}"#, r#""api_secret":"secret","worker":{}}"#, 1);
    let _ = std::fs::remove_file("/tmp/voicebackend-bench-dispatch.redb");
    let backend = Backend::from_json(&json).unwrap();
    let greeter = Arc::new(Greeter {
        taken: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    backend.set_incoming(greeter.clone()).unwrap();
    backend.start().unwrap();
    let mut delays = Vec::new();
    let mut missed = Vec::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(5) {
        let peers: Vec<(String, Peer)> = batch
            .iter()
            .map(|i| {
                let room = format!("dispatch-{i}");
                let peer = Peer::start(
                    &server,
                    &room,
                    &format!("user-{i}"),
                    &["--duration-ms", "6000"],
                );
                (room, peer)
            })
            .collect();
        for (room, peer) in peers {
            let report = peer.finish(Duration::from_secs(30));
            let taken = greeter.taken.lock().unwrap().get(&room).copied();
            match (taken, report["first_audible_ms"].as_f64()) {
                (Some(taken), Some(first)) => {
                    let heard = report["join_started_unix_ms"].as_f64().unwrap() + first;
                    delays.push(heard - taken);
                }
                (taken, _) => {
                    let why = if taken.is_none() {
                        "no job reached the host"
                    } else {
                        "the user heard no greeting"
                    };
                    println!("{room}: {why}");
                    missed.push(room.clone());
                }
            }
        }
    }
    println!("job reaching the host -> the user hears the agent (ms): {delays:.0?}");
    println!("rooms without a greeting: {missed:?}");
    println!(
        "rooms: {n}; p50 / p95: {:.0} / {:.0} ms",
        percentile(&mut delays.clone(), 0.5),
        percentile(&mut delays, 0.95)
    );
    backend.stop(Duration::from_secs(5)).unwrap();
}
