//! Bringing back a room whose worker died. livekit-server 1.13.5 (open source) does not dispatch
//! a dead worker's jobs again — it forgets them (`deregisterJob`: "TODO update dispatch state") —
//! so a surviving worker does, through the room service: when the room still exists (the same
//! room, by its sid), a user is in it and no agent is, it creates an explicit dispatch; the
//! server picks the worker, and that worker's session goes on with the conversation (the
//! backend's shared store: `persistence.shared_dir`).
//!
//! A job's session carries the conversation id `livekit:<room sid>`: a room deleted and created
//! again under its name is another conversation.

use super::TRANSPORT;
use super::rooms::RoomService;
use super::settings::Settings;
use crate::config::SessionConfig;
use crate::error::Result;
use crate::transport::Recovered;

/// Prefix of the conversation ids of LiveKit jobs.
const PREFIX: &str = "livekit:";
/// The key of a job session's `metadata` naming its agent participant's identity.
pub const AGENT_IDENTITY: &str = "livekit_agent_identity";

/// The conversation id of a job in the room with server id `room_sid` (`livekit:RM_…`).
pub fn conversation_id(room_sid: &str) -> String {
    format!("{PREFIX}{room_sid}")
}

/// Whether the conversation of a session with `config` is a LiveKit room (the workers sharing a
/// directory of conversations serve one LiveKit deployment; the room service then says whether
/// the room is still there).
pub fn can_recover(config: &SessionConfig) -> bool {
    config.transport == TRANSPORT && config.room.is_some()
}

/// Brings conversation `id` (a room of the server of `settings`) back: dispatches an agent named
/// `agent_name` to it when a user is waiting and no agent is there.
pub fn recover(
    settings: &Settings,
    agent_name: &str,
    id: &str,
    config: &SessionConfig,
) -> Result<Recovered> {
    let Some(room) = config.room.as_deref() else {
        return Ok(Recovered::Over("it names no room".into()));
    };
    let sid = id.strip_prefix(PREFIX).unwrap_or_default();
    let service = RoomService::from_settings(settings)?;
    let Some(found) = service.find_room(room)? else {
        return Ok(Recovered::Over(format!("room '{room}' is gone")));
    };
    if !sid.is_empty() && found.sid != sid {
        return Ok(Recovered::Over(format!(
            "room '{room}' is another room now ({}, not {sid})",
            found.sid
        )));
    }
    let present: Vec<_> = service
        .list_participants(room)?
        .into_iter()
        .filter(|p| p.state != "disconnected")
        .collect();
    if !present.iter().any(|p| p.kind == "standard") {
        return Ok(Recovered::Over(format!("nobody is left in room '{room}'")));
    }
    // The dead worker's agent stays listed for a while (the server keeps a participant that
    // vanished for it to resume): it is removed. Another agent has taken the room already (its
    // session renews the conversation, which is then not stale for long).
    let dead = config.metadata[AGENT_IDENTITY].as_str().unwrap_or_default();
    for agent in present.iter().filter(|p| p.kind == "agent") {
        if agent.identity != dead {
            return Ok(Recovered::NotYet(format!(
                "agent '{}' is in room '{room}'",
                agent.identity
            )));
        }
        service.remove_participant(room, dead)?;
    }
    let dispatch = service.create_dispatch(room, agent_name, "")?;
    Ok(Recovered::Dispatched(format!(
        "dispatch {dispatch} to room '{room}'"
    )))
}
