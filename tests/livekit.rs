//! The `livekit` backend against a real livekit-server (v1.13.5, loopback only) and an
//! independent user: LiveKit's own Go SDK (`tests/livekit/peer`, pion WebRTC) speaking eSpeak NG
//! speech as Opus, recording what it hears and logging the captions and states it receives.
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::sync::Arc;
use std::time::Duration;

use common::livekit::{
    LiveKitServer, Peer, attribute_values, backend_json, compare, read_wav, record_agent,
    transcriptions, wav,
};
use common::*;
use servers::openai_engines::hear;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::{Backend, SessionConfig, VbEventKind as K, VbSessionState as S};

const AGENT: &str = "voicebackend-agent";

fn webrtc_session(room: &str, user: &str) -> SessionConfig {
    SessionConfig {
        transport: "webrtc".into(),
        room: Some(room.into()),
        user_id: user.into(),
        ..SessionConfig::default()
    }
}

#[test]
fn a_user_in_a_livekit_room_talks_with_the_agent_and_sees_captions_and_states() {
    let server = LiveKitServer::start();
    let backend = Backend::from_json(&backend_json(
        &server.url(),
        r#","stt_provider":"whisper","tts_provider":"espeak""#,
    ))
    .unwrap();
    backend.start().unwrap();
    let session = Arc::new(
        backend
            .create_session(
                webrtc_session("weather", "user-1"),
                Some(echo_agent()),
                None,
            )
            .unwrap(),
    );
    session.start().expect("the agent joins the room");
    let e = session.process_audio(&[0; 960]).unwrap_err();
    assert_eq!(e.status(), voicebackend::VbStatus::VB_ERR_INVALID_STATE);
    assert!(
        e.message().contains("comes from its network transport"),
        "{e}"
    );

    let recorder = record_agent(session.clone());
    let question_pcm = espeak_speech("What is the weather like today?", "en-us");
    let question = wav("weather-question", &question_pcm, 16000);
    let speak = format!("{}@500", question.display());
    let peer = Peer::start(
        &server,
        "weather",
        "user-1",
        &[
            "--wait-subscriber",
            "--speak",
            &speak,
            "--until-attribute",
            "lk.agent.state=listening",
            "--duration-ms",
            "40000",
        ],
    );
    let report = peer.finish(Duration::from_secs(60));
    let events = events_until(&session, reply_finished());

    // The host sees the conversation as on `local` with the same speech.
    assert_eq!(sequence(&events), sequence(&local_events(&question_pcm)));
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(heard.contains("weather"), "the agent heard: {heard}");
    assert!(texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said"));
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));

    // The user heard the reply: what the agent said, intact. (Whisper tiny mishears a word of
    // eSpeak through two Opus legs now and then, so the audio itself is compared too.)
    let recording = std::path::PathBuf::from(report["record"].as_str().unwrap());
    let (heard_pcm, rate) = read_wav(&recording);
    let reply = hear(&StreamResampler::convert(&heard_pcm, rate, 16000));
    assert!(
        reply.contains("you said") && reply.contains("today"),
        "the user heard: {reply}"
    );
    let said = wav("weather-agent", &recorder.finish(), 48000);
    let fidelity = compare(&said, &recording);
    assert!(
        fidelity > 0.8,
        "correlation of what the agent said and what the user heard: {fidelity}"
    );

    // Captions and states, as LiveKit's frontends read them.
    let captions = transcriptions(&report, AGENT);
    let user_track = report["published_tracks"][0]["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_final = captions
        .iter()
        .find(|c| {
            c["attributes"]["lk.transcribed_track_id"] == user_track.as_str()
                && c["attributes"]["lk.transcription_final"] == "true"
        })
        .unwrap_or_else(|| panic!("a final caption of the user's words: {captions:#?}"));
    assert!(
        user_final["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("weather")
    );
    let agent_caption = captions
        .iter()
        .find(|c| c["text"].as_str().unwrap().starts_with("you said"))
        .unwrap_or_else(|| panic!("a caption of the agent's reply: {captions:#?}"));
    assert_ne!(
        agent_caption["attributes"]["lk.transcribed_track_id"],
        user_track.as_str()
    );
    let states = attribute_values(&report, AGENT, "lk.agent.state");
    for state in ["listening", "thinking", "speaking"] {
        assert!(states.iter().any(|s| s == state), "{state} in {states:?}");
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("listening"),
        "{states:?}"
    );
    session.stop().unwrap();
    assert_eq!(session.state(), S::VB_STATE_STOPPED);
}

/// Kinds of `events`, with the state of state changes.
fn sequence(events: &[voicebackend::Event]) -> Vec<(K, Option<S>)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                (e.kind == K::VB_EVENT_STATE_CHANGED).then_some(e.state),
            )
        })
        .collect()
}

