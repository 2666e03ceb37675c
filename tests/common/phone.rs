//! A telephony provider's side of a media stream, for the phone tests and the bench: what Twilio
//! or Telnyx does on a call's WebSocket, written from the vendors' documented message schemas
//! (not from the engine's code):
//!
//! - Twilio, "Media Streams - WebSocket Messages":
//!   <https://www.twilio.com/docs/voice/media-streams/websocket-messages>
//! - Telnyx, "Stream call media over WebSocket" (AsyncAPI):
//!   <https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket>
//!
//! The caller sends `connected`, `start`, then a `media` message of 20 ms (160 G.711 bytes) every
//! 20 ms — its speech when it has some queued, silence otherwise, as a phone line does — plus
//! `dtmf` and `stop` when told. It plays what the agent sends in real time as a provider does:
//! `media` is queued, 20 ms are played per tick, a `mark` is echoed once the audio before it has
//! played, and `clear` drops the queue at once and echoes the marks in it. G.711 here is its own,
//! independent implementation (the classic segment-search μ-law / A-law).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Which vendor the caller plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// Twilio Media Streams (μ-law, camelCase, `streamSid` on every message).
    Twilio,
    /// Telnyx media streaming (snake_case, `stream_id`), μ-law or A-law.
    Telnyx,
}

/// One call to place.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// The vendor.
    pub vendor: Vendor,
    /// The call's id (`callSid` / `call_control_id`).
    pub call_id: String,
    /// The stream's id (`streamSid` / `stream_id`).
    pub stream_id: String,
    /// A-law (Telnyx `PCMA`) instead of μ-law.
    pub alaw: bool,
    /// The caller's number (Telnyx `from`; Twilio: a `From` custom parameter).
    pub from: String,
    /// Send `start` after `connected` (false: the test sends what it likes first).
    pub start: bool,
    /// Keep every sample received (tests); the bench only counts.
    pub record: bool,
}

impl CallSpec {
    /// A Twilio call `n` in μ-law.
    pub fn twilio(n: usize) -> CallSpec {
        CallSpec {
            vendor: Vendor::Twilio,
            call_id: format!("CA{n:032x}"),
            stream_id: format!("MZ{n:032x}"),
            alaw: false,
            from: format!("+1555{n:07}"),
            start: true,
            record: true,
        }
    }

    /// A Telnyx call `n` (A-law when `alaw`).
    pub fn telnyx(n: usize, alaw: bool) -> CallSpec {
        CallSpec {
            vendor: Vendor::Telnyx,
            call_id: format!("v3:call-{n}"),
            stream_id: format!("32DE0DEA-53CB-4B21-89A4-{n:012}"),
            alaw,
            from: format!("+1312{n:07}"),
            start: true,
            record: true,
        }
    }

    /// The URL path of its vendor on a server with the default paths.
    pub fn path(&self) -> &'static str {
        match self.vendor {
            Vendor::Twilio => "/twilio",
            Vendor::Telnyx => "/telnyx",
        }
    }
}

/// What the caller saw and did.
#[derive(Debug, Default)]
pub struct Log {
    /// The WebSocket upgrade succeeded.
    pub connected: bool,
    /// Why the upgrade failed (e.g. `HTTP error: 404 Not Found`).
    pub refused: Option<String>,
    /// Every agent sample received (when recording), decoded.
    pub received: Vec<i16>,
    /// Agent samples received, and the sum of their squares.
    pub received_samples: u64,
    /// Sum of squares of the received samples.
    pub received_energy: f64,
    /// When each agent `media` message arrived.
    pub media_at: Vec<Instant>,
    /// Agent samples played (heard by the caller) in order.
    pub heard: Vec<i16>,
    /// Marks received, in order.
    pub marks: Vec<String>,
    /// Marks echoed back (played or cleared).
    pub echoed: Vec<String>,
    /// When each `clear` arrived.
    pub clears: Vec<Instant>,
    /// Agent samples dropped from the play queue by `clear`.
    pub cleared_samples: usize,
    /// When each run of queued speech was sent to its end.
    pub spoke_ends: Vec<Instant>,
    /// The close frame the server sent (code, reason), or `(0, why)` when the connection broke.
    pub closed: Option<(u16, String)>,
    /// Messages from the server that break the vendor's schema.
    pub wrong: Vec<String>,
}

impl Log {
    /// RMS of what was received.
    pub fn received_rms(&self) -> f64 {
        (self.received_energy / self.received_samples.max(1) as f64).sqrt()
    }
}

enum Command {
    Speak(Vec<i16>),
    Dtmf(String),
    Raw(String),
    Stop,
    HangUp,
}

