//! LiveKit's room service for hosts: create, list and delete rooms, list and remove
//! participants, dispatch an agent to a room — over LiveKit's Twirp HTTP API through the
//! `livekit-api` crate (its `RoomClient` and `AgentDispatchClient`, which sign a short-lived admin
//! token per request from the backend's key and secret).
//!
//! Calls block the calling thread (each runs on a small runtime of its own): call them from any
//! host thread, never from inside an async task. [`RoomService::call`] takes and returns JSON,
//! for the C ABI, the Go binding and the CLI.

use std::time::Duration;

use livekit_api::services::ServiceError;
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_protocol as proto;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::settings::{NAME, Settings};
use crate::config::BackendConfig;
use crate::error::{Error, Result, VbStatus};
use crate::net::redact_url;

/// A room, as the service lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// Its name.
    pub name: String,
    /// The server's id for it.
    pub sid: String,
    /// Participants in it now.
    pub num_participants: u32,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

/// A participant, as the service lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantInfo {
    /// Its identity.
    pub identity: String,
    /// The server's id for it.
    pub sid: String,
    /// `"standard"`, `"agent"`, `"ingress"`, `"egress"`, `"sip"`.
    pub kind: String,
    /// `"joining"`, `"joined"`, `"active"`, `"disconnected"`.
    pub state: String,
}

/// The room service of one LiveKit server.
pub struct RoomService {
    url: String,
    rooms: RoomClient,
    dispatch: AgentDispatchClient,
}

impl std::fmt::Debug for RoomService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomService")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// A JSON request to [`RoomService::call`].
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    CreateRoom {
        room: String,
    },
    ListRooms,
    DeleteRoom {
        room: String,
    },
    ListParticipants {
        room: String,
    },
    RemoveParticipant {
        room: String,
        identity: String,
    },
    CreateDispatch {
        room: String,
        #[serde(default)]
        agent_name: String,
        #[serde(default)]
        metadata: String,
    },
}

impl RoomService {
    /// The room service of the server a `livekit` backend configuration names (its `url`, key
    /// and secret, with the same environment fallbacks).
    pub fn from_backend_config(config: &BackendConfig) -> Result<RoomService> {
        if config.provider != NAME {
            return Err(Error::invalid_config(format!(
                "the room service needs a '{NAME}' backend, not '{}'",
                config.provider
            )));
        }
        RoomService::from_settings(&Settings::from_backend_config(config)?)
    }

    /// The room service of the server `settings` name.
    pub fn from_settings(settings: &Settings) -> Result<RoomService> {
        // Twirp is HTTP on the same port as the signal WebSocket.
        let url = if let Some(rest) = settings.url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = settings.url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            settings.url.clone()
        };
        let (key, secret) = (settings.api_key.expose(), settings.api_secret.expose());
        let timeout = settings.timeout.max(Duration::from_secs(1));
        Ok(RoomService {
            rooms: RoomClient::with_api_key(&url, key, secret)
                .with_failover(false)
                .with_request_timeout(timeout),
            dispatch: AgentDispatchClient::with_api_key(&url, key, secret),
            url,
        })
    }

    /// Creates room `room` (or returns it if it exists).
    pub fn create_room(&self, room: &str) -> Result<RoomInfo> {
        let created = self.run(
            "create_room",
            self.rooms.create_room(room, CreateRoomOptions::default()),
        )?;
        Ok(room_info(created))
    }

    /// Every room on the server.
    pub fn list_rooms(&self) -> Result<Vec<RoomInfo>> {
        let rooms = self.run("list_rooms", self.rooms.list_rooms(Vec::new()))?;
        Ok(rooms.into_iter().map(room_info).collect())
    }

    /// Room `room`, if the server has it.
    pub fn find_room(&self, room: &str) -> Result<Option<RoomInfo>> {
        let rooms = self.run("list_rooms", self.rooms.list_rooms(vec![room.to_owned()]))?;
        Ok(rooms.into_iter().find(|r| r.name == room).map(room_info))
    }

    /// Deletes room `room`, disconnecting everyone in it. `VB_ERR_NOT_FOUND` when there is none.
    pub fn delete_room(&self, room: &str) -> Result<()> {
        self.run("delete_room", self.rooms.delete_room(room))
    }

    /// The participants of room `room`.
    pub fn list_participants(&self, room: &str) -> Result<Vec<ParticipantInfo>> {
        let participants = self.run("list_participants", self.rooms.list_participants(room))?;
        Ok(participants.into_iter().map(participant_info).collect())
    }

    /// Removes participant `identity` from room `room`.
    pub fn remove_participant(&self, room: &str, identity: &str) -> Result<()> {
        self.run(
            "remove_participant",
            self.rooms.remove_participant(room, identity),
        )
    }

    /// Asks the server to dispatch an agent to room `room`: workers registered as `agent_name`
    /// (`""`: unnamed workers) get the job, with `metadata`. Returns the dispatch id.
    pub fn create_dispatch(&self, room: &str, agent_name: &str, metadata: &str) -> Result<String> {
        let request = proto::CreateAgentDispatchRequest {
            room: room.to_owned(),
            agent_name: agent_name.to_owned(),
            metadata: metadata.to_owned(),
            ..Default::default()
        };
        let dispatch = self.run("create_dispatch", self.dispatch.create_dispatch(request))?;
        Ok(dispatch.id)
    }

    /// One call as JSON: `{"op": "create_room" | "list_rooms" | "delete_room" |
    /// "list_participants" | "remove_participant" | "create_dispatch", …}` with `room`,
    /// `identity`, `agent_name`, `metadata` as the operation needs. Answers `{"room": {…}}`,
    /// `{"rooms": […]}`, `{"participants": […]}`, `{"dispatch_id": "…"}` or `{}`.
    pub fn call(&self, request_json: &str) -> Result<Value> {
        let request: Request = serde_json::from_str(request_json)
            .map_err(|e| Error::invalid_argument(format!("room service request: {e}")))?;
        Ok(match request {
            Request::CreateRoom { room } => {
                serde_json::json!({ "room": to_json(&self.create_room(&room)?) })
            }
            Request::ListRooms => serde_json::json!({ "rooms": to_json(&self.list_rooms()?) }),
            Request::DeleteRoom { room } => {
                self.delete_room(&room)?;
                serde_json::json!({})
            }
            Request::ListParticipants { room } => {
                serde_json::json!({ "participants": to_json(&self.list_participants(&room)?) })
            }
            Request::RemoveParticipant { room, identity } => {
                self.remove_participant(&room, &identity)?;
                serde_json::json!({})
            }
            Request::CreateDispatch {
                room,
                agent_name,
                metadata,
            } => serde_json::json!({
                "dispatch_id": self.create_dispatch(&room, &agent_name, &metadata)?
            }),
        })
    }

    /// Runs one request to completion on a runtime of its own.
    fn run<T>(
        &self,
        op: &str,
        request: impl std::future::Future<Output = std::result::Result<T, ServiceError>>,
    ) -> Result<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("{NAME}: {op}: no runtime: {e}")))?;
        runtime
            .block_on(request)
            .map_err(|e| service_error(op, &self.url, e))
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn room_info(room: proto::Room) -> RoomInfo {
    RoomInfo {
        name: room.name,
        sid: room.sid,
        num_participants: room.num_participants,
        created_at: room.creation_time,
    }
}

