//! One WebRTC peer connection: a str0m [`Rtc`] (sans-I/O) and the UDP socket it talks through,
//! shared by every WebRTC transport. The LiveKit participant uses two per session: the
//! *subscriber* (the server offers, we answer; the user's audio and the server's data channels
//! arrive on it) and the *publisher* (we offer; the agent's voice and its data go out on it,
//! [`Peer::offer_publish`]). A direct browser call uses one ([`Role::Answerer`]): the browser
//! offers a send-receive audio line and its data channel, we answer and send on both.
//!
//! str0m does no I/O: every change (an input, an offer, a write) is followed by
//! [`Peer::drain`], which sends what it produced, collects its events and returns when it next
//! needs time. Only the owning task touches a peer.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::error::{Error, Result, VbStatus};

/// The largest datagram read from the socket.
pub const MAX_DATAGRAM: usize = 2048;

/// What a peer connection reports to its task.
#[derive(Debug)]
pub enum PeerEvent {
    /// ICE and DTLS are up: media may flow.
    Connected,
    /// ICE lost the server (it may come back).
    Disconnected,
    /// One Opus packet of an incoming audio track.
    Audio {
        /// The track's media line.
        mid: Mid,
        /// RTP sequence number.
        seq: u16,
        /// RTP timestamp (48 kHz).
        ts: u32,
        /// The Opus payload.
        data: std::sync::Arc<[u8]>,
        /// When it arrived.
        at: Instant,
    },
    /// A data channel opened.
    ChannelOpen(ChannelId, String),
    /// A message on a data channel.
    ChannelData(ChannelId, Vec<u8>),
    /// A data channel closed.
    ChannelClosed(ChannelId),
}

/// How a peer connection sends: what decides its audio line and its data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends only what it offered itself ([`Peer::offer_publish`]): its own audio line, and its
    /// own `_reliable` channel (LiveKit's publisher); what it answers is receive-only for it
    /// (LiveKit's subscriber).
    Offerer,
    /// Answers a peer's offer and sends on what that offer brought: the agent's voice on the
    /// offered audio line, data on the first data channel the peer opened (a browser call).
    Answerer,
}

/// One peer connection and its socket.
pub struct Peer {
    /// Who errors are attributed to (`"livekit"`, `"webrtc"`).
    who: &'static str,
    role: Role,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending_offer: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    reliable: Option<ChannelId>,
    /// ICE and DTLS are up (until ICE reports the server lost).
    connected: bool,
}

fn webrtc_error(who: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        VbStatus::VB_ERR_PROVIDER,
        format!("{who}: WebRTC: {what}: {e}"),
    )
}

