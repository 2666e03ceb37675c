//! The `session` object of the local OpenAI-protocol Realtime server, checked like the API checks
//! `session.update` (unknown parameters, the audio formats, the turn detection, the voice), and
//! merged into the session as the API does.

use serde_json::{Map, Value, json};

use crate::servers::openai_engines::OPENAI_RATE;

/// The voices OpenAI documents for Realtime sessions.
pub const REALTIME_VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

/// Checks a `session` object of `session.update` like the API: `(code, message, param)` of the
/// first problem.
pub(super) fn check_session(
    session: &Map<String, Value>,
) -> Result<(), (&'static str, String, String)> {
    let unknown = |path: &str| {
        (
            "unknown_parameter",
            format!("Unknown parameter: '{path}'."),
            path.to_owned(),
        )
    };
    let bad = |path: &str, message: String| ("invalid_value", message, path.to_owned());
    let keys = |object: &Map<String, Value>, path: &str, allowed: &[&str]| match object
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
        Some(k) => Err(unknown(&format!("{path}.{k}"))),
        None => Ok(()),
    };
    keys(
        session,
        "session",
        &[
            "type",
            "model",
            "output_modalities",
            "instructions",
            "audio",
            "include",
            "max_output_tokens",
            "tool_choice",
            "tools",
            "tracing",
            "truncation",
            "prompt",
        ],
    )?;
    if session.get("type").and_then(Value::as_str) != Some("realtime") {
        return Err((
            "missing_required_parameter",
            "Missing required parameter: 'session.type' (\"realtime\").".to_owned(),
            "session.type".to_owned(),
        ));
    }
    if let Some(modalities) = session.get("output_modalities") {
        if modalities != &json!(["audio"]) && modalities != &json!(["text"]) {
            return Err(bad(
                "session.output_modalities",
                format!(
                    "Invalid 'session.output_modalities': {modalities}. Use [\"audio\"] or [\"text\"]."
                ),
            ));
        }
    }
    let Some(audio) = session.get("audio") else {
        return Ok(());
    };
    let audio = audio
        .as_object()
        .ok_or_else(|| bad("session.audio", "Invalid type for 'session.audio'.".into()))?;
    keys(audio, "session.audio", &["input", "output"])?;
    let format_ok = |format: Option<&Value>, path: &str| match format {
        None => Ok(()),
        Some(f) if f == &json!({"type": "audio/pcm", "rate": OPENAI_RATE}) => Ok(()),
        Some(f) => Err(bad(
            path,
            format!(
                "Invalid '{path}': {f}. This local server serves {{\"type\": \"audio/pcm\", \"rate\": 24000}}."
            ),
        )),
    };
    if let Some(input) = audio.get("input").and_then(Value::as_object) {
        keys(
            input,
            "session.audio.input",
            &[
                "format",
                "transcription",
                "noise_reduction",
                "turn_detection",
            ],
        )?;
        format_ok(input.get("format"), "session.audio.input.format")?;
        if let Some(transcription) = input.get("transcription").filter(|t| !t.is_null()) {
            let t = transcription.as_object().ok_or_else(|| {
                bad(
                    "session.audio.input.transcription",
                    "Invalid type for 'session.audio.input.transcription'.".into(),
                )
            })?;
            keys(
                t,
                "session.audio.input.transcription",
                &["model", "language", "prompt"],
            )?;
        }
        if let Some(detection) = input.get("turn_detection").filter(|t| !t.is_null()) {
            let d = detection.as_object().ok_or_else(|| {
                bad(
                    "session.audio.input.turn_detection",
                    "Invalid type for 'session.audio.input.turn_detection'.".into(),
                )
            })?;
            keys(
                d,
                "session.audio.input.turn_detection",
                &[
                    "type",
                    "threshold",
                    "prefix_padding_ms",
                    "silence_duration_ms",
                    "idle_timeout_ms",
                    "create_response",
                    "interrupt_response",
                ],
            )?;
            if d.get("type").and_then(Value::as_str) != Some("server_vad") {
                return Err(bad(
                    "session.audio.input.turn_detection.type",
                    "This local server serves turn_detection type 'server_vad' (or null).".into(),
                ));
            }
        }
    }
    if let Some(output) = audio.get("output").and_then(Value::as_object) {
        keys(
            output,
            "session.audio.output",
            &["format", "voice", "speed"],
        )?;
        format_ok(output.get("format"), "session.audio.output.format")?;
        if let Some(voice) = output.get("voice") {
            if !voice.as_str().is_some_and(|v| REALTIME_VOICES.contains(&v)) {
                return Err(bad(
                    "session.audio.output.voice",
                    format!(
                        "Invalid value: {voice}. Supported values are: {}.",
                        REALTIME_VOICES.map(|v| format!("'{v}'")).join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Sets every field of `update` in `target`, recursing into objects (`session.update` semantics).
pub(super) fn merge(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(target), Value::Object(update)) => {
            for (key, value) in update {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, update) => *target = update.clone(),
    }
}
