//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, never in a release
//! build): thin wrappers that reach parsers the public API keeps private, so that a target feeds
//! them exactly what the network, a file or a host would. Nothing here changes what the library
//! does; each function runs the library's own code on that input. Parsers the public API
//! already reaches (configuration, JWTs, RTVI, the CT2 reader, the Whisper tokenizer, the jitter
//! buffer, LiveKit captions) are fuzzed through it.

use std::future::Future;
use std::sync::OnceLock;

use crate::config::Secret;
use crate::error::Result;

/// Runs `future` to completion on the fuzzing runtime (one current-thread runtime with I/O and
/// timers, made once).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
        .block_on(future)
}

/// Deepgram's streaming listen messages (`Results`, `Error`, the rest).
pub mod deepgram {
    pub use crate::provider::network::deepgram::fuzz::*;
}

/// ElevenLabs' stream-input messages (audio with alignment, `isFinal`, errors).
pub mod elevenlabs {
    pub use crate::provider::network::elevenlabs::fuzz::*;
}

/// A Pipecat bot's messages through a session's connection (frames, RTVI, the reply's text).
pub mod pipecat {
    pub use crate::provider::network::pipecat::fuzz::*;
}

/// OpenAI's HTTP answers: error bodies, transcriptions, server-sent event streams.
pub mod openai {
    pub use crate::provider::network::openai::fuzz::*;
}

/// OpenAI's Realtime server events, through a session's conversation.
pub mod openai_realtime {
    pub use crate::provider::network::openai_realtime::fuzz::*;
}

/// LiveKit's signal and agent-worker messages.
pub mod livekit {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use livekit_protocol as proto;
    use proto::server_message::Message as FromServer;
    use proto::signal_response::Message as Response;

    use super::{Result, Secret, block_on};
    use crate::config::SessionConfig;
    use crate::transport::livekit::NAME;
    use crate::transport::livekit::room::Room;
    use crate::transport::livekit::{signal, worker};
    use crate::transport::media::peer::{Peer, Role};

    /// The `cid` the agent publishes its microphone under in [`signal_messages`].
    pub const AGENT_CID: &str = "TR_agent";

    /// What reaches the agent's participant from the network.
    #[derive(Debug, Clone, Copy)]
    pub enum Arrival<'a> {
        /// A binary message of the signal connection.
        Signal(&'a [u8]),
        /// A UDP datagram (STUN, DTLS, RTP, RTCP or noise) on the port of the publisher's
        /// (`publisher`) or the subscriber's peer connection, from anyone.
        Datagram {
            /// Whether it is the publisher's port.
            publisher: bool,
            /// The datagram.
            bytes: &'a [u8],
        },
    }

