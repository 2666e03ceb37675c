//! The handshake of the local OpenAI-protocol Realtime server: `GET /v1/realtime?model=…` with
//! `Authorization: Bearer <key>`, refused as OpenAI refuses it (HTTP status and error object).

use serde_json::Value;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::servers::openai_engines::{error_body, redacted_key};

/// An HTTP answer refusing the WebSocket.
fn refuse(status: StatusCode, body: Value) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_string()));
    *response.status_mut() = status;
    response
}

/// Checks the handshake `request` against the one key the server accepts; the model asked for,
/// or the refusal.
// The error type is tungstenite's handshake callback's.
#[allow(clippy::result_large_err)]
pub(super) fn check(request: &Request, api_key: &str) -> Result<String, ErrorResponse> {
    let uri = request.uri();
    if uri.path() != "/v1/realtime" {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            error_body(
                &format!("Invalid URL (GET {})", uri.path()),
                "invalid_request_error",
                None,
                None,
            ),
        ));
    }
    let key = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match key {
        Some(key) if key == api_key => {}
        Some(key) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                error_body(
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at \
                         https://platform.openai.com/account/api-keys.",
                        redacted_key(key)
                    ),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ),
            ));
        }
        None => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                error_body(
                    "Missing bearer or basic authentication in header",
                    "invalid_request_error",
                    None,
                    None,
                ),
            ));
        }
    }
    if request.headers().contains_key("openai-beta") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            error_body(
                "This local server speaks the GA Realtime API; the beta is not served.",
                "invalid_request_error",
                None,
                None,
            ),
        ));
    }
    let model = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("model="))
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            error_body(
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                Some("model"),
                Some("missing_required_parameter"),
            ),
        ));
    }
    Ok(model)
}