fn participant_info(p: proto::ParticipantInfo) -> ParticipantInfo {
    let kind = proto::participant_info::Kind::try_from(p.kind)
        .map_or("unknown", |k| match k {
            proto::participant_info::Kind::Standard => "standard",
            proto::participant_info::Kind::Agent => "agent",
            proto::participant_info::Kind::Ingress => "ingress",
            proto::participant_info::Kind::Egress => "egress",
            proto::participant_info::Kind::Sip => "sip",
            _ => "other",
        })
        .to_owned();
    let state = proto::participant_info::State::try_from(p.state)
        .map_or("unknown", |s| match s {
            proto::participant_info::State::Joining => "joining",
            proto::participant_info::State::Joined => "joined",
            proto::participant_info::State::Active => "active",
            proto::participant_info::State::Disconnected => "disconnected",
        })
        .to_owned();
    ParticipantInfo {
        identity: p.identity,
        sid: p.sid,
        kind,
        state,
    }
}

/// The service's error as a status: not found, refused credentials, an unreachable server.
fn service_error(op: &str, url: &str, e: ServiceError) -> Error {
    use livekit_api::services::ServerError;
    let (status, detail) = match &e {
        ServiceError::Twirp(ServerError::Twirp(code)) => (
            match code.code.as_str() {
                "not_found" => VbStatus::VB_ERR_NOT_FOUND,
                "unauthenticated" | "permission_denied" => VbStatus::VB_ERR_UNAUTHORIZED,
                "invalid_argument" | "malformed" | "out_of_range" => {
                    VbStatus::VB_ERR_INVALID_ARGUMENT
                }
                "already_exists" | "failed_precondition" => VbStatus::VB_ERR_INVALID_STATE,
                "resource_exhausted" => VbStatus::VB_ERR_RATE_LIMITED,
                "deadline_exceeded" => VbStatus::VB_ERR_TIMEOUT,
                _ => VbStatus::VB_ERR_PROVIDER,
            },
            format!("{}: {}", code.code, code.msg),
        ),
        // livekit-server answers a refused token with a plain-text 401, which the client then
        // fails to read as a Twirp error: the only non-Twirp error answer it gives.
        ServiceError::Twirp(ServerError::Request(r)) if r.is_decode() => (
            VbStatus::VB_ERR_UNAUTHORIZED,
            format!(
                "the server refused the request without a Twirp error (it answers so when it refuses the key: check api_key and api_secret): {r}"
            ),
        ),
        ServiceError::Twirp(ServerError::Request(r)) if r.is_timeout() => {
            (VbStatus::VB_ERR_TIMEOUT, r.to_string())
        }
        ServiceError::Twirp(ServerError::Request(r)) => {
            (VbStatus::VB_ERR_CONNECTION_FAILED, r.to_string())
        }
        other => (VbStatus::VB_ERR_PROVIDER, other.to_string()),
    };
    Error::new(
        status,
        format!("{NAME}: {op} at {}: {detail}", redact_url(url)),
    )
}