    /// Runs what arrives from the network through what a participant does with it
    /// (`Participant::on_signal` and its datagram path, without sending anything): the room's
    /// participants and whom the agent listens to, the subscriber's answer to an offer and the
    /// publisher's offer and its answer (str0m's SDP), trickled candidates, datagrams into the
    /// peer connections. Returns, per arrival that decoded to something, the response's name
    /// (`"datagram"` for a datagram) or the error it caused. The agent listens for `user_id`.
    pub fn signal_messages(arrivals: &[Arrival], user_id: &str) -> Vec<Result<&'static str>> {
        block_on(async {
            let mut room = Room::new(user_id);
            let mut subscriber: Option<Peer> = None;
            let mut publisher: Option<Peer> = None;
            let mut answers = Vec::new();
            let mut events = Vec::new();
            for arrival in arrivals {
                let bytes = match *arrival {
                    Arrival::Signal(bytes) => bytes,
                    Arrival::Datagram {
                        publisher: to_publisher,
                        bytes,
                    } => {
                        let peer = peer(if to_publisher {
                            &mut publisher
                        } else {
                            &mut subscriber
                        })
                        .await;
                        let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
                        answers.push(peer.on_datagram(bytes, from).map(|()| "datagram"));
                        if let Err(e) = peer.drain_quietly(&mut events) {
                            answers.push(Err(e));
                        }
                        events.clear();
                        continue;
                    }
                };
                let response = match signal::decode_response(bytes) {
                    None => continue,
                    Some(Err(e)) => {
                        answers.push(Err(e));
                        continue;
                    }
                    Some(Ok(response)) => response,
                };
                let kind = signal::kind(&response);
                let outcome = match response {
                    Response::Join(join) => {
                        room.update(&join.other_participants);
                        Ok(())
                    }
                    Response::Offer(offer) => {
                        room.map_tracks(&offer.mid_to_track_id);
                        let peer = peer(&mut subscriber).await;
                        peer.accept_offer(&offer.sdp).map(drop)
                    }
                    Response::Answer(answer) => {
                        peer(&mut publisher).await.accept_answer(&answer.sdp)
                    }
                    Response::Trickle(trickle) => {
                        let target = if trickle.target == proto::SignalTarget::Publisher as i32 {
                            &mut publisher
                        } else {
                            &mut subscriber
                        };
                        peer(target)
                            .await
                            .add_remote_candidate(&trickle.candidate_init)
                    }
                    Response::TrackPublished(published) if published.cid == AGENT_CID => {
                        peer(&mut publisher)
                            .await
                            .offer_publish(AGENT_CID)
                            .map(drop)
                    }
                    Response::Update(update) => {
                        room.update(&update.participants);
                        Ok(())
                    }
                    Response::Leave(leave) => {
                        signal::leave_reason(leave.reason);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                // What the agent asks of the room next: whose audio it hears.
                if let Some(track) = room.user_track().map(str::to_owned) {
                    assert!(
                        room.user_identity().is_some(),
                        "a user track without a user"
                    );
                    let _ = room.is_user_audio(&track);
                }
                answers.push(outcome.map(|()| kind));
                // As after every change: the peer connections' output (nothing is sent).
                for peer in [&mut publisher, &mut subscriber].into_iter().flatten() {
                    if let Err(e) = peer.drain_quietly(&mut events) {
                        answers.push(Err(e));
                    }
                }
                events.clear();
            }
            answers
        })
    }

    /// The peer connection in `slot`, made on first use (on the loopback address).
    async fn peer(slot: &mut Option<Peer>) -> &mut Peer {
        if slot.is_none() {
            let peer = Peer::new(IpAddr::V4(Ipv4Addr::LOCALHOST), NAME, Role::Offerer).await;
            *slot = Some(peer.expect("a peer connection on the loopback address"));
        }
        slot.as_mut().expect("made above")
    }

    /// A binary message of the agent-worker connection, decoded as the worker decodes it; for a
    /// job assignment, the session the worker would open for it and the dispatch information the
    /// host would get. `Ok(None)`: a message of a newer protocol, ignored.
    #[allow(clippy::type_complexity)]
    pub fn worker_message(
        bytes: &[u8],
    ) -> Result<Option<(FromServer, Option<(SessionConfig, serde_json::Value)>)>> {
        let Some(message) = worker::decode_server_message(bytes)? else {
            return Ok(None);
        };
        let session = match &message {
            FromServer::Assignment(assignment) => assignment.job.as_ref().map(|job| {
                let url = assignment.url.clone().filter(|u| !u.is_empty());
                let token = Secret::new(assignment.token.clone());
                worker::job_session(job, url, token, format!("agent-{}", job.id))
            }),
            _ => None,
        };
        Ok(Some((message, session)))
    }
}

/// Direct WebRTC signalling: what a browser posts to `/api/offer` through what a call does with
/// it.
pub mod webrtc {
    use std::net::{IpAddr, Ipv4Addr};

    use super::block_on;
    use crate::error::Error;
    use crate::transport::media::peer::Peer;
    use crate::transport::webrtc::call;
    use crate::transport::webrtc::offer::{self, Refusal};

