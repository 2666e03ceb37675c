//! One browser call with its session, on the I/O runtime: a task that owns the peer connection,
//! the jitter buffer, the encoder and the session's media edge, and runs everything at once —
//! datagrams, str0m's timers, the 20 ms media clock, the session's events, what the HTTP side
//! sends (renegotiations, restarts, trickled candidates) — so that nothing is shared and nothing
//! is locked.
//!
//! - **Audio** both ways at 20 ms through the shared media clock ([`Pump`]): the client's Opus
//!   through the jitter buffer into the session's input ring at 48 kHz, the agent's voice
//!   Opus-encoded onto the client's audio line (nothing while the agent is silent; a barge-in
//!   silences it within a frame; until the connection is up the agent's audio waits).
//! - **Data channel**: the session's events go out as RTVI messages ([`super::rtvi`]) on the
//!   first channel the client opened, as text; what waits for the channel to open is kept (up to
//!   [`MAX_QUEUED`] messages). `client-ready` is answered with `bot-ready`.
//! - **The end**: the client closing its data channel ends the call [`CLOSE_GRACE`] later unless
//!   a `restart_pc` offer came meanwhile (a reconnecting client closes its old connection
//!   first); so does a media connection that stays down (never up, ICE lost) for
//!   `disconnect_timeout_ms` with no new offer. The session closing the transport (the host
//!   stopped it) ends the task: the client is told (`peerLeft`, as Pipecat's bots say it) and the
//!   data channel closed.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::NAME;
use super::live::{Control, LiveEntry};
use super::offer::Refusal;
use super::rtvi::{self, Rtvi};
use crate::error::{Error, Result, VbStatus};
use crate::transport::media::peer::{MAX_DATAGRAM, Peer, PeerEvent, Role};
use crate::transport::media::pump::Pump;
use crate::transport::pending::Attach;
use crate::transport::{MediaEdge, TransportNews};

/// RTVI messages kept while the data channel is not open, at most.
pub const MAX_QUEUED: usize = 256;
/// How long a call whose client closed its data channel waits for a `restart_pc` offer (a client
/// reconnecting closes its old connection first) before it ends.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a call the session ended keeps its connection running for the goodbye to arrive.
pub const LEAVE_TIME: Duration = Duration::from_millis(300);

/// Why the call ended.
enum Exit {
    /// The session closed the transport (the host or the backend stopped it).
    Closed,
    /// The conversation is over (told to the session).
    Ended(TransportNews),
}

/// A new peer connection for `ip` with the client's offer accepted: the peer and the answer's
/// SDP. 400 when the offer cannot be answered.
pub async fn answer(ip: IpAddr, sdp: &str) -> std::result::Result<(Peer, String), Refusal> {
    let mut peer = Peer::new(ip, NAME, Role::Answerer)
        .await
        .map_err(|e| Refusal::new(503, e.message().to_owned()))?;
    let answer = peer
        .accept_offer(sdp)
        .map_err(|e| Refusal::new(400, format!("sdp: {}", e.message())))?;
    Ok((peer, answer))
}

/// One call with its session.
pub struct Call {
    entry: LiveEntry,
    ip: IpAddr,
    disconnect_timeout: Duration,
    peer: Peer,
    pump: Pump,
    edge: MediaEdge,
    close: oneshot::Receiver<()>,
    _done: crossbeam_channel::Sender<()>,
    control: mpsc::UnboundedReceiver<Control>,
    rtvi: Rtvi,
    queued: VecDeque<String>,
    /// Since when the media connection is down (not up yet, or lost).
    down_since: Option<Instant>,
    /// The client's data channel was open once.
    channel_opened: bool,
    /// Since when the client's data channel is closed.
    closed_since: Option<Instant>,
    events: Vec<PeerEvent>,
}

/// What a call is made of.
pub struct CallParts {
    /// Its place among the calls under way, and what the HTTP side sends it.
    pub entry: LiveEntry,
    /// What comes for it from the HTTP side.
    pub control: mpsc::UnboundedReceiver<Control>,
    /// The address its UDP socket binds (where the offer arrived).
    pub ip: IpAddr,
    /// The peer connection with the first offer answered.
    pub peer: Peer,
    /// The session's edge.
    pub attach: Attach,
    /// `provider_config.webrtc.disconnect_timeout_ms`.
    pub disconnect_timeout: Duration,
    /// `provider_config.webrtc.opus_complexity`.
    pub opus_complexity: u8,
}

