/* voicebackend.h: the C API of libvoicebackend, a realtime voice-agent engine. C ABI version 1.
 *
 * A backend is one configured engine, created from JSON and started once; each conversation is a
 * session on it. The host pushes the microphone's PCM with vb_session_process_audio and pulls the
 * agent's voice with vb_session_read_audio (or Opus packets, with vb_session_process_opus and
 * vb_session_read_opus): these calls are realtime-safe (they never block, allocate or lock) and may
 * run in an audio callback. When a user turn ends, the engine calls the host's on_transcript with
 * the final transcript, on an agent thread; the host streams its answer with vb_reply_write and
 * speech synthesis starts with the first sentence. Events (states, transcripts, latencies, errors)
 * are polled with vb_session_poll_event or pushed to on_event.
 *
 * Conventions: every fallible function returns VbStatus; on failure out-parameters are left
 * untouched and vb_last_error_message() says why (per OS thread, until the next vb_ call there).
 * Strings passed in are borrowed for the call; a string handed out in an event stays valid until
 * the next poll (or until on_event returns). NULL handles and bad arguments are errors, never
 * crashes. Every *_create has one *_free, and *_free(NULL) is a no-op. A function that fills a
 * caller's buffer always writes *needed (the size with the NUL) and fails on a short buffer.
 * Backend calls are thread-safe; per session, one thread at a time pushes audio, one pulls it and
 * one polls events, while control calls (start, stop, interrupt, say) are thread-safe.
 *
 * A host, in short (error checks left out; README.md shows a whole program):
 *
 *   static VbStatus on_transcript(void *user, VbSession *s, const char *text, VbReply *reply) {
 *     vb_reply_write(reply, "You said: ");
 *     vb_reply_write(reply, text);
 *     return vb_reply_end(reply);
 *   }
 *
 *   VbCallbacks callbacks = { NULL, on_transcript, NULL };
 *   VbBackend *backend;  VbSession *session;  VbEvent e;  bool has_event;
 *   vb_backend_create("{\"provider\":\"local\",\"stt_provider\":\"whisper\","
 *                     "\"tts_provider\":\"espeak\"}", &backend);
 *   vb_backend_start(backend);
 *   vb_session_create(backend, "{\"input_sample_rate\":16000}", &callbacks, &session);
 *   vb_session_start(session);
 *   while (running) {
 *     vb_session_process_audio(session, mic, 320, NULL);
 *     vb_session_read_audio(session, speaker, 320, &played);
 *     while (vb_session_poll_event(session, &e, &has_event) == VB_OK && has_event)
 *       if (e.kind == VB_EVENT_TRANSCRIPT_FINAL) printf("user: %s\n", e.text);
 *   }
 *   vb_session_free(session);
 *   vb_backend_free(backend);
 *
 * The sections below: status codes and versions, backends, sessions, replies, sessions that
 * arrive by themselves, the LiveKit room service, logging. C_API.md is the contract. This file is
 * generated from the Rust sources and build/voicebackend.h.in by build.rs: do not edit it,
 * regenerate it with VB_REGENERATE_HEADER=1 cargo build.
 */

#ifndef VOICEBACKEND_H
#define VOICEBACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Status codes, errors and versions ==========================================================
 * Every fallible call returns a VbStatus (VB_OK is 0); vb_last_error_message() says why the last
 * call on this thread failed. */

/* The longest message an Error keeps, in characters. */
#define MAX_MESSAGE_CHARS 1000

/* Status codes of the C ABI. Values are fixed by the contract (C_API.md). */
typedef enum VbStatus {
  VB_OK = 0,                     /* Success. */
  VB_ERR_INVALID_ARGUMENT = 1,   /* NULL pointer, bad length, invalid UTF-8. */
  VB_ERR_INVALID_CONFIG = 2,     /* Config JSON malformed or failed validation; the message names
                                    the field. */
  VB_ERR_PROVIDER_NOT_FOUND = 3, /* No backend/STT/TTS/S2S provider registered under that name. */
  VB_ERR_INVALID_STATE = 4,      /* The call is not allowed in the object's current state (audio
                                    before start, start after stop). */
  VB_ERR_SESSION_LIMIT = 5,      /* max_concurrent_sessions reached. */
  VB_ERR_RATE_LIMITED = 6,       /* A rate limiter refused the call. */
  VB_ERR_UNAUTHORIZED = 7,       /* The auth hook refused the session. */
  VB_ERR_CONNECTION_FAILED = 8,  /* A provider or transport could not connect. */
  VB_ERR_TIMEOUT = 9,            /* An operation ran out of time. */
  VB_ERR_PROVIDER = 10,          /* A provider answered with an error. */
  VB_ERR_BUFFER_FULL = 11,       /* Input ring full: the call accepted fewer samples than given. */
  VB_ERR_NOT_FOUND = 12,         /* No object with that id. */
  VB_ERR_PANIC = 13,             /* A panic was caught at the C boundary. */
  VB_ERR_INTERNAL = 14           /* A bug or an unexpected failure inside the engine. */
} VbStatus;

