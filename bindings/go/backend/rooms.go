package backend

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"time"
	"unsafe"
)

// Rooms is the room service of a livekit backend's server (vb_backend_room_service): LiveKit's
// Twirp API, with admin tokens signed from the backend's api_key and api_secret. Any backend
// state (started or not). Each call blocks for the request, provider_config.timeout_ms at most;
// the engine call is not interruptible, ctx is checked before it.
//
// Errors are *BackendError: ErrCodeInvalidConfig on a backend that is not livekit,
// ErrCodeNotFound for an unknown room, ErrCodeUnauthorized for refused keys,
// ErrCodeConnectionFailed for an unreachable server, ErrCodeTimeout.
type Rooms struct {
	b *Backend
}

// Room is a LiveKit room as the room service lists it.
type Room struct {
	Name            string
	SID             string
	NumParticipants int
	CreatedAt       time.Time // second precision
}

// roomJSON is a Room as the engine writes it.
type roomJSON struct {
	Name            string `json:"name"`
	SID             string `json:"sid"`
	NumParticipants int    `json:"num_participants"`
	CreatedAt       int64  `json:"created_at"` // Unix seconds
}

func (j roomJSON) room() Room {
	return Room{Name: j.Name, SID: j.SID, NumParticipants: j.NumParticipants, CreatedAt: time.Unix(j.CreatedAt, 0)}
}

// Participant is a participant of a LiveKit room.
type Participant struct {
	Identity string `json:"identity"`
	SID      string `json:"sid"`
	// Kind: "standard", "agent", "ingress", "egress", "sip".
	Kind string `json:"kind"`
	// State: "joining", "joined", "active", "disconnected".
	State string `json:"state"`
}

// Rooms returns the room service of the backend's LiveKit server. The Rooms value is cheap;
// its calls fail once the backend is closed.
func (b *Backend) Rooms() *Rooms { return &Rooms{b: b} }

// CreateRoom creates the room (or returns it when it exists).
func (r *Rooms) CreateRoom(ctx context.Context, name string) (*Room, error) {
	var answer struct {
		Room *roomJSON `json:"room"`
	}
	if err := r.call(ctx, "Rooms.CreateRoom", map[string]any{"op": "create_room", "room": name}, &answer); err != nil {
		return nil, err
	}
	if answer.Room == nil {
		return nil, &BackendError{Op: "Rooms.CreateRoom", Code: ErrCodeInternal, Message: "the answer holds no room"}
	}
	room := answer.Room.room()
	return &room, nil
}

// ListRooms returns the server's rooms.
func (r *Rooms) ListRooms(ctx context.Context) ([]Room, error) {
	var answer struct {
		Rooms []roomJSON `json:"rooms"`
	}
	if err := r.call(ctx, "Rooms.ListRooms", map[string]any{"op": "list_rooms"}, &answer); err != nil {
		return nil, err
	}
	rooms := make([]Room, len(answer.Rooms))
	for i, j := range answer.Rooms {
		rooms[i] = j.room()
	}
	return rooms, nil
}

// DeleteRoom deletes the room; its participants are disconnected.
func (r *Rooms) DeleteRoom(ctx context.Context, name string) error {
	return r.call(ctx, "Rooms.DeleteRoom", map[string]any{"op": "delete_room", "room": name}, nil)
}

// ListParticipants returns the participants of the room.
func (r *Rooms) ListParticipants(ctx context.Context, room string) ([]Participant, error) {
	var answer struct {
		Participants []Participant `json:"participants"`
	}
	if err := r.call(ctx, "Rooms.ListParticipants", map[string]any{"op": "list_participants", "room": room}, &answer); err != nil {
		return nil, err
	}
	return answer.Participants, nil
}

// RemoveParticipant disconnects the participant with that identity from the room.
func (r *Rooms) RemoveParticipant(ctx context.Context, room, identity string) error {
	return r.call(ctx, "Rooms.RemoveParticipant",
		map[string]any{"op": "remove_participant", "room": room, "identity": identity}, nil)
}

// CreateDispatch asks the server to dispatch the agent registered as agentName (a worker's
// provider_config.worker.agent_name) to the room, with metadata for its job; returns the
// dispatch id (SessionInfo.DispatchID of the session that arrives).
func (r *Rooms) CreateDispatch(ctx context.Context, room, agentName, metadata string) (string, error) {
	var answer struct {
		DispatchID string `json:"dispatch_id"`
	}
	if err := r.call(ctx, "Rooms.CreateDispatch",
		map[string]any{"op": "create_dispatch", "room": room, "agent_name": agentName, "metadata": metadata}, &answer); err != nil {
		return "", err
	}
	return answer.DispatchID, nil
}

// roomServiceBuffer holds every answer but long room lists in one call. The request is not
// repeated for a bigger buffer unless it only reads: a repeated create_dispatch would dispatch
// twice (its answer, like those of the other writes, is far smaller anyway).
const roomServiceBuffer = 16 << 10

// call runs one request and decodes the answer into out (nil: the answer is {}).
func (r *Rooms) call(ctx context.Context, op string, request map[string]any, out any) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	js, err := json.Marshal(request)
	if err != nil {
		return &BackendError{Op: op, Code: ErrCodeInvalidArgument, Message: err.Error()}
	}
	creq, err := cString(op, "request", string(js))
	if err != nil {
		return err
	}
	defer freeCString(creq)
	retry := request["op"] == "list_rooms" || request["op"] == "list_participants" || request["op"] == "create_room"
	r.b.life.RLock()
	defer r.b.life.RUnlock()
	if r.b.c == nil {
		return closedBackend(op)
	}
	buf := make([]byte, roomServiceBuffer)
	for {
		var needed C.size_t
		err := call(op, func() C.enum_VbStatus {
			return C.vb_backend_room_service(r.b.c, creq, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &needed)
		})
		if err == nil {
			if out == nil {
				return nil
			}
			answer := C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
			if jerr := json.Unmarshal([]byte(answer), out); jerr != nil {
				return &BackendError{Op: op, Code: ErrCodeInternal, Message: "vb_backend_room_service: " + jerr.Error()}
			}
			return nil
		}
		if !retry || int(needed) <= len(buf) {
			return err
		}
		buf = make([]byte, int(needed))
	}
}
