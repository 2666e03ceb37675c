//! One connection of a streaming network provider (a turn's or a reply's WebSocket), on the I/O
//! runtime: sending with a deadline, telling what each frame from the server means (text to
//! handle, a lost connection worth reconnecting, a vendor error), reconnecting with the
//! backend's retry rules, and closing properly once the work is done.
//!
//! The rule for how a stream ends: a Close frame with 1000 when the server may end the stream
//! (the client asked it to) is done; the connection ending without a Close frame, or closed early
//! with 1000 or with a code that says the server is going away or restarting (1001, 1012, 1013),
//! is a lost connection (`VB_ERR_CONNECTION_FAILED`, reconnected); any other Close frame is a
//! vendor error (`VB_ERR_PROVIDER` with the code and reason).

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::config::RetryConfig;
use crate::error::{Error, Result, VbStatus};
use crate::net::{self, WebSocket};

/// The receiving half of a connection.
pub type Incoming = SplitStream<WebSocket>;

/// How a connection ended, when not with a fatal error.
#[derive(Debug)]
pub enum Ending {
    /// The server ended the stream when it was asked to: the work is complete.
    Done,
    /// The connection was lost; reconnecting may complete the work.
    Lost(Error),
}

/// What one frame from the server means to the provider.
#[derive(Debug)]
pub enum Frame {
    /// A text message.
    Text(Utf8Bytes),
    /// The stream ended.
    Ended(Ending),
    /// Nothing to handle (ping and pong; tungstenite answers pings itself).
    Nothing,
}

/// The sending half of one connection, with what its errors need to say.
pub struct Link {
    provider: &'static str,
    shown_url: String,
    timeout: Duration,
    tx: SplitSink<WebSocket, Message>,
}

impl Link {
    /// Splits `socket` (opened to `url` for `provider`) into the link and the incoming frames.
    /// `timeout` bounds every send and is the provider's deadline for answers.
    pub fn new(
        provider: &'static str,
        url: &str,
        timeout: Duration,
        socket: WebSocket,
    ) -> (Link, Incoming) {
        let (tx, rx) = socket.split();
        let link = Link {
            provider,
            shown_url: net::redact_url(url),
            timeout,
            tx,
        };
        (link, rx)
    }

    /// The deadline of sends and answers.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `message` within the timeout. The outer error is fatal (`VB_ERR_TIMEOUT`: the
    /// server takes nothing); the inner one means the connection is lost.
    pub async fn send(&mut self, message: Message) -> Result<Result<(), Error>> {
        match tokio::time::timeout(self.timeout, self.tx.send(message)).await {
            Err(_) => Err(Error::new(
                VbStatus::VB_ERR_TIMEOUT,
                format!(
                    "{}: {} took nothing for {} ms",
                    self.provider,
                    self.shown_url,
                    self.timeout.as_millis()
                ),
            )),
            Ok(Err(e)) => Ok(Err(self.lost(format!("sending failed: {e}")))),
            Ok(Ok(())) => Ok(Ok(())),
        }
    }

    /// `VB_ERR_CONNECTION_FAILED`: the connection was lost, because of `why`.
    pub fn lost(&self, why: impl std::fmt::Display) -> Error {
        Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!(
                "{}: lost the connection to {}: {why}",
                self.provider, self.shown_url
            ),
        )
    }

    /// `VB_ERR_TIMEOUT`: the server did not answer within the timeout after `after`.
    pub fn no_answer(&self, after: &str) -> Error {
        Error::new(
            VbStatus::VB_ERR_TIMEOUT,
            format!(
                "{}: no answer from {} within {} ms after {after}",
                self.provider,
                self.shown_url,
                self.timeout.as_millis()
            ),
        )
    }

    /// What `frame` (the next item of [`Incoming`]) means; `may_end` says whether the server may
    /// end the stream now. A binary frame is an error: every vendor here answers in JSON.
    pub fn frame(
        &self,
        frame: Option<Result<Message, tungstenite::Error>>,
        may_end: bool,
    ) -> Result<Frame> {
        match frame {
            None => Ok(Frame::Ended(Ending::Lost(self.lost("the stream ended")))),
            Some(Err(e)) => Ok(Frame::Ended(Ending::Lost(self.lost(e)))),
            Some(Ok(Message::Text(text))) => Ok(Frame::Text(text)),
            Some(Ok(Message::Close(close))) => self.on_close(close, may_end).map(Frame::Ended),
            Some(Ok(Message::Binary(_))) => Err(Error::provider(
                self.provider,
                "malformed message from the server: a binary message where JSON was expected",
            )),
            Some(Ok(_)) => Ok(Frame::Nothing),
        }
    }

    fn on_close(&self, close: Option<CloseFrame>, may_end: bool) -> Result<Ending> {
        let (code, reason) = match &close {
            Some(f) => (f.code, f.reason.as_str()),
            None => (CloseCode::Status, ""),
        };
        let number = u16::from(code);
        match code {
            CloseCode::Normal if may_end => Ok(Ending::Done),
            CloseCode::Normal
            | CloseCode::Away
            | CloseCode::Restart
            | CloseCode::Again
            | CloseCode::Status => Ok(Ending::Lost(self.lost(format!(
                "the server closed the stream early ({number} {reason})"
            )))),
            _ => Err(Error::provider(
                self.provider,
                format!("the server closed the stream with {number} {reason}"),
            )),
        }
    }

    /// Completes the WebSocket closing handshake of a connection whose work is done, in the
    /// background: sends (or answers) the Close frame and reads until the server's, within the
    /// timeout, so that the server sees an orderly end rather than a dropped connection (which
    /// is what a barge-in looks like).
    pub fn close(mut self, mut incoming: Incoming) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(self.timeout, async {
                let _ = self.tx.close().await;
                while let Some(Ok(_)) = incoming.next().await {}
            })
            .await;
        });
    }
}

/// Before reconnecting after `lost`: counts the reconnection and waits the backoff, or gives up
/// with `lost` once the retry rules allow no more (`retry.max_attempts` connections in all).
pub async fn before_reconnecting(
    retry: &RetryConfig,
    reconnections: &mut u32,
    lost: Error,
) -> Result<()> {
    *reconnections += 1;
    if *reconnections >= retry.max_attempts {
        tracing::warn!(
            reconnections = *reconnections,
            "{}; giving up",
            lost.message()
        );
        return Err(Error::new(
            lost.status(),
            format!("{} (after {reconnections} reconnections)", lost.message()),
        ));
    }
    let wait = net::backoff(retry, *reconnections);
    tracing::info!(
        reconnection = *reconnections,
        retry_in_ms = wait.as_millis() as u64,
        "{}; reconnecting",
        lost.message()
    );
    tokio::time::sleep(wait).await;
    Ok(())
}

/// Waits until `deadline`; forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
