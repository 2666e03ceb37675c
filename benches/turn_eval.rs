//! Turn-taking on the labeled set of `scripts/turn-eval/make_set.py`, through the public API:
//! when does a user turn start and end, and when is the agent interrupted?
//!
//! Every case gets a fresh session (16 kHz in and out) on one backend with the test providers.
//! Its user track is pushed in 20 ms frames in simulated time: after each frame the driver waits
//! until the realtime thread has heard it ([`Session::all_audio_heard`]), reads 20 ms of reply
//! audio (a host playing it at the audio clock), and collects the events that came meanwhile.
//! Each `VB_EVENT_SPEECH_STARTED`, `VB_EVENT_SPEECH_STOPPED` and `VB_EVENT_INTERRUPTED` is timed
//! at the end of the frame it followed, in seconds of audio. Turn ends are exact (counted with
//! [`Session::turns_ended`], which the realtime thread advances before it releases the frame);
//! so are interruptions (the frame after which reply audio stops, confirmed by the event).
//! Turn starts reach the driver only as events through the session's I/O task, read after a
//! short settle (`SETTLE`): on a loaded machine one can come a few frames late (they are not
//! scored).
//!
//! Cases where the agent speaks (`agent_speaking` in the manifest) first make the agent talk with
//! [`Session::say`] (the test TTS plays a tone of 20 ms per character, as long as the case's
//! agent track) and start the user track once playout has begun; the user's audio holds no echo.
//! Turns get an agent that answers nothing, so that no reply plays over the rest of the case.
//!
//! The backend's configuration is today's defaults on the test providers; a JSON object given
//! with `--config '{...}'` or `--config-file PATH` or in `VB_TURN_EVAL_CONFIG` is merged into it
//! (objects merge key by key), so the same bench scores other VAD and turn settings.
//!
//! Output (`--out`, default `target/turn-eval/engine.json`): per case the three lists of times,
//! plus the realtime threads' CPU per frame (from `/proc/self/task/*/schedstat`).
//!
//! Run: `scripts/turn-eval/run.sh`, or after `make_set.py`:
//! `cargo bench --features test-providers --bench turn_eval -- [--set DIR] [--out FILE]
//! [--config JSON]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voicebackend::{Agent, Backend, Reply, Session, SessionConfig, VbEventKind, VbSessionState};

const RATE: u32 = 16_000;
const FRAME: usize = (RATE / 50) as usize;
/// How long the driver lets the I/O task deliver a frame's events.
const SETTLE: Duration = Duration::from_micros(700);
/// The longest wait for anything before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Command-line and environment options.
struct Options {
    /// The set's directory (with `manifest.json`).
    set: PathBuf,
    /// Where the decisions go.
    out: PathBuf,
    /// Configuration merged into the defaults.
    extra: Value,
}

