//! Fuzzing entry (feature `fuzzing`): a session's conversation driven by what the server sends
//! ([`Conversation::on_message`]) and what the session does ([`Conversation::on_input`],
//! [`Conversation::offline`]), with connection losses handled as the session loop handles them.
//! What the conversation sends goes to a loopback peer that reads and drops it
//! ([`loopback_socket`]).

use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::super::{OpenAiRealtime, RATE};
use super::{Conversation, loopback_socket};
use crate::net::WebSocket;
use crate::provider::{ProviderSetup, S2sEvent, S2sInput, S2sSession};

/// The API key of the provider: no error message may show it.
pub const KEY: &str = "sk-fuzz-realtime-0123456789";

/// One thing that happens to a session.
#[derive(Debug, Clone)]
pub enum Step {
    /// A text frame from the server.
    Server(String),
    /// A binary frame from the server.
    ServerBinary,
    /// The server closes the connection.
    Closed,
    /// Input from the session.
    Input(S2sInput),
    /// The connection is opened again (when it was lost): the uncommitted turn is appended again.
    Reconnect,
}

/// The one loopback connection of the process (a connection per run would run out of ports at
/// thousands of runs a second).
async fn loopback() -> &'static Mutex<WebSocket> {
    static SOCKET: OnceCell<Mutex<WebSocket>> = OnceCell::const_new();
    SOCKET
        .get_or_init(|| async { Mutex::new(loopback_socket().await) })
        .await
}

/// Runs `steps` through one session's conversation (`turn_detection` `"server"` when
/// `server_vad`, else `"engine"`; input at 16 kHz) and returns the events it reported.
pub fn conversation(steps: Vec<Step>, server_vad: bool) -> Vec<S2sEvent> {
    crate::fuzzing::block_on(async move {
        let config = serde_json::json!({
            "api_key": KEY,
            "base_url": "ws://127.0.0.1:9",
            "turn_detection": if server_vad { "server" } else { "engine" },
        });
        let provider = OpenAiRealtime::new(&ProviderSetup::new(&config)).expect("valid config");
        let (_input_tx, input) = mpsc::unbounded_channel();
        let (events, mut events_rx) = mpsc::unbounded_channel();
        let session = S2sSession {
            input_rate: 16_000,
            input,
            events,
        };
        let mut conversation = Conversation::new(Arc::clone(&provider.config), session);
        let mut ws = loopback().await.lock().await;
        let mut connected = true;
        for step in steps {
            let outcome = match step {
                Step::Server(_) | Step::ServerBinary | Step::Closed if !connected => Ok(()),
                Step::Server(text) => {
                    let message = Some(Ok(Message::text(text)));
                    conversation.on_message(&mut ws, message).await
                }
                Step::ServerBinary => {
                    let message = Some(Ok(Message::binary(vec![0u8; 3])));
                    conversation.on_message(&mut ws, message).await
                }
                Step::Closed => conversation.on_message(&mut ws, None).await,
                Step::Input(input) if !connected => {
                    conversation.offline(input);
                    Ok(())
                }
                Step::Input(input) => conversation.on_input(&mut ws, input).await,
                Step::Reconnect if connected => Ok(()),
                Step::Reconnect => {
                    connected = true;
                    let replay = std::mem::take(&mut conversation.uncommitted);
                    let mut outcome = Ok(());
                    for piece in replay.chunks(RATE as usize * 2) {
                        outcome = conversation.append(&mut ws, piece).await;
                        if outcome.is_err() {
                            break;
                        }
                    }
                    outcome
                }
            };
            // As the session loop does with an error: the connection is dropped.
            if let Err(e) = outcome {
                connected = false;
                if std::mem::take(&mut conversation.refused) {
                    conversation.emit(S2sEvent::Error(e));
                    conversation.connection_lost(None);
                } else {
                    conversation.connection_lost(Some(e));
                }
            }
        }
        let mut reported = Vec::new();
        while let Ok(event) = events_rx.try_recv() {
            reported.push(event);
        }
        reported
    })
}