impl Peer {
    /// A peer connection with one host candidate on `ip` (the address this machine reaches the
    /// peer from). Opus only, no RED, NACK feedback on, the audio-level header extension on.
    /// `who` names the transport in errors.
    pub async fn new(ip: IpAddr, who: &'static str, role: Role) -> Result<Peer> {
        let socket = UdpSocket::bind((ip, 0)).await.map_err(|e| {
            Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{who}: could not open a UDP socket on {ip}: {e}"),
            )
        })?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::internal(format!("{who}: UDP socket address: {e}")))?;
        let mut config = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            // The transport's own jitter buffer reorders and conceals: hand packets on at once.
            .set_reordering_size_audio(0)
            .set_reordering_timeout_audio(None);
        let params: Vec<PayloadParams> = config
            .codec_config()
            .params()
            .iter()
            .map(|p| {
                let mut p = *p;
                p.set_fb_nack(true);
                p
            })
            .collect();
        *config.codec_config() = CodecConfig::new_from_payload_params(params);
        let mut rtc = config.build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| webrtc_error(who, "host candidate", e))?;
        rtc.add_local_candidate(candidate);
        Ok(Peer {
            who,
            role,
            rtc,
            socket,
            local,
            pending_offer: None,
            audio_mid: None,
            reliable: None,
            connected: false,
        })
    }

    /// Sends what str0m produced and collects its events into `events`; returns when it next
    /// wants [`Peer::on_timeout`]. Must follow every change.
    pub fn drain(&mut self, events: &mut Vec<PeerEvent>) -> Result<Instant> {
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| webrtc_error(self.who, "state", e))?
            {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    // UDP: a datagram the kernel cannot take now is lost like any other.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(event) => self.on_event(event, events),
            }
        }
    }

    /// [`Peer::drain`] that sends nothing: what str0m would transmit is dropped (the fuzz
    /// targets must not send datagrams to addresses their input makes up).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn drain_quietly(&mut self, events: &mut Vec<PeerEvent>) -> Result<Instant> {
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| webrtc_error(self.who, "state", e))?
            {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(_) => {}
                Output::Event(event) => self.on_event(event, events),
            }
        }
    }

    fn on_event(&mut self, event: Event, events: &mut Vec<PeerEvent>) {
        match event {
            Event::Connected => {
                self.connected = true;
                events.push(PeerEvent::Connected)
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.connected = false;
                events.push(PeerEvent::Disconnected)
            }
            Event::IceConnectionStateChange(IceConnectionState::Connected) => {
                // Back after a disconnection (DTLS stayed up), or after an ICE restart.
                let was = self.connected;
                self.connected = self.rtc.is_connected();
                if self.connected && !was {
                    events.push(PeerEvent::Connected);
                }
            }
            Event::MediaAdded(added) => {
                self.resume_nack(added.mid);
                // A browser's microphone line: the agent answers on the same line.
                if self.role == Role::Answerer
                    && added.kind == MediaKind::Audio
                    && matches!(added.direction, Direction::SendRecv | Direction::SendOnly)
                    && self.audio_mid.is_none()
                {
                    self.audio_mid = Some(added.mid);
                }
            }
            Event::MediaData(data) if data.params.spec().codec == Codec::Opus => {
                events.push(PeerEvent::Audio {
                    mid: data.mid,
                    seq: **data.seq_range.start() as u16,
                    ts: data.time.numer() as u32,
                    data: data.data,
                    at: data.network_time,
                });
            }
            Event::ChannelOpen(id, label) => {
                let ours = match self.role {
                    Role::Offerer => label == "_reliable" && self.audio_mid.is_some(),
                    Role::Answerer => self.reliable.is_none(),
                };
                if ours {
                    self.reliable = Some(id);
                }
                events.push(PeerEvent::ChannelOpen(id, label));
            }
            Event::ChannelData(data) => events.push(PeerEvent::ChannelData(data.id, data.data)),
            Event::ChannelClose(id) => {
                if self.reliable == Some(id) {
                    self.reliable = None;
                }
                events.push(PeerEvent::ChannelClosed(id));
            }
            _ => {}
        }
    }

    /// str0m asks for lost packets only on streams with a retransmission stream (RTX); LiveKit
    /// resends audio on the stream itself, so ask anyway.
    fn resume_nack(&mut self, mid: Mid) {
        if let Some(stream) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.suppress_nack(false);
        }
    }

    /// Reads one datagram into `buf` (cancel-safe).
    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Hands str0m a datagram that arrived.
    pub fn on_datagram(&mut self, datagram: &[u8], source: SocketAddr) -> Result<()> {
        let Ok(contents) = datagram.try_into() else {
            return Ok(()); // not STUN, DTLS, RTP or RTCP: noise on our port
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source,
            destination: self.local,
            contents,
        };
        self.rtc
            .handle_input(Input::Receive(Instant::now(), receive))
            .map_err(|e| webrtc_error(self.who, "input", e))
    }

    /// Time has come (see [`Peer::drain`]).
    pub fn on_timeout(&mut self) -> Result<()> {
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(|e| webrtc_error(self.who, "timer", e))
    }

    /// Accepts the peer's offer (LiveKit's subscriber; a browser's call, or its renegotiation or
    /// ICE restart on the same connection) and returns our answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| webrtc_error(self.who, "offer", e))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| webrtc_error(self.who, "answering the offer", e))?;
        Ok(answer.to_sdp_string())
    }

    /// Adds the agent's microphone track (`cid`: the id LiveKit published it under) and the
    /// `_reliable` / `_lossy` data channels, and returns the offer (publisher).
    pub fn offer_publish(&mut self, cid: &str) -> Result<String> {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(format!("{cid}-stream")),
            Some(cid.to_owned()),
            None,
        );
        api.add_channel("_reliable".into());
        api.add_channel_with_config(ChannelConfig {
            label: "_lossy".into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            ..ChannelConfig::default()
        });
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| webrtc_error(self.who, "offer", "nothing to negotiate"))?;
        self.pending_offer = Some(pending);
        self.audio_mid = Some(mid);
        Ok(offer.to_sdp_string())
    }

    /// Accepts the server's answer to our offer (publisher).
    pub fn accept_answer(&mut self, sdp: &str) -> Result<()> {
        let Some(pending) = self.pending_offer.take() else {
            return Ok(()); // an answer to nothing we asked: ignored
        };
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| webrtc_error(self.who, "answer", e))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| webrtc_error(self.who, "accepting the answer", e))
    }

    /// A candidate the peer trickled (`candidateInit` JSON).
    pub fn add_remote_candidate(&mut self, json: &str) -> Result<()> {
        let candidate: Candidate = serde_json::from_str(json)
            .map_err(|e| webrtc_error(self.who, "a trickled candidate", e))?;
        self.rtc.add_remote_candidate(candidate);
        Ok(())
    }

    /// Sends one Opus packet of the agent's track at RTP time `rtp_time` (48 kHz) with its
    /// level in dBov (LiveKit finds active speakers from it). `false` while the track cannot
    /// send yet.
    pub fn write_audio(
        &mut self,
        packet: &[u8],
        rtp_time: u64,
        level_dbov: i8,
        talkspurt_start: bool,
    ) -> Result<bool> {
        let Some(mid) = self.audio_mid else {
            return Ok(false);
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return Ok(false);
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return Ok(false);
        };
        writer
            .audio_level(level_dbov, level_dbov > -127)
            .start_of_talkspurt(talkspurt_start)
            .write(
                pt,
                Instant::now(),
                MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ),
                packet.to_vec(),
            )
            .map_err(|e| webrtc_error(self.who, "sending audio", e))?;
        Ok(true)
    }

    /// Sends `bytes` on the data channel this peer sends on (the publisher's `_reliable`; a
    /// browser's first channel). `false` while it is not open.
    pub fn send_reliable(&mut self, bytes: &[u8]) -> Result<bool> {
        self.send_data(true, bytes)
    }

    /// Sends `bytes` as a binary message, or as text (`binary` false: UTF-8 JSON for a browser),
    /// on the data channel this peer sends on. `false` while it is not open.
    pub fn send_data(&mut self, binary: bool, bytes: &[u8]) -> Result<bool> {
        let Some(id) = self.reliable else {
            return Ok(false);
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return Ok(false);
        };
        channel
            .write(binary, bytes)
            .map_err(|e| webrtc_error(self.who, "sending data", e))
    }

    /// Whether the agent's audio line can carry audio now (negotiated, ICE and DTLS up).
    pub fn can_send_audio(&self) -> bool {
        self.connected && self.audio_mid.is_some()
    }

    /// Closes the data channel this peer sends on, if open (the peer sees it close once
    /// [`Peer::drain`] sent it).
    pub fn close_data(&mut self) {
        if let Some(id) = self.reliable.take() {
            self.rtc.direct_api().close_data_channel(id);
        }
    }

    /// Whether the data channel this peer sends on is open.
    pub fn can_send_data(&self) -> bool {
        self.reliable.is_some()
    }
}

/// The level of a frame in dBov (0 loudest, -127 silence), for the audio-level extension.
pub fn level_dbov(frame: &[i16]) -> i8 {
    let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / frame.len().max(1) as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return -127;
    }
    (20.0 * rms.log10()).clamp(-127.0, 0.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_loudness() {
        assert_eq!(level_dbov(&[0; 960]), -127);
        assert_eq!(level_dbov(&[i16::MAX; 960]), 0);
        let quiet = level_dbov(&[300; 960]);
        assert!((-41..=-39).contains(&quiet), "{quiet}");
    }
}