/// A call in progress.
pub struct Caller {
    commands: mpsc::UnboundedSender<Command>,
    log: Arc<Mutex<Log>>,
    /// The spec it was placed with.
    pub spec: CallSpec,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Caller {
    /// Places a call to the phone server at `addr` on a thread of its own.
    pub fn dial(addr: SocketAddr, spec: CallSpec) -> Caller {
        let (commands, rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Log::default()));
        let task = call(addr, spec.clone(), rx, log.clone());
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(task);
        });
        Caller {
            commands,
            log,
            spec,
            thread: Some(thread),
        }
    }

    /// Places a call as a task on `runtime` (the bench: many calls on few threads).
    pub fn dial_on(runtime: &tokio::runtime::Handle, addr: SocketAddr, spec: CallSpec) -> Caller {
        let (commands, rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Log::default()));
        runtime.spawn(call(addr, spec.clone(), rx, log.clone()));
        Caller {
            commands,
            log,
            spec,
            thread: None,
        }
    }

    /// Queues 8 kHz speech to send (after what is queued).
    pub fn speak(&self, pcm: &[i16]) {
        let _ = self.commands.send(Command::Speak(pcm.to_vec()));
    }

    /// Presses a key.
    pub fn dtmf(&self, digit: &str) {
        let _ = self.commands.send(Command::Dtmf(digit.to_owned()));
    }

    /// Sends a text frame as it is.
    pub fn raw(&self, text: &str) {
        let _ = self.commands.send(Command::Raw(text.to_owned()));
    }

    /// Sends `stop` and closes the connection, as a provider does when the caller hangs up.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    /// Closes the connection without `stop` (a stream that breaks mid-call).
    pub fn hang_up_without_stop(&self) {
        let _ = self.commands.send(Command::HangUp);
    }

    /// What it saw so far.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    /// Waits until `done` holds of the log; panics after `patience` saying `what`.
    pub fn wait(&self, what: &str, patience: Duration, done: impl Fn(&Log) -> bool) {
        let deadline = Instant::now() + patience;
        while !done(&self.log()) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} within {patience:?}; the caller saw {:?}",
                self.spec.call_id,
                summary(&self.log())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the connection to be closed by the server; returns the close code and reason.
    pub fn wait_closed(&self, patience: Duration) -> (u16, String) {
        self.wait("the connection closes", patience, |l| l.closed.is_some());
        self.log().closed.clone().unwrap()
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::HangUp);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The log without the audio, for failure messages.
pub fn summary(log: &Log) -> String {
    format!(
        "connected {} refused {:?} media {} marks {:?} echoed {:?} clears {} closed {:?} wrong {:?}",
        log.connected,
        log.refused,
        log.media_at.len(),
        log.marks,
        log.echoed,
        log.clears.len(),
        log.closed,
        log.wrong
    )
}

/// One queued item of the agent's audio on the provider's side.
enum Queued {
    Audio(Vec<i16>),
    Mark(String),
}

struct Messages {
    spec: CallSpec,
    sequence: u64,
    chunk: u64,
    started: Instant,
}

