//! `POST /v1/audio/speech` of the local OpenAI-protocol server: the JSON body checked like the
//! API checks it, the input spoken by eSpeak NG at 24 kHz and streamed as a chunked body of PCM
//! (or WAV) in pieces of an odd number of bytes.

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::http::{HttpRequest, Next, respond_json, start_chunked, write_chunk};
use super::routing::{early_fault, invalid};
use super::{HttpRequestRecord, SPEECH_PIECE, Shared};
use crate::servers::openai_engines::{Fault, OPENAI_RATE, error_body, le_bytes, speak};

/// The voices OpenAI documents for `/v1/audio/speech`.
pub const SPEECH_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];
/// The speech models this server accepts.
pub const SPEECH_MODELS: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

pub(super) struct SpeechForm {
    input: String,
    speed: f64,
    wav: bool,
}

/// Parses and checks a speech request like the API does.
pub(super) fn parse_speech(
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> Result<SpeechForm, (u16, Value)> {
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        invalid(
            &format!("We could not parse the JSON body of your request. ({e})"),
            None,
        )
    })?;
    record.json = Some(body.clone());
    let Some(object) = body.as_object() else {
        return Err(invalid("The request body must be a JSON object.", None));
    };
    const FIELDS: [&str; 7] = [
        "model",
        "input",
        "voice",
        "response_format",
        "speed",
        "instructions",
        "stream_format",
    ];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            &format!("Unrecognized request argument supplied: {unknown}"),
            None,
        ));
    }
    let text = |name: &str| -> Result<Option<&str>, (u16, Value)> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(
                &format!("Invalid type for '{name}': expected a string, but got {other} instead."),
                Some(name),
            )),
        }
    };
    let missing = |name: &str| {
        invalid(
            &format!("Missing required parameter: '{name}'."),
            Some(name),
        )
    };
    let model = text("model")?.ok_or_else(|| missing("model"))?;
    let input = text("input")?.ok_or_else(|| missing("input"))?;
    let voice = text("voice")?.ok_or_else(|| missing("voice"))?;
    if !SPEECH_MODELS.contains(&model) {
        return Err((
            404,
            error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
        ));
    }
    if input.chars().count() > 4096 {
        return Err(invalid(
            "Input is too long: the maximum length is 4096 characters.",
            Some("input"),
        ));
    }
    if !SPEECH_VOICES.contains(&voice) {
        return Err(invalid(
            &format!(
                "Invalid value: '{voice}'. Supported values are: {}.",
                SPEECH_VOICES.map(|v| format!("'{v}'")).join(", ")
            ),
            Some("voice"),
        ));
    }
    let format = text("response_format")?.unwrap_or("mp3");
    if !["pcm", "wav"].contains(&format) {
        return Err(invalid(
            &format!("This local server produces response_format pcm or wav, not '{format}'."),
            Some("response_format"),
        ));
    }
    if text("stream_format")?.is_some_and(|f| f != "audio") {
        return Err(invalid(
            "This local server streams stream_format 'audio' only.",
            Some("stream_format"),
        ));
    }
    text("instructions")?;
    let speed = match object.get("speed") {
        None => 1.0,
        Some(v) => match v.as_f64() {
            Some(s) if (0.25..=4.0).contains(&s) => s,
            _ => {
                return Err(invalid(
                    &format!("Invalid 'speed': {v}. Expected a number from 0.25 to 4.0."),
                    Some("speed"),
                ));
            }
        },
    };
    Ok(SpeechForm {
        input: input.to_owned(),
        speed,
        wav: format == "wav",
    })
}

pub(super) async fn speech_answer(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    form: SpeechForm,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    if let Some(done) = early_fault(shared, stream, record).await {
        return done;
    }
    record.text = form.input.clone();
    record.status = 200;
    if record.fault == Some(Fault::Malformed) {
        return respond_json(stream, 200, &json!({"audio": form.input})).await;
    }
    let pcm = speak(&form.input, (175.0 * form.speed).round() as u32).await;
    let mut body = le_bytes(&pcm);
    record.audio_bytes = body.len();
    if form.wav {
        body.splice(0..0, wav_header(body.len()));
    }
    let content_type = if form.wav { "audio/wav" } else { "audio/pcm" };
    start_chunked(stream, content_type).await?;
    let pieces: Vec<&[u8]> = body.chunks(SPEECH_PIECE).collect();
    let drop_at = (record.fault == Some(Fault::DropMidStream)).then_some(pieces.len() / 2);
    for (i, piece) in pieces.iter().enumerate() {
        if drop_at == Some(i) {
            return Ok(Next::Close); // no terminating piece: the body is cut short
        }
        write_chunk(stream, piece).await?;
    }
    write_chunk(stream, b"").await?;
    Ok(Next::KeepAlive)
}

/// A 44-byte WAV header for `data_len` bytes of 24 kHz 16-bit mono PCM.
fn wav_header(data_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    let data_len = data_len as u32;
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&OPENAI_RATE.to_le_bytes());
    h.extend_from_slice(&(OPENAI_RATE * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}