/* The C ABI version this library implements. Bumped on any incompatible change. */
#define VB_ABI_VERSION 1

/* Returns VB_ABI_VERSION as the library was built with it. Any thread. */
uint32_t vb_abi_version(void);

/* Returns the crate version, e.g. "0.1.0" (static string). Any thread. */
const char *vb_version(void);

/* Returns the name of a status, e.g. "VB_ERR_INVALID_CONFIG" (static string), or
 * "VB_STATUS_UNKNOWN" for a value that is no status. The status is read as a plain integer, so any
 * value is safe to pass. Any thread. */
const char *vb_status_str(int32_t status);

/* The reason the last failed vb_ call on this OS thread failed; "" when the last call succeeded.
 * Valid until the next vb_ call on this thread. At most about 1000 characters: a longer reason (one
 * quoting what a peer sent) keeps its start and end. */
const char *vb_last_error_message(void);

/* ==== Backends ===================================================================================
 * A backend is one configured engine: a provider from the registry ("local" is the embedded one),
 * its pipeline and its limits. Create it from JSON, add hooks, start it, then open sessions on
 * it. */

/* Writes the JSON array of registered backend provider names, e.g. ["local"], into buf. *needed
 * always gets the size including the NUL; a short buffer is VB_ERR_INVALID_ARGUMENT. Any thread.
 * Safety: buf is NULL or valid for capacity bytes; needed is NULL or valid for one write. */
enum VbStatus vb_registry_list(char *buf, size_t capacity, size_t *needed);

/* A configured engine (opaque). Create with vb_backend_create, free with vb_backend_free. */
typedef struct VbBackend VbBackend;

/* Creates a backend from JSON configuration (see C_API.md for keys and defaults). On success
 * *out_backend owns the new backend; free it with vb_backend_free. Unknown keys and out-of-range
 * values give VB_ERR_INVALID_CONFIG naming the field; unknown provider names give
 * VB_ERR_PROVIDER_NOT_FOUND. Any thread.
 * Safety: config_json is a NUL-terminated string; out_backend is valid for one write. */
enum VbStatus vb_backend_create(const char *config_json, struct VbBackend **out_backend);

/* Starts the backend's I/O runtime; sessions can be created afterwards. VB_ERR_INVALID_STATE when
 * already running or stopped. Thread-safe.
 * Safety: backend is NULL or a live backend. */
enum VbStatus vb_backend_start(struct VbBackend *backend);

/* Graceful stop: refuses new sessions, lets in-flight replies finish for up to drain_timeout_ms,
 * then stops every session (deleting their records in the session store: they completed).
 * VB_ERR_INTERNAL when the store could not be updated (the backend is stopped all the same).
 * Thread-safe.
 * Safety: backend is NULL or a live backend. */
enum VbStatus vb_backend_stop(struct VbBackend *backend, uint32_t drain_timeout_ms);

/* Stops (without draining) and frees a backend. Its sessions stop; their handles must still be
 * freed with vb_session_free. NULL is a no-op.
 * Safety: backend is NULL or a live backend that no other thread uses any more. */
void vb_backend_free(struct VbBackend *backend);

/* Overall verdict. Values fixed by the C contract. */
typedef enum VbHealthStatus {
  VB_HEALTH_HEALTHY = 0,  /* Running, below 90% of the session limit, no audio lost since the last
                             check. */
  VB_HEALTH_DEGRADED = 1, /* Running, but near the session limit or audio was lost / late since the
                             last check. */
  VB_HEALTH_UNHEALTHY = 2 /* Not running (not started, or stopped). */
} VbHealthStatus;

/* A health snapshot (vb_backend_health). */
typedef struct VbHealth {
  enum VbHealthStatus status;         /* The verdict. */
  uint32_t active_sessions;           /* Sessions created and not yet stopped. */
  uint64_t frames_processed;          /* Internal frames processed since start, all sessions. */
  uint64_t frames_dropped;            /* Input overruns and pipeline stalls that lost audio, in
                                         frames. */
  uint64_t deadline_misses;           /* Frames processed later than one frame period after they
                                         arrived. */
  uint32_t realtime_threads_elevated; /* Running sessions whose realtime thread got elevated
                                         (realtime) scheduling. */
  uint64_t media_packets_received;    /* Audio packets network transports (LiveKit, WebRTC) and
                                         vb_session_process_opus received, all sessions. */
  uint64_t media_packets_lost;        /* Of those, packets that never arrived in time (or that a
                                         host reported lost to vb_session_process_opus): their audio
                                         was concealed or rebuilt. */
  uint64_t media_frames_concealed;    /* 20 ms frames the decoders filled in (concealment, or
                                         in-band FEC). */
} VbHealth;

