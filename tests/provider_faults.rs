//! What every network provider does when its service fails, as one matrix: a row per vendor and
//! fault says what the host sees (the error's status and whole message, when it comes, what
//! follows) and how often the provider tried. Each row is a test named `<vendor>::<what happens>`.
//! `tests/vendors/matrix.rs` runs a row: the provider against its local vendor-protocol server
//! (`tests/servers/`), through the vendor's adapter (`tests/vendors/`), which arms the fault and
//! checks what only the server saw of it. A new vendor is an adapter and its rows;
//! `every_vendor_has_one_row_per_fault` keeps the matrix whole. A `*` in a row's message stands
//! for what changes from run to run: the server's port, a request id, the socket library's words
//! for a reset connection.
//!
//! What holds in every row: an error names the provider's role and name ("stt deepgram: …") and
//! carries neither the key nor its last four characters; after a failed turn the session is
//! listening again and has told the host so, with no second error for the same turn.
//!
//! The `pipecat` and `livekit` backends are not providers of this kind: a Pipecat bot or a
//! LiveKit server is the whole other side of the session, with faults of its own (a bot that
//! dies, a room deleted, packet loss), tested against the real thing in `tests/pipecat.rs` and
//! `tests/livekit_faults.rs`.
//!
//! Needs the Whisper model (`scripts/fetch-models.sh`) and `espeak-ng`.
#![cfg(feature = "test-providers")]

mod common;
mod servers;
mod vendors;

use serde_json::json;
use vendors::matrix::{Row, Then, When, row, run};
use vendors::{Fault, Vendor};
use voicebackend::{Backend, VbStatus};

/// The matrix: one module per vendor, one test per row named for what happens (rows run in
/// parallel and fail alone, named `<vendor>::<sentence>`), and `MATRIX`, every row by name.
macro_rules! matrix {
    ($($vendor:ident { $($name:ident: $row:expr),* $(,)? })*) => {
        const MATRIX: &[(&str, Row)] = &[
            $($((concat!(stringify!($vendor), "::", stringify!($name)), $row)),*),*
        ];
        $(
            mod $vendor {
                use super::*;
                $(
                    #[test]
                    fn $name() {
                        run($row);
                    }
                )*
            }
        )*
    };
}

use Fault::{Drop, Malformed, RefusedKey, Rejected, Stall};
use Then::{ListensAgain, NextTurnAnswered, Resumed, TurnGoesOn};
use VbStatus::{VB_ERR_CONNECTION_FAILED, VB_ERR_PROVIDER, VB_ERR_TIMEOUT, VB_ERR_UNAUTHORIZED};
use Vendor::{Deepgram, ElevenLabs, OpenAiRealtime, OpenAiStt, OpenAiTts};
use When::{SessionStart, UserSpeaking};