    /// One request of a client, as the signalling server gets its body.
    #[derive(Debug, Clone, Copy)]
    pub enum Request<'a> {
        /// `POST /api/offer`: a new call, or a renegotiation of the last answered one.
        Offer(&'a [u8]),
        /// `PATCH /api/offer`: trickled candidates for the last answered call.
        Patch(&'a [u8]),
    }

    /// What became of one request.
    #[derive(Debug)]
    pub enum Outcome {
        /// Refused with an HTTP status and a JSON body.
        Refused(Refusal),
        /// An offer answered: the answer's SDP.
        Answered(String),
        /// Candidates taken (some may have been refused one by one).
        Patched(Vec<Result<(), Error>>),
    }

    /// Runs the requests in order: a body that parses as an offer is answered by a new peer
    /// connection on the loopback address (`call::answer`), or, when it names a `pc_id` and a call
    /// was answered before, renegotiated on that call's connection; candidates go to the last
    /// answered connection. Nothing is sent: what str0m would transmit is dropped. Per request:
    /// its outcome, and the error the last connection reported afterwards, if any.
    pub fn offer_requests(requests: &[Request]) -> Vec<(Outcome, Option<Error>)> {
        block_on(async {
            let mut last: Option<Peer> = None;
            let mut events = Vec::new();
            let mut outcomes = Vec::new();
            for request in requests {
                let outcome = match *request {
                    Request::Offer(body) => match offer::parse_offer(body) {
                        Err(refusal) => Outcome::Refused(refusal),
                        Ok(request) => match (&mut last, request.pc_id.is_some()) {
                            (Some(peer), true) if request.restart_pc != Some(true) => {
                                match peer.accept_offer(&request.sdp) {
                                    Ok(answer) => Outcome::Answered(answer),
                                    Err(e) => Outcome::Refused(Refusal::new(
                                        400,
                                        format!("sdp: {}", e.message()),
                                    )),
                                }
                            }
                            _ => match call::answer(IpAddr::V4(Ipv4Addr::LOCALHOST), &request.sdp)
                                .await
                            {
                                Ok((peer, answer)) => {
                                    last = Some(peer);
                                    Outcome::Answered(answer)
                                }
                                Err(refusal) => Outcome::Refused(refusal),
                            },
                        },
                    },
                    Request::Patch(body) => match offer::parse_patch(body) {
                        Err(refusal) => Outcome::Refused(refusal),
                        Ok(patch) => Outcome::Patched(
                            patch
                                .candidates
                                .iter()
                                .filter_map(offer::candidate_init)
                                .map(|init| match &mut last {
                                    Some(peer) => peer.add_remote_candidate(&init),
                                    None => Ok(()),
                                })
                                .collect(),
                        ),
                    },
                };
                // As after every change: the connection's output (nothing is sent).
                let drained = match &mut last {
                    Some(peer) => peer.drain_quietly(&mut events).err(),
                    None => None,
                };
                events.clear();
                outcomes.push((outcome, drained));
            }
            outcomes
        })
    }
}

/// Phone media streams: the text frames a telephony provider sends one call.
pub mod phone {
    use tokio_tungstenite::tungstenite::Message;

    use crate::error::Result;
    use crate::transport::media::g711::Law;
    use crate::transport::phone::protocol::{self, Dialect, Inbound};
    use crate::transport::phone::stream::Early;

    /// What a call made of one text frame: the message parsed on its own, and what the call did
    /// with it while its session was starting (`Ok(Some(why))`: the call ended).
    pub type Heard = (Result<String>, Result<Option<String>>);

    /// Runs `frames` of `dialect` through the parser and, in order, through what a call does
    /// with them while its session starts (base64 and G.711 decoding of the caller's audio,
    /// the last second kept, keys pressed, `stop`), with the law a `start` among them named
    /// (μ-law before one). Per frame: the parsed message's kind (or the error) and the call's
    /// answer.
    pub fn call_frames(dialect: Dialect, frames: &[&str]) -> Vec<Heard> {
        let mut early = Early::new(Law::MuLaw);
        frames
            .iter()
            .map(|text| {
                let parsed = protocol::parse(dialect, text).map(|inbound| match inbound {
                    Inbound::Start(start) => {
                        early = Early::new(start.law);
                        format!("start {}", start.stream_id)
                    }
                    other => format!("{other:?}").chars().take(40).collect(),
                });
                let answer = early.on_frame(dialect, Some(Ok(Message::text(*text))));
                (parsed, answer)
            })
            .collect()
    }
}