/* Fills *out_health with counters over all sessions and a verdict. Thread-safe.
 * Safety: backend is NULL or a live backend; out_health is NULL or valid for one write. */
enum VbStatus vb_backend_health(const struct VbBackend *backend, struct VbHealth *out_health);

/* Sessions created and not yet stopped; 0 for NULL. Thread-safe.
 * Safety: backend is NULL or a live backend. */
uint32_t vb_backend_active_sessions(const struct VbBackend *backend);

/* A custom audio processor supplied by the host (see vb_backend_add_processor). */
typedef struct VbProcessor {
  void *user_data;  /* Passed back to process. */
  const char *name; /* Unique within the backend; copied by the call. */
  int32_t order;    /* Lower runs earlier. */
  /* Realtime thread: processes the frame in pcm in place (samples long, at sample_rate Hz); must
   * not block or allocate. Called concurrently from the realtime threads of different sessions. */
  void (*process)(void *user_data, int16_t *pcm, size_t samples, uint32_t sample_rate);
} VbProcessor;

/* Adds a custom audio processor, applied in order to every frame of every session before VAD. Only
 * before vb_backend_start. The struct is copied; user_data must stay valid until the backend is
 * freed. Thread-safe.
 * Safety: backend is NULL or a live backend; processor is NULL or a valid struct whose name is a
 * NUL-terminated string. */
enum VbStatus vb_backend_add_processor(struct VbBackend *backend,
                                       const struct VbProcessor *processor);

/* An auth hook supplied by the host (see vb_backend_set_auth_hook). Both functions run on the
 * thread that calls vb_session_create, before anything of the session exists, and may be called
 * concurrently for different sessions. */
typedef struct VbAuthHook {
  void *user_data; /* Passed back to both functions. */
  /* VB_OK and the user id written NUL-terminated into user_id_out (at most user_id_capacity bytes
   * with the NUL) when token is valid, else VB_ERR_UNAUTHORIZED. metadata_json is the session's
   * metadata object. Another status is passed on to the creating call. */
  enum VbStatus (*authenticate)(void *user_data, const char *token, const char *metadata_json,
                                char *user_id_out, size_t user_id_capacity);
  /* VB_OK when user_id may perform operation ("session.create", "session.resume"), else
   * VB_ERR_UNAUTHORIZED. Another status is passed on to the creating call. */
  enum VbStatus (*authorize)(void *user_data, const char *user_id, const char *operation);
} VbAuthHook;

/* Installs the host's auth hook, replacing the built-in one of auth.jwt_hs256_secret. From then on
 * a session with an auth_token is admitted only when authenticate names its user (a user_id in the
 * session config must be that user) and authorize allows "session.create"; a refusal is
 * VB_ERR_UNAUTHORIZED and creates nothing. Only before vb_backend_start (VB_ERR_INVALID_STATE
 * after). The struct is copied; user_data must stay valid until the backend is freed. Thread-safe.
 * Safety: backend is NULL or a live backend; hook is NULL or a valid struct. */
enum VbStatus vb_backend_set_auth_hook(struct VbBackend *backend, const struct VbAuthHook *hook);

/* A rate limiter supplied by the host (see vb_backend_set_rate_limiter). Its functions run on the
 * thread that calls vb_session_create and may be called concurrently. */
typedef struct VbRateLimiter {
  void *user_data; /* Passed back to both functions. */
  /* VB_OK to admit one session of key (its user id, "" when it has none) now, VB_ERR_RATE_LIMITED
   * to refuse. Must not block. */
  enum VbStatus (*allow)(void *user_data, const char *key);
  /* Optional (NULL: the engine asks allow every 10 ms): admits one session of key, waiting up to
   * timeout_ms (the session's admission_wait_ms); VB_ERR_RATE_LIMITED when no admission came in
   * time. */
  enum VbStatus (*wait)(void *user_data, const char *key, uint32_t timeout_ms);
} VbRateLimiter;

/* Installs the host's rate limiter, replacing the built-in token buckets of rate_limit: each new
 * session takes one admission from it, and a refusal is VB_ERR_RATE_LIMITED and creates nothing.
 * Only before vb_backend_start (VB_ERR_INVALID_STATE after). The struct is copied; user_data must
 * stay valid until the backend is freed. Thread-safe.
 * Safety: backend is NULL or a live backend; limiter is NULL or a valid struct. */
enum VbStatus vb_backend_set_rate_limiter(struct VbBackend *backend,
                                          const struct VbRateLimiter *limiter);

/* Writes the JSON array of the sessions found in the session store when the backend was created and
 * not resumed or discarded since (their process ended without stopping them), oldest first:
 * [{"session_id": "…", "user_id": "…", "turns": 3}, …]; [] when persistence is off. *needed always
 * gets the size including the NUL; a short buffer is VB_ERR_INVALID_ARGUMENT. Thread-safe.
 * Safety: backend is NULL or a live backend; buf is NULL or valid for capacity bytes; needed is
 * NULL or valid for one write. */
