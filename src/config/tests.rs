use super::*;
use crate::error::VbStatus;

const MINIMAL: &str = r#"{"provider":"local","stt_provider":"a","tts_provider":"b"}"#;

fn err(json: &str) -> String {
    let e = BackendConfig::from_json(json).unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    e.message().to_owned()
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = BackendConfig::from_json(MINIMAL).unwrap();
    assert_eq!(c.pipeline_type, PipelineType::SttTts);
    assert_eq!(c.latency_target_ms, 500);
    assert_eq!(c.max_concurrent_sessions, 100);
    assert_eq!((c.audio.sample_rate, c.audio.frame_ms), (16000, 20));
    assert_eq!(c.vad.mode, 2);
    assert_eq!(
        (c.turn.silence_ms, c.turn.min_speech_ms, c.turn.max_turn_ms),
        (500, 150, 30000)
    );
    assert!(c.interruptions.enabled);
    assert_eq!(c.interruptions.min_speech_ms, 200);
    assert_eq!(c.interruptions.decide_by, DecideBy::Speech);
    assert_eq!(
        (
            c.interruptions.max_backchannel_ms,
            c.interruptions.resume_after_ms
        ),
        (1500, 1000)
    );
    assert_eq!(
        c.interruptions.backchannels.len(),
        DEFAULT_BACKCHANNELS.len()
    );
    assert_eq!(c.agent_timeout_ms, 10_000);
    assert_eq!(c.history_max_turns, 50);
    assert_eq!(c.retry, RetryConfig::default());
    assert_eq!(
        (
            c.retry.max_attempts,
            c.retry.initial_backoff_ms,
            c.retry.max_backoff_ms
        ),
        (5, 100, 5000)
    );
    assert_eq!(
        (
            c.rate_limit.sessions_per_second,
            c.rate_limit.burst,
            c.rate_limit.per_user_sessions_per_minute
        ),
        (50, 100, 30)
    );
    assert_eq!(c.auth, AuthConfig::default());
    assert_eq!(c.persistence.path, None);
    assert_eq!(c.privacy, PrivacyConfig::default());
    assert!(c.privacy.persist_transcripts && !c.privacy.persist_audio);
    assert_eq!(c.telemetry.service_name, "voicebackend");
}

