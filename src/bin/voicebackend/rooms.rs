//! `voicebackend rooms …`: LiveKit's room service from the command line (the server and keys of
//! `agent`: `--url` or `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`, or `--config`).

use voicebackend::BackendConfig;
use voicebackend::transport::livekit::RoomService;

use super::{Args, USAGE, livekit_backend_json};

/// Runs one room-service command and prints its answer as JSON.
pub fn run(args: &Args) -> Result<(), String> {
    args.only(&["url", "config", "agent-name", "metadata"])?;
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let request = match words.as_slice() {
        ["list"] => serde_json::json!({"op": "list_rooms"}),
        ["create", room] => serde_json::json!({"op": "create_room", "room": room}),
        ["delete", room] => serde_json::json!({"op": "delete_room", "room": room}),
        ["participants", room] => serde_json::json!({"op": "list_participants", "room": room}),
        ["remove", room, identity] => {
            serde_json::json!({"op": "remove_participant", "room": room, "identity": identity})
        }
        ["dispatch", room] => serde_json::json!({
            "op": "create_dispatch",
            "room": room,
            "agent_name": args.value(&["agent-name"]).unwrap_or_default(),
            "metadata": args.value(&["metadata"]).unwrap_or_default(),
        }),
        _ => return Err(format!("rooms: unknown or incomplete command\n\n{USAGE}")),
    };
    let config =
        BackendConfig::from_json(&livekit_backend_json(args, None)?).map_err(|e| e.to_string())?;
    let service = RoomService::from_backend_config(&config).map_err(|e| e.to_string())?;
    let answer = service
        .call(&request.to_string())
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    );
    Ok(())
}
