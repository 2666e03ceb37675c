//! One call with its session, on the I/O runtime: a task that owns the call's socket and the
//! session's media edge, so that nothing is shared and nothing is locked.
//!
//! - **Caller → session**: each `media` payload is base64-decoded, G.711-decoded to 8 kHz PCM
//!   and pushed into the session's input ring as it comes (the provider sends 20 ms at real-time
//!   pace; the realtime loop converts 8 kHz to its internal rate). Keys pressed become
//!   `VB_EVENT_DTMF`.
//! - **Session → caller**: every 20 ms, one frame (160 samples) of the agent's audio is taken
//!   from the out ring, G.711-encoded and sent as a `media` message — paced in real time, so the
//!   provider holds little more than a frame. When the agent falls silent a `mark` follows
//!   (`reply-N`); the provider echoes it once the caller heard the audio before it, and the call
//!   counts which segments were heard to the end.
//! - **Barge-in**: on the session's `VB_EVENT_INTERRUPTED` a `clear` goes out at once (the
//!   provider drops what it has not played); the out ring was already flushed by the realtime
//!   loop, so nothing queued is sent after it.
//! - **The end**: `stop`, or the connection ending without it, ends the session (`STOPPED` with
//!   the reason; a connection lost without `stop` is also an error). Malformed JSON, an unknown
//!   event, a payload that is not base64, a second `start`: the session ends with an error naming
//!   it, and the connection is closed (code 1002) — that call only.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::NAME;
use super::call::{CallSocket, close, describe, non_text};
use super::protocol::{self, CallStart, Dialect, Inbound, Outbound, excerpt};
use crate::error::{Error, Result, VbStatus};
use crate::event::VbEventKind;
use crate::transport::media::g711::{G711_RATE, Law};
use crate::transport::pending::Attach;
use crate::transport::{MediaEdge, TransportNews};

/// Samples of one 20 ms frame at 8 kHz.
pub const FRAME: usize = (G711_RATE / 50) as usize;
/// The caller's audio kept while the session starts: one second.
const EARLY_AUDIO: usize = G711_RATE as usize;

/// Standard base64, with or without padding (senders differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 G.711 payloads to PCM, in buffers kept from one message to the next.
struct Decoder {
    law: Law,
    bytes: Vec<u8>,
    pcm: Vec<i16>,
}

impl Decoder {
    fn new(law: Law) -> Decoder {
        Decoder {
            law,
            bytes: Vec::with_capacity(FRAME * 2),
            pcm: Vec::with_capacity(FRAME * 2),
        }
    }

    fn decode(&mut self, dialect: Dialect, payload: &str) -> Result<&[i16]> {
        self.bytes.clear();
        BASE64
            .decode_vec(payload.as_bytes(), &mut self.bytes)
            .map_err(|e| {
                protocol::violation(
                    dialect,
                    format!(
                        "a 'media' payload is not base64 ({e}): {}",
                        excerpt(payload)
                    ),
                )
            })?;
        self.pcm.resize(self.bytes.len(), 0);
        self.law.decode(&self.bytes, &mut self.pcm);
        Ok(&self.pcm)
    }
}

/// What the caller sent while the session was starting.
pub struct Early {
    decoder: Decoder,
    /// The last second of the caller's audio.
    audio: VecDeque<i16>,
    /// Keys pressed.
    dtmf: Vec<String>,
}

impl Early {
    /// Nothing yet, for a call in `law`.
    pub fn new(law: Law) -> Early {
        Early {
            decoder: Decoder::new(law),
            audio: VecDeque::with_capacity(EARLY_AUDIO),
            dtmf: Vec::new(),
        }
    }

