//! `POST /v1/audio/transcriptions` of the local OpenAI-protocol server: the multipart form checked
//! like the API checks it, the WAV file transcribed by Whisper and answered as `{"text": …}`,
//! as plain text, or streamed as `transcript.text.delta` events.

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::http::{
    HttpRequest, Next, parse_multipart, respond, respond_json, start_chunked, write_chunk,
};
use super::routing::{early_fault, invalid};
use super::{HttpRequestRecord, Shared, UploadedWav};
use crate::servers::openai_engines::{Fault, error_body, transcribe};

/// The transcription models this server accepts.
pub const TRANSCRIPTION_MODELS: [&str; 4] = [
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-transcribe",
];

pub(super) struct TranscriptionForm {
    pcm: Vec<i16>,
    rate: u32,
    response_format: String,
    stream: bool,
}

/// Parses and checks a transcription request like the API does.
pub(super) fn parse_transcription(
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> Result<TranscriptionForm, (u16, Value)> {
    let content_type = request.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| {
            rest.split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
        })
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or_else(|| {
            invalid(
                &format!(
                    "Invalid Content-Type header ({content_type}), expected multipart/form-data."
                ),
                None,
            )
        })?;
    let parts = parse_multipart(&request.body, &boundary)
        .ok_or_else(|| invalid("Could not parse multipart form", None))?;
    let mut file = None;
    for part in parts {
        match (part.name.as_str(), part.file_name) {
            ("file", Some(file_name)) => file = Some((file_name, part.content_type, part.data)),
            (
                name @ ("model" | "language" | "prompt" | "response_format" | "temperature"
                | "stream"),
                None,
            ) => {
                let value = String::from_utf8(part.data)
                    .map_err(|_| invalid(&format!("Invalid value for '{name}'."), Some(name)))?;
                record.fields.insert(name.to_owned(), value);
            }
            (name, _) => {
                return Err(invalid(
                    &format!("Unrecognized request argument supplied: {name}"),
                    None,
                ));
            }
        }
    }
    let Some((file_name, file_type, data)) = file else {
        return Err(invalid(
            "1 validation error for Request\nbody -> file\n  field required",
            Some("file"),
        ));
    };
    let Some(model) = record.fields.get("model").cloned() else {
        return Err(invalid("you must provide a model parameter", Some("model")));
    };
    if !TRANSCRIPTION_MODELS.contains(&model.as_str()) {
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
    if let Some(language) = record.fields.get("language") {
        if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid(
                &format!(
                    "Invalid language '{language}'. Language parameter must be specified in ISO-639-1 format."
                ),
                Some("language"),
            ));
        }
    }
    let response_format = record
        .fields
        .get("response_format")
        .cloned()
        .unwrap_or_else(|| "json".to_owned());
    if !["json", "text"].contains(&response_format.as_str()) {
        return Err(invalid(
            &format!(
                "This local server answers response_format json or text, not '{response_format}'."
            ),
            Some("response_format"),
        ));
    }
    let stream = match record.fields.get("stream").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid(
                &format!("Invalid value for 'stream': '{other}' is not a boolean."),
                Some("stream"),
            ));
        }
    };
    let unsupported = || {
        invalid(
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', \
             'mpga', 'oga', 'ogg', 'wav', 'webm']",
            None,
        )
    };
    let reader = hound::WavReader::new(std::io::Cursor::new(data)).map_err(|_| unsupported())?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(unsupported());
    }
    let interleaved: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|_| unsupported())?;
    let channels = usize::from(spec.channels.max(1));
    let pcm: Vec<i16> = interleaved
        .chunks(channels)
        .map(|frame| (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len() as i32) as i16)
        .collect();
    record.file = Some(UploadedWav {
        file_name,
        content_type: file_type,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        samples: pcm.len(),
    });
    Ok(TranscriptionForm {
        pcm,
        rate: spec.sample_rate,
        stream: stream && model.starts_with("gpt-4o"),
        response_format,
    })
}

pub(super) async fn transcription(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    form: TranscriptionForm,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    if let Some(done) = early_fault(shared, stream, record).await {
        return done;
    }
    let text = transcribe(&form.pcm, form.rate).await;
    record.text = text.clone();
    record.status = 200;
    match record.fault {
        Some(Fault::Malformed) => {
            return respond_json(stream, 200, &json!({"result": text})).await;
        }
        Some(Fault::DropMidStream) => {
            let body = json!({"text": text}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let stream = stream.get_mut();
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body.as_bytes()[..body.len() / 2]).await?;
            stream.flush().await?;
            return Ok(Next::Close);
        }
        _ => {}
    }
    if form.stream {
        start_chunked(stream, "text/event-stream").await?;
        for word in text.split_inclusive(' ') {
            let event = json!({"type": "transcript.text.delta", "delta": word});
            write_chunk(stream, format!("data: {event}\n\n").as_bytes()).await?;
        }
        let done = json!({"type": "transcript.text.done", "text": text});
        write_chunk(stream, format!("data: {done}\n\n").as_bytes()).await?;
        write_chunk(stream, b"").await?;
        return Ok(Next::KeepAlive);
    }
    if form.response_format == "text" {
        return respond(stream, 200, "text/plain; charset=utf-8", text.as_bytes()).await;
    }
    respond_json(stream, 200, &json!({"text": text})).await
}