enum VbStatus vb_backend_recovered_sessions(const struct VbBackend *backend, char *buf,
                                            size_t capacity, size_t *needed);

/* Forgets a session of vb_backend_recovered_sessions without resuming it: its record and its turn
 * audio are deleted from the session store before this returns, and it is no longer listed (nor
 * found by a later backend on the same file). VB_ERR_NOT_FOUND when no recovered session has that
 * id (unknown, resumed or discarded already, or persistence off); VB_ERR_INTERNAL with the reason
 * when the store could not be written (the session stays listed). Thread-safe; blocks for the disk
 * write.
 * Safety: backend is NULL or a live backend; session_id is NULL or NUL-terminated. */
enum VbStatus vb_backend_discard_recovered(struct VbBackend *backend, const char *session_id);

/* Blocks until every session record written so far is on disk (records are written when a session
 * starts and after each turn, by a writer thread). VB_ERR_INTERNAL with the reason when a write
 * failed since the previous flush; VB_OK at once when persistence is off. Thread-safe; blocks for
 * the disk write.
 * Safety: backend is NULL or a live backend. */
enum VbStatus vb_backend_flush_store(struct VbBackend *backend);

/* ==== Sessions ===================================================================================
 * One conversation on a running backend: create (or resume) it with callbacks, start it, push the
 * microphone's audio and pull the agent's, read its events, stop and free it. */

/* One conversation (opaque). Create with vb_session_create, free with vb_session_free. */
typedef struct VbSession VbSession;

/* The streaming reply of one agent call (opaque). Valid only while on_transcript runs. */
typedef struct VbReply VbReply;

/* Kinds of session event. Values fixed by the C contract. */
typedef enum VbEventKind {
  VB_EVENT_STATE_CHANGED = 0,      /* The session entered a new state, given in state. */
  VB_EVENT_SPEECH_STARTED = 1,     /* A user turn started (after turn.min_speech_ms of speech). */
  VB_EVENT_SPEECH_STOPPED = 2,     /* The user turn ended (after turn.silence_ms of silence, or at
                                      turn.max_turn_ms). */
  VB_EVENT_TRANSCRIPT_PARTIAL = 3, /* An interim transcript, in text. */
  VB_EVENT_TRANSCRIPT_FINAL = 4,   /* The final transcript of a turn, in text. */
  VB_EVENT_AGENT_RESPONSE = 5,     /* The agent's full reply once it ended, in text. */
  VB_EVENT_INTERRUPTED = 6,        /* Playback stopped by barge-in. */
  VB_EVENT_TURN_METRICS = 7,       /* The latencies (metrics) of the turn that just got its first
                                      reply audio. */
  VB_EVENT_ERROR = 8,              /* Asynchronous work failed: error and text say how. */
  VB_EVENT_AUDIO_DROPPED = 9,      /* Audio was lost (input overrun or a stalled pipeline):
                                      dropped_samples samples. */
  VB_EVENT_DTMF = 10               /* A key the caller pressed on a phone call, in text (DTMF: 0–9,
                                      *, #, A–D). */
} VbEventKind;

/* Session states. Values fixed by the C contract. */
typedef enum VbSessionState {
  VB_STATE_IDLE = 0,       /* Created, not started. */
  VB_STATE_LISTENING = 1,  /* Waiting for the user. */
  VB_STATE_PROCESSING = 2, /* A user turn ended; transcript and reply are being produced. */
  VB_STATE_SPEAKING = 3,   /* Reply audio is playing. */
  VB_STATE_STOPPED = 4,    /* Stopped. */
  VB_STATE_ERROR = 5       /* Failed; see the last error event. */
} VbSessionState;

/* Latencies of one turn in microseconds from the end of user speech (VAD); 0 when a stage did not
 * happen. */
typedef struct VbTurnMetrics {
  uint64_t stt_final_us;          /* Final transcript available. */
  uint64_t agent_first_text_us;   /* First reply text from the agent. */
  uint64_t tts_first_audio_us;    /* First synthesized audio from TTS. */
  uint64_t first_output_audio_us; /* First reply sample readable by the host: the voice-to-voice
                                     latency. */
} VbTurnMetrics;

/* One event. text stays valid until the next poll on the session (or until on_event returns). */
typedef struct VbEvent {
  enum VbEventKind kind;        /* What happened. */
  uint64_t timestamp_us;        /* Microseconds since the session was created (monotonic). */
  enum VbSessionState state;    /* The session state after the event. */
  const char *text;             /* Transcript, reply or error text; NULL when the kind carries
                                   none. */
  enum VbStatus error;          /* The error of VB_EVENT_ERROR, else VB_OK. */
  uint64_t dropped_samples;     /* Samples lost, for VB_EVENT_AUDIO_DROPPED. */
  struct VbTurnMetrics metrics; /* Turn latencies, for VB_EVENT_TURN_METRICS. */
} VbEvent;