    /// One frame while the session starts: `Ok(Some(reason))` when the call ended (`stop`, or
    /// the connection went), `Err` when the provider broke the protocol.
    pub fn on_frame(
        &mut self,
        dialect: Dialect,
        frame: Option<std::result::Result<Message, tungstenite::Error>>,
    ) -> Result<Option<String>> {
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            other => return non_text(dialect, other),
        };
        match protocol::parse(dialect, &text)? {
            Inbound::Media {
                caller: true,
                payload,
            } => {
                let pcm = self.decoder.decode(dialect, &payload)?;
                let overflow = (self.audio.len() + pcm.len()).saturating_sub(EARLY_AUDIO);
                self.audio.drain(..overflow.min(self.audio.len()));
                self.audio.extend(pcm.iter().rev().take(EARLY_AUDIO).rev());
            }
            Inbound::Media { caller: false, .. } => {}
            Inbound::Dtmf(digit) => self.dtmf.push(digit),
            Inbound::Stop => {
                return Ok(Some(format!(
                    "{NAME}: the {} call ended (stop)",
                    dialect.name()
                )));
            }
            Inbound::Error(error) => {
                tracing::warn!("{NAME}: {} reported an error: {error}", dialect.name());
            }
            other @ (Inbound::Connected | Inbound::Start(_) | Inbound::Mark(_)) => {
                return Err(protocol::violation(
                    dialect,
                    format!("{} after 'start'", describe(&other)),
                ));
            }
        }
        Ok(None)
    }
}

/// The marks sent after each segment of the agent's audio, and what became of them.
#[derive(Default)]
struct Marks {
    /// Segments of agent audio begun.
    segments: u64,
    sent: u64,
    /// Marks not echoed yet, with whether a `clear` went out after them.
    outstanding: VecDeque<(u64, bool)>,
    /// Segments the caller heard to the end (their mark came back, no `clear` in between).
    heard: u64,
    /// Segments cut off: interrupted while being sent, or cleared before the provider played
    /// them.
    cut: u64,
    /// Echoes naming no mark of ours.
    unknown: u64,
}

impl Marks {
    fn next(&mut self) -> String {
        self.sent += 1;
        self.outstanding.push_back((self.sent, false));
        format!("reply-{}", self.sent)
    }

    fn clear(&mut self) {
        for (_, cleared) in &mut self.outstanding {
            *cleared = true;
        }
    }

    /// A mark came back; `false` when it names none of ours.
    fn echoed(&mut self, name: &str) -> bool {
        let Some(n) = name
            .strip_prefix("reply-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            self.unknown += 1;
            return false;
        };
        if !self.outstanding.iter().any(|(m, _)| *m == n) {
            self.unknown += 1;
            return false;
        }
        // Echoes come in order: earlier marks not echoed are settled with this one.
        while let Some((m, cleared)) = self.outstanding.pop_front() {
            if cleared {
                self.cut += 1;
            } else {
                self.heard += 1;
            }
            if m == n {
                break;
            }
        }
        true
    }

    fn summary(&self, interruptions: u64, keys: u64) -> String {
        format!(
            "the agent spoke {} segment(s): {} heard to the end, {} cut off, {} unconfirmed; {} interruption(s), {} key(s) pressed",
            self.segments,
            self.heard,
            self.cut,
            self.outstanding.len(),
            interruptions,
            keys
        )
    }
}

/// Why the stream ended.
enum Exit {
    /// The session closed the transport (the host or the backend stopped it).
    Closed,
    /// The provider sent `stop`.
    Stopped,
    /// The connection ended (or failed) without `stop`: why.
    Gone(String),
    /// The provider broke the protocol.
    Broken(Error),
}

/// One call with its session.
pub struct Stream {
    socket: CallSocket,
    dialect: Dialect,
    call_id: String,
    out: Outbound,
    law: Law,
    edge: MediaEdge,
    close: oneshot::Receiver<()>,
    _done: crossbeam_channel::Sender<()>,
    decoder: Decoder,
    base64: String,
    marks: Marks,
    /// Whether the last tick sent agent audio (a segment is open).
    speaking: bool,
    media_in: u64,
    media_reported: u64,
    other_track: u64,
    interruptions: u64,
    keys: u64,
}

impl Stream {
    /// The call `start` began, attached to its session; `early` is what came meanwhile.
    pub fn new(
        socket: CallSocket,
        dialect: Dialect,
        start: &CallStart,
        attach: Attach,
        early: Early,
    ) -> Stream {
        let Attach { edge, close, done } = attach;
        let mut stream = Stream {
            socket,
            dialect,
            call_id: start.call_id.clone(),
            out: Outbound::new(dialect, &start.stream_id),
            law: start.law,
            edge,
            close,
            _done: done,
            decoder: early.decoder,
            base64: String::with_capacity(FRAME * 2),
            marks: Marks::default(),
            speaking: false,
            media_in: 0,
            media_reported: 0,
            other_track: 0,
            interruptions: 0,
            keys: 0,
        };
        let (a, b) = early.audio.as_slices();
        stream.edge.writer.push(a);
        stream.edge.writer.push(b);
        for digit in early.dtmf {
            stream.key(digit);
        }
        stream
    }

