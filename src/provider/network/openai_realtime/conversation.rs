//! One session's conversation with the Realtime API server, across reconnections: the loop
//! that sends the user's audio and turns, and keeps track of responses and cancels. What the
//! server sends is read in [`server`].

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod server;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Config, NAME, RATE, SERVER_VAD_PAD_MS, SESSION_UPDATE_ID, TurnDetection};
use crate::dsp::resample::StreamResampler;
use crate::error::{Error, Result, VbStatus};
use crate::net::{WebSocket, connect_websocket, scrub};
use crate::provider::{S2sEvent, S2sInput, S2sSession};

/// The response the server is streaming.
struct Active {
    id: String,
    /// The assistant item carrying its audio, once known.
    audio: Option<Spoken>,
}

/// Audio of one assistant item as delivered to the session, to truncate it on barge-in.
#[derive(Clone)]
struct Spoken {
    item_id: String,
    first_audio: Instant,
    samples: u64,
}

impl Spoken {
    /// How much of the item the user has heard by now (estimated: playout starts when the first
    /// audio arrives and cannot run ahead of the audio delivered), or `None` once all of it has
    /// been played.
    fn heard_ms(&self) -> Option<u64> {
        let delivered_ms = self.samples * 1000 / u64::from(RATE);
        let elapsed_ms = self.first_audio.elapsed().as_millis() as u64;
        (elapsed_ms < delivered_ms).then_some(elapsed_ms)
    }
}

/// What woke the session loop.
enum Wake {
    Input(Option<S2sInput>),
    Server(Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Deadline,
}

/// One session's conversation with the server, across reconnections.
pub(super) struct Conversation {
    config: Arc<Config>,
    input: mpsc::UnboundedReceiver<S2sInput>,
    events: mpsc::UnboundedSender<S2sEvent>,
    resampler: StreamResampler,
    /// 24 kHz PCM bytes of the user turn not yet committed, appended again after a reconnection.
    uncommitted: Vec<u8>,
    in_turn: bool,
    /// Whether the server created a response since the current turn began (server VAD).
    answered_in_turn: bool,
    /// A response is expected and not created yet: the `event_id` of its `response.create`, or
    /// empty when the server creates it by itself (server VAD).
    requested: Option<String>,
    /// A cancel was sent for the requested response before it was created.
    cancel_requested: bool,
    /// Committed turns whose `response.create` waits for the active response to end.
    queued_creates: u32,
    active: Option<Active>,
    /// Responses cancelled whose `response.done` has not come yet: their output is dropped.
    cancelled: Vec<String>,
    /// The last assistant audio item, which may still be playing.
    last_spoken: Option<Spoken>,
    /// When the server must next be heard from (while a response is requested or under way).
    deadline: Option<Instant>,
    /// The server refused the session settings: this connection is not used.
    refused: bool,
    next_event_id: u64,
}

impl Conversation {
    pub(super) fn new(config: Arc<Config>, session: S2sSession) -> Self {
        Conversation {
            resampler: StreamResampler::new(session.input_rate, RATE),
            config,
            input: session.input,
            events: session.events,
            uncommitted: Vec::new(),
            in_turn: false,
            answered_in_turn: false,
            requested: None,
            cancel_requested: false,
            queued_creates: 0,
            active: None,
            cancelled: Vec::new(),
            last_spoken: None,
            deadline: None,
            refused: false,
            next_event_id: 0,
        }
    }