/// Reads `--set`, `--out`, `--config`/`--config-file` and `VB_TURN_EVAL_CONFIG`.
fn options() -> Options {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        set: root.join("target/turn-eval/set"),
        out: root.join("target/turn-eval/engine.json"),
        extra: std::env::var("VB_TURN_EVAL_CONFIG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| serde_json::from_str(&s).expect("VB_TURN_EVAL_CONFIG: JSON object"))
            .unwrap_or_else(|| json!({})),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--set" => o.set = value().into(),
            "--out" => o.out = value().into(),
            "--config" => o.extra = serde_json::from_str(&value()).expect("--config: JSON"),
            "--config-file" => {
                let text = std::fs::read_to_string(value()).expect("--config-file");
                o.extra = serde_json::from_str(&text).expect("--config-file: JSON");
            }
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// Merges `extra` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}

/// A 16 kHz mono WAV of the set.
fn read_wav(path: &Path) -> Vec<i16> {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(reader.spec().sample_rate, RATE, "{}", path.display());
    reader.samples::<i16>().map(Result::unwrap).collect()
}

/// Nanoseconds the session realtime threads (`vb-rt-*`) have run, from their schedstat.
fn realtime_threads_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("vb-rt"))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Process CPU time (user + system) in nanoseconds.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An agent that answers nothing (turn cases must not play a reply over the user).
fn silent_agent() -> Arc<dyn Agent> {
    Arc::new(|_: &str, reply: &mut Reply| reply.end())
}

/// Waits until `f` holds, polling; panics after `PATIENCE`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// What the engine decided in one case, in seconds of audio.
#[derive(Default)]
struct Decisions {
    /// `VB_EVENT_SPEECH_STARTED` (read after a settle; may be late on a loaded machine).
    started: Vec<f64>,
    /// Turn ends (exact).
    stopped: Vec<f64>,
    /// The interruption (exact; at most one, the agent speaks once).
    interrupted: Vec<f64>,
}

/// Runs one case; returns its decisions, the realtime threads' CPU it took (ns) and its frames.
fn run_case(backend: &Backend, set: &Path, case: &Value) -> (Decisions, u64, usize) {
    let id = case["id"].as_str().expect("case id");
    let user = read_wav(&set.join(format!("{id}.wav")));
    let config = SessionConfig {
        input_sample_rate: RATE,
        output_sample_rate: RATE,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(silent_agent()), None)
        .expect("create_session");
    session.start().expect("session start");
    let agent_speaks = case["agent_speaking"].as_bool().unwrap_or(false);
    if agent_speaks {
        start_agent(&session, case["agent_end"].as_f64().unwrap_or(8.0));
    }
    let rt0 = realtime_threads_ns();
    let mut d = Decisions::default();
    let mut out = [0i16; FRAME];
    // Start of the current run of frames after which no reply audio could be read: playout was
    // flushed there (or, were it not an interruption, the reply ran dry).
    let mut silent_since: Option<f64> = None;
    let mut interrupt_events = Vec::new();
    let frames = user.len() / FRAME;
    for (i, frame) in user.chunks_exact(FRAME).enumerate() {
        let t = (i + 1) as f64 * FRAME as f64 / f64::from(RATE);
        let ended_before = session.turns_ended();
        wait_for("room in the input ring", || {
            session.writable_samples() >= FRAME
        });
        let pushed = session.process_audio(frame).expect("process_audio");
        assert_eq!(pushed.dropped, 0, "{id}: a frame was dropped");
        wait_for("the frame to be heard", || session.all_audio_heard());
        if agent_speaks {
            let n = session.read_audio(&mut out).expect("read_audio");
            if n < FRAME {
                silent_since.get_or_insert(t);
            } else {
                silent_since = None;
            }
        }
        for _ in ended_before..session.turns_ended() {
            d.stopped.push(t);
        }
        std::thread::sleep(SETTLE);
        while let Some(e) = session.poll_event().expect("poll_event") {
            match e.kind {
                VbEventKind::VB_EVENT_SPEECH_STARTED => d.started.push(t),
                VbEventKind::VB_EVENT_INTERRUPTED => interrupt_events.push(t),
                _ => {}
            }
        }
    }
    // With interruptions decided by words (`interruptions.decide_by`), speech over the reply
    // pauses it and the verdict comes with the turn's transcript, which may come after the case's
    // last frame: a reply that is silent at the end without an event gets a second of silence
    // and a few seconds to say whether it was interrupted.
    if agent_speaks && silent_since.is_some() && interrupt_events.is_empty() {
        let end = frames as f64 * FRAME as f64 / f64::from(RATE);
        for _ in 0..50 {
            wait_for("room in the input ring", || {
                session.writable_samples() >= FRAME
            });
            session.process_audio(&[0; FRAME]).expect("process_audio");
            wait_for("the frame to be heard", || session.all_audio_heard());
            let _ = session.read_audio(&mut out);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && interrupt_events.is_empty() {
            match session.poll_event().expect("poll_event") {
                Some(e) if e.kind == VbEventKind::VB_EVENT_INTERRUPTED => {
                    interrupt_events.push(end)
                }
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    // The event reaches the driver through the I/O task, possibly frames late; the flush itself
    // is exact: reply audio stops after the frame that decided the interruption (with a decision
    // by words: the frame after which the pause began).
    d.interrupted = match (interrupt_events.first(), silent_since) {
        (Some(_), Some(flushed)) => vec![flushed],
        (Some(&late), None) => vec![late],
        (None, _) => Vec::new(),
    };
    let rt_ns = realtime_threads_ns().saturating_sub(rt0);
    session.stop().expect("session stop");
    (d, rt_ns, frames)
}

/// Makes the agent speak for about `seconds` (the test TTS: 20 ms of tone per character) and
/// waits until its audio plays.
fn start_agent(session: &Session, seconds: f64) {
    let chars = (seconds * 50.0) as usize + 50;
    session.say(&"la ".repeat(chars / 3)).expect("say");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(e) = session.poll_event().expect("poll_event") {
            if e.kind == VbEventKind::VB_EVENT_STATE_CHANGED
                && e.state == VbSessionState::VB_STATE_SPEAKING
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the agent never spoke");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Times rounded to the millisecond, as JSON.
fn seconds(times: &[f64]) -> Value {
    times
        .iter()
        .map(|t| (t * 1000.0).round() / 1000.0)
        .collect()
}

fn main() {
    let o = options();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(o.set.join("manifest.json"))
            .expect("manifest.json (run scripts/turn-eval/make_set.py first)"),
    )
    .expect("manifest JSON");
    let mut config = json!({
        "provider": "local",
        "stt_provider": "test-pitch-stt",
        "tts_provider": "test-tone-tts",
        "persistence": {"path": ""},
    });
    merge(&mut config, &o.extra);
    let backend = Backend::from_json(&config.to_string()).expect("backend config");
    backend.start().expect("backend start");

    let cpu0 = process_cpu_ns();
    let started = Instant::now();
    let (mut rt_ns, mut frames) = (0u64, 0usize);
    let mut cases = serde_json::Map::new();
    for case in manifest["cases"].as_array().expect("cases") {
        let (d, ns, n) = run_case(&backend, &o.set, case);
        rt_ns += ns;
        frames += n;
        cases.insert(
            case["id"].as_str().unwrap_or_default().to_owned(),
            json!({
                "speech_started": seconds(&d.started),
                "speech_stopped": seconds(&d.stopped),
                "interrupted": seconds(&d.interrupted),
            }),
        );
    }
    let n_cases = cases.len();
    let audio_s = frames as f64 * FRAME as f64 / f64::from(RATE);
    let report = json!({
        "system": "voicebackend (this checkout)",
        "config": config,
        "set": o.set,
        "time": "simulated (audio clock), 20 ms frames",
        "cases": cases,
        "cpu": {
            "frames": frames,
            "rt_us_per_frame": (rt_ns as f64 / frames.max(1) as f64 / 1e3 * 10.0).round() / 10.0,
            "core_percent": (rt_ns as f64 / 1e9 / audio_s * 100.0 * 1000.0).round() / 1000.0,
            "process_cpu_s": (process_cpu_ns() - cpu0) as f64 / 1e9,
            "wall_s": started.elapsed().as_secs_f64(),
        },
    });
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&report).unwrap()).expect("write output");
    println!(
        "engine: {} cases -> {}; realtime threads {:.1} us per frame",
        n_cases,
        o.out.display(),
        rt_ns as f64 / frames.max(1) as f64 / 1e3
    );
    backend.stop(Duration::from_secs(5)).expect("backend stop");
}
