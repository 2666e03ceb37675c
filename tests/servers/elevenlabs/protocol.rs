//! The protocol of the local ElevenLabs-protocol server: the handshake (path, `xi-api-key`,
//! query parameters checked against ElevenLabs' documented values) and the client messages'
//! schema.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::servers::ws_server::{HandshakeInfo, Refusal};

/// The raw PCM output formats and their rates.
const PCM_RATES: [(&str, u32); 5] = [
    ("pcm_8000", 8000),
    ("pcm_16000", 16000),
    ("pcm_22050", 22050),
    ("pcm_24000", 24000),
    ("pcm_44100", 44100),
];
/// Other formats the endpoint documents (refused here: no encoder).
const OTHER_FORMATS: [&str; 13] = [
    "mp3_22050_32",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
];
/// What the query asked for.
pub(super) struct Params {
    pub(super) sample_rate: u32,
    pub(super) inactivity_s: u64,
}

impl Params {
    pub(super) fn parse(query: &[(String, String)]) -> Result<Params, String> {
        let mut map = BTreeMap::new();
        for (k, v) in query {
            if map.insert(k.as_str(), v.as_str()).is_some() {
                return Err(format!("{k} is given twice"));
            }
        }
        let boolean = |name: &str| match map.get(name) {
            None | Some(&"true") | Some(&"false") => Ok(()),
            Some(v) => Err(format!("{name}={v}: expected true or false")),
        };
        for name in map.keys() {
            match *name {
                "model_id" | "language_code" | "authorization" => {}
                "enable_logging" | "enable_ssml_parsing" | "sync_alignment" | "auto_mode" => {
                    boolean(name)?
                }
                "output_format" | "inactivity_timeout" | "apply_text_normalization" | "seed" => {}
                other => return Err(format!("{other}: unknown query parameter")),
            }
        }
        if let Some(model) = map.get("model_id") {
            if !model.starts_with("eleven_") {
                return Err(format!("model_id={model}: no such model"));
            }
        }
        if let Some(n) = map.get("apply_text_normalization") {
            if !["auto", "on", "off"].contains(n) {
                return Err(format!(
                    "apply_text_normalization={n}: expected auto, on or off"
                ));
            }
        }
        if let Some(seed) = map.get("seed") {
            seed.parse::<u32>()
                .map_err(|_| format!("seed={seed}: expected an integer"))?;
        }
        let format = map.get("output_format").copied().unwrap_or("mp3_44100_128");
        let sample_rate = match PCM_RATES.iter().find(|(f, _)| *f == format) {
            Some(&(_, rate)) => rate,
            None if OTHER_FORMATS.contains(&format) => {
                return Err(format!(
                    "output_format={format}: this local server produces the pcm_* formats only"
                ));
            }
            None => return Err(format!("output_format={format}: not a documented format")),
        };
        let inactivity_s = match map.get("inactivity_timeout").map(|t| t.parse::<u64>()) {
            None => 20,
            Some(Ok(s)) if (1..=180).contains(&s) => s,
            Some(_) => return Err("inactivity_timeout: expected 1 to 180 seconds".to_owned()),
        };
        Ok(Params {
            sample_rate,
            inactivity_s,
        })
    }
}

/// `/v1/text-to-speech/{voice_id}/stream-input` → the voice.
pub(super) fn voice_in(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/text-to-speech/")?
        .strip_suffix("/stream-input")
        .filter(|v| !v.is_empty() && !v.contains('/'))
}

pub(super) fn check_handshake(info: &HandshakeInfo, key: &str) -> Result<(), Refusal> {
    if voice_in(&info.path).is_none() {
        return Err(Refusal {
            status: 404,
            headers: Vec::new(),
            body: json!({"detail": "Not Found"}).to_string(),
        });
    }
    match info.header("xi-api-key") {
        Some(given) if given != key => Err(Refusal {
            status: 401,
            headers: Vec::new(),
            body: json!({"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
                .to_string(),
        }),
        _ => Ok(()),
    }
}

/// `InitializeConnection`, `SendText` or `CloseConnection`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientMessage {
    pub(super) text: String,
    #[serde(default)]
    pub(super) try_trigger_generation: bool,
    pub(super) voice_settings: Option<Value>,
    pub(super) generation_config: Option<Value>,
    pub(super) generator_config: Option<Value>,
    #[serde(default)]
    pub(super) flush: bool,
    pub(super) pronunciation_dictionary_locators: Option<Vec<Value>>,
    #[serde(rename = "xi-api-key")]
    pub(super) xi_api_key: Option<String>,
    pub(super) authorization: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoiceSettings {
    stability: Option<f64>,
    similarity_boost: Option<f64>,
    style: Option<f64>,
    use_speaker_boost: Option<bool>,
    speed: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GenerationConfig {
    pub(super) chunk_length_schedule: Option<Vec<u32>>,
}

/// Checks `voice_settings` against the documented ranges.
pub(super) fn check_voice_settings(settings: &Value) -> Result<(), String> {
    let parsed: VoiceSettings =
        serde_json::from_value(settings.clone()).map_err(|e| format!("voice_settings: {e}"))?;
    let ranges = [
        ("stability", parsed.stability, 0.0, 1.0),
        ("similarity_boost", parsed.similarity_boost, 0.0, 1.0),
        ("style", parsed.style, 0.0, 1.0),
        ("speed", parsed.speed, 0.7, 1.2),
    ];
    for (name, value, min, max) in ranges {
        if value.is_some_and(|v| !(min..=max).contains(&v)) {
            return Err(format!("voice_settings.{name} must be {min} to {max}"));
        }
    }
    Ok(())
}