    pub(super) async fn run(mut self) -> Result<()> {
        let mut socket: Option<WebSocket> = None;
        let mut connect_now = true;
        loop {
            if socket.is_none() && connect_now {
                connect_now = false;
                match self.connect().await {
                    Ok(ws) => socket = Some(ws),
                    Err(e) => self.emit(S2sEvent::Error(e)),
                }
            }
            let Some(ws) = socket.as_mut() else {
                match self.input.recv().await {
                    None => return Ok(()),
                    Some(input) => connect_now = self.offline(input),
                }
                continue;
            };
            let deadline = self.deadline;
            let wake = tokio::select! {
                input = self.input.recv() => Wake::Input(input),
                message = ws.next() => Wake::Server(message),
                () = sleep_until(deadline) => Wake::Deadline,
            };
            let outcome = match wake {
                Wake::Input(None) => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                Wake::Input(Some(input)) => self.on_input(ws, input).await,
                Wake::Server(message) => self.on_message(ws, message).await,
                Wake::Deadline => Err(Error::new(
                    VbStatus::VB_ERR_TIMEOUT,
                    format!(
                        "{NAME}: no answer from {} within {} ms",
                        self.config.shown,
                        self.config.timeout.as_millis()
                    ),
                )),
            };
            if let Err(e) = outcome {
                socket = None;
                if std::mem::take(&mut self.refused) {
                    // Running with the server's defaults instead would be another session than
                    // the one configured: report it, and try again at the next turn.
                    self.emit(S2sEvent::Error(e));
                    self.connection_lost(None);
                    connect_now = false;
                } else {
                    self.connection_lost(Some(e));
                    connect_now = true;
                }
            }
        }
    }

    /// Opens the connection, configures the session and appends the uncommitted turn again.
    async fn connect(&mut self) -> Result<WebSocket> {
        let c = self.config.clone();
        let auth = format!("Bearer {}", c.key.expose());
        let mut ws = connect_websocket(
            NAME,
            &c.url,
            &[("Authorization", auth.as_str())],
            c.timeout,
            &c.retry,
        )
        .await?;
        self.send(
            &mut ws,
            json!({"type": "session.update", "event_id": SESSION_UPDATE_ID, "session": c.session}),
        )
        .await?;
        self.await_session_updated(&mut ws).await?;
        let replay = std::mem::take(&mut self.uncommitted);
        // One second of audio per event, well under the API's 15 MiB per event.
        for piece in replay.chunks(RATE as usize * 2) {
            if let Err(e) = self.append(&mut ws, piece).await {
                self.uncommitted = replay; // still not committed: for the next connection
                return Err(e);
            }
        }
        Ok(ws)
    }

