//! The agent participant of one session: one task on the I/O runtime that owns the signal
//! connection, both peer connections, the jitter buffer and the encoder, and runs everything at
//! once — signal messages, datagrams, str0m's timers, the 20 ms media clock, the session's events
//! — so that nothing is shared and nothing is locked.
//!
//! Every 20 ms the media clock (`media::pump`, shared with direct browser calls) takes one frame
//! of the user's audio out of the jitter buffer into the session's input ring, and one frame of
//! the agent's audio out of the session's out ring into the encoder and onto the published track
//! (nothing is sent while the agent is silent; a barge-in empties the out ring, so the track falls
//! silent within a frame). Until the published track is connected the agent's audio waits in the
//! out ring.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request::Message as Request;
use proto::signal_response::Message as Response;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::data::{Captions, Outgoing};
use super::room::{Room, RoomChange};
use super::settings::{AGENT_STATE, NAME, Settings};
use super::signal::{self, Joined, SignalRx, SignalTx};
use crate::config::Secret;
use crate::error::{Error, Result, VbStatus};
use crate::net::redact_url;
use crate::transport::media::peer::{MAX_DATAGRAM, Peer, PeerEvent, Role};
use crate::transport::media::pump::Pump;
use crate::transport::{MediaEdge, TransportNews};

/// Data packets kept while the data channel is not open yet, at most.
const MAX_QUEUED_DATA: usize = 256;
/// How long leaving may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where and as whom the agent joins.
#[derive(Clone)]
pub struct JoinSpec {
    /// The settings of the backend.
    pub settings: Settings,
    /// The server (`connection_url` or `provider_config.url`).
    pub url: String,
    /// The room.
    pub room: String,
    /// The session's `user_id`: whom to listen to.
    pub user_id: String,
    /// The session's `connection_token`, joined with instead of a minted one.
    pub token: Option<Secret>,
}

/// Why the participant's loop ended.
enum Exit {
    /// The session closed the transport.
    Closed,
    /// The conversation is over (reported to the session).
    Ended(TransportNews),
}

/// The agent in the room.
pub struct Participant {
    spec: JoinSpec,
    token: Secret,
    sid: String,
    signal_tx: SignalTx,
    signal_rx: SignalRx,
    ping_every: Duration,
    ping_timeout: Duration,
    last_heard: Instant,
    subscriber: Peer,
    publisher: Peer,
    room: Room,
    /// Our track's client id and, once published, its sid.
    cid: String,
    agent_track: Option<String>,
    /// The media clock: jitter buffer and encoder.
    pump: Pump,
    edge: MediaEdge,
    captions: Captions,
    queued_data: std::collections::VecDeque<Vec<u8>>,
    /// Whether a published track that never connected was reported.
    publish_stalled_reported: bool,
    events: Vec<PeerEvent>,
}

impl Participant {
    /// Joins the room and asks to publish the agent's microphone. Errors are those
    /// `vb_session_start` returns: `VB_ERR_UNAUTHORIZED` for a refused token, `VB_ERR_TIMEOUT`
    /// for a server that cannot be reached, `VB_ERR_CONNECTION_FAILED` for a room that cannot be
    /// joined.
    pub async fn join(spec: JoinSpec, edge: MediaEdge) -> Result<Participant> {
        let token = match &spec.token {
            Some(token) => token.clone(),
            None => spec.settings.agent_token(&spec.room)?,
        };
        let (joined, signal_tx, signal_rx) =
            signal::connect(&spec.settings, &spec.url, &token, None)
                .await
                .map_err(|e| {
                    Error::new(
                        e.status(),
                        format!("{} (joining room '{}')", e.message(), spec.room),
                    )
                })?;
        let Joined::Join(join) = joined else {
            return Err(Error::new(
                VbStatus::VB_ERR_PROVIDER,
                format!("{NAME}: the server answered a join as a resume"),
            ));
        };
        let ip = local_ip_towards(&spec.url).await;
        let pump = Pump::new(spec.settings.opus_complexity)?;
        let mut participant = Participant {
            sid: join
                .participant
                .as_ref()
                .map(|p| p.sid.clone())
                .unwrap_or_default(),
            ping_every: Duration::from_secs(join.ping_interval.clamp(1, 60) as u64),
            ping_timeout: Duration::from_secs(join.ping_timeout.clamp(2, 120) as u64),
            last_heard: Instant::now(),
            subscriber: Peer::new(ip, NAME, Role::Offerer).await?,
            publisher: Peer::new(ip, NAME, Role::Offerer).await?,
            room: Room::new(&spec.user_id),
            cid: format!("{}-mic", spec.settings.identity),
            agent_track: None,
            pump,
            captions: Captions::new(&spec.settings.identity),
            queued_data: std::collections::VecDeque::new(),
            publish_stalled_reported: false,
            events: Vec::new(),
            edge,
            token,
            signal_tx,
            signal_rx,
            spec,
        };
        participant.room.update(&join.other_participants);
        participant.add_track().await?;
        Ok(participant)
    }