/* Host callbacks of a session. The struct is copied by vb_session_create. */
typedef struct VbCallbacks {
  void *user_data; /* Passed back to every callback. */
  /* Agent: called on an agent worker thread, never the realtime thread, once per finished user turn
   * with the final transcript. Stream the reply with vb_reply_write, finish with vb_reply_end (or
   * return an error status). May block; the session keeps listening. With turn.preemptive_ms it may
   * also be called while the user pauses, with the turn so far: that reply is kept if the turn ends
   * with the same words, and otherwise cancelled (vb_reply_is_cancelled) and the callback called
   * again with the final transcript. */
  enum VbStatus (*on_transcript)(void *user_data, struct VbSession *session, const char *transcript,
                                 struct VbReply *reply);
  /* Optional push delivery of events, on the session's event thread. NULL: poll instead. */
  void (*on_event)(void *user_data, const struct VbEvent *event);
} VbCallbacks;

/* Creates a session on a running backend. session_config_json may be NULL (all defaults). callbacks
 * may be NULL when the pipeline needs no agent (s2s); an stt_tts session without on_transcript is
 * VB_ERR_INVALID_ARGUMENT. On success *out_session owns the session; free it with vb_session_free.
 * Thread-safe.
 * Safety: backend is NULL or a live backend; session_config_json is NULL or NUL-terminated;
 * callbacks is NULL or valid; out_session is valid for one write. */
enum VbStatus vb_session_create(struct VbBackend *backend, const char *session_config_json,
                                const struct VbCallbacks *callbacks,
                                struct VbSession **out_session);

/* Reopens a session of vb_backend_recovered_sessions (not started) under its id, with its
 * configuration (without the auth_token, which is never stored) and conversation history; callbacks
 * as for vb_session_create. It counts against max_concurrent_sessions. VB_ERR_NOT_FOUND when no
 * recovered session has that id (unknown, resumed or discarded already, or persistence off). On
 * success *out_session owns the session; free it with vb_session_free. Thread-safe.
 * Safety: backend is NULL or a live backend; session_id is NULL or NUL-terminated; callbacks is
 * NULL or valid; out_session is NULL or valid for one write. */
enum VbStatus vb_session_resume(struct VbBackend *backend, const char *session_id,
                                const struct VbCallbacks *callbacks,
                                struct VbSession **out_session);

/* Writes the session's finished turns as a JSON array, oldest first, into buf: [{"transcript": "…",
 * "reply": "…", "interrupted": false}, …], a resumed session's earlier turns included (texts the
 * privacy policy kept out of the store are null there). An agent may call it from on_transcript for
 * the context of the turn. *needed always gets the size including the NUL; a short buffer is
 * VB_ERR_INVALID_ARGUMENT. Thread-safe.
 * Safety: session is NULL or a live session; buf is NULL or valid for capacity bytes; needed is
 * NULL or valid for one write. */
enum VbStatus vb_session_history(const struct VbSession *session, char *buf, size_t capacity,
                                 size_t *needed);

/* Starts the session's realtime thread and pipeline. VB_ERR_INVALID_STATE when already started or
 * stopped. Thread-safe.
 * Safety: session is NULL or a live session. */
enum VbStatus vb_session_start(struct VbSession *session);

/* Stops the session: no callback runs after it returns (except one that is calling it). Idempotent.
 * Thread-safe.
 * Safety: session is NULL or a live session. */
enum VbStatus vb_session_stop(struct VbSession *session);

/* Stops and frees a session. NULL is a no-op.
 * Safety: session is NULL or a live session that no other thread uses any more. */
void vb_session_free(struct VbSession *session);

/* Host-side barge-in: stops playback now and cancels the reply in progress. Thread-safe.
 * Safety: session is NULL or a live session. */
enum VbStatus vb_session_interrupt(struct VbSession *session);

/* Speaks text without a user turn (a greeting), after any reply in progress. Thread-safe.
 * Safety: session is NULL or a live session; text is NULL or NUL-terminated. */
enum VbStatus vb_session_say(struct VbSession *session, const char *text);

/* Writes the session id, NUL-terminated, into buf. *needed always gets the size including the NUL;
 * a short buffer is VB_ERR_INVALID_ARGUMENT. Thread-safe.
 * Safety: session is NULL or a live session; buf is NULL or valid for capacity bytes; needed is
 * NULL or valid for one write. */
enum VbStatus vb_session_id(const struct VbSession *session, char *buf, size_t capacity,
                            size_t *needed);

/* The session's current state; VB_STATE_ERROR for NULL. Thread-safe.
 * Safety: session is NULL or a live session. */
enum VbSessionState vb_session_state(const struct VbSession *session);