    /// Carries the call until it ends, then tells the session why and closes the connection.
    pub async fn run(mut self) {
        let exit = self.serve().await;
        let source = self.dialect.name();
        let summary = self.marks.summary(self.interruptions, self.keys);
        if self.other_track > 0 {
            tracing::debug!(
                frames = self.other_track,
                "{NAME}: ignored media of a track other than the caller's"
            );
        }
        match exit {
            Exit::Closed => {
                tracing::info!("{NAME}: the session ended the {source} call; {summary}");
                close(&mut self.socket, CloseCode::Normal, "the session ended").await;
            }
            Exit::Stopped => {
                let reason = format!(
                    "{NAME}: the {source} call {} ended (stop); {summary}",
                    self.call_id
                );
                tracing::info!("{reason}");
                self.end(reason, None);
                close(&mut self.socket, CloseCode::Normal, "").await;
            }
            Exit::Gone(why) => {
                let why = format!("{why} without a 'stop' message");
                let reason = format!("{why} (call {}); {summary}", self.call_id);
                tracing::warn!("{reason}");
                self.end(
                    reason,
                    Some(Error::new(VbStatus::VB_ERR_CONNECTION_FAILED, why)),
                );
            }
            Exit::Broken(e) => {
                let reason = format!(
                    "{NAME}: the {source} call {} was closed after a protocol error; {summary}",
                    self.call_id
                );
                tracing::warn!("{reason}: {e}");
                close(&mut self.socket, CloseCode::Protocol, e.message()).await;
                self.end(reason, Some(e));
            }
        }
    }

    fn end(&self, reason: String, error: Option<Error>) {
        let _ = self.edge.news.send(TransportNews::Ended { reason, error });
    }

