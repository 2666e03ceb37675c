//! One HTTP request to the signalling server, on the I/O runtime ([`offer`](super::offer) has
//! the message shapes):
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/offer`, no `pc_id` | a new call: the host's hook decides (`VbIncoming`), then `200 {sdp, type: "answer", pc_id}` |
//! | `POST /api/offer` with a `pc_id` | that call's renegotiation (`restart_pc: true`: a new peer connection, same session) |
//! | `PATCH /api/offer` | trickled candidates for a call: `200 {"status": "success"}` |
//! | `GET /` | the configured page (`provider_config.webrtc.page`), else 404 |
//!
//! Refusals are JSON `{"error", "status", "code"?}`: 400 for a body that is not the expected JSON
//! or an SDP that cannot be answered, 404 for an unknown path or `pc_id`, 405 for another method,
//! 413 for a body over [`MAX_BODY`], 415 for a body that is not JSON, 503 while the backend is
//! full (`max_concurrent_sessions`, code `VB_ERR_SESSION_LIMIT`), draining or without a host
//! taking calls, 429 when rate-limited, 403 when the host refused the call.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use tokio::sync::oneshot;

use super::call::{self, Call, CallParts};
use super::live::Control;
use super::offer::{self, OfferRequest, Refusal};
use super::server::Shared;
use super::{NAME, TRANSPORT};
use crate::config::{Secret, SessionConfig};
use crate::error::{Error, VbStatus};
use crate::transport::pending::decide_arrival;

/// The path of offers (Pipecat's).
pub const OFFER_PATH: &str = "/api/offer";
/// The largest request body taken (an offer's SDP is a few kilobytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The answer to one request. Never fails: every failure is an HTTP refusal.
pub async fn respond(
    request: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let result = match (method.clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/") => match &shared.settings.page {
            Some(page) => Ok(reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page.clone(),
            )),
            None => Err(Refusal::new(
                404,
                format!("nothing at / (offers go to POST {OFFER_PATH})"),
            )),
        },
        (Method::POST, OFFER_PATH) => match body(request).await {
            Ok(bytes) => post_offer(&bytes, local, peer, shared).await,
            Err(refusal) => Err(refusal),
        },
        (Method::PATCH, OFFER_PATH) => match body(request).await {
            Ok(bytes) => patch(&bytes, &shared),
            Err(refusal) => Err(refusal),
        },
        (_, OFFER_PATH) => Err(Refusal::new(
            405,
            format!("{method} {OFFER_PATH}: only POST (an offer) and PATCH (candidates)"),
        )),
        (_, "/") if shared.settings.page.is_some() => {
            Err(Refusal::new(405, format!("{method} /: only GET")))
        }
        _ => Err(Refusal::new(
            404,
            format!("nothing at {path} (offers go to POST {OFFER_PATH})"),
        )),
    };
    match result {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(%peer, status = refusal.status, "{NAME}: {method} {path} refused: {}", refusal.message);
            let status =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = reply(status, "application/json", refusal.body());
            if status == StatusCode::METHOD_NOT_ALLOWED {
                let allow = if path == OFFER_PATH {
                    "POST, PATCH"
                } else {
                    "GET, HEAD"
                };
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            }
            response
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The request's body, at most [`MAX_BODY`] bytes of JSON.
async fn body(request: Request<Incoming>) -> Result<Bytes, Refusal> {
    let too_large = || Refusal::new(413, format!("the body is over {MAX_BODY} bytes"));
    let headers = request.headers();
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let json = content_type.to_str().is_ok_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
        if !json {
            return Err(Refusal::new(
                415,
                format!("Content-Type: {content_type:?}; the body must be application/json"),
            ));
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(Refusal::new(
            400,
            format!("the body could not be read: {e}"),
        )),
    }
}

fn answer(sdp: &str, pc_id: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::OK,
        "application/json",
        offer::answer_body(sdp, pc_id),
    )
}

async fn post_offer(
    body: &[u8],
    local: SocketAddr,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let offer = offer::parse_offer(body)?;
    if let Some(pc_id) = offer.pc_id.clone() {
        return renegotiate(offer, &pc_id, &shared).await;
    }
    // In a task of its own: a client that goes away mid-request does not cut a session's start
    // in half.
    let task = tokio::spawn(new_call(offer, local, peer, shared));
    let (sdp, pc_id) = task
        .await
        .map_err(|e| Refusal::new(500, format!("the call's start failed: {e}")))??;
    Ok(answer(&sdp, &pc_id))
}

/// A new offer for the call `pc_id`: answered on its peer connection, or a new one.
async fn renegotiate(
    offer: OfferRequest,
    pc_id: &str,
    shared: &Shared,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let unknown = || {
        Refusal::new(
            404,
            format!("pc_id '{pc_id}': no such connection here (it ended, or never was)"),
        )
    };
    let (tx, rx) = oneshot::channel();
    let control = Control::Offer {
        sdp: offer.sdp,
        restart: offer.restart_pc == Some(true),
        answer: tx,
    };
    if !shared.live.send(pc_id, control) {
        return Err(unknown());
    }
    let sdp = rx.await.map_err(|_| unknown())??;
    Ok(answer(&sdp, pc_id))
}

/// Trickled candidates for a call under way.
fn patch(body: &[u8], shared: &Shared) -> Result<Response<Full<Bytes>>, Refusal> {
    let patch = offer::parse_patch(body)?;
    let candidates = patch
        .candidates
        .iter()
        .filter_map(offer::candidate_init)
        .collect();
    if !shared
        .live
        .send(&patch.pc_id, Control::Candidates(candidates))
    {
        return Err(Refusal::new(
            404,
            format!("pc_id '{}': no such connection here", patch.pc_id),
        ));
    }
    Ok(reply(
        StatusCode::OK,
        "application/json",
        json!({"status": "success"}).to_string(),
    ))
}

/// The refusal for an engine error that kept a call from starting.
fn refusal_of(e: &Error) -> Refusal {
    let status = match e.status() {
        VbStatus::VB_ERR_SESSION_LIMIT | VbStatus::VB_ERR_INVALID_STATE => 503,
        VbStatus::VB_ERR_RATE_LIMITED => 429,
        VbStatus::VB_ERR_INTERNAL | VbStatus::VB_ERR_PANIC => 500,
        VbStatus::VB_ERR_CONNECTION_FAILED | VbStatus::VB_ERR_TIMEOUT => 503,
        _ => 403,
    };
    Refusal {
        status,
        message: format!("call refused: {}", e.message()),
        code: Some(e.status().name()),
    }
}

/// A new call: answers the offer, makes it a session through the host's hook, and starts its
/// task. The answer's SDP and the call's `pc_id`.
async fn new_call(
    offer: OfferRequest,
    local: SocketAddr,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<(String, String), Refusal> {
    if shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Refusal::new(
            503,
            "this server is draining: it takes no new calls",
        ));
    }
    if !shared.arrivals.accepting() {
        return Err(Refusal::new(
            503,
            "no host takes WebRTC calls here (vb_backend_set_incoming)",
        ));
    }
    if !offer.sdp.lines().any(|l| l.starts_with("m=audio")) {
        return Err(Refusal::new(
            400,
            "sdp: the offer has no audio line (m=audio)",
        ));
    }
    let (rtc, answer_sdp) = call::answer(local.ip(), &offer.sdp).await?;
    let pc_id = shared.live.new_pc_id();
    let (pending, mut attach) = shared.calls.register();
    let config = SessionConfig {
        user_id: pc_id.clone(),
        transport: TRANSPORT.to_owned(),
        connection_token: Some(Secret::new(pending.key.clone())),
        metadata: json!({ "webrtc": { "pc_id": pc_id, "peer": peer.to_string() } }),
        ..SessionConfig::default()
    };
    let info = json!({
        "transport": TRANSPORT,
        "pc_id": pc_id,
        "peer": peer.to_string(),
        "request_data": offer.request_data,
    });
    let mut decided = decide_arrival(shared.arrivals.clone(), config, info);
    let attached = tokio::select! {
        biased;
        attached = &mut attach => attached.ok(),
        decided = &mut decided => match decided {
            // The edge was handed over before the session started: it is there.
            Ok(Ok(())) => attach.await.ok(),
            Ok(Err(e)) => {
                tracing::warn!(code = e.status().name(), "{NAME}: call refused: {}", e.message());
                return Err(refusal_of(&e));
            }
            Err(_) => return Err(Refusal::new(500, "the arrival of the call was dropped")),
        },
    };
    drop(pending);
    let attach = attached
        .ok_or_else(|| Refusal::new(500, "the call's session started without its audio"))?;
    let (entry, control) = shared.live.register(pc_id.clone());
    let call = Call::new(CallParts {
        entry,
        control,
        ip: local.ip(),
        peer: rtc,
        attach,
        disconnect_timeout: shared.settings.disconnect_timeout,
        opus_complexity: shared.settings.opus_complexity,
    })
    .map_err(|e| Refusal::new(500, e.message().to_owned()))?;
    tracing::info!(%peer, pc_id = %pc_id, "{NAME}: call connected to its session");
    tokio::spawn(call.run());
    Ok((answer_sdp, pc_id))
}
