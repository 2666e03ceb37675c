//! LiveKit's signal connection: the `/rtc` WebSocket carrying protobuf `SignalRequest` /
//! `SignalResponse` messages (`livekit-protocol`), from joining a room to leaving it.
//!
//! Joining: a WebSocket to `<url>/rtc?…` with the agent's token as `Authorization: Bearer`; the
//! server's first message is a `JoinResponse` (or a `LeaveRequest` saying why not). A token the
//! server refuses is an HTTP 401 on the upgrade: `VB_ERR_UNAUTHORIZED`. A server that cannot be
//! reached after the retry policy is `VB_ERR_TIMEOUT`. Resuming after a lost connection uses the
//! same URL with `reconnect=1&sid=<participant sid>`, answered by a `ReconnectResponse`.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Request;
use proto::signal_response::Message as Response;
use tokio_tungstenite::tungstenite::Message;

use super::settings::{NAME, Settings};
use crate::config::Secret;
use crate::error::{Error, Result, VbStatus};
use crate::net::{self, WebSocket, redact_url};

/// The signalling protocol version this client speaks.
const PROTOCOL: u32 = 16;

/// The sending half of a signal connection.
pub struct SignalTx {
    sink: SplitSink<WebSocket, Message>,
}

/// The receiving half of a signal connection.
pub struct SignalRx {
    stream: SplitStream<WebSocket>,
}

/// What the server answered a join with.
pub enum Joined {
    /// A new participant in the room.
    Join(Box<proto::JoinResponse>),
    /// The server kept the participant of an earlier connection (resume).
    Resumed(Box<proto::ReconnectResponse>),
}

/// Connects to `room`'s server with `token` and waits for its answer; `resume` is the participant
/// sid of an earlier connection to resume.
pub async fn connect(
    settings: &Settings,
    url: &str,
    token: &Secret,
    resume: Option<&str>,
) -> Result<(Joined, SignalTx, SignalRx)> {
    let mut rtc = format!(
        "{url}/rtc?sdk=rust&version={}&protocol={PROTOCOL}&auto_subscribe=1&adaptive_stream=0",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(sid) = resume {
        rtc.push_str("&reconnect=1&sid=");
        rtc.push_str(sid);
    }
    let auth = format!("Bearer {}", token.expose());
    let socket = net::connect_websocket(
        NAME,
        &rtc,
        &[("Authorization", &auth)],
        settings.timeout,
        &settings.retry,
    )
    .await
    .map_err(|e| unreachable_is_a_timeout(e, url))?;
    let (sink, stream) = socket.split();
    let (tx, mut rx) = (SignalTx { sink }, SignalRx { stream });
    let first = tokio::time::timeout(settings.timeout, rx.recv())
        .await
        .map_err(|_| {
            Error::new(
                VbStatus::VB_ERR_TIMEOUT,
                format!(
                    "{NAME}: {} did not answer the join within {} ms",
                    redact_url(url),
                    settings.timeout.as_millis()
                ),
            )
        })?;
    match first {
        Some(Ok(Response::Join(join))) => Ok((Joined::Join(Box::new(join)), tx, rx)),
        Some(Ok(Response::Reconnect(reconnect))) => {
            Ok((Joined::Resumed(Box::new(reconnect)), tx, rx))
        }
        Some(Ok(Response::Leave(leave))) => Err(refused(&leave)),
        Some(Ok(other)) => Err(Error::new(
            VbStatus::VB_ERR_PROVIDER,
            format!("{NAME}: the server answered the join with {}", kind(&other)),
        )),
        Some(Err(e)) => Err(e),
        None => Err(Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!(
                "{NAME}: {} closed the connection before answering the join",
                redact_url(url)
            ),
        )),
    }
}

/// A server that cannot be reached within the retry policy is a timeout, as the LiveKit API
/// this project descends from reports it (`connection_timeout`).
fn unreachable_is_a_timeout(e: Error, url: &str) -> Error {
    if e.status() == VbStatus::VB_ERR_CONNECTION_FAILED {
        Error::new(
            VbStatus::VB_ERR_TIMEOUT,
            format!(
                "{NAME}: the server at {} could not be reached within the retry policy: {}",
                redact_url(url),
                e.message()
            ),
        )
    } else {
        e
    }
}

/// Why the server turned a join away.
fn refused(leave: &proto::LeaveRequest) -> Error {
    Error::new(
        VbStatus::VB_ERR_CONNECTION_FAILED,
        format!(
            "{NAME}: the server refused to let the agent join ({})",
            leave_reason(leave.reason)
        ),
    )
}

/// A readable name for a `DisconnectReason`.
pub fn leave_reason(reason: i32) -> String {
    proto::DisconnectReason::try_from(reason)
        .map(|r| r.as_str_name().to_lowercase().replace('_', " "))
        .unwrap_or_else(|_| format!("reason {reason}"))
}

/// The name of a response, for messages.
pub fn kind(response: &Response) -> &'static str {
    match response {
        Response::Join(_) => "join",
        Response::Answer(_) => "answer",
        Response::Offer(_) => "offer",
        Response::Trickle(_) => "trickle",
        Response::Update(_) => "participant update",
        Response::TrackPublished(_) => "track published",
        Response::Leave(_) => "leave",
        Response::Reconnect(_) => "reconnect",
        _ => "another message",
    }
}

impl SignalTx {
    /// Sends one request. A failure means the connection is gone.
    pub async fn send(&mut self, request: Request) -> Result<()> {
        let bytes = proto::SignalRequest {
            message: Some(request),
        }
        .encode_to_vec();
        self.sink
            .send(Message::binary(bytes))
            .await
            .map_err(|e| lost(&e.to_string()))
    }

    /// Says goodbye (a client-initiated leave) and closes the socket, within `within`.
    pub async fn leave(mut self, within: Duration) {
        let leave = Request::Leave(proto::LeaveRequest {
            can_reconnect: false,
            reason: proto::DisconnectReason::ClientInitiated as i32,
            ..proto::LeaveRequest::default()
        });
        let _ = tokio::time::timeout(within, async {
            let _ = self.send(leave).await;
            let _ = self.sink.close().await;
        })
        .await;
    }
}

impl SignalRx {
    /// The next response; `None` once the connection has ended. A message that does not decode
    /// is an error and the connection goes on.
    pub async fn recv(&mut self) -> Option<Result<Response>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(lost(&e.to_string()))),
            };
            match message {
                Message::Binary(bytes) => match decode_response(&bytes) {
                    Some(response) => return Some(response),
                    None => continue,
                },
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }
}

/// Decodes one binary signal message; `None` for a message of a newer protocol than this client
/// knows (nothing to do), `VB_ERR_PROVIDER` for bytes that are not a `SignalResponse`.
pub(crate) fn decode_response(bytes: &[u8]) -> Option<Result<Response>> {
    match proto::SignalResponse::decode(bytes) {
        Ok(proto::SignalResponse {
            message: Some(response),
        }) => Some(Ok(response)),
        Ok(_) => None,
        Err(e) => Some(Err(Error::new(
            VbStatus::VB_ERR_PROVIDER,
            format!("{NAME}: a signal message did not decode: {e}"),
        ))),
    }
}

/// The signal connection broke.
pub fn lost(why: &str) -> Error {
    Error::new(
        VbStatus::VB_ERR_CONNECTION_FAILED,
        format!("{NAME}: lost the signal connection: {why}"),
    )
}

/// Milliseconds since the Unix epoch (for pings).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
