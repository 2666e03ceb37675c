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

    let recorder = record_agent(session.clone());
    let question = wav(
        "weather-question",
        &espeak_speech("What is the weather like today?", "en-us"),
        16000,
    );
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
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);

    // The host sees the conversation as on `local`.
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
