//! One call until its session starts, on the I/O runtime:
//!
//! 1. **Handshake**: the WebSocket upgrade on the Twilio or Telnyx path (HTTP 404 on any other,
//!    503 while the server drains).
//! 2. **`start`**: `connected` may come first; anything else before `start` (media, a malformed
//!    message, nothing within `start_timeout_ms`) closes the connection with the reason.
//! 3. **Arrival**: the call is registered under a fresh key and handed to the backend on a
//!    blocking thread ([`Arrivals::arrive`]: the host's hook decides). Meanwhile the socket is
//!    read: the caller's first second of audio and any keys pressed are kept for the session.
//!    A refusal (the host's, `max_concurrent_sessions`, the rate limits, a draining backend)
//!    closes the connection with the reason (close code 1013 when trying later may help, 1008
//!    for the host's refusal) and logs it; a caller who hangs up first ends the session attempt.
//! 4. Once the session's edge is attached, [`super::stream`] carries the call.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument as _;

use super::protocol::{self, CallStart, Dialect, Inbound};
use super::server::{LiveCall, Shared};
use super::stream::{Early, Stream};
use super::{NAME, TRANSPORT};
use crate::config::{Secret, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::transport::TransportNews;
use crate::transport::pending::decide_arrival;

/// A call's WebSocket.
pub type CallSocket = WebSocketStream<TcpStream>;

/// Serves one connection from the upgrade to the end of the call.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let Some((mut socket, dialect)) = handshake(stream, peer, &shared).await else {
        return;
    };
    let start = match wait_for_start(&mut socket, dialect, &shared).await {
        Ok(Some(start)) => start,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%peer, "{}: connection closed before its call started: {e}", dialect.name());
            close(&mut socket, CloseCode::Protocol, e.message()).await;
            return;
        }
    };
    let span = tracing::info_span!(
        "phone call",
        source = dialect.name(),
        call = %start.call_id,
    );
    let _live = LiveCall::new(&shared);
    arrive(socket, dialect, *start, shared)
        .instrument(span)
        .await;
}

/// The WebSocket upgrade; the path says which protocol the call speaks.
// The refusal's type is tungstenite's callback signature (an HTTP response), not ours to shrink.
#[allow(clippy::result_large_err)]
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(CallSocket, Dialect)> {
    let mut dialect = None;
    let draining = shared.draining.load(std::sync::atomic::Ordering::Acquire);
    let route =
        |request: &Request, response: Response| -> std::result::Result<Response, ErrorResponse> {
            if draining {
                return Err(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this server is draining: it takes no new calls",
                ));
            }
            match shared.settings.dialect_of(request.uri().path()) {
                Some(found) => {
                    dialect = Some(found);
                    Ok(response)
                }
                None => Err(refusal(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no phone stream at {} (Twilio: {}, Telnyx: {})",
                        request.uri().path(),
                        shared.settings.twilio_path,
                        shared.settings.telnyx_path
                    ),
                )),
            }
        };
    let upgraded = tokio::time::timeout(
        shared.settings.start_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, route, Some(socket_config())),
    )
    .await;
    match upgraded {
        Ok(Ok(socket)) => dialect.map(|d| (socket, d)),
        Ok(Err(e)) => {
            tracing::info!(%peer, "{NAME}: WebSocket upgrade refused or failed: {e}");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "{NAME}: no WebSocket upgrade within the start timeout");
            None
        }
    }
}

/// A call's socket: a 4 KiB read buffer instead of tungstenite's 128 KiB, which it zeroes on
/// every read (a fifth of the server's CPU at 100 calls, measured), for messages of a few hundred
/// bytes; and no message over 1 MiB (20 ms of G.711 is 216 bytes of base64).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

/// Reads until `start`. `Ok(None)`: the connection ended (or the server stopped) first, which
/// is logged here; `Err`: the provider broke the protocol.
async fn wait_for_start(
    socket: &mut CallSocket,
    dialect: Dialect,
    shared: &Shared,
) -> Result<Option<Box<CallStart>>> {
    let deadline = tokio::time::Instant::now() + shared.settings.start_timeout;
    let mut stopping = shared.stopping.clone();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout_at(deadline, socket.next()) => frame,
            _ = stopping.changed() => {
                close(socket, CloseCode::Away, "the server is stopping").await;
                return Ok(None);
            }
        };
        let text = match frame {
            Err(_) => {
                return Err(protocol::violation(
                    dialect,
                    format!(
                        "no 'start' message within {} ms",
                        shared.settings.start_timeout.as_millis()
                    ),
                ));
            }
            Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_))) => {
                tracing::info!("{}: connection closed before 'start'", dialect.name());
                return Ok(None);
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(protocol::violation(
                    dialect,
                    "a binary frame (the protocol's messages are JSON text)",
                ));
            }
            Ok(Some(Ok(_))) => continue,
        };
        match protocol::parse(dialect, &text)? {
            Inbound::Connected => {}
            Inbound::Start(start) => return Ok(Some(start)),
            Inbound::Media { .. } => {
                return Err(protocol::violation(dialect, "'media' before 'start'"));
            }
            other => {
                return Err(protocol::violation(
                    dialect,
                    format!("{} before 'start'", describe(&other)),
                ));
            }
        }
    }
}