/* Writes to *writable how many samples vb_session_process_audio would take right now. A host
 * pushing a file faster than real time waits while this is smaller than its next piece instead of
 * losing audio. Realtime-safe; call it from the thread that calls vb_session_process_audio.
 * Safety: session is NULL or a live session; writable is valid for one write. */
enum VbStatus vb_session_writable_samples(struct VbSession *session, size_t *writable);

/* Copies mono int16 PCM at input_sample_rate into the session. *accepted (may be NULL) gets the
 * number of samples taken. VB_ERR_BUFFER_FULL when fewer than sample_count were taken (then
 * *accepted is still written); the loss is counted in frames_dropped and reported as
 * VB_EVENT_AUDIO_DROPPED. Realtime-safe: never blocks, allocates or locks.
 * Safety: session is NULL or a live session; pcm is NULL or valid for sample_count samples;
 * accepted is NULL or valid for one write. */
enum VbStatus vb_session_process_audio(struct VbSession *session, const int16_t *pcm,
                                       size_t sample_count, size_t *accepted);

/* Copies up to capacity samples of agent audio at output_sample_rate into out. *written gets the
 * count; 0 when nothing is due. Realtime-safe: never blocks, allocates or locks.
 * Safety: session is NULL or a live session; out is NULL or valid for capacity samples; written is
 * valid for one write. */
enum VbStatus vb_session_read_audio(struct VbSession *session, int16_t *out, size_t capacity,
                                    size_t *written);

/* Non-blocking. VB_OK and *has_event = true when an event was written to *out; *has_event = false
 * when none is waiting. The event's text stays valid until the next poll on this session.
 * VB_ERR_INVALID_STATE when the session delivers events to on_event.
 * Safety: session is NULL or a live session; out and has_event are valid for one write. */
enum VbStatus vb_session_poll_event(struct VbSession *session, struct VbEvent *out,
                                    bool *has_event);

/* Decodes one Opus packet (any duration Opus allows; 10–60 ms in practice) of mono user audio at
 * input_sample_rate and copies it into the session, as vb_session_process_audio does with PCM. The
 * session needs input_codec "opus" (else VB_ERR_INVALID_STATE).
 *
 * len 0 signals a lost packet (packet may then be NULL): its audio is concealed from what came
 * before (PLC), as long as the last packet (20 ms before any came). In-band FEC is not used (it
 * needs the packet after the lost one, which the engine does not wait for). A packet that does not
 * decode is VB_ERR_INVALID_ARGUMENT and nothing is queued. VB_ERR_BUFFER_FULL when the input ring
 * took only part of the packet's audio; the loss is counted in frames_dropped and reported as
 * VB_EVENT_AUDIO_DROPPED. Decoded and lost packets count in health's media counters. Realtime-safe:
 * never blocks, allocates or locks. packet is borrowed for the call.
 * Safety: session is NULL or a live session; packet is NULL or valid for len bytes. */
enum VbStatus vb_session_process_opus(struct VbSession *session, const uint8_t *packet, size_t len);

/* Bytes that always hold one packet of vb_session_read_opus. */
#define VB_OPUS_MAX_PACKET 1500

/* Writes at most one Opus packet of the agent's audio (one 20 ms frame, mono, encoded at
 * output_sample_rate) into buf; *written gets its length, 0 when no whole frame is ready yet. Call
 * it every 20 ms, or until it writes 0. The session needs output_codec "opus" (else
 * VB_ERR_INVALID_STATE); session keys opus_complexity and opus_bitrate tune the encoder. The frame
 * the agent's audio ends in is completed with silence once no more audio came for 40 ms.
 *
 * A packet longer than capacity is VB_ERR_INVALID_ARGUMENT and is kept for the next call (no audio
 * is lost); VB_OPUS_MAX_PACKET bytes always suffice. On failure *written is left untouched.
 * Realtime-safe: never blocks, allocates or locks.
 * Safety: session is NULL or a live session; buf is NULL or valid for capacity bytes; written is
 * valid for one write. */
enum VbStatus vb_session_read_opus(struct VbSession *session, uint8_t *buf, size_t capacity,
                                   size_t *written);

/* ==== Replies ====================================================================================
 * The agent's side: on_transcript gets a VbReply for each finished user turn and streams the
 * answer's text into it. */

/* Appends text to the reply; TTS speaks complete sentences as they arrive. Only during
 * on_transcript. VB_ERR_INVALID_STATE after vb_reply_end or once barge-in cancelled the reply (stop
 * producing it then).
 * Safety: reply is NULL or the reply passed to the running on_transcript; text_chunk is NULL or
 * NUL-terminated. */
enum VbStatus vb_reply_write(struct VbReply *reply, const char *text_chunk);

/* Ends the reply. Only during on_transcript; returning without it ends the reply too.
 * Safety: reply is NULL or the reply passed to the running on_transcript. */
enum VbStatus vb_reply_end(struct VbReply *reply);