/// The events of a `local` session (same providers, same agent) that hears `speech` (16 kHz)
/// from the host at real-time pace, until its reply has been played.
fn local_events(speech: &[i16]) -> Vec<voicebackend::Event> {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"whisper","tts_provider":"espeak"}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let session = session_at(&backend, 16000);
    let mut audio = silence(300, 16000);
    audio.extend_from_slice(speech);
    audio.extend(silence(1000, 16000));
    let mut played = Vec::new();
    push_realtime(&session, &audio, 16000, &mut played);
    play_until(&session, reply_finished()).0
}

/// A started livekit backend on `url` with the test providers and `extra` config keys.
fn test_livekit_backend(url: &str, extra: &str) -> Backend {
    let backend = Backend::from_json(&backend_json(
        url,
        &format!(r#","stt_provider":"whisper","tts_provider":"espeak"{extra}"#),
    ))
    .unwrap();
    backend.start().unwrap();
    backend
}

/// eSpeak NG speech of `text` as a WAV file for the peer.
fn spoken(name: &str, text: &str) -> std::path::PathBuf {
    wav(name, &espeak_speech(text, "en-us"), 16000)
}

fn at(file: &std::path::Path, ms: u32) -> String {
    format!("{}@{ms}", file.display())
}

#[test]
fn sessions_need_a_room_and_the_webrtc_transport() {
    // No server needed: these are refused before anything connects.
    let backend = test_livekit_backend("ws://127.0.0.1:9", "");
    let e = backend
        .create_session(
            SessionConfig {
                transport: "webrtc".into(),
                ..SessionConfig::default()
            },
            Some(echo_agent()),
            None,
        )
        .unwrap_err();
    assert_eq!(e.status(), voicebackend::VbStatus::VB_ERR_INVALID_CONFIG);
    assert_eq!(
        e.message(),
        "room: required for a 'webrtc' session on the livekit backend"
    );
    let e = backend
        .create_session(SessionConfig::default(), Some(echo_agent()), None)
        .unwrap_err();
    assert_eq!(
        e.status(),
        voicebackend::VbStatus::VB_ERR_PROVIDER_NOT_FOUND
    );
    assert_eq!(
        e.message(),
        "transport 'host' is not available on the 'livekit' backend (available: webrtc)"
    );
    let e = Backend::from_json(
        r#"{"provider":"livekit","provider_config":{"url":"ws://127.0.0.1:9","api_key":"k"},"stt_provider":"whisper","tts_provider":"espeak"}"#,
    );
    // The secret may also come from LIVEKIT_API_SECRET; this test process has none.
    if std::env::var_os("LIVEKIT_API_SECRET").is_none() {
        let e = e.unwrap_err();
        assert_eq!(
            e.message(),
            "provider_config.api_secret: missing (set it or the LIVEKIT_API_SECRET environment variable)"
        );
    }
}

#[test]
fn wrong_keys_are_unauthorized_at_session_start() {
    let server = LiveKitServer::start();
    let json = backend_json(
        &server.url(),
        r#","stt_provider":"whisper","tts_provider":"espeak""#,
    )
    .replace(
        r#""api_secret":"secret""#,
        r#""api_secret":"not-the-secret""#,
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    let session = backend
        .create_session(webrtc_session("locked", "u"), Some(echo_agent()), None)
        .unwrap();
    let e = session.start().unwrap_err();
    assert_eq!(
        e.status(),
        voicebackend::VbStatus::VB_ERR_UNAUTHORIZED,
        "{e}"
    );
    assert!(e.message().starts_with("livekit: "), "{e}");
    assert!(!e.message().contains("not-the-secret"), "{e}");
    assert_eq!(
        session.start().unwrap_err().status(),
        voicebackend::VbStatus::VB_ERR_INVALID_STATE,
        "a failed start stops the session"
    );
}

#[test]
fn an_unreachable_server_is_a_timeout_after_the_retry_policy() {
    let port = common::livekit::free_port();
    let backend = test_livekit_backend(
        &format!("ws://127.0.0.1:{port}"),
        r#","retry":{"max_attempts":3,"initial_backoff_ms":20,"max_backoff_ms":50}"#,
    );
    let session = backend
        .create_session(webrtc_session("nowhere", "u"), Some(echo_agent()), None)
        .unwrap();
    let started = std::time::Instant::now();
    let e = session.start().unwrap_err();
    assert_eq!(e.status(), voicebackend::VbStatus::VB_ERR_TIMEOUT, "{e}");
    assert!(
        e.message()
            .starts_with("livekit: the server at ws://127.0.0.1:")
            && e.message().contains("after 3 attempts"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_user_leaving_ends_the_session_with_an_event() {
    let server = LiveKitServer::start();
    let backend = test_livekit_backend(&server.url(), "");
    let session = backend
        .create_session(
            webrtc_session("short-visit", "visitor"),
            Some(echo_agent()),
            None,
        )
        .unwrap();
    session.start().unwrap();
    let hello = spoken("short-visit", "Hello.");
    let peer = Peer::start(
        &server,
        "short-visit",
        "visitor",
        &["--speak", &at(&hello, 200), "--duration-ms", "2500"],
    );
    peer.finish(Duration::from_secs(30));
    let events = events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_STOPPED
    });
    let end = events.last().unwrap();
    assert_eq!(
        end.text.as_deref(),
        Some("livekit: user 'visitor' left room 'short-visit'")
    );
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert_eq!(session.state(), S::VB_STATE_STOPPED);
}

#[test]
fn a_deleted_room_ends_the_session_with_an_error_naming_livekit() {
    let server = LiveKitServer::start();
    let backend = test_livekit_backend(&server.url(), "");
    let session = backend
        .create_session(webrtc_session("doomed", "u"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    common::livekit::delete_room(&server, "doomed");
    let events = events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_STOPPED
    });
    let errors = errors(&events);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].0,
        voicebackend::VbStatus::VB_ERR_CONNECTION_FAILED
    );
    assert_eq!(
        errors[0].1,
        "livekit: the server removed the agent from room 'doomed' (room deleted)"
    );
}

/// An agent that answers every turn at length, so that the user can interrupt it.
fn long_winded_agent() -> Arc<dyn voicebackend::Agent> {
    Arc::new(
        |_: &str, reply: &mut voicebackend::Reply| -> voicebackend::Result<()> {
            reply.write(
                "Let me tell you everything about it. It is a long story with many parts, \
             and every part has more to it than the one before. ",
            )?;
            reply.write(
                "We will start at the very beginning, a long time ago, far away from here.",
            )?;
            reply.end()
        },
    )
}

#[test]
fn the_user_speaking_over_the_agent_cuts_its_track_at_once() {
    let server = LiveKitServer::start();
    let backend = test_livekit_backend(&server.url(), "");
    let session = backend
        .create_session(
            webrtc_session("barge", "u"),
            Some(long_winded_agent()),
            None,
        )
        .unwrap();
    session.start().unwrap();
    let question = spoken("barge-question", "Tell me a story.");
    let stop = spoken("barge-stop", "Stop, stop, that is enough now.");
    let peer = Peer::start(
        &server,
        "barge",
        "u",
        &[
            "--wait-subscriber",
            "--speak",
            &at(&question, 300),
            "--speak",
            &at(&stop, 5000),
            "--until-attribute",
            "lk.agent.state=listening",
            "--duration-ms",
            "30000",
        ],
    );
    let report = peer.finish(Duration::from_secs(60));
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    // What the user heard of the agent stops soon after the user starts talking over it: the
    // engine needs `interruptions.min_speech_ms` (200) of speech, then the track is silent
    // within a frame; the rest is the network and the two jitter buffers.
    let barge_in = report["utterances"][1]["start_ms"].as_f64().unwrap();
    let heard: Vec<(f64, f64)> = report["audible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["start_ms"].as_f64().unwrap(),
                s["end_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    let talking_at_barge_in = heard
        .iter()
        .find(|(start, end)| *start < barge_in && *end > barge_in);
    let (_, cut_at) = talking_at_barge_in
        .unwrap_or_else(|| panic!("the agent was speaking at {barge_in} ms: {heard:?}"));
    assert!(
        cut_at - barge_in < 600.0,
        "the agent went on for {} ms after the user started talking over it",
        cut_at - barge_in
    );
    let history = session.history();
    assert!(history[0].interrupted, "{history:?}");
}

#[test]
fn a_dropped_signal_connection_resumes_without_losing_the_conversation() {
    let server = LiveKitServer::start();
    let proxy = common::livekit::CuttableProxy::start(server.port);
    let backend = test_livekit_backend(&server.url(), "");
    let config = SessionConfig {
        connection_url: Some(proxy.url()),
        ..webrtc_session("flaky", "u")
    };
    let session = backend
        .create_session(config, Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    let first = spoken("flaky-1", "What is the weather like today?");
    let second = spoken("flaky-2", "And what about tomorrow?");
    let peer = Peer::start(
        &server,
        "flaky",
        "u",
        &[
            "--wait-subscriber",
            "--speak",
            &at(&first, 300),
            "--speak",
            &at(&second, 7000),
            "--duration-ms",
            "14000",
        ],
    );
    events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    proxy.cut();
    let report = peer.finish(Duration::from_secs(60));
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    let replies = texts(&events, K::VB_EVENT_AGENT_RESPONSE);
    assert!(replies[0].contains("tomorrow"), "{replies:?}");
    let errors = errors(&events);
    assert!(
        errors.iter().any(
            |(_, m)| m.starts_with("livekit: lost the signal connection")
                && m.ends_with("; resuming")
        ),
        "{errors:?}"
    );
    assert!(proxy.connections_made() >= 2, "the agent reconnected");
    assert_eq!(
        session.history().len(),
        2,
        "both turns are in the conversation"
    );
    // The user saw captions after the cut too.
    let captions = transcriptions(&report, AGENT);
    assert!(
        captions
            .iter()
            .any(|c| c["text"].as_str().unwrap().contains("tomorrow")),
        "{captions:#?}"
    );
}

#[test]
fn ten_percent_packet_loss_keeps_the_conversation_intelligible() {
    let server = LiveKitServer::start();
    let backend = test_livekit_backend(&server.url(), "");
    let session = backend
        .create_session(webrtc_session("lossy", "u"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    let question = spoken("lossy", "What is the weather like today?");
    let peer = Peer::start(
        &server,
        "lossy",
        "u",
        &[
            "--wait-subscriber",
            "--speak",
            &at(&question, 300),
            "--loss",
            "0.1",
            "--loss-seed",
            "7",
            "--until-attribute",
            "lk.agent.state=listening",
            "--duration-ms",
            "30000",
        ],
    );
    let report = peer.finish(Duration::from_secs(60));
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(heard.contains("weather"), "the agent heard: {heard}");
    let dropped = report["sent"]["rtp_packets_dropped"].as_u64().unwrap();
    assert!(dropped > 5, "the peer dropped {dropped} packets");
    let health = backend.health();
    assert!(
        health.media_packets_lost >= dropped / 2 && health.media_frames_concealed > 0,
        "{health:?} after {dropped} dropped"
    );
}

/// LiveKit's own web SDK as the user: headless Chromium running `livekit-client` (npm, its
/// defaults: DTX and RED on) with a fake microphone playing eSpeak NG speech, in a network
/// namespace that has only `lo` and drops 10 % of UDP packets (nftables; this kernel has no
/// netem), against `voicebackend agent` (the CLI) and livekit-server in the same namespace.
#[test]
fn a_browser_on_livekit_client_talks_with_the_cli_agent_and_shows_captions() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let question = dir.join("question.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&question)
        .arg("What is the weather like today?")
        .status()
        .unwrap();
    assert!(status.success());
    let report = dir.join("browser.json");
    let root = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        r#"set -u
{root}/scripts/livekit-server.sh start 7895 52000 52100 >/dev/null || exit 1
LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret {agent} agent --room web --url ws://127.0.0.1:7895 --once >{dir}/agent.log 2>&1 &
cd {root}/tests/livekit/browser
node run.mjs --url ws://127.0.0.1:7895 --api-key devkey --api-secret secret --room web --identity web-user \
  --mic {question} --mic-when "attr:lk.agent.state=listening" --mic-pad-start-ms 1000 --mic-once \
  --until "attr:lk.agent.state=listening after finals>=2" --duration-ms 45000 --report {report} 2>{dir}/browser.log
"#,
        agent = env!("CARGO_BIN_EXE_voicebackend"),
        dir = dir.display(),
        question = question.display(),
        report = report.display(),
    );
    let output =
        std::process::Command::new(format!("{root}/tests/livekit/browser/run-in-netns.sh"))
            .args(["--loss", "10", "--", "bash", "-c", &script])
            .output()
            .expect("run the browser in a network namespace");
    let logs = || {
        format!(
            "{}\n{}\nagent: {}\nbrowser: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default()
        )
    };
    assert!(
        output.status.success(),
        "the browser run failed: {}",
        logs()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // Captions of both sides, as livekit-client's text stream handler received them.
    let captions: Vec<(String, String)> = report["textStreams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["topic"] == "lk.transcription" && s["identity"] == AGENT)
        .map(|s| {
            (
                s["attributes"]["lk.transcription_final"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                s["text"].as_str().unwrap_or("").to_lowercase(),
            )
        })
        .collect();
    assert!(
        captions
            .iter()
            .any(|(f, t)| f == "true" && t.contains("weather") && !t.starts_with("you said")),
        "the user's words as a caption: {captions:?}\n{}",
        logs()
    );
    assert!(
        captions
            .iter()
            .any(|(f, t)| f == "true" && t.starts_with("you said")),
        "the agent's reply as a caption: {captions:?}"
    );
    // The agent's states, and its voice arriving in the page.
    let states: Vec<String> = report["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["identity"] == AGENT)
        .filter_map(|a| {
            a["attributes"]["lk.agent.state"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for state in ["thinking", "speaking", "listening"] {
        assert!(states.iter().any(|s| s == state), "{state} in {states:?}");
    }
    let loud_ms: f64 = report["audio"]["remote"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|track| track["frames"].as_array().unwrap().iter())
        .filter(|f| f["rms"].as_f64().unwrap_or(0.0) > 0.01)
        .map(|f| f["ms"].as_f64().unwrap_or(20.0))
        .sum();
    assert!(loud_ms > 1000.0, "the page heard {loud_ms} ms of the agent");
}

#[test]
fn a_room_that_cannot_be_joined_is_a_clear_error_at_session_start() {
    // A server that only lets participants into rooms made beforehand.
    let server = LiveKitServer::start_configured("room:\n  auto_create: false\n");
    let backend = test_livekit_backend(&server.url(), "");
    let session = backend
        .create_session(webrtc_session("never-made", "u"), Some(echo_agent()), None)
        .unwrap();
    let e = session.start().unwrap_err();
    assert_eq!(e.status(), voicebackend::VbStatus::VB_ERR_PROVIDER, "{e}");
    assert!(
        e.message().starts_with("livekit: ws://127.0.0.1:")
            && e.message().ends_with(
                "refused the WebSocket with HTTP 404 Not Found: requested room does not exist (joining room 'never-made')"
            ),
        "{e}"
    );
}
