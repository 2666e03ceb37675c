//! Shared helpers of the integration tests: synthetic voiced audio, pushing it into a session,
//! waiting for events. Times here are generous upper bounds against hangs, never assertions.
#![allow(dead_code)]

pub mod admission;
pub mod livekit;
pub mod llama;
pub mod phone;
pub mod pipecat;
pub mod serve;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use voicebackend::dsp::resample::StreamResampler;
use voicebackend::{
    Agent, Backend, Event, Reply, Result, Session, SessionConfig, VbEventKind, VbSessionState,
    VbStatus,
};

/// The longest any test waits for something before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A voiced buzz (fundamental `f0` plus harmonics, syllable-like amplitude modulation) that
/// webrtc-vad classifies as speech.
pub fn speech(f0: f32, ms: u32, rate: u32) -> Vec<i16> {
    let n = (rate as u64 * ms as u64 / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let harmonics: f32 = (1..=10)
                .map(|h| (t * f0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                .sum();
            let syllables = 0.75 + 0.25 * (t * 4.0 * std::f32::consts::TAU).sin();
            (harmonics * syllables * 7000.0) as i16
        })
        .collect()
}

/// Digital silence.
pub fn silence(ms: u32, rate: u32) -> Vec<i16> {
    vec![0; (rate as u64 * ms as u64 / 1000) as usize]
}

/// One user turn: speech followed by enough silence to end it (default `turn.silence_ms` 500).
pub fn utterance(f0: f32, speech_ms: u32, rate: u32) -> Vec<i16> {
    let mut audio = speech(f0, speech_ms, rate);
    audio.extend(silence(800, rate));
    audio
}

/// Pushes all of `pcm` in 20 ms pieces as fast as the session takes it, waiting while the input
/// ring is full so that nothing is dropped.
pub fn push_all(session: &Session, pcm: &[i16], rate: u32) {
    let chunk = (rate / 50) as usize;
    for piece in pcm.chunks(chunk) {
        let deadline = Instant::now() + PATIENCE;
        while session.writable_samples() < piece.len() {
            assert!(
                Instant::now() < deadline,
                "the session stopped taking audio"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let outcome = session.process_audio(piece).expect("process_audio");
        assert_eq!(outcome.dropped, 0);
    }
}

/// Pushes `pcm` at real-time pace (one 20 ms piece per 20 ms), reading reply audio meanwhile.
pub fn push_realtime(session: &Session, pcm: &[i16], rate: u32, played: &mut Vec<i16>) {
    let chunk = (rate / 50) as usize;
    let start = Instant::now();
    let mut buf = vec![0i16; 4096];
    for (i, piece) in pcm.chunks(chunk).enumerate() {
        let due = start + Duration::from_millis(20 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let outcome = session.process_audio(piece).expect("process_audio");
        assert_eq!(outcome.dropped, 0);
        let n = session.read_audio(&mut buf).expect("read_audio");
        played.extend_from_slice(&buf[..n]);
    }
}

/// Polls events until one matches `until`; returns every event seen. Reads no audio.
pub fn events_until(session: &Session, until: impl FnMut(&Event) -> bool) -> Vec<Event> {
    poll_until(session, until, None)
}

/// Polls events and reads reply audio as fast as it comes (a host that plays it) until an event
/// matches `until`; returns the events and the audio.
pub fn play_until(session: &Session, until: impl FnMut(&Event) -> bool) -> (Vec<Event>, Vec<i16>) {
    let mut audio = Vec::new();
    let events = poll_until(session, until, Some(&mut audio));
    (events, audio)
}

/// `until` for a change back to listening.
pub fn back_to_listening(e: &Event) -> bool {
    e.kind == VbEventKind::VB_EVENT_STATE_CHANGED && e.state == VbSessionState::VB_STATE_LISTENING
}

/// After a turn failed (an error event among `seen`): waits until the turn's speech has stopped
/// and the session is listening again; returns the events seen meanwhile.
pub fn listening_after_failed_turn(session: &Session, seen: &[Event]) -> Vec<Event> {
    let mut events = Vec::new();
    if !seen
        .iter()
        .any(|e| e.kind == VbEventKind::VB_EVENT_SPEECH_STOPPED)
    {
        events = events_until(session, |e| e.kind == VbEventKind::VB_EVENT_SPEECH_STOPPED);
    }
    let deadline = Instant::now() + PATIENCE;
    while session.state() != VbSessionState::VB_STATE_LISTENING {
        assert!(
            Instant::now() < deadline,
            "the session never went back to listening; it is {:?}",
            session.state()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    while let Some(event) = session.poll_event().expect("poll_event") {
        events.push(event);
    }
    events
}

/// `until` for the end of a reply that starts after this call: back to listening after speaking.
pub fn reply_finished() -> impl FnMut(&Event) -> bool {
    let mut spoke = false;
    move |e: &Event| {
        if e.kind == VbEventKind::VB_EVENT_STATE_CHANGED {
            spoke |= e.state == VbSessionState::VB_STATE_SPEAKING;
            return spoke && e.state == VbSessionState::VB_STATE_LISTENING;
        }
        false
    }
}

fn poll_until(
    session: &Session,
    mut until: impl FnMut(&Event) -> bool,
    mut audio: Option<&mut Vec<i16>>,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0i16; 4096];
    loop {
        while let Some(event) = session.poll_event().expect("poll_event") {
            if event.kind == VbEventKind::VB_EVENT_ERROR {
                eprintln!("error event: {:?} {:?}", event.error, event.text);
            }
            let done = until(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
        if let Some(audio) = audio.as_deref_mut() {
            let n = session.read_audio(&mut buf).expect("read_audio");
            audio.extend_from_slice(&buf[..n]);
        }
        assert!(
            Instant::now() < deadline,
            "timed out; events so far: {:#?}",
            kinds(&seen)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[Event]) -> Vec<VbEventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// The texts of the events of `kind`.
pub fn texts(events: &[Event], kind: VbEventKind) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .filter_map(|e| e.text.clone())
        .collect()
}

/// A backend on the test providers with `extra` merged into its JSON config. Without a
/// `persistence` section in `extra` it keeps no session store: a test that does not test
/// persistence leaves no file behind, and two runs of one test program (say, from two checkouts)
/// do not contend for the default store file.
pub fn test_backend(extra: &str) -> Backend {
    let no_store = if extra.contains("\"persistence\"") {
        ""
    } else {
        r#","persistence":{"path":""}"#
    };
    let sep = if extra.trim().is_empty() { "" } else { "," };
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"{no_store}{sep}{extra}}}"#
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().expect("start");
    backend
}

/// An agent that answers "you said <transcript>".
pub fn echo_agent() -> Arc<dyn Agent> {
    Arc::new(|transcript: &str, reply: &mut Reply| -> Result<()> {
        reply.write("you said ")?;
        reply.write(transcript)?;
        reply.end()
    })
}

/// An agent that answers every turn with `text`, written in pieces as an LLM would stream it.
pub fn agent_saying(text: &'static str) -> Arc<dyn Agent> {
    Arc::new(move |_: &str, reply: &mut Reply| -> Result<()> {
        for piece in text.split_inclusive(' ').collect::<Vec<_>>().chunks(3) {
            reply.write(&piece.concat())?;
        }
        reply.end()
    })
}

/// A started session with `rate` in and out and the echo agent.
pub fn session_at(backend: &Backend, rate: u32) -> Session {
    let config = SessionConfig {
        input_sample_rate: rate,
        output_sample_rate: rate,
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(echo_agent()), None)
        .expect("create_session");
    session.start().expect("start");
    session
}

/// A started session with default settings and `agent`.
pub fn started_session(backend: &Backend, agent: Arc<dyn Agent>) -> Session {
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .expect("create_session");
    session.start().expect("start");
    session
}

/// One user turn (150 Hz, 800 ms), then waits until the agent's reply is playing.
pub fn talk_until_the_agent_speaks(session: &Session) {
    push_all(session, &utterance(150.0, 800, 16000), 16000);
    events_until(session, |e| {
        e.kind == VbEventKind::VB_EVENT_STATE_CHANGED
            && e.state == VbSessionState::VB_STATE_SPEAKING
    });
}

/// Reply samples still readable over the next 50 ms (none may be after an interruption).
pub fn readable_over_the_next_50_ms(session: &Session) -> usize {
    let mut buf = [0i16; 4096];
    let mut total = 0;
    for _ in 0..10 {
        total += session.read_audio(&mut buf).expect("read_audio");
        std::thread::sleep(Duration::from_millis(5));
    }
    total
}

/// Speaks `text` with the espeak-ng program and returns mono PCM at 16 kHz.
pub fn espeak_speech(text: &str, voice: &str) -> Vec<i16> {
    // One file per call: tests of one process synthesize concurrently.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("espeak-{}-{call}.wav", std::process::id()));
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&path)
        .arg(text)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "espeak-ng failed (run scripts/setup.sh)"
    );
    let mut reader = hound::WavReader::open(&path).unwrap();
    let rate = reader.spec().sample_rate;
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let _ = std::fs::remove_file(&path);
    StreamResampler::convert(&samples, rate, 16000)
}

/// Runs the ignored test `name` of this test binary in a child process with the environment
/// variables `vars` set (the tests' own process must not change its environment while other
/// tests run); panics unless it passes.
pub fn run_ignored_test_with_env(name: &str, vars: &[(&str, &str)]) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(vars.iter().copied())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The user says `text` (eSpeak NG at 16 kHz, after 300 ms of silence) and the turn ends.
pub fn say_as_user(session: &Session, text: &str) {
    let mut audio = silence(300, 16000);
    audio.extend(espeak_speech(text, "en-us"));
    audio.extend(silence(900, 16000));
    push_all(session, &audio, 16000);
}

/// Whether `e` is a `VB_EVENT_ERROR`.
pub fn is_error(e: &Event) -> bool {
    e.kind == VbEventKind::VB_EVENT_ERROR
}

/// The status and text of every error event in `events`.
pub fn errors(events: &[Event]) -> Vec<(VbStatus, String)> {
    events
        .iter()
        .filter(|e| is_error(e))
        .map(|e| (e.error, e.text.clone().unwrap_or_default()))
        .collect()
}

/// No event text in `events` contains `key`.
pub fn assert_key_absent(events: &[Event], key: &str) {
    for event in events {
        let text = event.text.as_deref().unwrap_or_default();
        assert!(!text.contains(key), "the key leaked into {event:?}");
    }
}

/// Root mean square of `pcm`.
pub fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

/// A short name of each event kind, for reports.
pub fn event_kind_name(kind: VbEventKind) -> &'static str {
    match kind {
        VbEventKind::VB_EVENT_STATE_CHANGED => "state",
        VbEventKind::VB_EVENT_SPEECH_STARTED => "speech_started",
        VbEventKind::VB_EVENT_SPEECH_STOPPED => "speech_stopped",
        VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL => "partial",
        VbEventKind::VB_EVENT_TRANSCRIPT_FINAL => "final",
        VbEventKind::VB_EVENT_AGENT_RESPONSE => "agent_response",
        VbEventKind::VB_EVENT_INTERRUPTED => "interrupted",
        VbEventKind::VB_EVENT_TURN_METRICS => "turn_metrics",
        VbEventKind::VB_EVENT_ERROR => "error",
        VbEventKind::VB_EVENT_AUDIO_DROPPED => "audio_dropped",
        VbEventKind::VB_EVENT_DTMF => "dtmf",
    }
}