impl Messages {
    fn next(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    fn connected(&self) -> Value {
        match self.spec.vendor {
            Vendor::Twilio => json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            Vendor::Telnyx => json!({"event": "connected", "version": "1.0.0"}),
        }
    }

    fn start(&mut self) -> Value {
        let s = self.spec.clone();
        let sequence = self.next();
        match s.vendor {
            Vendor::Twilio => json!({
                "event": "start",
                "sequenceNumber": sequence,
                "start": {
                    "accountSid": "AC00000000000000000000000000000000",
                    "streamSid": s.stream_id,
                    "callSid": s.call_id,
                    "tracks": ["inbound"],
                    "customParameters": {"From": s.from, "To": "+15550000000", "Purpose": "test"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                },
                "streamSid": s.stream_id
            }),
            Vendor::Telnyx => json!({
                "event": "start",
                "sequence_number": sequence,
                "stream_id": s.stream_id,
                "start": {
                    "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                    "call_control_id": s.call_id,
                    "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
                    "from": s.from,
                    "to": "+13122123456",
                    "tags": [],
                    "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
                    "custom_parameters": {"customer_id": "customer_123"},
                    "media_format": {
                        "encoding": if s.alaw { "PCMA" } else { "PCMU" },
                        "sample_rate": 8000,
                        "channels": 1
                    }
                }
            }),
        }
    }

    /// The most frequent message, written directly (the same JSON `json!` would give).
    fn media(&mut self, pcm: &[i16]) -> String {
        let codes: Vec<u8> = pcm
            .iter()
            .map(|&s| if self.spec.alaw { alaw(s) } else { ulaw(s) })
            .collect();
        self.chunk += 1;
        let payload = BASE64.encode(codes);
        let timestamp = self.started.elapsed().as_millis();
        let sequence = self.next();
        let (sequence_key, stream_key) = match self.spec.vendor {
            Vendor::Twilio => ("sequenceNumber", "streamSid"),
            Vendor::Telnyx => ("sequence_number", "stream_id"),
        };
        format!(
            r#"{{"event":"media","{sequence_key}":"{sequence}","media":{{"track":"inbound","chunk":"{}","timestamp":"{timestamp}","payload":"{payload}"}},"{stream_key}":"{}"}}"#,
            self.chunk, self.spec.stream_id
        )
    }

    fn dtmf(&mut self, digit: &str) -> Value {
        let sequence = self.next();
        match self.spec.vendor {
            Vendor::Twilio => json!({
                "event": "dtmf",
                "streamSid": self.spec.stream_id,
                "sequenceNumber": sequence,
                "dtmf": {"track": "inbound_track", "digit": digit}
            }),
            Vendor::Telnyx => json!({
                "event": "dtmf",
                "stream_id": self.spec.stream_id,
                "occurred_at": "2026-01-01T00:00:00.000Z",
                "sequence_number": sequence,
                "dtmf": {"digit": digit}
            }),
        }
    }

    fn mark(&mut self, name: &str) -> Value {
        let sequence = self.next();
        match self.spec.vendor {
            Vendor::Twilio => json!({
                "event": "mark",
                "sequenceNumber": sequence,
                "streamSid": self.spec.stream_id,
                "mark": {"name": name}
            }),
            Vendor::Telnyx => json!({
                "event": "mark",
                "sequence_number": sequence,
                "stream_id": self.spec.stream_id,
                "mark": {"name": name}
            }),
        }
    }

    fn stop(&mut self) -> Value {
        let sequence = self.next();
        match self.spec.vendor {
            Vendor::Twilio => json!({
                "event": "stop",
                "sequenceNumber": sequence,
                "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": self.spec.call_id},
                "streamSid": self.spec.stream_id
            }),
            Vendor::Telnyx => json!({
                "event": "stop",
                "sequence_number": sequence,
                "stop": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237", "call_control_id": self.spec.call_id},
                "stream_id": self.spec.stream_id
            }),
        }
    }
}

async fn call(
    addr: SocketAddr,
    spec: CallSpec,
    mut commands: mpsc::UnboundedReceiver<Command>,
    log: Arc<Mutex<Log>>,
) {
    let url = format!("ws://{addr}{}", spec.path());
    // A small read buffer, as a provider with many calls would have (tungstenite zeroes its
    // 128 KiB default on every read).
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let mut ws = match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            log.lock().unwrap().refused = Some(e.to_string());
            return;
        }
    };
    log.lock().unwrap().connected = true;
    let mut m = Messages {
        spec: spec.clone(),
        sequence: 0,
        chunk: 0,
        started: Instant::now(),
    };
    let mut out = vec![m.connected().to_string()];
    if spec.start {
        out.push(m.start().to_string());
    }
    for text in out {
        if ws.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let mut speech: VecDeque<i16> = VecDeque::new();
    let mut playing: VecDeque<Queued> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut started = spec.start;
    loop {
        let mut send: Vec<String> = Vec::new();
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Speak(pcm)) => speech.extend(pcm),
                Some(Command::Dtmf(digit)) => send.push(m.dtmf(&digit).to_string()),
                Some(Command::Raw(text)) => {
                    started = true;
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Stop) => {
                    let stop = m.stop().to_string();
                    let _ = ws.send(Message::Text(stop.into())).await;
                    let _ = ws.close(None).await;
                    drain_until_closed(&mut ws, &log).await;
                    return;
                }
                Some(Command::HangUp) | None => {
                    let _ = ws.close(None).await;
                    drain_until_closed(&mut ws, &log).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if started {
                    let n = speech.len().min(160);
                    let mut frame: Vec<i16> = speech.drain(..n).collect();
                    if n > 0 && speech.is_empty() {
                        log.lock().unwrap().spoke_ends.push(Instant::now());
                    }
                    frame.resize(160, 0);
                    send.push(m.media(&frame));
                }
                // Play 20 ms of the agent; echo the marks reached.
                let mut due = 160usize;
                let mut log = log.lock().unwrap();
                while let Some(front) = playing.front_mut() {
                    match front {
                        Queued::Mark(name) => {
                            let name = name.clone();
                            playing.pop_front();
                            log.echoed.push(name.clone());
                            send.push(m.mark(&name).to_string());
                        }
                        Queued::Audio(audio) if due > 0 => {
                            let k = audio.len().min(due);
                            if spec.record {
                                log.heard.extend(audio.drain(..k));
                            } else {
                                audio.drain(..k);
                            }
                            due -= k;
                            if audio.is_empty() {
                                playing.pop_front();
                            }
                        }
                        Queued::Audio(_) => break,
                    }
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let mut log = log.lock().unwrap();
                    on_server_message(&spec, &text, &mut log, &mut playing, &mut send, &mut m);
                }
                Some(Ok(Message::Close(close))) => {
                    log.lock().unwrap().closed = Some(
                        close.map_or((1005, String::new()), |c| (u16::from(c.code), c.reason.to_string())),
                    );
                    let _ = ws.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    log.lock().unwrap().closed.get_or_insert((0, e.to_string()));
                    return;
                }
                None => {
                    log.lock().unwrap().closed.get_or_insert((0, "the connection ended".into()));
                    return;
                }
            },
        }
        for message in send {
            if ws
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                log.lock()
                    .unwrap()
                    .closed
                    .get_or_insert((0, "sending failed".into()));
                return;
            }
        }
    }
}