/* Fails the reply with the agent's own error: a status and a message the host chose (say,
 * VB_ERR_PROVIDER and "the order database is down"). The host gets a VB_EVENT_ERROR with that
 * status and the text "agent: <message>", the turn ends (text written before is still spoken) and
 * the session goes back to VB_STATE_LISTENING. Only during on_transcript; what it returns
 * afterwards is not reported again (return vb_reply_fail(reply, …); returns VB_OK).
 * VB_ERR_INVALID_ARGUMENT for a NULL reply or message, a message that is not UTF-8, VB_OK or a
 * value that is no VbStatus; VB_ERR_INVALID_STATE after vb_reply_end, a previous vb_reply_fail, or
 * once barge-in cancelled the reply. status is read as a plain integer (any VbStatus passes as
 * one).
 * Safety: reply is NULL or the reply passed to the running on_transcript; message is NULL or
 * NUL-terminated. */
enum VbStatus vb_reply_fail(struct VbReply *reply, int32_t status, const char *message);

/* Whether the reply was cancelled — by barge-in, vb_session_interrupt, agent_timeout_ms, or (with
 * turn.preemptive_ms) because the user went on after the pause it answered: the agent should stop
 * producing it. False for NULL.
 * Safety: reply is NULL or the reply passed to the running on_transcript. */
bool vb_reply_is_cancelled(const struct VbReply *reply);

/* ==== Tools of the built-in agent ================================================================
 * A backend whose agent section configures the built-in LLM agent answers sessions that have no
 * on_transcript of their own; the host's tools are offered to its model, which may call them while
 * it answers. */

/* Where a tool writes its answer (vb_tool_result_write). Valid only during the call it is handed
 * to. */
typedef struct VbToolResult VbToolResult;

/* A tool the host offers the built-in agent (the backend's agent section): the model sees name,
 * description and the JSON schema parameters_json, and may call it while it answers. call runs on
 * an agent worker thread (never the realtime thread; it may block, up to the agent's
 * tool_timeout_ms, after which the model is told the tool timed out) and may run for several
 * sessions at once. */
typedef struct VbTool {
  const char *name;            /* [A-Za-z0-9_-], 1–64 characters, unique per backend. */
  const char *description;     /* What the tool does and when to use it, for the model. */
  const char *parameters_json; /* The JSON schema of the arguments, an object, e.g.
                                  {"type":"object","properties":{}}. */
  /* Runs the tool with the model's arguments (a JSON object, as text). Write the answer with
   * vb_tool_result_write (JSON or plain text; the model reads it) and return VB_OK; on failure
   * return an error status, with what was written as the reason: the model reads it, the session
   * gets a VB_EVENT_ERROR, the conversation goes on. */
  enum VbStatus (*call)(void *user_data, const char *arguments_json, struct VbToolResult *result);
  void *user_data;             /* Passed back to call; must stay valid until the backend is
                                  freed. */
} VbTool;

/* Offers a tool to the backend's built-in agent. The struct and its strings are copied. Only before
 * vb_backend_start (VB_ERR_INVALID_STATE after); VB_ERR_INVALID_ARGUMENT for a NULL field, a name
 * that is not 1–64 of [A-Za-z0-9_-] or already added, or parameters that are not a JSON object.
 * Thread-safe.
 * Safety: backend is NULL or a live backend; tool is NULL or a valid struct whose strings are NULL
 * or NUL-terminated. */
enum VbStatus vb_backend_add_tool(struct VbBackend *backend, const struct VbTool *tool);

/* Appends text (UTF-8) to a tool's answer. VB_ERR_INVALID_ARGUMENT for NULL or invalid UTF-8. Only
 * from within the call that was handed result.
 * Safety: result is NULL or the result handed to the running call; text is NULL or
 * NUL-terminated. */
enum VbStatus vb_tool_result_write(struct VbToolResult *result, const char *text);

/* ==== Sessions that arrive by themselves =========================================================
 * A backend that accepts calls itself (a LiveKit worker's dispatched jobs) hands each new session
 * to the host. */

/* The host's hook for sessions that arrive by themselves: a LiveKit worker's dispatched jobs (and,
 * later, browser and phone calls). See vb_backend_set_incoming. */
typedef struct VbIncoming {
  void *user_data; /* Passed back to on_session. */
  /* I/O thread, one call per arriving session, possibly concurrently. session was opened by the
   * backend (not started); info_json describes it, e.g. {"source": "livekit-dispatch", "room": "…",
   * "participant": "…", "job_id": "…"}. Fill *callbacks (zeroed on entry) and return VB_OK to take
   * it: the backend then starts it, and the host owns it as if vb_session_create had made it (free
   * it with vb_session_free once it has stopped). Any other status refuses the call: the backend
   * frees the session (do not keep the pointer) and the call fails with that status. */
  enum VbStatus (*on_session)(void *user_data, struct VbSession *session, const char *info_json,
                              struct VbCallbacks *callbacks);
} VbIncoming;