impl Call {
    /// The call, ready to run.
    pub fn new(parts: CallParts) -> Result<Call> {
        let CallParts {
            entry,
            control,
            ip,
            peer,
            attach,
            disconnect_timeout,
            opus_complexity,
        } = parts;
        let Attach { edge, close, done } = attach;
        Ok(Call {
            rtvi: Rtvi::new(&entry.pc_id),
            entry,
            ip,
            disconnect_timeout,
            peer,
            pump: Pump::new(opus_complexity)?,
            edge,
            close,
            _done: done,
            control,
            queued: VecDeque::new(),
            down_since: Some(Instant::now()),
            channel_opened: false,
            closed_since: None,
            events: Vec::new(),
        })
    }

    /// Carries the call until it ends, then tells the session why.
    pub async fn run(mut self) {
        let exit = match self.serve().await {
            Ok(exit) => exit,
            Err(e) => Exit::Ended(TransportNews::Ended {
                reason: format!("{NAME}: call {} ended after an error", self.entry.pc_id),
                error: Some(e),
            }),
        };
        match exit {
            Exit::Closed => {
                tracing::info!("{NAME}: the session ended call {}", self.entry.pc_id);
                self.leave().await;
            }
            Exit::Ended(news) => {
                if let TransportNews::Ended { reason, .. } = &news {
                    tracing::info!("{reason}");
                }
                let _ = self.edge.news.send(news);
            }
        }
    }