/// The call becomes a session (or is refused), then streams until it ends.
async fn arrive(mut socket: CallSocket, dialect: Dialect, start: CallStart, shared: Arc<Shared>) {
    if let Some(why) = refuse_at_once(&shared) {
        refuse(
            &mut socket,
            &Error::new(VbStatus::VB_ERR_INVALID_STATE, why),
        )
        .await;
        return;
    }
    let (pending, mut attach) = shared.calls.register();
    let config = SessionConfig {
        user_id: start.from.clone().unwrap_or_else(|| start.call_id.clone()),
        transport: TRANSPORT.to_owned(),
        connection_token: Some(Secret::new(pending.key.clone())),
        metadata: json!({ "phone": {
            "source": dialect.name(),
            "call_id": start.call_id,
            "stream_id": start.stream_id,
        }}),
        ..SessionConfig::default()
    };
    let mut decided = decide_arrival(shared.arrivals.clone(), config, start.info.clone());
    let mut early = Early::new(start.law);
    let mut stopping = shared.stopping.clone();
    let attached = loop {
        tokio::select! {
            biased;
            attached = &mut attach => break attached.ok(),
            decided = &mut decided => match decided {
                // The edge was handed over before the session started: it is there.
                Ok(Ok(())) => break attach.await.ok(),
                Ok(Err(e)) => {
                    refuse(&mut socket, &e).await;
                    return;
                }
                Err(_) => {
                    let e = Error::internal("the arrival of the call was dropped");
                    refuse(&mut socket, &e).await;
                    return;
                }
            },
            frame = socket.next() => match early.on_frame(dialect, frame) {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    // The caller hung up while the host decided: no session is attached from now
                    // on; one attached just now is told the call is over.
                    drop(pending);
                    if let Ok(attach) = attach.await {
                        let _ = attach.edge.news.send(TransportNews::Ended { reason: reason.clone(), error: None });
                    }
                    tracing::info!("{reason} before its session started");
                    close(&mut socket, CloseCode::Normal, "").await;
                    return;
                }
                Err(e) => {
                    drop(pending);
                    if let Ok(attach) = attach.await {
                        let _ = attach.edge.news.send(TransportNews::Ended {
                            reason: format!("{NAME}: the {} stream broke the protocol", dialect.name()),
                            error: Some(e.clone()),
                        });
                    }
                    tracing::warn!("{e}");
                    close(&mut socket, CloseCode::Protocol, e.message()).await;
                    return;
                }
            },
            _ = stopping.changed() => {
                drop(pending);
                if let Ok(attach) = attach.await {
                    let _ = attach.edge.news.send(TransportNews::Ended {
                        reason: format!("{NAME}: the server stopped"),
                        error: None,
                    });
                }
                close(&mut socket, CloseCode::Away, "the server is stopping").await;
                return;
            }
        }
    };
    drop(pending);
    let Some(attach) = attached else {
        let e = Error::internal("the call's session started without its audio");
        refuse(&mut socket, &e).await;
        return;
    };
    tracing::info!(
        from = start.from.as_deref().unwrap_or(""),
        to = start.to.as_deref().unwrap_or(""),
        "{}: call connected to its session",
        dialect.name()
    );
    Stream::new(socket, dialect, &start, attach, early)
        .run()
        .await;
}

/// Why a call that just sent `start` cannot be taken at all, before asking the backend.
fn refuse_at_once(shared: &Shared) -> Option<&'static str> {
    if shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        Some("this server is draining: it takes no new calls")
    } else if !shared.arrivals.accepting() {
        Some("no host takes phone calls (vb_backend_set_incoming)")
    } else {
        None
    }
}

/// Logs a refused call and closes its connection with the reason.
async fn refuse(socket: &mut CallSocket, why: &Error) {
    let code = match why.status() {
        VbStatus::VB_ERR_SESSION_LIMIT
        | VbStatus::VB_ERR_RATE_LIMITED
        | VbStatus::VB_ERR_INVALID_STATE => CloseCode::Again,
        VbStatus::VB_ERR_INTERNAL | VbStatus::VB_ERR_PANIC => CloseCode::Error,
        _ => CloseCode::Policy,
    };
    tracing::warn!(
        code = why.status().name(),
        "{NAME}: call refused: {}",
        why.message()
    );
    close(socket, code, &format!("call refused: {}", why.message())).await;
}

/// Sends a close frame (the reason cut to what one may hold) and waits briefly for it to go.
pub async fn close(socket: &mut CallSocket, code: CloseCode, reason: &str) {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let closing = async {
        let _ = socket.send(Message::Close(Some(frame))).await;
        // Let the peer's close (or the end of the stream) come back.
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
}

/// What a message is, for "… before 'start'" and the like.
pub fn describe(message: &Inbound) -> &'static str {
    match message {
        Inbound::Connected => "'connected'",
        Inbound::Start(_) => "'start'",
        Inbound::Media { .. } => "'media'",
        Inbound::Dtmf(_) => "'dtmf'",
        Inbound::Mark(_) => "'mark'",
        Inbound::Stop => "'stop'",
        Inbound::Error(_) => "'error'",
    }
}

/// What a frame that is not a text message means: `Ok(None)` for control frames the socket
/// answers itself, `Ok(Some(reason))` for the end of the connection, `Err` for a binary frame.
pub fn non_text(
    dialect: Dialect,
    frame: Option<std::result::Result<Message, tungstenite::Error>>,
) -> Result<Option<String>> {
    let gone = |how: String| Ok(Some(format!("{NAME}: the {} stream {how}", dialect.name())));
    match frame {
        None => gone("was closed".into()),
        Some(Err(e)) => gone(format!("failed ({e})")),
        Some(Ok(Message::Close(close))) => gone(match close {
            Some(c) if !c.reason.is_empty() => format!("was closed ({})", c.reason),
            _ => "was closed".into(),
        }),
        Some(Ok(Message::Binary(_))) => Err(protocol::violation(
            dialect,
            "a binary frame (the protocol's messages are JSON text)",
        )),
        Some(Ok(_)) => Ok(None),
    }
}
