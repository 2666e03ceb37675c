//! Backends are swapped by configuration alone: the same host code holds the same conversation
//! on `local` with the embedded providers (Whisper, eSpeak NG), on `local` with network providers
//! (OpenAI's HTTP APIs; Deepgram and ElevenLabs over WebSocket — served by the local
//! vendor-protocol servers of `tests/servers`), and on `pipecat` (a real pipecat-ai bot), and
//! sees the same sequence of events.
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::sync::Arc;

use common::pipecat::{PipecatBot, bot_reply};
use common::*;
use servers::deepgram::{DeepgramServer, DeepgramServerOptions};
use servers::elevenlabs::{ElevenLabsServer, ElevenLabsServerOptions, VOICE_ID};
use servers::openai_http::OpenAiHttpServer;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::{Backend, Event, Reply, SessionConfig, VbEventKind as K, VbSessionState as S};

const HOST_RATE: u32 = 48000;
const QUESTION: &str = "What is the weather like in Paris today?";
const OPENAI_KEY: &str = "sk-local-swap-test";

/// What one conversation looked like to the host.
#[derive(Debug)]
struct Conversation {
    /// Event kinds in order, with the new state of each state change. Partial transcripts are
    /// left out: whether an STT sends interim hypotheses is the provider's business.
    sequence: Vec<(K, Option<S>)>,
    transcript: String,
    reply: String,
    reply_audio: usize,
}

/// The host: one backend from `backend_json`, one session at 48 kHz whose agent answers like the
/// Pipecat bot does, the question spoken at real-time pace, the answer played to its end.
fn converse(backend_json: &str) -> Conversation {
    let backend = Backend::from_json(backend_json).expect("backend config");
    backend.start().unwrap();
    let agent = Arc::new(|transcript: &str, reply: &mut Reply| {
        reply.write(&bot_reply(transcript))?;
        reply.end()
    });
    let config = SessionConfig {
        input_sample_rate: HOST_RATE,
        output_sample_rate: HOST_RATE,
        ..SessionConfig::default()
    };
    let session = backend.create_session(config, Some(agent), None).unwrap();
    session.start().unwrap();
    let mut speech = silence(500, 16000);
    speech.extend(espeak_speech(QUESTION, "en-us"));
    speech.extend(silence(1000, 16000));
    let speech = StreamResampler::convert(&speech, 16000, HOST_RATE);

    let mut played = Vec::new();
    push_realtime(&session, &speech, HOST_RATE, &mut played);
    let (events, rest) = play_until(&session, reply_finished());
    played.extend(rest);
    session.stop().unwrap();
    backend.stop(std::time::Duration::ZERO).unwrap();
    let one = |kind| {
        let all = texts(&events, kind);
        assert_eq!(all.len(), 1, "one {kind:?} in {events:#?}");
        all[0].clone()
    };
    Conversation {
        sequence: events
            .iter()
            .filter(|e| e.kind != K::VB_EVENT_TRANSCRIPT_PARTIAL)
            .map(|e: &Event| {
                let state = (e.kind == K::VB_EVENT_STATE_CHANGED).then_some(e.state);
                (e.kind, state)
            })
            .collect(),
        transcript: one(K::VB_EVENT_TRANSCRIPT_FINAL),
        reply: one(K::VB_EVENT_AGENT_RESPONSE),
        reply_audio: played.iter().filter(|s| s.unsigned_abs() > 300).count(),
    }
}

#[test]
fn the_same_host_code_sees_the_same_conversation_on_local_network_and_pipecat_backends() {
    let openai = OpenAiHttpServer::start(OPENAI_KEY);
    let deepgram = DeepgramServer::start(DeepgramServerOptions::default());
    let elevenlabs = ElevenLabsServer::start(ElevenLabsServerOptions::default());
    let bot = PipecatBot::start();
    let url = openai.base_url();
    let (deepgram_key, deepgram_url) = (
        DeepgramServerOptions::default().api_key,
        deepgram.base_url(),
    );
    let (elevenlabs_key, elevenlabs_url) = (
        ElevenLabsServerOptions::default().api_key,
        elevenlabs.base_url(),
    );
    let configurations = [
        (
            "local, embedded providers",
            r#"{"provider":"local","stt_provider":"whisper","tts_provider":"espeak"}"#.to_owned(),
        ),
        (
            "local, network providers (Deepgram, ElevenLabs)",
            format!(
                r#"{{"provider":"local",
                    "stt_provider":"deepgram",
                    "stt_config":{{"api_key":"{deepgram_key}","base_url":"{deepgram_url}"}},
                    "tts_provider":"elevenlabs",
                    "tts_config":{{"api_key":"{elevenlabs_key}","base_url":"{elevenlabs_url}",
                                   "voice_id":"{VOICE_ID}"}}}}"#
            ),
        ),
        (
            "local, network providers (OpenAI)",
            format!(
                r#"{{"provider":"local",
                    "stt_provider":"openai","stt_config":{{"api_key":"{OPENAI_KEY}","base_url":"{url}"}},
                    "tts_provider":"openai","tts_config":{{"api_key":"{OPENAI_KEY}","base_url":"{url}"}}}}"#
            ),
        ),
        (
            "pipecat",
            format!(
                r#"{{"provider":"pipecat","provider_config":{{"pipecat_url":"{}"}}}}"#,
                bot.url()
            ),
        ),
    ];
    let expected = vec![
        (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_LISTENING)),
        (K::VB_EVENT_SPEECH_STARTED, None),
        (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_PROCESSING)),
        (K::VB_EVENT_SPEECH_STOPPED, None),
        (K::VB_EVENT_TRANSCRIPT_FINAL, None),
        (K::VB_EVENT_AGENT_RESPONSE, None),
        (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_SPEAKING)),
        (K::VB_EVENT_TURN_METRICS, None),
        (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_LISTENING)),
    ];
    for (name, json) in configurations {
        let conversation = converse(&json);
        println!("{name}: {conversation:?}");
        assert_eq!(conversation.sequence, expected, "{name}: {conversation:#?}");
        assert!(
            conversation.transcript.to_lowercase().contains("weather"),
            "{name} heard {:?}",
            conversation.transcript
        );
        assert_eq!(
            conversation.reply,
            bot_reply(&conversation.transcript),
            "{name}"
        );
        // At least a second of the answer was heard by the host.
        assert!(
            conversation.reply_audio > HOST_RATE as usize,
            "{name}: {} loud samples of reply",
            conversation.reply_audio
        );
    }
}