    /// Waits for the server to accept `session.update` (`session.updated`), so that nothing of a
    /// turn is sent on a connection whose settings the server then refuses. A refusal is the
    /// server's error; no answer within `timeout_ms` is `VB_ERR_TIMEOUT`.
    async fn await_session_updated(&mut self, ws: &mut WebSocket) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| {
                    Error::new(
                        VbStatus::VB_ERR_TIMEOUT,
                        format!(
                            "{NAME}: {} did not confirm the session settings within {} ms",
                            self.config.shown,
                            self.config.timeout.as_millis()
                        ),
                    )
                })?;
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                None | Some(Ok(Message::Close(_))) => return Err(self.lost("closed")),
                Some(Err(e)) => return Err(self.lost(&e.to_string())),
                Some(Ok(_)) => continue,
            };
            let event: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            match event["type"].as_str() {
                Some("session.updated") => return Ok(()),
                Some("error") if event["error"]["event_id"] == SESSION_UPDATE_ID => {
                    return Err(self
                        .server_error("the server refused the session settings", &event["error"]));
                }
                _ => {} // session.created and the like
            }
        }
    }

    /// `VB_ERR_CONNECTION_FAILED`: the connection ended for `reason`.
    fn lost(&self, reason: &str) -> Error {
        Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!(
                "{NAME}: the connection to {} was lost ({reason})",
                self.config.shown
            ),
        )
    }

    /// Input while there is no connection. Returns whether to try connecting again now (at the
    /// start of the next user turn).
    fn offline(&mut self, input: S2sInput) -> bool {
        match input {
            S2sInput::Audio(pcm) => {
                let starts_turn = !self.in_turn;
                self.in_turn = true;
                let resampled = self.resampler.push(&pcm);
                self.uncommitted.extend(pcm_bytes(&resampled));
                starts_turn
            }
            S2sInput::EndOfTurn => {
                // Nobody can answer this turn: end it so that the session listens again.
                self.in_turn = false;
                self.uncommitted.clear();
                self.emit(S2sEvent::ResponseDone);
                false
            }
            S2sInput::CancelResponse => {
                self.emit(S2sEvent::ResponseDone);
                false
            }
        }
    }

    async fn on_input(&mut self, ws: &mut WebSocket, input: S2sInput) -> Result<()> {
        match input {
            S2sInput::Audio(pcm) => {
                if !self.in_turn {
                    self.in_turn = true;
                    self.answered_in_turn = false;
                }
                let resampled = self.resampler.push(&pcm);
                let bytes = pcm_bytes(&resampled);
                self.append(ws, &bytes).await
            }
            S2sInput::EndOfTurn => {
                self.in_turn = false;
                let rest = pcm_bytes(&self.resampler.finish());
                self.append(ws, &rest).await?;
                match self.config.turn_detection {
                    TurnDetection::Engine => self.end_turn(ws).await,
                    TurnDetection::Server => {
                        let pad = vec![0u8; (RATE * SERVER_VAD_PAD_MS / 1000 * 2) as usize];
                        self.append(ws, &pad).await?;
                        if !self.answered_in_turn && !self.busy() {
                            self.requested = Some(String::new()); // the server creates it
                            self.touch();
                        }
                        Ok(())
                    }
                }
            }
            S2sInput::CancelResponse => self.cancel(ws).await,
        }
    }

    /// Engine turn detection: commit the turn and ask for the answer (after the response under
    /// way, if any).
    async fn end_turn(&mut self, ws: &mut WebSocket) -> Result<()> {
        if self.uncommitted.is_empty() {
            self.emit(S2sEvent::ResponseDone); // nothing was said: nothing to answer
            return Ok(());
        }
        self.send(ws, json!({"type": "input_audio_buffer.commit"}))
            .await?;
        self.uncommitted.clear();
        if self.busy() {
            self.queued_creates += 1;
            Ok(())
        } else {
            self.create_response(ws).await
        }
    }

    async fn create_response(&mut self, ws: &mut WebSocket) -> Result<()> {
        self.next_event_id += 1;
        let event_id = format!("vb_create_{}", self.next_event_id);
        self.send(ws, json!({"type": "response.create", "event_id": event_id}))
            .await?;
        self.requested = Some(event_id);
        self.touch();
        Ok(())
    }

    /// Barge-in: answer the cancel at once, then stop what the server is doing.
    async fn cancel(&mut self, ws: &mut WebSocket) -> Result<()> {
        self.emit(S2sEvent::ResponseDone);
        self.queued_creates = 0;
        if let Some(active) = self.active.take() {
            self.send(
                ws,
                json!({"type": "response.cancel", "response_id": active.id}),
            )
            .await?;
            self.cancelled.push(active.id);
        } else if self.requested.is_some() && !self.cancel_requested {
            self.send(ws, json!({"type": "response.cancel"})).await?;
            self.cancel_requested = true;
        }
        if let Some(spoken) = self.last_spoken.take() {
            if let Some(heard_ms) = spoken.heard_ms() {
                self.send(
                    ws,
                    json!({
                        "type": "conversation.item.truncate",
                        "item_id": spoken.item_id,
                        "content_index": 0,
                        "audio_end_ms": heard_ms,
                    }),
                )
                .await?;
            }
        }
        if self.active.is_none() && self.requested.is_none() {
            self.deadline = None;
        }
        Ok(())
    }

    /// Whether `response_id` is the active response (not a cancelled or unknown one).
    fn is_active(&self, response_id: &str) -> bool {
        self.active.as_ref().is_some_and(|a| a.id == response_id)
    }

    fn busy(&self) -> bool {
        self.requested.is_some() || self.active.is_some()
    }

    /// The server was heard from (or was asked something): restart its deadline.
    fn touch(&mut self) {
        self.deadline = Some(Instant::now() + self.config.timeout);
    }

    async fn append(&mut self, ws: &mut WebSocket, pcm: &[u8]) -> Result<()> {
        self.uncommitted.extend_from_slice(pcm);
        if pcm.is_empty() {
            return Ok(());
        }
        let audio = BASE64.encode(pcm);
        self.send(
            ws,
            json!({"type": "input_audio_buffer.append", "audio": audio}),
        )
        .await
    }

    /// Sends one client event within the deadline.
    async fn send(&mut self, ws: &mut WebSocket, event: Value) -> Result<()> {
        let shown = &self.config.shown;
        match tokio::time::timeout(
            self.config.timeout,
            ws.send(Message::text(event.to_string())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{NAME}: the connection to {shown} was lost ({e})"),
            )),
            Err(_) => Err(Error::new(
                VbStatus::VB_ERR_TIMEOUT,
                format!(
                    "{NAME}: {shown} took no data for {} ms",
                    self.config.timeout.as_millis()
                ),
            )),
        }
    }

    /// Reports `event`. An error may quote what the server sent, which may quote the key: the
    /// key is blanked out of every error message here.
    fn emit(&self, event: S2sEvent) {
        let event = match event {
            S2sEvent::Error(e) => {
                S2sEvent::Error(Error::new(e.status(), scrub(e.message(), &self.config.key)))
            }
            event => event,
        };
        let _ = self.events.send(event);
    }

    fn unreadable(&self, what: &str) -> Error {
        Error::provider(NAME, format!("unreadable server event: {what}"))
    }

    /// `VB_ERR_PROVIDER` with the server's error object (`type`, `code`, `message`).
    fn server_error(&self, what: &str, error: &Value) -> Error {
        let mut labels: Vec<&str> = ["type", "code"]
            .iter()
            .filter_map(|k| error[*k].as_str())
            .collect();
        labels.dedup();
        let message = error["message"].as_str().unwrap_or("no message");
        let message = scrub(message, &self.config.key);
        Error::provider(NAME, format!("{what} ({}): {message}", labels.join(", ")))
    }
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// 16-bit little-endian bytes of `pcm`.
fn pcm_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A client WebSocket on a loopback TCP connection whose other end reads and drops everything:
/// a conversation to drive by hand (tests, fuzzing). Needs a tokio runtime with I/O.
#[cfg(any(test, feature = "fuzzing"))]
async fn loopback_socket() -> WebSocket {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback");
    let address = listener.local_addr().expect("loopback address");
    let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (mut server, _) = server.expect("loopback accept");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(server.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let client = MaybeTlsStream::Plain(client.expect("loopback connect"));
    WebSocketStream::from_raw_socket(client, Role::Client, None).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::OpenAiRealtime;
    use super::*;
    use crate::provider::ProviderSetup;

    #[test]
    fn heard_audio_is_capped_by_the_audio_delivered() {
        let spoken = Spoken {
            item_id: "item_1".into(),
            first_audio: Instant::now() - Duration::from_millis(300),
            samples: u64::from(RATE), // one second delivered
        };
        let heard = spoken.heard_ms().unwrap();
        assert!((300..1000).contains(&heard), "{heard}");
        let played = Spoken {
            samples: u64::from(RATE) / 10,
            ..spoken
        };
        assert_eq!(
            played.heard_ms(),
            None,
            "100 ms delivered 300 ms ago were all played"
        );
    }

    #[tokio::test]
    async fn the_key_never_shows_in_errors_even_when_the_server_echoes_it() {
        // Found by the fuzz target openai_realtime: a server message that is not JSON was quoted
        // in the error as it came (cut after 80 characters, possibly inside the key), and the
        // type and code of an error event were not blanked.
        let key = "sk-test-realtime-0123456789abcdef";
        let config = serde_json::json!({"api_key": key, "base_url": "ws://127.0.0.1:9"});
        let provider = OpenAiRealtime::new(&ProviderSetup::new(&config)).unwrap();
        let (_input, input) = mpsc::unbounded_channel();
        let (events, mut reported) = mpsc::unbounded_channel();
        let session = S2sSession {
            input_rate: 16_000,
            input,
            events,
        };
        let mut conversation = Conversation::new(provider.config.clone(), session);
        let mut ws = loopback_socket().await;
        let error = json!({"type": "error", "error": {"type": key, "code": key, "message": key}});
        for text in [
            format!("{{not json {key}"),
            format!("{}{key}", "x".repeat(70)),
            error.to_string(),
        ] {
            let message = Some(Ok(Message::text(text)));
            conversation.on_message(&mut ws, message).await.unwrap();
        }
        let mut errors = 0;
        while let Ok(event) = reported.try_recv() {
            let S2sEvent::Error(e) = event else {
                panic!("{event:?}");
            };
            assert!(!e.message().contains(&key[..10]), "{}", e.message());
            errors += 1;
        }
        assert_eq!(errors, 3);
    }
}