async fn drain_until_closed(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    log: &Mutex<Log>,
) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Close(close) = frame {
                log.lock().unwrap().closed = Some(close.map_or((1005, String::new()), |c| {
                    (u16::from(c.code), c.reason.to_string())
                }));
            }
        }
    })
    .await;
}

fn on_server_message(
    spec: &CallSpec,
    text: &str,
    log: &mut Log,
    playing: &mut VecDeque<Queued>,
    send: &mut Vec<String>,
    m: &mut Messages,
) {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        log.wrong.push(format!("not JSON: {text}"));
        return;
    };
    if spec.vendor == Vendor::Twilio && message["streamSid"] != spec.stream_id.as_str() {
        log.wrong.push(format!("no or another streamSid: {text}"));
    }
    match message["event"].as_str() {
        Some("media") => {
            let Some(codes) = message["media"]["payload"]
                .as_str()
                .and_then(|p| BASE64.decode(p).ok())
            else {
                log.wrong
                    .push(format!("media without a base64 payload: {text}"));
                return;
            };
            let pcm: Vec<i16> = codes
                .iter()
                .map(|&c| {
                    if spec.alaw {
                        alaw_to_linear(c)
                    } else {
                        ulaw_to_linear(c)
                    }
                })
                .collect();
            log.media_at.push(Instant::now());
            log.received_samples += pcm.len() as u64;
            log.received_energy += pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            if spec.record {
                log.received.extend_from_slice(&pcm);
            }
            playing.push_back(Queued::Audio(pcm));
        }
        Some("mark") => match message["mark"]["name"].as_str() {
            Some(name) => {
                log.marks.push(name.to_owned());
                playing.push_back(Queued::Mark(name.to_owned()));
            }
            None => log.wrong.push(format!("mark without a name: {text}")),
        },
        Some("clear") => {
            log.clears.push(Instant::now());
            // Drop what was not played; the marks among it come back at once.
            for item in playing.drain(..) {
                match item {
                    Queued::Audio(audio) => log.cleared_samples += audio.len(),
                    Queued::Mark(name) => {
                        log.echoed.push(name.clone());
                        send.push(m.mark(&name).to_string());
                    }
                }
            }
        }
        _ => log.wrong.push(format!("unknown event: {text}")),
    }
}

// G.711, the classic way (segment search over the biased magnitude), independent of the engine's.

const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];

fn segment(value: i32) -> usize {
    SEG_END.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Linear to μ-law.
pub fn ulaw(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let mask = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(32635) + 0x84;
    let seg = segment(value);
    let code = if seg >= 8 {
        0x7F
    } else {
        ((seg as i32) << 4) | ((value >> (seg + 3)) & 0x0F)
    };
    (code as u8) ^ mask
}

/// μ-law to linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let mut t = ((i32::from(code) & 0x0F) << 3) + 0x84;
    t <<= (i32::from(code) & 0x70) >> 4;
    (if code & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// Linear to A-law.
pub fn alaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 3;
    let mask = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let seg = SEG_END[..]
        .iter()
        .position(|&end| value <= end >> 3)
        .unwrap_or(8);
    let code = if seg >= 8 {
        0x7F
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        ((seg as i32) << 4) | ((value >> shift) & 0x0F)
    };
    (code as u8) ^ mask
}

/// A-law to linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut t = (i32::from(code) & 0x0F) << 4;
    let seg = (i32::from(code) & 0x70) >> 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if code & 0x80 != 0 { t } else { -t }) as i16
}

/// The strongest frequency of `pcm` at `rate` among `candidates` (Goertzel power).
pub fn strongest(pcm: &[i16], rate: f64, candidates: &[f64]) -> f64 {
    let power = |f: f64| {
        let k = 2.0 * (std::f64::consts::TAU * f / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in pcm {
            let s = f64::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    };
    candidates
        .iter()
        .copied()
        .max_by(|a, b| power(*a).partial_cmp(&power(*b)).unwrap())
        .unwrap()
}