matrix! {
    deepgram {
        a_refused_key_is_unauthorized_at_every_turn_and_never_retried: row(Deepgram, RefusedKey)
            .error(
                VB_ERR_UNAUTHORIZED,
                "stt deepgram: ws://127.0.0.1:*/v1/listen refused the WebSocket with HTTP 401 \
                 Unauthorized: {\"err_code\":\"INVALID_AUTH\",\"err_msg\":\"Invalid \
                 credentials.\",\"request_id\":\"*\"}"
            )
            .then(ListensAgain { turns: 2 })
            .attempts(2)
            .refused(401),
        // The local server's model is English-only: it refuses German with 400, as Deepgram
        // refuses what it cannot serve.
        a_language_the_service_refuses_is_a_provider_error: row(Deepgram, Rejected)
            .config(r#"{"language":"de"}"#)
            .error(
                VB_ERR_PROVIDER,
                "stt deepgram: ws://127.0.0.1:*/v1/listen refused the WebSocket with HTTP 400 Bad \
                 Request: {\"err_code\":\"Bad Request\",\"err_msg\":\"language=de: this local \
                 server's model (Whisper tiny.en) is English-only\",\"request_id\":\"*\"}"
            )
            .refused(400),
        // The server answers the first audio: the turn fails while the user is still speaking.
        a_malformed_message_fails_the_turn_while_the_user_still_speaks: row(Deepgram, Malformed)
            .error(
                VB_ERR_PROVIDER,
                "stt deepgram: malformed Results message from the server: missing field `duration`"
            )
            .when(UserSpeaking),
        a_stalled_stream_is_a_timeout_and_the_stream_is_still_closed: row(Deepgram, Stall)
            .config(r#"{"timeout_ms":800}"#)
            .error(
                VB_ERR_TIMEOUT,
                "stt deepgram: no answer from ws://127.0.0.1:*/v1/listen within 800 ms after the \
                 turn's audio ended"
            ),
        // Two sentences in one turn, two segments: the first is final before the drop.
        a_dropped_stream_is_resumed_and_nothing_is_heard_twice: row(Deepgram, Drop)
            .config(r#"{"endpointing_ms":150}"#)
            .backend(r#"{"turn":{"silence_ms":800}}"#)
            .then(Resumed)
            .attempts(2),
    }
    elevenlabs {
        a_refused_key_is_unauthorized_at_every_reply_and_never_retried: row(ElevenLabs, RefusedKey)
            .error(
                VB_ERR_UNAUTHORIZED,
                "tts elevenlabs: \
                 ws://127.0.0.1:*/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input refused the \
                 WebSocket with HTTP 401 Unauthorized: {\"detail\":{\"message\":\"Invalid API \
                 key\",\"status\":\"invalid_api_key\"}}"
            )
            .then(ListensAgain { turns: 2 })
            .attempts(2)
            .refused(401),
        an_unknown_voice_is_a_provider_error_naming_it: row(ElevenLabs, Rejected)
            .config(r#"{"voice_id":"noSuchVoice"}"#)
            .error(
                VB_ERR_PROVIDER,
                "tts elevenlabs: the server reported an error: A voice with the voice_id \
                 noSuchVoice was not found. (voice_not_found)"
            ),
        a_malformed_message_is_a_provider_error: row(ElevenLabs, Malformed)
            .error(
                VB_ERR_PROVIDER,
                "tts elevenlabs: malformed message from the server: invalid type: integer `12345`, \
                 expected a string"
            ),
        a_stalled_stream_is_a_timeout_after_the_input_was_ended: row(ElevenLabs, Stall)
            .config(r#"{"timeout_ms":800}"#)
            .error(
                VB_ERR_TIMEOUT,
                "tts elevenlabs: no answer from \
                 ws://127.0.0.1:*/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input within \
                 800 ms after the reply's text ended"
            ),
        // Dropped after the first generation: the rest of the reply is sent on a new connection.
        a_dropped_stream_resumes_without_repeating_speech: row(ElevenLabs, Drop)
            .config(r#"{"chunk_length_schedule":[50]}"#)
            .then(Resumed)
            .attempts(2),
    }
    openai_stt {
        a_refused_key_is_unauthorized_at_every_turn_and_never_retried: row(OpenAiStt, RefusedKey)
            .error(
                VB_ERR_UNAUTHORIZED,
                "stt openai: http://127.0.0.1:*/v1/audio/transcriptions refused the API key \
                 (HTTP 401 Unauthorized, invalid_api_key)"
            )
            .then(ListensAgain { turns: 2 })
            .attempts(2)
            .refused(401),
        an_unknown_model_is_a_provider_error_with_the_servers_message: row(OpenAiStt, Rejected)
            .config(r#"{"model":"whisper-2"}"#)
            .error(
                VB_ERR_PROVIDER,
                "stt openai: http://127.0.0.1:*/v1/audio/transcriptions answered HTTP 404 \
                 Not Found, model_not_found: The model `whisper-2` does not exist or you do \
                 not have access to it."
            )
            .refused(404),
        an_unreadable_transcription_is_a_provider_error: row(OpenAiStt, Malformed)
            .error(
                VB_ERR_PROVIDER,
                "stt openai: unreadable transcription from \
                 http://127.0.0.1:*/v1/audio/transcriptions: missing field `text` at line 1 \
                 column 33"
            ),
        // Each of the three attempts times out. (Whisper in a debug build takes longer than
        // 300 ms: a next turn would time out on the healed server too.)
        a_stalled_server_is_a_timeout_after_three_attempts: row(OpenAiStt, Stall)
            .config(r#"{"timeout_ms":300}"#)
            .error(
                VB_ERR_TIMEOUT,
                "stt openai: no answer from http://127.0.0.1:*/v1/audio/transcriptions \
                 within 300 ms (after 3 attempts)"
            )
            .attempts(3),
        // The answer is cut mid-body: the whole turn is posted again.
        a_transcription_cut_mid_answer_is_asked_for_again: row(OpenAiStt, Drop)
            .then(Resumed)
            .attempts(2),
    }
    openai_tts {
        a_refused_key_is_unauthorized_at_every_reply_and_never_retried: row(OpenAiTts, RefusedKey)
            .error(
                VB_ERR_UNAUTHORIZED,
                "tts openai: http://127.0.0.1:*/v1/audio/speech refused the API key \
                 (HTTP 401 Unauthorized, invalid_api_key)"
            )
            .then(ListensAgain { turns: 2 })
            .attempts(2)
            .refused(401),
        an_unknown_voice_is_a_provider_error_with_the_servers_message: row(OpenAiTts, Rejected)
            .config(r#"{"voice":"robot"}"#)
            .error(
                VB_ERR_PROVIDER,
                "tts openai: http://127.0.0.1:*/v1/audio/speech answered HTTP 400 Bad Request: \
                 Invalid value: 'robot'. Supported values are: 'alloy', 'ash', 'ballad', 'coral', \
                 'echo', 'fable', 'onyx', 'nova', 'sage', 'shimmer', 'verse', 'marin', 'cedar'."
            )
            .refused(400),
        an_answer_that_is_not_audio_is_a_provider_error: row(OpenAiTts, Malformed).error(
            VB_ERR_PROVIDER,
            "tts openai: unreadable speech from http://127.0.0.1:*/v1/audio/speech: Content-Type \
             application/json where PCM audio was expected"
        ),
        a_stalled_server_is_a_timeout_after_three_attempts: row(OpenAiTts, Stall)
            .config(r#"{"timeout_ms":300}"#)
            .error(
                VB_ERR_TIMEOUT,
                "tts openai: no answer from http://127.0.0.1:*/v1/audio/speech within 300 ms \
                 (after 3 attempts)"
            )
            .then(NextTurnAnswered)
            .attempts(4),
        // Speech cut mid-stream is asked for again and resumes where it broke off.
        speech_cut_mid_stream_resumes_where_it_broke_off: row(OpenAiTts, Drop)
            .then(Resumed)
            .attempts(2),
    }
    openai_realtime {
        a_refused_key_is_unauthorized_at_the_start_and_at_every_turn:
            row(OpenAiRealtime, RefusedKey)
                .error(
                    VB_ERR_UNAUTHORIZED,
                    "s2s openai-realtime: ws://127.0.0.1:*/v1/realtime refused the WebSocket with \
                     HTTP 401 Unauthorized"
                )
                .when(SessionStart)
                .attempts(2)
                .refused(401),
        // The session never runs with the server's defaults.
        refused_session_settings_are_a_provider_error_at_the_start_and_at_every_turn:
            row(OpenAiRealtime, Rejected)
                .config(r#"{"voice":"robot"}"#)
                .error(
                    VB_ERR_PROVIDER,
                    "s2s openai-realtime: the server refused the session settings \
                     (invalid_request_error, invalid_value): Invalid value: \"robot\". Supported \
                     values are: 'alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', \
                     'verse', 'marin', 'cedar'."
                )
                .when(SessionStart)
                .attempts(2),
        an_unreadable_event_is_a_provider_error_and_the_response_still_arrives:
            row(OpenAiRealtime, Malformed)
                .error(
                    VB_ERR_PROVIDER,
                    "s2s openai-realtime: unreadable server event: '{\"type\": \
                     \"response.output_audio.delta\", \"delta\": '"
                )
                .then(TurnGoesOn),
        // The stalled connection is replaced by the next turn's.
        a_stalled_server_is_a_timeout_and_a_new_connection_answers_the_next_turn:
            row(OpenAiRealtime, Stall)
                .config(r#"{"timeout_ms":5000}"#)
                .error(
                    VB_ERR_TIMEOUT,
                    "s2s openai-realtime: no answer from ws://127.0.0.1:*/v1/realtime within 5000 \
                     ms"
                )
                .then(NextTurnAnswered)
                .attempts(2),
        // Dropped halfway through the response's audio.
        a_connection_dropped_mid_response_is_reported_and_a_new_one_answers_the_next_turn:
            row(OpenAiRealtime, Drop)
                .error(
                    VB_ERR_CONNECTION_FAILED,
                    "s2s openai-realtime: the connection to ws://127.0.0.1:*/v1/realtime was lost \
                     (*)"
                )
                .then(NextTurnAnswered)
                .attempts(2),
    }
}

/// A backend config without a key is refused when the backend is created, naming the missing
/// field and the vendor's environment variable, which supplies the key when it is set.
const MISSING_KEY: &[(Vendor, &str)] = &[
    (
        Deepgram,
        "stt_config.api_key: missing (set it or the DEEPGRAM_API_KEY environment variable)",
    ),
    (
        ElevenLabs,
        "tts_config.api_key: missing (set it or the ELEVENLABS_API_KEY environment variable)",
    ),
    (
        OpenAiStt,
        "stt_config.api_key: missing (set it or the OPENAI_API_KEY environment variable)",
    ),
    (
        OpenAiTts,
        "tts_config.api_key: missing (set it or the OPENAI_API_KEY environment variable)",
    ),
    (
        OpenAiRealtime,
        "s2s_config.api_key: missing (set it or the OPENAI_API_KEY environment variable)",
    ),
];

#[test]
fn a_missing_key_is_a_config_error_at_backend_creation() {
    for &(vendor, message) in MISSING_KEY {
        let config = vendor.config(vendor.unreachable_url(), None, &json!({}), &json!({}));
        match std::env::var(vendor.key_variable()) {
            Err(_) => {
                let Err(e) = Backend::from_json(&config) else {
                    panic!("{vendor:?}: a backend without a key");
                };
                assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG, "{vendor:?}");
                assert_eq!(e.message(), message, "{vendor:?}");
            }
            // With the vendor's variable set, it supplies the key.
            Ok(_) => assert!(Backend::from_json(&config).is_ok(), "{vendor:?}"),
        }
    }
}

#[test]
fn every_vendor_has_one_row_per_fault() {
    for vendor in Vendor::ALL {
        for fault in Fault::ALL {
            let rows: Vec<&str> = MATRIX
                .iter()
                .filter(|(_, row)| row.vendor == vendor && row.fault == fault)
                .map(|(name, _)| *name)
                .collect();
            assert_eq!(rows.len(), 1, "{vendor:?} × {fault:?}: {rows:?}");
        }
        let missing_key = MISSING_KEY.iter().filter(|(v, _)| *v == vendor).count();
        assert_eq!(missing_key, 1, "{vendor:?} in MISSING_KEY");
    }
    for (name, row) in MATRIX {
        assert!(
            name.starts_with(&format!("{}::", row.vendor.module())),
            "{name}: in its vendor's module"
        );
        assert_eq!(
            row.error.is_none(),
            row.then == Then::Resumed,
            "{name}: an error, unless the provider gets over the fault"
        );
        let (role, provider) = row.vendor.role_and_name();
        if let Some((_, message)) = row.error {
            assert!(
                message.starts_with(&format!("{role} {provider}: ")),
                "{name}: the message names the provider"
            );
        }
    }
}