/* Installs the host's hook for sessions that arrive by themselves. Without one, a LiveKit worker
 * refuses every job. Only before vb_backend_start (VB_ERR_INVALID_STATE after). The struct is
 * copied; user_data must stay valid until the backend is freed. Thread-safe.
 * Safety: backend is NULL or a live backend; incoming is NULL or a valid struct. */
enum VbStatus vb_backend_set_incoming(struct VbBackend *backend, const struct VbIncoming *incoming);

/* ==== LiveKit room service =======================================================================
 * Rooms, participants and dispatches of a livekit backend's server. */

/* Calls the room service of a livekit backend's server (LiveKit's Twirp API, with admin tokens
 * signed from the backend's key and secret). request_json is one of {"op":"create_room","room":R},
 * {"op":"list_rooms"}, {"op":"delete_room","room":R}, {"op":"list_participants","room":R},
 * {"op":"remove_participant","room":R,"identity":I},
 * {"op":"create_dispatch","room":R,"agent_name":A,"metadata":M}; the answer, written to buf like
 * vb_registry_list writes (*needed gets its size with the NUL), is
 * {"room":{name,sid,num_participants,created_at}}, {"rooms":[…]},
 * {"participants":[{identity,sid,kind,state},…]}, {"dispatch_id":"…"} or {}. VB_ERR_INVALID_CONFIG
 * on another backend, VB_ERR_NOT_FOUND for an unknown room, VB_ERR_UNAUTHORIZED for refused keys,
 * VB_ERR_CONNECTION_FAILED for an unreachable server. Blocks the calling thread for the request
 * (the backend's timeout_ms at most); any state; thread-safe.
 * Safety: backend is NULL or a live backend; request_json is NULL or NUL-terminated; buf is NULL or
 * valid for capacity bytes; needed is NULL or valid for one write. */
enum VbStatus vb_backend_room_service(const struct VbBackend *backend, const char *request_json,
                                      char *buf, size_t capacity, size_t *needed);

/* ==== Logging ====================================================================================
 * The library's log records, handed to the host's own logger. */

/* The level of a log record, and the most verbose level a host wants. */
typedef enum VbLogLevel {
  VB_LOG_OFF = 0,   /* No records (as max_level). */
  VB_LOG_ERROR = 1, /* Something failed: a session's error, an export that failed for good. */
  VB_LOG_WARN = 2,  /* Something went wrong and was handled: a retry, a lost connection being
                       resumed, dropped audio, a failed OTLP export. */
  VB_LOG_INFO = 3,  /* The life of backends and sessions: started, stopped, admitted, refused,
                       reconnected. */
  VB_LOG_DEBUG = 4, /* What each session does: states, speech, transcripts (when the privacy policy
                       allows), turn latencies, connections. */
  VB_LOG_TRACE = 5  /* Everything, other crates' details included where the filter lets them
                       through. */
} VbLogLevel;

/* Receives one log record. level is a VbLogLevel (1 error … 5 trace); target is where it comes from
 * (a module path such as "voicebackend::provider::ws_link"); message is the text, prefixed by the
 * spans it happened in (session{session.id=sess-…}:turn{turn=2}: …). Both strings are
 * NUL-terminated UTF-8, valid only during the call. */
typedef void (*VbLogCallback)(void *user_data, int32_t level, const char *target,
                              const char *message);

/* Sends the library's log records to callback (NULL: to nobody; max_level VB_LOG_OFF does the
 * same): records at max_level or more severe, and among those only what the filter in the
 * environment variable VB_LOG (else RUST_LOG; tracing-subscriber's EnvFilter syntax, e.g.
 * voicebackend=debug,warn) lets through; without one, the library's records and other libraries'
 * warnings and errors. Calling it again replaces the callback and level.
 *
 * Threading: records are formatted on the engine thread that logs them (never the realtime thread,
 * never inside vb_session_process_audio / vb_session_read_audio) and queued; one library thread
 * calls callback, one record at a time, in order. A callback that does not keep up loses records
 * rather than slowing the engine: beyond 4096 waiting, records are dropped, and once the queue
 * drains the callback gets a VB_LOG_WARN record saying how many. After this function returns the
 * previous callback is never called again, so its user_data may be freed (called from inside the
 * callback, the new one takes over after the current record). user_data must stay valid until the
 * callback is replaced.
 *
 * The first call installs the process's global tracing subscriber: VB_ERR_INVALID_STATE when the
 * process has one already (a Rust host's own, which then receives the records), and
 * VB_ERR_INVALID_CONFIG when VB_LOG is not a valid filter. VB_ERR_INVALID_ARGUMENT for a max_level
 * outside 0–5. Thread-safe. */
enum VbStatus vb_set_log_callback(VbLogCallback callback, void *user_data, int32_t max_level);

#ifdef __cplusplus
}
#endif

#endif /* VOICEBACKEND_H */
