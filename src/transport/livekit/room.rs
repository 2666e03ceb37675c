//! Who is in the room and whom the agent listens to.
//!
//! The agent listens to the participant whose identity is the session's `user_id`, or, when
//! none has it, to the first participant that publishes a microphone track (other agents are
//! never the user). A participant with the session's `user_id` who arrives later takes over.
//! Audio of anyone else is not heard. The server tells which track each incoming media line
//! carries (`mid_to_track_id` of its offers).

use std::collections::HashMap;

use livekit_protocol as proto;
use proto::participant_info::{Kind, State};

/// A participant the agent may listen to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    identity: String,
    /// Microphone tracks it publishes.
    mics: Vec<String>,
    /// Order of arrival.
    seen: u64,
}

/// What changed about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// The agent now listens to this participant.
    Listening {
        /// Its identity.
        identity: String,
    },
    /// The participant the agent listened to left the room.
    UserLeft {
        /// Its identity.
        identity: String,
    },
}

/// The room as the agent sees it.
#[derive(Debug, Default)]
pub struct Room {
    user_id: String,
    remotes: HashMap<String, Remote>,
    /// Incoming media line → track sid.
    mids: HashMap<String, String>,
    /// The sid of the participant listened to.
    user: Option<String>,
    arrivals: u64,
}

impl Room {
    /// A room where the agent prefers the participant `user_id` ("" for whoever speaks first).
    pub fn new(user_id: &str) -> Room {
        Room {
            user_id: user_id.to_owned(),
            ..Room::default()
        }
    }

    /// Takes participants the server described (at join, and in every update) and says whether
    /// that changed whom the agent listens to.
    pub fn update(&mut self, participants: &[proto::ParticipantInfo]) -> Vec<RoomChange> {
        let mut changes = Vec::new();
        for p in participants {
            if p.state == State::Disconnected as i32 {
                if let Some(gone) = self.remotes.remove(&p.sid) {
                    if self.user.as_deref() == Some(p.sid.as_str()) {
                        self.user = None;
                        changes.push(RoomChange::UserLeft {
                            identity: gone.identity,
                        });
                    }
                }
                continue;
            }
            if p.kind == Kind::Agent as i32 {
                continue;
            }
            let mics = p
                .tracks
                .iter()
                .filter(|t| {
                    t.r#type == proto::TrackType::Audio as i32
                        && t.source != proto::TrackSource::ScreenShareAudio as i32
                })
                .map(|t| t.sid.clone())
                .collect();
            let seen = self.remotes.get(&p.sid).map_or_else(
                || {
                    self.arrivals += 1;
                    self.arrivals
                },
                |r| r.seen,
            );
            self.remotes.insert(
                p.sid.clone(),
                Remote {
                    identity: p.identity.clone(),
                    mics,
                    seen,
                },
            );
        }
        if changes.is_empty() {
            if let Some(identity) = self.choose() {
                changes.push(RoomChange::Listening { identity });
            }
        }
        changes
    }

    /// Picks the user when there is none yet or when the preferred one shows up; returns the
    /// identity of a new choice.
    fn choose(&mut self) -> Option<String> {
        let publishing = |r: &&Remote| !r.mics.is_empty();
        let preferred = self
            .remotes
            .iter()
            .filter(|(_, r)| !self.user_id.is_empty() && r.identity == self.user_id)
            .find(|(_, r)| publishing(r));
        let current_is_preferred = self
            .user
            .as_ref()
            .and_then(|sid| self.remotes.get(sid))
            .is_some_and(|r| r.identity == self.user_id);
        let pick = match (preferred, &self.user) {
            (Some((sid, _)), _) if !current_is_preferred => Some(sid.clone()),
            (_, Some(_)) => None,
            (None, None) => self
                .remotes
                .iter()
                .filter(|(_, r)| publishing(r))
                .min_by_key(|(_, r)| r.seen)
                .map(|(sid, _)| sid.clone()),
            _ => None,
        }?;
        self.user = Some(pick.clone());
        self.remotes.get(&pick).map(|r| r.identity.clone())
    }

    /// Learns which track each media line of the server's offer carries.
    pub fn map_tracks(&mut self, mid_to_track_id: &HashMap<String, String>) {
        for (mid, track) in mid_to_track_id {
            self.mids.insert(mid.clone(), track.clone());
        }
    }

    /// Whether audio on media line `mid` is the user's microphone.
    pub fn is_user_audio(&self, mid: &str) -> bool {
        let Some(track) = self.mids.get(mid) else {
            return false;
        };
        self.user
            .as_ref()
            .and_then(|sid| self.remotes.get(sid))
            .is_some_and(|r| r.mics.iter().any(|m| m == track))
    }

    /// The user's microphone track, for captions of what they said.
    pub fn user_track(&self) -> Option<&str> {
        self.user
            .as_ref()
            .and_then(|sid| self.remotes.get(sid))
            .and_then(|r| r.mics.first())
            .map(String::as_str)
    }

    /// The identity of the participant listened to.
    pub fn user_identity(&self) -> Option<&str> {
        self.user
            .as_ref()
            .and_then(|sid| self.remotes.get(sid))
            .map(|r| r.identity.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(sid: &str, identity: &str, mic: Option<&str>) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            state: State::Active as i32,
            tracks: mic
                .map(|m| proto::TrackInfo {
                    sid: m.into(),
                    r#type: proto::TrackType::Audio as i32,
                    source: proto::TrackSource::Microphone as i32,
                    ..proto::TrackInfo::default()
                })
                .into_iter()
                .collect(),
            ..proto::ParticipantInfo::default()
        }
    }

    fn listening(identity: &str) -> Vec<RoomChange> {
        vec![RoomChange::Listening {
            identity: identity.into(),
        }]
    }

    #[test]
    fn the_first_to_publish_a_microphone_is_heard_until_the_named_user_comes() {
        let mut room = Room::new("alice");
        assert!(room.update(&[participant("PA_b", "bob", None)]).is_empty());
        assert_eq!(
            room.update(&[participant("PA_b", "bob", Some("TR_b"))]),
            listening("bob")
        );
        room.map_tracks(&HashMap::from([
            ("0".to_owned(), "TR_b".to_owned()),
            ("1".to_owned(), "TR_a".to_owned()),
        ]));
        assert!(room.is_user_audio("0") && !room.is_user_audio("1"));
        assert_eq!(
            room.update(&[participant("PA_a", "alice", Some("TR_a"))]),
            listening("alice")
        );
        assert!(room.is_user_audio("1") && !room.is_user_audio("0"));
        assert_eq!(room.user_track(), Some("TR_a"));
        // Bob going does not matter; Alice going does.
        let mut gone = participant("PA_b", "bob", None);
        gone.state = State::Disconnected as i32;
        assert!(room.update(&[gone]).is_empty());
        let mut gone = participant("PA_a", "alice", None);
        gone.state = State::Disconnected as i32;
        assert_eq!(
            room.update(&[gone]),
            vec![RoomChange::UserLeft {
                identity: "alice".into()
            }]
        );
        assert_eq!(room.user_identity(), None);
    }

    #[test]
    fn other_agents_are_never_the_user() {
        let mut room = Room::new("");
        let mut agent = participant("PA_x", "other-agent", Some("TR_x"));
        agent.kind = Kind::Agent as i32;
        assert!(room.update(&[agent]).is_empty());
        assert_eq!(
            room.update(&[participant("PA_u", "u", Some("TR_u"))]),
            listening("u")
        );
    }
}