    async fn serve(&mut self) -> Exit {
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = &mut self.close => return Exit::Closed,
                frame = self.socket.next() => {
                    if let Some(exit) = self.on_frame(frame) {
                        return exit;
                    }
                }
                _ = clock.tick() => {
                    if let Err(e) = self.on_tick().await {
                        return Exit::Gone(e.message().to_owned());
                    }
                }
                event = self.edge.events.recv() => match event {
                    Some(event) if event.kind == VbEventKind::VB_EVENT_INTERRUPTED => {
                        if let Err(e) = self.barge_in().await {
                            return Exit::Gone(e.message().to_owned());
                        }
                    }
                    Some(_) => {}
                    None => return Exit::Closed,
                },
            }
        }
    }

    /// One frame from the provider; `Some` ends the call.
    fn on_frame(
        &mut self,
        frame: Option<std::result::Result<Message, tungstenite::Error>>,
    ) -> Option<Exit> {
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            other => {
                return match non_text(self.dialect, other) {
                    Ok(None) => None,
                    Ok(Some(why)) => Some(Exit::Gone(why)),
                    Err(e) => Some(Exit::Broken(e)),
                };
            }
        };
        let message = match protocol::parse(self.dialect, &text) {
            Ok(message) => message,
            Err(e) => return Some(Exit::Broken(e)),
        };
        match message {
            Inbound::Media {
                caller: true,
                payload,
            } => match self.decoder.decode(self.dialect, &payload) {
                Ok(pcm) => {
                    self.edge.writer.push(pcm);
                    self.media_in += 1;
                }
                Err(e) => return Some(Exit::Broken(e)),
            },
            Inbound::Media { caller: false, .. } => self.other_track += 1,
            Inbound::Dtmf(digit) => self.key(digit),
            Inbound::Mark(name) => {
                if !self.marks.echoed(&name) {
                    tracing::warn!(
                        "{NAME}: {} echoed a mark that is not ours: {}",
                        self.dialect.name(),
                        excerpt(&name)
                    );
                }
            }
            Inbound::Stop => return Some(Exit::Stopped),
            Inbound::Error(error) => {
                let _ = self.edge.news.send(TransportNews::Error(Error::new(
                    VbStatus::VB_ERR_PROVIDER,
                    format!("{NAME}: {} reported an error: {error}", self.dialect.name()),
                )));
            }
            other @ (Inbound::Connected | Inbound::Start(_)) => {
                return Some(Exit::Broken(protocol::violation(
                    self.dialect,
                    format!("{} in the middle of the call", describe(&other)),
                )));
            }
        }
        None
    }

    fn key(&mut self, digit: String) {
        self.keys += 1;
        let _ = self.edge.news.send(TransportNews::Dtmf(digit));
    }

    /// One tick of the 20 ms clock: a frame of the agent to the caller, or the mark that ends a
    /// segment.
    async fn on_tick(&mut self) -> Result<()> {
        if self.media_in > self.media_reported {
            self.edge
                .counters
                .add_media(self.media_in - self.media_reported, 0, 0);
            self.media_reported = self.media_in;
        }
        let mut pcm = [0i16; FRAME];
        let n = self.edge.reader.read(&mut pcm);
        if n == 0 {
            if self.speaking {
                self.speaking = false;
                let mark = self.out.mark(&self.marks.next());
                self.send(mark).await?;
            }
            return Ok(());
        }
        pcm[n..].fill(0);
        let mut codes = [0u8; FRAME];
        self.law.encode(&pcm, &mut codes);
        self.base64.clear();
        BASE64.encode_string(codes, &mut self.base64);
        let media = self.out.media(&self.base64);
        self.send(media).await?;
        if !self.speaking {
            self.speaking = true;
            self.marks.segments += 1;
        }
        // What was played is what the host may record.
        let monitor = &mut self.edge.monitor;
        if let Ok(chunk) = monitor.write_chunk_uninit(n.min(monitor.slots())) {
            chunk.fill_from_iter(pcm[..n].iter().copied());
        }
        Ok(())
    }

    /// The caller spoke over the agent: the provider drops what it has not played.
    async fn barge_in(&mut self) -> Result<()> {
        self.interruptions += 1;
        if self.speaking {
            self.speaking = false;
            self.marks.cut += 1;
        }
        self.marks.clear();
        let clear = self.out.clear();
        self.send(clear).await
    }

    async fn send(&mut self, text: String) -> Result<()> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| {
                Error::new(
                    VbStatus::VB_ERR_CONNECTION_FAILED,
                    format!(
                        "{NAME}: sending to the {} stream failed ({e})",
                        self.dialect.name()
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_count_what_was_heard_and_what_was_cut() {
        let mut marks = Marks {
            segments: 3,
            ..Marks::default()
        };
        let first = marks.next();
        let second = marks.next();
        assert!(marks.echoed(&first));
        marks.clear();
        let third = marks.next();
        assert!(marks.echoed(&second));
        assert!(!marks.echoed("someone-else"));
        assert!(!marks.echoed(&first));
        assert!(marks.echoed(&third));
        assert_eq!((marks.heard, marks.cut, marks.unknown), (2, 1, 2));
        assert!(marks.outstanding.is_empty());
        assert!(
            marks
                .summary(1, 0)
                .starts_with("the agent spoke 3 segment(s): 2 heard")
        );
    }

    #[test]
    fn payloads_decode_with_or_without_padding_and_garbage_is_named() {
        let mut decoder = Decoder::new(Law::MuLaw);
        assert_eq!(decoder.decode(Dialect::Twilio, "//8=").unwrap(), &[0, 0]);
        assert_eq!(decoder.decode(Dialect::Twilio, "//8").unwrap(), &[0, 0]);
        let e = decoder.decode(Dialect::Twilio, "not base64!").unwrap_err();
        assert!(e.message().contains("not base64"), "{e}");
    }

    #[test]
    fn early_audio_keeps_the_last_second() {
        let mut early = Early::new(Law::MuLaw);
        let frame = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            BASE64.encode([0x80u8; FRAME])
        );
        for _ in 0..60 {
            let got = early.on_frame(
                Dialect::Twilio,
                Some(Ok(Message::Text(frame.clone().into()))),
            );
            assert!(matches!(got, Ok(None)));
        }
        assert_eq!(early.audio.len(), EARLY_AUDIO);
        let stop = r#"{"event":"stop"}"#;
        let got = early.on_frame(Dialect::Twilio, Some(Ok(Message::Text(stop.into()))));
        assert!(matches!(got, Ok(Some(reason)) if reason.contains("ended (stop)")));
    }
}
