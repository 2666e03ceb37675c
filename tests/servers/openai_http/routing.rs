//! What every request to the local OpenAI-protocol HTTP server goes through: the key first, as
//! OpenAI checks it (a wrong or missing key is a 401 with OpenAI's messages), then the route;
//! and the injected faults that need no real answer (a stall, an error status).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::Value;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::http::{HttpRequest, Next, respond_json};
use super::speech::{parse_speech, speech_answer};
use super::transcriptions::{parse_transcription, transcription};
use super::{HttpRequestRecord, Shared};
use crate::servers::openai_engines::{Fault, error_body, redacted_key};

/// A 400 with OpenAI's `invalid_request_error`.
pub(super) fn invalid(message: &str, param: Option<&str>) -> (u16, Value) {
    (
        400,
        error_body(message, "invalid_request_error", param, None),
    )
}

pub(super) async fn handle(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    request: HttpRequest,
) -> std::io::Result<Next> {
    shared.arrived.fetch_add(1, Ordering::SeqCst);
    let mut record = HttpRequestRecord {
        path: request.path.clone(),
        authorized: false,
        fields: BTreeMap::new(),
        file: None,
        json: None,
        status: 0,
        text: String::new(),
        audio_bytes: 0,
        fault: None,
    };
    let outcome = answer(shared, stream, &request, &mut record).await;
    shared.requests.lock().unwrap().push(record);
    outcome
}

async fn answer(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    // The key first, as OpenAI does.
    let auth = request.header("authorization");
    let refused = match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => Some(error_body(
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or \
             as the password field (with blank username) if you're accessing the API from your \
             browser and are prompted for a username. You can obtain an API key from \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
        Some(key) if key != shared.api_key => Some(error_body(
            &format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                redacted_key(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        Some(_) => None,
    };
    if let Some(body) = refused {
        record.status = 401;
        return respond_json(stream, 401, &body).await;
    }
    record.authorized = true;
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/audio/transcriptions") => match parse_transcription(request, record) {
            Ok(form) => return transcription(shared, stream, form, record).await,
            Err(error) => error,
        },
        ("POST", "/v1/audio/speech") => match parse_speech(request, record) {
            Ok(speech) => return speech_answer(shared, stream, speech, record).await,
            Err(error) => error,
        },
        (_, "/v1/audio/transcriptions" | "/v1/audio/speech") => (
            405,
            error_body(
                &format!(
                    "Invalid method for URL ({} {})",
                    request.method, request.path
                ),
                "invalid_request_error",
                None,
                None,
            ),
        ),
        _ => (
            404,
            error_body(
                &format!("Invalid URL ({} {})", request.method, request.path),
                "invalid_request_error",
                None,
                None,
            ),
        ),
    };
    record.status = status;
    respond_json(stream, status, &body).await
}

/// Applies an injected fault that needs no real answer; `None` to go on answering.
pub(super) async fn early_fault(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    record: &mut HttpRequestRecord,
) -> Option<std::io::Result<Next>> {
    let fault = shared.faults.take()?;
    record.fault = Some(fault.clone());
    match fault {
        Fault::Stall => {
            shared.stalled.fetch_add(1, Ordering::SeqCst);
            Some(std::future::pending().await) // ended by the server's stop
        }
        Fault::Status {
            status,
            kind,
            code,
            message,
        } => {
            record.status = status;
            let body = error_body(message, kind, None, code);
            Some(respond_json(stream, status, &body).await)
        }
        Fault::Malformed | Fault::DropMidStream => None,
    }
}