#[test]
fn operations_sections_are_checked_like_the_rest() {
    let with = |extra: &str| {
        format!(r#"{{"provider":"local","stt_provider":"a","tts_provider":"b",{extra}}}"#)
    };
    let m = err(&with(
        r#""retry":{"initial_backoff_ms":500,"max_backoff_ms":100}"#,
    ));
    assert_eq!(m, "retry.max_backoff_ms: 100 is below the minimum 500");
    let m = err(&with(r#""agent_timeout_ms":5"#));
    assert!(m.starts_with("agent_timeout_ms"), "{m}");
    let m = err(&with(r#""history_max_turns":0"#));
    assert_eq!(m, "history_max_turns: 0 is below the minimum 1");
    let m = err(&with(r#""auth":{"jwt_hs256_secret":""}"#));
    assert!(m.starts_with("auth.jwt_hs256_secret"), "{m}");
    let m = err(&with(r#""privacy":{"keep_audio":true}"#));
    assert!(m.contains("keep_audio"), "{m}");
}

#[test]
fn secrets_never_print() {
    let c = BackendConfig::from_json(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b",
            "auth":{"jwt_hs256_secret":"hunter2-signing-key"}}"#,
    )
    .unwrap();
    assert_eq!(
        c.auth.jwt_hs256_secret.as_ref().map(Secret::expose),
        Some("hunter2-signing-key")
    );
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = BackendConfig::from_json(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b",
            "stt_config":{"api_key":"sk-1","nested":{"auth_token":"t-2"},"model":"m"},
            "s2s_config":{"voices":[{"secret":"s-3"}]}}"#,
    )
    .unwrap();
    let shown = format!("{c:?}");
    for secret in ["sk-1", "t-2", "s-3"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains(r#""model": String("m")"#), "{shown}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    assert!(
        err(r#"{"provider":"local","stt_provider":"a","tts_provider":"b","bogus":1}"#)
            .contains("bogus")
    );
    let m =
        err(r#"{"provider":"local","stt_provider":"a","tts_provider":"b","turn":{"silence":5}}"#);
    assert!(m.starts_with("turn"), "{m}");
    assert!(m.contains("silence"), "{m}");
}

#[test]
fn out_of_range_values_name_field_value_and_bound() {
    let m = err(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","turn":{"silence_ms":0}}"#,
    );
    assert_eq!(m, "turn.silence_ms: 0 is below the minimum 50");
    let m = err(r#"{"provider":"local","stt_provider":"a","tts_provider":"b","vad":{"mode":4}}"#);
    assert_eq!(m, "vad.mode: 4 is above the maximum 3");
    let m = err(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"frame_ms":25}}"#,
    );
    assert!(m.starts_with("audio.frame_ms: 25 is not one of"), "{m}");
    let m = err(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":65}}"#,
    );
    assert_eq!(m, "audio.realtime_threads: 65 is above the maximum 64");
    let m = err(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":-1}}"#,
    );
    assert!(m.starts_with("audio.realtime_threads"), "{m}");
    let ok = BackendConfig::from_json(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":2}}"#,
    )
    .unwrap();
    assert_eq!(ok.audio.realtime_threads, 2);
    assert_eq!(AudioConfig::default().realtime_threads, 0);
}

#[test]
fn malformed_json_and_wrong_types_are_invalid_config() {
    let m = err("{not json");
    assert!(m.starts_with("config: key must be a string"), "{m}");
    assert!(
        err(r#"{"provider":"local","max_concurrent_sessions":"ten"}"#)
            .starts_with("max_concurrent_sessions")
    );
    assert!(err(r#"{"stt_provider":"a"}"#).contains("provider"));
    assert!(
        BackendConfig::from_json(r#"{"provider":"pipecat"}"#).is_ok(),
        "provider fields are the backend's call"
    );
}

#[test]
fn each_pipeline_names_the_provider_it_needs() {
    let needs = |json: &str| {
        let config = BackendConfig::from_json(json).unwrap();
        config
            .require_pipeline_providers()
            .unwrap_err()
            .message()
            .to_owned()
    };
    assert!(needs(r#"{"provider":"local","tts_provider":"b"}"#).starts_with("stt_provider"));
    assert!(needs(r#"{"provider":"local","stt_provider":"a"}"#).starts_with("tts_provider"));
    assert!(needs(r#"{"provider":"local","pipeline_type":"s2s"}"#).starts_with("s2s_provider"));
    assert!(err(r#"{"provider":"local","pipeline_type":"duplex"}"#).starts_with("pipeline_type"));
}

#[test]
fn session_config_checks_rates() {
    let c = SessionConfig::from_json("").unwrap();
    assert_eq!((c.input_sample_rate, c.transport.as_str()), (16000, "host"));
    let e = SessionConfig::from_json(r#"{"input_sample_rate": 11025}"#).unwrap_err();
    assert!(
        e.message()
            .starts_with("input_sample_rate: 11025 is not one of")
    );
    assert!(
        SessionConfig::from_json(r#"{"user":"x"}"#)
            .unwrap_err()
            .message()
            .contains("user")
    );
}

#[test]
fn session_codecs_are_pcm_or_opus_at_a_rate_opus_runs_at() {
    let session_err = |json: &str| {
        let e = SessionConfig::from_json(json).unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG, "{json}");
        e.message().to_owned()
    };
    let c = SessionConfig::from_json("").unwrap();
    assert_eq!((c.input_codec, c.output_codec), (Codec::Pcm, Codec::Pcm));
    let c = SessionConfig::from_json(
        r#"{"input_codec":"opus","output_codec":"opus","input_sample_rate":48000,
            "opus_complexity":10,"opus_bitrate":24000}"#,
    )
    .unwrap();
    assert_eq!((c.input_codec, c.output_codec), (Codec::Opus, Codec::Opus));
    assert_eq!((c.opus_complexity, c.opus_bitrate), (Some(10), Some(24000)));
    // Stored as given; a PCM session's stored configuration has no codec keys at all.
    let stored = serde_json::to_value(&c).unwrap();
    assert_eq!(stored["input_codec"], "opus");
    assert_eq!(stored["opus_bitrate"], 24000);
    let stored = serde_json::to_value(SessionConfig::default()).unwrap();
    assert!(
        [
            "input_codec",
            "output_codec",
            "opus_complexity",
            "opus_bitrate"
        ]
        .iter()
        .all(|key| stored.get(key).is_none()),
        "{stored}"
    );

    // An unknown codec names the key and the values it takes.
    let e = session_err(r#"{"input_codec":"mp3"}"#);
    assert!(
        e.starts_with("input_codec") && e.contains("`pcm`") && e.contains("`opus`"),
        "{e}"
    );
    let e = session_err(r#"{"output_codec":"OPUS"}"#);
    assert!(e.starts_with("output_codec"), "{e}");
    // Rates Opus does not run at, on the side that uses it only.
    let e = session_err(r#"{"input_codec":"opus","input_sample_rate":44100}"#);
    assert!(
        e.starts_with("input_sample_rate: 44100 is not a rate Opus runs at")
            && e.contains("[8000, 16000, 24000, 48000]"),
        "{e}"
    );
    let e = session_err(r#"{"output_codec":"opus","output_sample_rate":32000}"#);
    assert!(e.starts_with("output_sample_rate: 32000"), "{e}");
    SessionConfig::from_json(r#"{"input_codec":"opus","output_sample_rate":44100}"#).unwrap();
    // Only the host transport carries Opus packets through the host's calls.
    let e = session_err(r#"{"transport":"webrtc","room":"r","output_codec":"opus"}"#);
    assert!(
        e.starts_with("output_codec: \"opus\" needs transport \"host\""),
        "{e}"
    );
    // The encoder's settings need an Opus output, and are range-checked.
    let e = session_err(r#"{"input_codec":"opus","opus_bitrate":32000}"#);
    assert!(
        e.starts_with("opus_bitrate: only used with output_codec"),
        "{e}"
    );
    let e = session_err(r#"{"output_codec":"opus","opus_complexity":11}"#);
    assert_eq!(e, "opus_complexity: 11 is above the maximum 10");
    let e = session_err(r#"{"output_codec":"opus","opus_bitrate":5000}"#);
    assert_eq!(e, "opus_bitrate: 5000 is below the minimum 6000");
}

#[test]
fn a_stored_session_configuration_reads_back_exactly() {
    // Found by the fuzz target config_session: serde_json's default float parser rounds some
    // numbers to a neighbour of the nearest f64, so a number in the metadata changed on its way
    // through the session store (1.0000000000000001e82 stored, 1e82 read back).
    let number =
        "9999999999999999999999999999999999999999999999999999999999999999999999999999999616";
    let json = format!(r#"{{"metadata":{{"k":[{number},0.1,5e-324,1.7976931348623157e308]}}}}"#);
    let config = SessionConfig::from_json(&json).unwrap();
    assert_eq!(
        config.metadata["k"][0].as_f64(),
        Some(number.parse::<f64>().unwrap()),
        "the nearest f64"
    );
    let stored = serde_json::to_string(&config).unwrap();
    let back = SessionConfig::from_json(&stored).unwrap();
    assert_eq!(back.metadata, config.metadata);
    assert_eq!(serde_json::to_string(&back).unwrap(), stored);
}

#[test]
fn interruptions_by_words_are_checked() {
    let with = |section: &str| {
        format!(
            r#"{{"provider":"local","stt_provider":"a","tts_provider":"b","interruptions":{section}}}"#
        )
    };
    let c = BackendConfig::from_json(&with(
        r#"{"decide_by":"words","backchannels":["mm-hmm","sounds good"],"resume_after_ms":800}"#,
    ))
    .unwrap();
    assert_eq!(c.interruptions.decide_by, DecideBy::Words);
    assert_eq!(c.interruptions.backchannels, ["mm-hmm", "sounds good"]);
    for (section, says) in [
        (r#"{"decide_by":"vibes"}"#, "unknown variant `vibes`"),
        (r#"{"backchannels":"yeah"}"#, "invalid type"),
        (
            r#"{"backchannels":["..."]}"#,
            "interruptions.backchannels: \"...\"",
        ),
        (r#"{"resume_after_ms":50}"#, "interruptions.resume_after_ms"),
        (
            r#"{"min_speech_ms":400,"max_backchannel_ms":300}"#,
            "interruptions.max_backchannel_ms",
        ),
    ] {
        let message = err(&with(section));
        assert!(message.contains(says), "{section}: {message}");
    }
}

#[test]
fn noise_suppression_is_one_strict_boolean_off_by_default() {
    let with = |audio: &str| {
        format!(r#"{{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{audio}}}"#)
    };
    assert!(
        !BackendConfig::from_json(MINIMAL)
            .unwrap()
            .audio
            .noise_suppression
    );
    for (json, on) in [("true", true), ("false", false)] {
        let c = BackendConfig::from_json(&with(&format!(
            r#"{{"noise_suppression":{json},"realtime_threads":1}}"#
        )));
        assert_eq!(c.unwrap().audio.noise_suppression, on);
    }
    // With the 8 kHz internal rate too (the suppressor resamples either rate to 48 kHz).
    let c = BackendConfig::from_json(&with(
        r#"{"noise_suppression":true,"sample_rate":8000,"realtime_threads":2}"#,
    ));
    assert!(c.unwrap().audio.noise_suppression);
    // Not with a thread per session: each would keep RNNoise's FFT tables for good.
    let m = err(&with(r#"{"noise_suppression":true}"#));
    assert!(
        m.starts_with("audio.noise_suppression needs audio.realtime_threads 1 or more"),
        "{m}"
    );
    // No truthy strings or numbers: a wrong type names the field and what it wants.
    for bad in [r#""yes""#, "1", "null", "{}"] {
        let m = err(&with(&format!(r#"{{"noise_suppression":{bad}}}"#)));
        assert!(
            m.starts_with("audio.noise_suppression: invalid type") && m.contains("a boolean"),
            "{bad}: {m}"
        );
    }
    // The section is strict: a misspelt key is refused, not ignored (suppression left off).
    let m = err(&with(r#"{"noise_supression":true}"#));
    assert!(
        m.starts_with("audio") && m.contains("unknown field `noise_supression`"),
        "{m}"
    );
    let m = err(
        r#"{"provider":"local","stt_provider":"a","tts_provider":"b","noise_suppression":true}"#,
    );
    assert!(m.contains("unknown field `noise_suppression`"), "{m}");
}