    /// The room joined.
    pub fn room_name(&self) -> &str {
        &self.spec.room
    }

    /// Asks the server to publish the agent's microphone (it answers `TrackPublished`).
    async fn add_track(&mut self) -> Result<()> {
        // No DTX (the agent sends nothing while silent anyway) and no RED: the server must not
        // expect redundant audio the agent does not send. `disable_dtx` is for servers older than
        // `audio_features`.
        #[allow(deprecated)]
        let request = proto::AddTrackRequest {
            cid: self.cid.clone(),
            name: "agent".into(),
            r#type: proto::TrackType::Audio as i32,
            source: proto::TrackSource::Microphone as i32,
            disable_dtx: true,
            audio_features: vec![proto::AudioTrackFeature::TfNoDtx as i32],
            disable_red: true,
            ..proto::AddTrackRequest::default()
        };
        self.signal_tx.send(Request::AddTrack(request)).await
    }

    /// Runs until `close` fires or the conversation ends; leaves the room either way.
    pub async fn run(mut self, mut close: oneshot::Receiver<()>) {
        let exit = match self.serve(&mut close).await {
            Ok(exit) => exit,
            Err(e) => Exit::Ended(TransportNews::Ended {
                reason: format!(
                    "{NAME}: the agent left room '{}' after an error",
                    self.spec.room
                ),
                error: Some(e),
            }),
        };
        if let Exit::Ended(news) = exit {
            let _ = self.edge.news.send(news);
        }
        self.signal_tx.leave(LEAVE_TIMEOUT).await;
    }