    async fn serve(&mut self) -> Result<Exit> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        loop {
            let at = self.drain()?;
            if let Some(exit) = self.check_ended() {
                return Ok(exit);
            }
            tokio::select! {
                _ = &mut self.close => return Ok(Exit::Closed),
                received = self.peer.recv(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.peer.on_datagram(&buf[..n], from)?;
                    }
                }
                () = tokio::time::sleep_until(at.into()) => self.peer.on_timeout()?,
                _ = clock.tick() => {
                    self.pump.tick(&mut self.edge, &mut self.peer)?;
                }
                control = self.control.recv() => match control {
                    Some(control) => self.on_control(control).await,
                    None => return Ok(Exit::Closed),
                },
                event = self.edge.events.recv() => match event {
                    Some(event) => {
                        let now = timestamp(SystemTime::now());
                        for message in self.rtvi.on_event(&event, &now) {
                            self.send(message)?;
                        }
                    }
                    None => return Ok(Exit::Closed),
                },
            }
        }
    }

    /// Tells the client the agent left (Pipecat's `{"type": "signalling", "message": {"type":
    /// "peerLeft"}}`, what a SmallWebRTC bot sends as it closes) and closes the data channel,
    /// running the connection for [`LEAVE_TIME`] so that the close reaches the client.
    async fn leave(&mut self) {
        let left = rtvi::peer_left();
        if self.queued.is_empty() {
            let _ = self.peer.send_data(false, left.as_bytes());
        }
        self.peer.close_data();
        let deadline = tokio::time::Instant::now() + LEAVE_TIME;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut events = Vec::new();
        loop {
            let Ok(at) = self.peer.drain(&mut events) else {
                return;
            };
            events.clear();
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                received = self.peer.recv(&mut buf) => {
                    if let Ok((n, from)) = received {
                        let _ = self.peer.on_datagram(&buf[..n], from);
                    }
                }
                () = tokio::time::sleep_until(at.into()) => {
                    let _ = self.peer.on_timeout();
                }
            }
        }
    }

    /// Sends what str0m produced and handles its events; returns when it next wants time.
    fn drain(&mut self) -> Result<Instant> {
        let mut events = std::mem::take(&mut self.events);
        let at = self.peer.drain(&mut events)?;
        for event in events.drain(..) {
            match event {
                PeerEvent::Audio {
                    seq, ts, data, at, ..
                } => self.pump.push(seq, ts, &data, at),
                PeerEvent::Connected => {
                    tracing::debug!("{NAME}: call {} connected", self.entry.pc_id);
                    self.down_since = None;
                }
                PeerEvent::Disconnected => {
                    self.down_since.get_or_insert_with(Instant::now);
                }
                PeerEvent::ChannelOpen(_, label) => {
                    if self.peer.can_send_data() && !self.channel_opened {
                        tracing::debug!(
                            "{NAME}: call {}: data channel '{label}' open",
                            self.entry.pc_id
                        );
                        self.channel_opened = true;
                        self.queued.push_front(rtvi::bot_ready(None));
                        self.flush_queued()?;
                    }
                }
                PeerEvent::ChannelData(_, bytes) => {
                    if let Some(id) = rtvi::client_ready(&bytes) {
                        self.send(rtvi::bot_ready(id.as_deref()))?;
                    }
                }
                PeerEvent::ChannelClosed(_) => {
                    if self.channel_opened && !self.peer.can_send_data() {
                        self.closed_since.get_or_insert_with(Instant::now);
                    }
                }
            }
        }
        self.events = events;
        Ok(at)
    }

    /// `Some` when the call is over: the client closed its channel, or the media stayed down.
    fn check_ended(&self) -> Option<Exit> {
        let pc_id = &self.entry.pc_id;
        if self
            .closed_since
            .is_some_and(|at| at.elapsed() >= CLOSE_GRACE)
        {
            return Some(Exit::Ended(TransportNews::Ended {
                reason: format!("{NAME}: the client closed call {pc_id}"),
                error: None,
            }));
        }
        let down = self.down_since?;
        if down.elapsed() < self.disconnect_timeout {
            return None;
        }
        let why = format!(
            "{NAME}: call {pc_id} had no media connection for {} ms",
            self.disconnect_timeout.as_millis()
        );
        Some(Exit::Ended(TransportNews::Ended {
            reason: why.clone(),
            error: Some(Error::new(VbStatus::VB_ERR_CONNECTION_FAILED, why)),
        }))
    }

    /// A new offer or candidates from the HTTP side.
    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Offer {
                sdp,
                restart: false,
                answer,
            } => {
                let answered = self
                    .peer
                    .accept_offer(&sdp)
                    .map_err(|e| Refusal::new(400, format!("sdp: {}", e.message())));
                let _ = answer.send(answered);
            }
            Control::Offer {
                sdp,
                restart: true,
                answer: reply,
            } => match answer(self.ip, &sdp).await {
                Ok((peer, sdp)) => {
                    tracing::info!(
                        "{NAME}: call {}: new peer connection (restart_pc)",
                        self.entry.pc_id
                    );
                    if let Err(e) = self.pump.restart_input(&self.edge) {
                        let _ = reply.send(Err(Refusal::new(500, e.message().to_owned())));
                        return;
                    }
                    self.peer = peer;
                    self.down_since = Some(Instant::now());
                    self.channel_opened = false;
                    self.closed_since = None;
                    let _ = reply.send(Ok(sdp));
                }
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                }
            },
            Control::Candidates(candidates) => {
                for candidate in candidates {
                    if let Err(e) = self.peer.add_remote_candidate(&candidate) {
                        tracing::info!("{NAME}: call {}: {e}", self.entry.pc_id);
                    }
                }
            }
        }
    }

    /// Sends an RTVI message now, or once the channel opens.
    fn send(&mut self, message: String) -> Result<()> {
        if self.queued.is_empty() && self.peer.send_data(false, message.as_bytes())? {
            return Ok(());
        }
        if self.queued.len() >= MAX_QUEUED {
            self.queued.pop_front();
        }
        self.queued.push_back(message);
        Ok(())
    }

    fn flush_queued(&mut self) -> Result<()> {
        while let Some(message) = self.queued.pop_front() {
            if !self.peer.send_data(false, message.as_bytes())? {
                self.queued.push_front(message);
                break;
            }
        }
        Ok(())
    }
}

/// `time` as ISO 8601 UTC with milliseconds (`2026-12-07T14:05:09.123+00:00`, as Pipecat writes
/// RTVI timestamps).
pub fn timestamp(time: SystemTime) -> String {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}+00:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_652_309_123);
        assert_eq!(timestamp(at), "2026-12-07T14:05:09.123+00:00");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000+00:00"
        );
    }
}