    async fn serve(&mut self, close: &mut oneshot::Receiver<()>) -> Result<Exit> {
        let mut sub_buf = vec![0u8; MAX_DATAGRAM];
        let mut pub_buf = vec![0u8; MAX_DATAGRAM];
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let sub_at = self.drain_subscriber()?;
            let pub_at = self.drain_publisher()?;
            tokio::select! {
                _ = &mut *close => return Ok(Exit::Closed),
                received = self.subscriber.recv(&mut sub_buf) => {
                    if let Ok((n, from)) = received {
                        self.subscriber.on_datagram(&sub_buf[..n], from)?;
                    }
                }
                received = self.publisher.recv(&mut pub_buf) => {
                    if let Ok((n, from)) = received {
                        self.publisher.on_datagram(&pub_buf[..n], from)?;
                    }
                }
                () = tokio::time::sleep_until(sub_at.into()) => self.subscriber.on_timeout()?,
                () = tokio::time::sleep_until(pub_at.into()) => self.publisher.on_timeout()?,
                message = self.signal_rx.recv() => {
                    if let Some(exit) = self.on_signal(message).await? {
                        return Ok(exit);
                    }
                }
                _ = clock.tick() => self.on_media_tick()?,
                _ = ping.tick() => self.ping().await?,
                event = self.edge.events.recv() => match event {
                    Some(event) => self.on_session_event(&event).await?,
                    None => return Ok(Exit::Closed),
                },
            }
        }
    }

    fn drain_subscriber(&mut self) -> Result<Instant> {
        let mut events = std::mem::take(&mut self.events);
        let at = self.subscriber.drain(&mut events)?;
        for event in events.drain(..) {
            match event {
                PeerEvent::Audio {
                    mid,
                    seq,
                    ts,
                    data,
                    at,
                } if self.room.is_user_audio(&mid) => self.pump.push(seq, ts, &data, at),
                PeerEvent::Disconnected => self.report(Error::new(
                    VbStatus::VB_ERR_CONNECTION_FAILED,
                    format!("{NAME}: the media connection to the server was interrupted"),
                )),
                _ => {}
            }
        }
        self.events = events;
        Ok(at)
    }

    fn drain_publisher(&mut self) -> Result<Instant> {
        let mut events = std::mem::take(&mut self.events);
        let at = self.publisher.drain(&mut events)?;
        let opened = events
            .iter()
            .any(|e| matches!(e, PeerEvent::ChannelOpen(..)));
        events.clear();
        self.events = events;
        if opened && self.publisher.can_send_data() {
            while let Some(packet) = self.queued_data.pop_front() {
                if !self.publisher.send_reliable(&packet)? {
                    self.queued_data.push_front(packet);
                    break;
                }
                self.publisher.drain(&mut self.events)?;
                self.events.clear();
            }
        }
        Ok(at)
    }

    /// One tick of the media clock: a frame of the user in, a frame of the agent out (see
    /// [`Pump`]); a published track that never connects is reported once.
    fn on_media_tick(&mut self) -> Result<()> {
        if self.pump.tick(&mut self.edge, &mut self.publisher)? {
            return Ok(());
        }
        let waited = Duration::from_millis(self.pump.ticks() * 20);
        if !self.publish_stalled_reported && waited > self.spec.settings.timeout {
            self.publish_stalled_reported = true;
            self.report(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!(
                    "{NAME}: the agent's track in room '{}' did not connect within {} ms (ICE/DTLS): the user cannot hear the agent",
                    self.spec.room,
                    self.spec.settings.timeout.as_millis()
                ),
            ));
        }
        Ok(())
    }

    async fn ping(&mut self) -> Result<()> {
        if self.last_heard.elapsed() > self.ping_timeout {
            return Err(signal::lost(&format!(
                "no message from the server for {} s",
                self.ping_timeout.as_secs()
            )));
        }
        let now = signal::unix_ms();
        self.signal_tx.send(Request::Ping(now)).await?;
        self.signal_tx
            .send(Request::PingReq(proto::Ping {
                timestamp: now,
                rtt: 0,
            }))
            .await
    }

    /// One message (or the end) of the signal connection. `Some` ends the participant.
    async fn on_signal(&mut self, message: Option<Result<Response>>) -> Result<Option<Exit>> {
        let response = match message {
            Some(Ok(response)) => response,
            Some(Err(e)) if e.status() == VbStatus::VB_ERR_PROVIDER => {
                self.report(e);
                return Ok(None);
            }
            Some(Err(e)) => return self.reconnect(e).await,
            None => return self.reconnect(signal::lost("the server closed it")).await,
        };
        self.last_heard = Instant::now();
        match response {
            Response::Offer(offer) => {
                self.room.map_tracks(&offer.mid_to_track_id);
                let answer = self.subscriber.accept_offer(&offer.sdp)?;
                self.signal_tx
                    .send(Request::Answer(proto::SessionDescription {
                        r#type: "answer".into(),
                        sdp: answer,
                        id: offer.id,
                        ..proto::SessionDescription::default()
                    }))
                    .await?;
            }
            Response::Answer(answer) => self.publisher.accept_answer(&answer.sdp)?,
            Response::Trickle(trickle) => {
                let peer = if trickle.target == proto::SignalTarget::Publisher as i32 {
                    &mut self.publisher
                } else {
                    &mut self.subscriber
                };
                if let Err(e) = peer.add_remote_candidate(&trickle.candidate_init) {
                    self.report(e);
                }
            }
            Response::TrackPublished(published) if published.cid == self.cid => {
                self.agent_track = published.track.map(|t| t.sid);
                let offer = self.publisher.offer_publish(&self.cid)?;
                self.signal_tx
                    .send(Request::Offer(proto::SessionDescription {
                        r#type: "offer".into(),
                        sdp: offer,
                        ..proto::SessionDescription::default()
                    }))
                    .await?;
            }
            Response::Update(update) => {
                for change in self.room.update(&update.participants) {
                    if let RoomChange::UserLeft { identity } = change {
                        return Ok(Some(Exit::Ended(TransportNews::Ended {
                            reason: format!(
                                "{NAME}: user '{identity}' left room '{}'",
                                self.spec.room
                            ),
                            error: None,
                        })));
                    }
                }
            }
            Response::Leave(leave) => {
                let why = signal::leave_reason(leave.reason);
                if leave.can_reconnect {
                    return self
                        .reconnect(signal::lost(&format!(
                            "the server asked to reconnect ({why})"
                        )))
                        .await;
                }
                return Ok(Some(Exit::Ended(TransportNews::Ended {
                    reason: format!(
                        "{NAME}: room '{}' ended for the agent ({why})",
                        self.spec.room
                    ),
                    error: Some(Error::new(
                        VbStatus::VB_ERR_CONNECTION_FAILED,
                        format!(
                            "{NAME}: the server removed the agent from room '{}' ({why})",
                            self.spec.room
                        ),
                    )),
                })));
            }
            Response::RefreshToken(token) => self.token = Secret::new(token),
            _ => {}
        }
        Ok(None)
    }

    /// The signal connection was lost: resume it (the server keeps the participant and its
    /// peer connections), under the backend's retry rules. The conversation goes on meanwhile;
    /// only a failure to come back ends it.
    async fn reconnect(&mut self, why: Error) -> Result<Option<Exit>> {
        self.report(Error::new(
            why.status(),
            format!("{}; resuming", why.message()),
        ));
        match signal::connect(
            &self.spec.settings,
            &self.spec.url,
            &self.token,
            Some(&self.sid),
        )
        .await
        {
            Ok((_, tx, rx)) => {
                tracing::info!("{NAME}: the signal connection is resumed");
                self.signal_tx = tx;
                self.signal_rx = rx;
                self.last_heard = Instant::now();
                Ok(None)
            }
            Err(e) => Ok(Some(Exit::Ended(TransportNews::Ended {
                reason: format!(
                    "{NAME}: the connection to {} could not be resumed",
                    redact_url(&self.spec.url)
                ),
                error: Some(e),
            }))),
        }
    }

    /// A session event: captions and the agent's state for the room.
    async fn on_session_event(&mut self, event: &crate::event::Event) -> Result<()> {
        let out = self.captions.on_event(
            event,
            signal::unix_ms(),
            self.room.user_track(),
            self.agent_track.as_deref(),
        );
        match out {
            Some(Outgoing::Data(packets)) => {
                for packet in packets {
                    self.send_data(packet)?;
                }
            }
            Some(Outgoing::State(state)) => {
                self.signal_tx
                    .send(Request::UpdateMetadata(proto::UpdateParticipantMetadata {
                        attributes: [(AGENT_STATE.to_owned(), state.to_owned())].into(),
                        ..proto::UpdateParticipantMetadata::default()
                    }))
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    /// Sends a data packet now, or once the data channel opens.
    fn send_data(&mut self, packet: Vec<u8>) -> Result<()> {
        if self.queued_data.is_empty() && self.publisher.send_reliable(&packet)? {
            return Ok(());
        }
        if self.queued_data.len() >= MAX_QUEUED_DATA {
            self.report(Error::new(
                VbStatus::VB_ERR_BUFFER_FULL,
                format!("{NAME}: the data channel is not open; a caption was dropped"),
            ));
            return Ok(());
        }
        self.queued_data.push_back(packet);
        Ok(())
    }

    fn report(&self, error: Error) {
        let _ = self.edge.news.send(TransportNews::Error(error));
    }
}

/// The address this machine reaches the server from (a UDP socket "connected" towards it; no
/// packet is sent), for the peer connections' host candidate. Loopback when that fails.
async fn local_ip_towards(url: &str) -> IpAddr {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let host_port = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let target = if host_port.contains(':') && !host_port.ends_with(']') {
        host_port.to_owned()
    } else {
        format!("{host_port}:443")
    };
    let Ok(mut addrs) = tokio::net::lookup_host(target).await else {
        return loopback;
    };
    let Some(server) = addrs.next() else {
        return loopback;
    };
    if server.ip().is_loopback() {
        return server.ip();
    }
    let bind: IpAddr = if server.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    };
    match tokio::net::UdpSocket::bind((bind, 0)).await {
        Ok(socket) if socket.connect(server).await.is_ok() => {
            socket.local_addr().map_or(loopback, |a| a.ip())
        }
        _ => loopback,
    }
}
