// voicebackend.hpp: a header-only C++17 RAII wrapper over the C ABI of libvoicebackend
// (voicebackend.h). Link with -lvoicebackend; nothing else is needed.
//
//   voicebackend::Backend backend(
//       R"({"provider":"local","stt_provider":"whisper","tts_provider":"espeak"})");
//   backend.start();
//   voicebackend::Session session = backend.create_session(
//       R"({"input_sample_rate":48000,"output_sample_rate":48000})",
//       [](const std::string& transcript) { return "You said: " + transcript; });
//   session.start();
//   session.process_audio(mic, 960);        // in the audio callback, realtime-safe
//   session.read_audio(speaker, 960);       // likewise
//   // or, with "input_codec":"opus" / "output_codec":"opus", Opus packets of your transport:
//   // session.process_opus(packet, len); session.read_opus(buf, VB_OPUS_MAX_PACKET);
//   while (auto event = session.poll_event()) { /* ... */ }
//
// Failures throw voicebackend::Error (status + vb_last_error_message()). The audio calls throw
// only for a real error: a full input ring is reported through the accepted count (process_opus
// returns false for it, and for a packet that does not decode), so they do not allocate on the
// realtime path.
//
// Threads (as in the C contract): Backend's calls are thread-safe, except add_processor,
// add_tool, set_incoming, set_auth_hook and set_rate_limiter (one thread, before start(); they
// keep the functions in the object). Per Session, one thread at a time calls process_audio (or
// process_opus), one read_audio (or read_opus), one poll_event; start/stop/say/interrupt are
// thread-safe. Callbacks run on engine threads, except the auth hook and the rate limiter, which
// run inside the create_session or resume_session call that they admit (possibly several at
// once):
// - the agent on an agent worker thread (it may block; Session's destructor waits for it),
// - tools of the built-in agent (add_tool) on agent worker threads, possibly concurrently,
// - the event handler on the session's event thread,
// - the incoming handler (set_incoming) on an engine I/O thread, possibly concurrently,
// - processors on the realtime threads of every session, concurrently: a processor must be
//   safe to call from several threads at once and must not block or allocate.
// Exceptions thrown by callbacks never reach the engine: a throwing agent ends its turn with
// VB_ERR_PROVIDER (reported as a VB_EVENT_ERROR event), so does a throwing tool (its what() is
// the reason the model reads); exceptions from event handlers and
// processors are swallowed.
//
// Logging: set_log_handler sends the library's log records to a std::function (on the library's
// log thread).
//
// Lifetimes: a Session does not keep its Backend alive. Freeing the backend first stops its
// sessions (their calls then fail with VB_ERR_INVALID_STATE); destroying them afterwards is
// fine. Do not destroy a Session (or its Backend) from inside one of its own callbacks.

#ifndef VOICEBACKEND_HPP
#define VOICEBACKEND_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "voicebackend.h"

namespace voicebackend {

/// The name of a status, e.g. "VB_ERR_INVALID_CONFIG".
inline const char* status_name(VbStatus status) noexcept {
  return vb_status_str(static_cast<int32_t>(status));
}

/// The crate version of the loaded library, e.g. "0.1.0".
inline const char* version() noexcept { return vb_version(); }

/// The C ABI version of the loaded library; compare with VB_ABI_VERSION.
inline uint32_t abi_version() noexcept { return vb_abi_version(); }

/// A failed call: the status and the library's reason.
class Error : public std::runtime_error {
 public:
  Error(VbStatus status, const std::string& message)
      : std::runtime_error(describe(status, message)), status_(status), message_(message) {}

  /// The status the call returned.
  VbStatus status() const noexcept { return status_; }
  /// vb_last_error_message() of the failed call, as is. what() is the same text, with the
  /// status name put in front when the message does not already start with it.
  const std::string& message() const noexcept { return message_; }

 private:
  static std::string describe(VbStatus status, const std::string& message) {
    const std::string name = status_name(status);
    if (message.compare(0, name.size(), name) == 0) return message;
    return message.empty() ? name : name + ": " + message;
  }

  VbStatus status_;
  std::string message_;
};

namespace detail {

// Must run right after the failed call, on the same thread (the message is thread-local).
[[noreturn]] inline void throw_last_error(VbStatus status) {
  const char* message = vb_last_error_message();
  throw Error(status, message != nullptr ? message : "");
}

inline void check(VbStatus status) {
  if (status != VB_OK) throw_last_error(status);
}

// A NUL-terminated copy of text for the C side; embedded NULs would silently cut it short.
inline std::string c_string(std::string_view text, const char* what) {
  if (text.find('\0') != std::string_view::npos) {
    throw Error(VB_ERR_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
  }
  return std::string(text);
}

// Calls fill(buf, capacity, &needed) for the vb_* functions that fill a caller's buffer.
template <typename Fill>
std::string fill_string(Fill fill) {
  std::string buf(64, '\0');
  for (;;) {
    size_t needed = 0;
    VbStatus status = fill(buf.data(), buf.size(), &needed);
    if (status == VB_OK) {
      buf.resize(std::char_traits<char>::length(buf.c_str()));
      return buf;
    }
    if (status == VB_ERR_INVALID_ARGUMENT && needed > buf.size()) {
      buf.assign(needed, '\0');
      continue;
    }
    throw_last_error(status);
  }
}

template <typename C>
using data_type = std::remove_pointer_t<decltype(std::data(std::declval<C&>()))>;

}  // namespace detail

/// The JSON array of registered backend provider names, e.g. ["local"].
inline std::string registry_list() {
  return detail::fill_string(
      [](char* buf, size_t cap, size_t* needed) { return vb_registry_list(buf, cap, needed); });
}

/// A health snapshot (status, active_sessions, frames_processed, frames_dropped,
/// deadline_misses, realtime_threads_elevated).
using Health = VbHealth;
/// Per-turn latencies in microseconds from the end of user speech.
using TurnMetrics = VbTurnMetrics;

/// One session event, copied out of the library (no lifetime strings attached).
struct Event {
  VbEventKind kind = VB_EVENT_STATE_CHANGED;
  std::chrono::microseconds timestamp{0};  ///< since the session was created (monotonic)
  VbSessionState state = VB_STATE_IDLE;    ///< the session state after the event
  std::string text;                        ///< transcript, reply or error text; "" when none
  VbStatus error = VB_OK;                  ///< for VB_EVENT_ERROR
  uint64_t dropped_samples = 0;            ///< for VB_EVENT_AUDIO_DROPPED
  TurnMetrics metrics{};                   ///< for VB_EVENT_TURN_METRICS

  static Event from(const VbEvent& e) {
    Event event;
    event.kind = e.kind;
    event.timestamp =
        std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(e.timestamp_us));
    event.state = e.state;
    if (e.text != nullptr) event.text = e.text;
    event.error = e.error;
    event.dropped_samples = e.dropped_samples;
    event.metrics = e.metrics;
    return event;
  }
};

/// The streaming reply of one agent call; valid only while the agent runs.
class Reply {
 public:
  explicit Reply(VbReply* reply) noexcept : reply_(reply) {}
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;

  /// Appends text; TTS speaks complete sentences as they arrive. Throws Error
  /// (VB_ERR_INVALID_STATE) after end() or once barge-in cancelled the reply: stop producing it
  /// then (letting that exception leave the agent is fine and is not reported as an error).
  void write(std::string_view chunk) {
    std::string text = detail::c_string(chunk, "reply text");
    detail::check(vb_reply_write(reply_, text.c_str()));
  }
  /// Ends the reply (returning from the agent ends it too).
  void end() { detail::check(vb_reply_end(reply_)); }
  /// Fails the reply with the agent's own error (vb_reply_fail): the host gets a
  /// VB_EVENT_ERROR with status and the text "agent: <message>", the turn ends (text written
  /// before is still spoken) and the session listens again; what the agent does afterwards is
  /// not reported again. Throws Error: VB_ERR_INVALID_ARGUMENT for VB_OK, VB_ERR_INVALID_STATE
  /// after end(), a previous fail() or once barge-in cancelled the reply.
  void fail(VbStatus status, std::string_view message) {
    std::string text = detail::c_string(message, "failure message");
    detail::check(vb_reply_fail(reply_, static_cast<int32_t>(status), text.c_str()));
  }
  /// Whether barge-in cancelled the reply.
  bool cancelled() const noexcept { return vb_reply_is_cancelled(reply_); }
  /// The C handle, for vb_reply_* calls.
  VbReply* native_handle() const noexcept { return reply_; }

 private:
  VbReply* reply_;
};

/// An agent that answers a whole transcript with a whole reply.
using Agent = std::function<std::string(const std::string& transcript)>;
/// An agent that streams its reply.
using StreamingAgent = std::function<void(const std::string& transcript, Reply& reply)>;
/// Push delivery of events (on the session's event thread); without one, poll_event().
using EventHandler = std::function<void(const Event& event)>;
/// An audio processor: in place, pcm[0..samples) at sample_rate. Realtime threads, concurrently.
using Processor = std::function<void(int16_t* pcm, size_t samples, uint32_t sample_rate)>;
/// A tool of the built-in agent (Backend::add_tool): gets the model's arguments (a JSON object,
/// as text) and returns the answer the model reads (JSON or plain text). Runs on an agent worker
/// thread, possibly concurrently for several sessions; it may block up to the agent's
/// tool_timeout_ms. A thrown exception fails the call: its what() is the reason the model reads
/// and the session gets a VB_EVENT_ERROR (status: a voicebackend::Error's, else VB_ERR_PROVIDER).
using ToolFunction = std::function<std::string(const std::string& arguments)>;

/// How the host runs a session that arrived by itself (Backend::set_incoming): its agent, a
/// whole-reply Agent or a StreamingAgent (at most one; none on an s2s backend), and optionally an
/// event handler (without one, poll_event()).
struct SessionHandlers {
  Agent agent;
  StreamingAgent streaming;
  EventHandler on_event;
};

/// The host's authentication and authorization of new sessions (Backend::set_auth_hook), in
/// place of the built-in JWT hook of auth.jwt_hs256_secret. Both run on the thread that creates
/// or resumes the session, before anything of it exists, possibly concurrently. A
/// voicebackend::Error they throw fails the call with its status; another exception with
/// VB_ERR_INTERNAL.
struct AuthHook {
  /// The user id a valid token stands for, or std::nullopt to refuse it (VB_ERR_UNAUTHORIZED).
  /// metadata_json is the session's metadata object. Called for sessions with an auth_token.
  std::function<std::optional<std::string>(const std::string& token,
                                           const std::string& metadata_json)>
      authenticate;
  /// Whether user_id may perform operation ("session.create"; "session.resume" for a recovered
  /// session, which has no token to authenticate); false refuses (VB_ERR_UNAUTHORIZED).
  std::function<bool(const std::string& user_id, const std::string& operation)> authorize;
};

/// The host's admission of new sessions by rate (Backend::set_rate_limiter), in place of the
/// built-in token buckets of rate_limit. Runs on the thread that creates the session, possibly
/// concurrently; exceptions as for AuthHook.
struct RateLimiter {
  /// Whether one session of key (its user id, "" when it has none) may start now; false
  /// refuses (VB_ERR_RATE_LIMITED). Must not block.
  std::function<bool(const std::string& key)> allow;
  /// Optional: admits one session of key, waiting up to timeout (the session's
  /// admission_wait_ms); false when no admission came in time. Without it the engine asks
  /// allow every 10 ms.
  std::function<bool(const std::string& key, std::chrono::milliseconds timeout)> wait;
};

namespace detail {

// The status of a hook that threw.
inline VbStatus thrown_status() noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return e.status() != VB_OK ? e.status() : VB_ERR_INTERNAL;
  } catch (...) {
    return VB_ERR_INTERNAL;
  }
}

inline VbStatus auth_authenticate_trampoline(void* user_data, const char* token,
                                             const char* metadata_json, char* user_id_out,
                                             size_t user_id_capacity) noexcept {
  try {
    const auto* hook = static_cast<const AuthHook*>(user_data);
    const std::optional<std::string> user =
        hook->authenticate(token != nullptr ? token : "",
                           metadata_json != nullptr ? metadata_json : "{}");
    if (!user) return VB_ERR_UNAUTHORIZED;
    if (user->find('\0') != std::string::npos || user->size() >= user_id_capacity) {
      return VB_ERR_INVALID_ARGUMENT;  // the engine says the hook failed with it
    }
    std::memcpy(user_id_out, user->c_str(), user->size() + 1);
    return VB_OK;
  } catch (...) {
    return thrown_status();
  }
}

inline VbStatus auth_authorize_trampoline(void* user_data, const char* user_id,
                                          const char* operation) noexcept {
  try {
    const auto* hook = static_cast<const AuthHook*>(user_data);
    return hook->authorize(user_id != nullptr ? user_id : "", operation != nullptr ? operation : "")
               ? VB_OK
               : VB_ERR_UNAUTHORIZED;
  } catch (...) {
    return thrown_status();
  }
}

inline VbStatus limiter_allow_trampoline(void* user_data, const char* key) noexcept {
  try {
    const auto* limiter = static_cast<const RateLimiter*>(user_data);
    return limiter->allow(key != nullptr ? key : "") ? VB_OK : VB_ERR_RATE_LIMITED;
  } catch (...) {
    return thrown_status();
  }
}

inline VbStatus limiter_wait_trampoline(void* user_data, const char* key,
                                        uint32_t timeout_ms) noexcept {
  try {
    const auto* limiter = static_cast<const RateLimiter*>(user_data);
    return limiter->wait(key != nullptr ? key : "", std::chrono::milliseconds(timeout_ms))
               ? VB_OK
               : VB_ERR_RATE_LIMITED;
  } catch (...) {
    return thrown_status();
  }
}

// VbTool.call: user_data is the Backend's ToolFunction. Nothing thrown reaches the engine.
inline VbStatus tool_trampoline(void* user_data, const char* arguments_json,
                                VbToolResult* result) noexcept {
  VbStatus status = VB_OK;
  try {
    const auto* tool = static_cast<const ToolFunction*>(user_data);
    const std::string answer = (*tool)(arguments_json != nullptr ? arguments_json : "{}");
    if (answer.find('\0') != std::string::npos) {
      vb_tool_result_write(result, "the tool's answer contains a NUL byte");
      return VB_ERR_INVALID_ARGUMENT;
    }
    return vb_tool_result_write(result, answer.c_str());  // VB_ERR_INVALID_ARGUMENT: not UTF-8
  } catch (const Error& e) {
    status = e.status() != VB_OK ? e.status() : VB_ERR_PROVIDER;
    vb_tool_result_write(result, e.what());
  } catch (const std::exception& e) {
    status = VB_ERR_PROVIDER;
    vb_tool_result_write(result, e.what());
  } catch (...) {
    status = VB_ERR_PROVIDER;
    vb_tool_result_write(result, "the tool threw an exception that is no std::exception");
  }
  return status;
}

}  // namespace detail

class Session;

/// The host's hook for sessions that arrive by themselves (Backend::set_incoming). It gets the
/// session, not started, and info_json describing it, e.g. {"source":"livekit-dispatch",
/// "room":"…","participant":"…","job_id":"AJ_…","dispatch_id":"…","agent_name":"…",
/// "metadata":"…","conversation_id":"livekit:RM_…"}. To take the session, keep it (move it into your own storage) and return its
/// handlers: the backend then starts it. To refuse, let it go (do not keep it) and return
/// std::nullopt, or throw (a voicebackend::Error refuses with its status).
using IncomingHandler =
    std::function<std::optional<SessionHandlers>(Session session, const std::string& info_json)>;

namespace detail {

// An arriving session while the incoming handler runs: the engine still owns it.
struct Arrival {
  bool dropped = false;  // the handler let the Session go
};

// What the C callbacks of one session reach through user_data. Heap-allocated by Session so
// that its address survives moves of the Session object.
struct SessionCallbacks {
  Agent agent;
  StreamingAgent streaming;
  EventHandler on_event;
  Arrival* arrival = nullptr;  // set while the incoming handler decides

  static VbStatus on_transcript_trampoline(void* user_data, VbSession* /*session*/,
                                           const char* transcript, VbReply* reply) noexcept {
    auto* self = static_cast<SessionCallbacks*>(user_data);
    try {
      const std::string text = transcript != nullptr ? transcript : "";
      if (self->streaming) {
        Reply r(reply);
        self->streaming(text, r);
        return VB_OK;
      }
      const std::string answer = self->agent(text);
      if (answer.find('\0') != std::string::npos) return VB_ERR_PROVIDER;
      if (!answer.empty()) {
        VbStatus status = vb_reply_write(reply, answer.c_str());
        if (status != VB_OK) return vb_reply_is_cancelled(reply) ? VB_OK : status;
      }
      return VB_OK;  // returning ends the reply
    } catch (...) {
      // A reply cut short by barge-in is no failure of the agent.
      return vb_reply_is_cancelled(reply) ? VB_OK : VB_ERR_PROVIDER;
    }
  }

  static void on_event_trampoline(void* user_data, const VbEvent* event) noexcept {
    auto* self = static_cast<SessionCallbacks*>(user_data);
    if (event == nullptr) return;
    try {
      self->on_event(Event::from(*event));
    } catch (...) {
      // Never into the engine.
    }
  }
};

VbStatus on_session_trampoline(void* user_data, VbSession* handle, const char* info_json,
                               VbCallbacks* callbacks) noexcept;

inline void processor_trampoline(void* user_data, int16_t* pcm, size_t samples,
                                 uint32_t sample_rate) noexcept {
  try {
    (*static_cast<const Processor*>(user_data))(pcm, samples, sample_rate);
  } catch (...) {
    // Never into the engine.
  }
}

}  // namespace detail

/// Receives the library's log records: level, target (the library module, e.g.
/// "voicebackend::provider::ws_link") and message, valid during the call. Called on the
/// library's log thread, one record at a time; exceptions are swallowed.
using LogHandler =
    std::function<void(VbLogLevel level, std::string_view target, std::string_view message)>;

namespace detail {

struct LogState {
  std::mutex mutex;
  std::unique_ptr<LogHandler> handler;
};

inline LogState& log_state() {
  static LogState state;
  return state;
}

inline void log_trampoline(void* user_data, int32_t level, const char* target,
                           const char* message) noexcept {
  try {
    (*static_cast<const LogHandler*>(user_data))(static_cast<VbLogLevel>(level),
                                                 target != nullptr ? target : "",
                                                 message != nullptr ? message : "");
  } catch (...) {
    // Never into the engine.
  }
}

}  // namespace detail

/// Sends the library's log records at max_level and more severe to handler (an empty handler
/// stops them), in the host's own logger: vb_set_log_callback. VB_LOG and RUST_LOG filter
/// further; transcripts appear only where the backend's privacy settings allow. A slow handler
/// loses records (and is told how many) rather than slowing sessions. Once this returns, the
/// previous handler is never called again. Thread-safe; do not call it from inside a handler.
inline void set_log_handler(LogHandler handler, VbLogLevel max_level = VB_LOG_INFO) {
  auto& state = detail::log_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  std::unique_ptr<LogHandler> next;
  if (handler) next = std::make_unique<LogHandler>(std::move(handler));
  detail::check(vb_set_log_callback(next ? detail::log_trampoline : nullptr, next.get(),
                                    next ? max_level : VB_LOG_OFF));
  state.handler = std::move(next);  // the previous handler is no longer called: free it
}

/// One conversation. Move-only; the destructor stops and frees it (waiting for a running agent
/// call to return). Created by Backend::create_session.
class Session {
 public:
  Session() noexcept = default;
  ~Session() { reset(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  Session(Session&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), callbacks_(std::move(other.callbacks_)) {}
  Session& operator=(Session&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
      callbacks_ = std::move(other.callbacks_);
    }
    return *this;
  }

  /// Starts the realtime thread and pipeline.
  void start() { detail::check(vb_session_start(handle_)); }
  /// Stops the session; no callback runs after it returns. Idempotent.
  void stop() { detail::check(vb_session_stop(handle_)); }
  /// Speaks text without a user turn (a greeting), after any reply in progress.
  void say(std::string_view text) {
    std::string t = detail::c_string(text, "say text");
    detail::check(vb_session_say(handle_, t.c_str()));
  }
  /// Host-side barge-in: stops playback now and cancels the reply in progress.
  void interrupt() { detail::check(vb_session_interrupt(handle_)); }
  /// The session id.
  std::string id() const {
    VbSession* h = handle_;
    return detail::fill_string(
        [h](char* buf, size_t cap, size_t* needed) { return vb_session_id(h, buf, cap, needed); });
  }

  /// The finished turns as a JSON array, oldest first, a resumed session's earlier turns
  /// included: [{"transcript":"…","reply":"…","interrupted":false},…] (null where the privacy
  /// policy kept a text out of the store). An agent may call it for the context of its turn.
  std::string history() const {
    VbSession* h = handle_;
    return detail::fill_string([h](char* buf, size_t cap, size_t* needed) {
      return vb_session_history(h, buf, cap, needed);
    });
  }

  /// Copies mono PCM at input_sample_rate into the session; returns the samples taken (fewer
  /// than count when the input ring is full: the rest is dropped, counted and reported as
  /// VB_EVENT_AUDIO_DROPPED). Realtime-safe; throws only on a real error (e.g. not started).
  size_t process_audio(const int16_t* pcm, size_t count) {
    size_t accepted = 0;
    VbStatus status = vb_session_process_audio(handle_, pcm, count, &accepted);
    if (status != VB_OK && status != VB_ERR_BUFFER_FULL) detail::throw_last_error(status);
    return accepted;
  }
  /// process_audio over any contiguous container of int16_t (std::vector, std::array, span…).
  template <typename Container,
            typename = std::enable_if_t<
                std::is_same_v<std::remove_cv_t<detail::data_type<const Container>>, int16_t>>>
  size_t process_audio(const Container& pcm) {
    return process_audio(std::data(pcm), std::size(pcm));
  }

  /// Copies up to capacity samples of agent audio at output_sample_rate into out; returns how
  /// many (0 when nothing is due). Realtime-safe.
  size_t read_audio(int16_t* out, size_t capacity) {
    size_t written = 0;
    detail::check(vb_session_read_audio(handle_, out, capacity, &written));
    return written;
  }
  /// read_audio into any contiguous container of int16_t, up to its size.
  template <typename Container,
            typename = std::enable_if_t<std::is_same_v<detail::data_type<Container>, int16_t>>>
  size_t read_audio(Container& out) {
    return read_audio(std::data(out), std::size(out));
  }

  /// Decodes one Opus packet of user audio (a session with input_codec "opus") and queues it
  /// like process_audio; len 0 reports a lost packet, whose audio is concealed. Returns false
  /// when the packet did not decode (nothing was queued) or only part of its audio fitted the
  /// input ring (the rest dropped, counted and reported as VB_EVENT_AUDIO_DROPPED): what a
  /// network brings, not errors. Realtime-safe; throws only on a real error (not started,
  /// input_codec "pcm", a null packet with a length).
  bool process_opus(const uint8_t* packet, size_t len) {
    VbStatus status = vb_session_process_opus(handle_, packet, len);
    if (status == VB_OK) return true;
    const bool undecodable = status == VB_ERR_INVALID_ARGUMENT && handle_ != nullptr &&
                             (packet != nullptr || len == 0);
    if (status != VB_ERR_BUFFER_FULL && !undecodable) detail::throw_last_error(status);
    return false;
  }
  /// process_opus over any contiguous container of uint8_t (std::vector, std::array, span…).
  template <typename Container,
            typename = std::enable_if_t<
                std::is_same_v<std::remove_cv_t<detail::data_type<const Container>>, uint8_t>>>
  bool process_opus(const Container& packet) {
    return process_opus(std::data(packet), std::size(packet));
  }
  /// Reports a lost packet: its audio is concealed from what came before.
  bool process_opus_lost() { return process_opus(nullptr, 0); }

  /// Writes the next Opus packet of the agent's audio (one 20 ms frame at output_sample_rate; a
  /// session with output_codec "opus") into buf; returns its length, 0 when no whole frame is
  /// ready. Call it every 20 ms. Throws VB_ERR_INVALID_ARGUMENT when capacity is too small for
  /// the packet, which is kept for the next call (VB_OPUS_MAX_PACKET bytes always suffice).
  /// Realtime-safe.
  size_t read_opus(uint8_t* buf, size_t capacity) {
    size_t written = 0;
    detail::check(vb_session_read_opus(handle_, buf, capacity, &written));
    return written;
  }
  /// read_opus into any contiguous container of uint8_t, up to its size.
  template <typename Container,
            typename = std::enable_if_t<std::is_same_v<detail::data_type<Container>, uint8_t>>>
  size_t read_opus(Container& buf) {
    return read_opus(std::data(buf), std::size(buf));
  }

  /// The next waiting event, if any (non-blocking). Throws VB_ERR_INVALID_STATE when the
  /// session delivers its events to an event handler.
  std::optional<Event> poll_event() {
    VbEvent event{};
    bool has_event = false;
    detail::check(vb_session_poll_event(handle_, &event, &has_event));
    if (!has_event) return std::nullopt;
    return Event::from(event);
  }

  /// False for a default-constructed or moved-from Session.
  bool valid() const noexcept { return handle_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  /// The C handle, for vb_session_* calls (still owned by this object).
  VbSession* native_handle() const noexcept { return handle_; }

 private:
  friend class Backend;
  friend VbStatus detail::on_session_trampoline(void*, VbSession*, const char*,
                                                VbCallbacks*) noexcept;
  Session(VbSession* handle, std::unique_ptr<detail::SessionCallbacks> callbacks) noexcept
      : handle_(handle), callbacks_(std::move(callbacks)) {}

  void reset() noexcept {
    if (callbacks_ && callbacks_->arrival != nullptr) {
      // An arriving session its incoming handler let go: the engine frees it (refused).
      callbacks_->arrival->dropped = true;
      handle_ = nullptr;
      callbacks_.reset();
      return;
    }
    // The session first (after vb_session_free no callback runs), then what callbacks reach.
    vb_session_free(std::exchange(handle_, nullptr));
    callbacks_.reset();
  }

  VbSession* handle_ = nullptr;
  std::unique_ptr<detail::SessionCallbacks> callbacks_;
};

namespace detail {

// VbIncoming.on_session: user_data is the Backend's IncomingHandler. Ownership follows the
// Session object: if the handler let it go, the session is refused (the engine frees it); if
// the handler kept it, it is the host's (VB_OK), and without handlers it is stopped first so
// that it never runs (the backend's start of it then fails, and so does the job).
inline VbStatus on_session_trampoline(void* user_data, VbSession* handle, const char* info_json,
                                      VbCallbacks* callbacks) noexcept {
  const auto* handler = static_cast<const IncomingHandler*>(user_data);
  Arrival arrival;
  SessionCallbacks* reached = nullptr;
  std::optional<SessionHandlers> handlers;
  VbStatus refusal = VB_ERR_UNAUTHORIZED;  // refused by the host
  try {
    auto owned = std::make_unique<SessionCallbacks>();
    owned->arrival = &arrival;
    reached = owned.get();
    handlers = (*handler)(Session(handle, std::move(owned)), info_json != nullptr ? info_json : "");
  } catch (const Error& e) {
    refusal = e.status() != VB_OK ? e.status() : VB_ERR_PROVIDER;
    handlers.reset();
  } catch (...) {
    refusal = VB_ERR_PROVIDER;
    handlers.reset();
  }
  if (reached == nullptr) return VB_ERR_INTERNAL;  // allocation failed: nothing holds handle
  if (arrival.dropped) return handlers ? VB_ERR_INVALID_STATE : refusal;
  // The host keeps the Session (reached lives as long as it does).
  reached->arrival = nullptr;
  if (!handlers) {
    vb_session_stop(handle);
    return VB_OK;
  }
  reached->agent = std::move(handlers->agent);
  reached->streaming = std::move(handlers->streaming);
  reached->on_event = std::move(handlers->on_event);
  callbacks->user_data = reached;
  callbacks->on_transcript = (reached->agent || reached->streaming)
                                 ? &SessionCallbacks::on_transcript_trampoline
                                 : nullptr;
  callbacks->on_event = reached->on_event ? &SessionCallbacks::on_event_trampoline : nullptr;
  return VB_OK;
}

}  // namespace detail

/// A configured engine. Move-only; the destructor stops and frees it (its sessions stop).
class Backend {
 public:
  /// Creates a backend from JSON configuration; throws Error (VB_ERR_INVALID_CONFIG naming the
  /// field, VB_ERR_PROVIDER_NOT_FOUND, …).
  explicit Backend(const std::string& config_json) {
    detail::check(vb_backend_create(config_json.c_str(), &handle_));
  }
  ~Backend() { reset(); }
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  Backend(Backend&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)),
        processors_(std::move(other.processors_)),
        incoming_(std::move(other.incoming_)),
        auth_hook_(std::move(other.auth_hook_)),
        rate_limiter_(std::move(other.rate_limiter_)),
        tools_(std::move(other.tools_)) {}
  Backend& operator=(Backend&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
      processors_ = std::move(other.processors_);
      incoming_ = std::move(other.incoming_);
      auth_hook_ = std::move(other.auth_hook_);
      rate_limiter_ = std::move(other.rate_limiter_);
      tools_ = std::move(other.tools_);
    }
    return *this;
  }

  /// Starts the I/O runtime; sessions can be created afterwards.
  void start() { detail::check(vb_backend_start(handle_)); }
  /// Graceful stop: refuses new sessions, lets in-flight replies finish for up to drain.
  void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(0)) {
    const auto ms = drain.count();
    const uint32_t max = std::numeric_limits<uint32_t>::max();
    uint32_t clamped = max;
    if (ms <= 0) {
      clamped = 0;
    } else if (static_cast<unsigned long long>(ms) < max) {
      clamped = static_cast<uint32_t>(ms);
    }
    detail::check(vb_backend_stop(handle_, clamped));
  }
  /// Counters over all sessions and a verdict.
  Health health() const {
    Health h{};
    detail::check(vb_backend_health(handle_, &h));
    return h;
  }
  /// Sessions created and not yet stopped (0 for a moved-from backend).
  uint32_t active_sessions() const noexcept { return vb_backend_active_sessions(handle_); }

  /// Adds an audio processor applied, in order (lower first), to every frame of every session
  /// before VAD. Only before start(). The function is kept by this Backend until it is freed;
  /// it is called concurrently from realtime threads: no blocking, no allocation.
  void add_processor(const std::string& name, int32_t order, Processor process) {
    auto stored = std::make_unique<Processor>(std::move(process));
    VbProcessor processor{};
    processor.user_data = stored.get();
    processor.name = name.c_str();
    processor.order = order;
    processor.process = *stored ? &detail::processor_trampoline : nullptr;
    processors_.reserve(processors_.size() + 1);  // the push_back below cannot throw
    detail::check(vb_backend_add_processor(handle_, &processor));
    processors_.push_back(std::move(stored));
  }

  /// Offers a tool to the built-in agent (the backend's "agent" section, which answers the
  /// sessions created without an agent): the model sees name, description and the JSON schema
  /// parameters_json, and may call it while it answers. Only before start(); the function is
  /// kept by this Backend until it is freed. Throws Error: VB_ERR_INVALID_ARGUMENT for a name
  /// that is not 1-64 of [A-Za-z0-9_-] or already added, parameters that are not a JSON
  /// object, or an empty function; VB_ERR_INVALID_STATE after start(). See ToolFunction.
  void add_tool(std::string name, std::string description, std::string parameters_json,
                ToolFunction call) {
    const std::string n = detail::c_string(name, "tool name");
    const std::string d = detail::c_string(description, "tool description");
    const std::string p = detail::c_string(parameters_json, "tool parameters_json");
    auto stored = std::make_unique<ToolFunction>(std::move(call));
    VbTool tool{};
    tool.name = n.c_str();
    tool.description = d.c_str();
    tool.parameters_json = p.c_str();
    tool.call = *stored ? &detail::tool_trampoline : nullptr;
    tool.user_data = stored.get();
    tools_.reserve(tools_.size() + 1);  // the push_back below cannot throw
    detail::check(vb_backend_add_tool(handle_, &tool));
    tools_.push_back(std::move(stored));
  }

  /// Installs the hook for sessions that arrive by themselves: on a livekit backend in worker
  /// mode (provider_config "worker": {"agent_name","max_jobs","load_threshold"}), one per job
  /// the LiveKit server dispatches to it. Only before start(); the function is kept by this
  /// Backend until it is freed. It runs on an engine I/O thread, possibly concurrently for
  /// different sessions. See IncomingHandler: keep the Session and return its handlers to take
  /// it (the backend starts it; do not start() it yourself; destroy it once it has stopped,
  /// VB_STATE_STOPPED, e.g. when its room closed), or let it go and return std::nullopt to
  /// refuse (VB_ERR_UNAUTHORIZED, or the status of a thrown Error). A Session kept with
  /// std::nullopt is stopped and never runs (the job fails); it is still yours to destroy. On
  /// an stt_tts backend, handlers without an agent fail the job the same way.
  void set_incoming(IncomingHandler handler) {
    auto stored = std::make_unique<IncomingHandler>(std::move(handler));
    VbIncoming incoming{};
    incoming.user_data = stored.get();
    incoming.on_session = *stored ? &detail::on_session_trampoline : nullptr;
    detail::check(vb_backend_set_incoming(handle_, &incoming));
    // Nothing arrived yet (only before start): the previous handler, if any, can go.
    incoming_ = std::move(stored);
  }

  /// Calls the room service of a livekit backend's server and returns its JSON answer.
  /// request_json is one of {"op":"create_room","room":R}, {"op":"list_rooms"},
  /// {"op":"delete_room","room":R}, {"op":"list_participants","room":R},
  /// {"op":"remove_participant","room":R,"identity":I},
  /// {"op":"create_dispatch","room":R,"agent_name":A,"metadata":M}; the answer is
  /// {"room":{name,sid,num_participants,created_at}}, {"rooms":[…]},
  /// {"participants":[{identity,sid,kind,state},…]}, {"dispatch_id":"…"} or {}. Throws Error:
  /// VB_ERR_INVALID_CONFIG on another backend, VB_ERR_NOT_FOUND for an unknown room,
  /// VB_ERR_CONNECTION_FAILED for an unreachable server, VB_ERR_INVALID_ARGUMENT for a bad
  /// request. Blocks for the request (provider_config.timeout_ms at most); any state.
  std::string room_service(std::string_view request_json) const {
    const std::string request = detail::c_string(request_json, "request_json");
    // Big enough for every answer but long lists: a request is repeated only when its answer
    // did not fit, and the answers of writes (a dispatch) are far smaller.
    std::string buf(16 * 1024, '\0');
    for (;;) {
      size_t needed = 0;
      VbStatus status =
          vb_backend_room_service(handle_, request.c_str(), buf.data(), buf.size(), &needed);
      if (status == VB_OK) {
        buf.resize(std::char_traits<char>::length(buf.c_str()));
        return buf;
      }
      if (status == VB_ERR_INVALID_ARGUMENT && needed > buf.size()) {
        buf.assign(needed, '\0');
        continue;
      }
      detail::throw_last_error(status);
    }
  }

  /// A session whose agent answers each transcript with one string. session_json "" means all
  /// defaults. With on_event, events are pushed to it; else poll them.
  Session create_session(const std::string& session_json, Agent agent,
                         EventHandler on_event = nullptr) {
    auto callbacks = std::make_unique<detail::SessionCallbacks>();
    callbacks->agent = std::move(agent);
    callbacks->on_event = std::move(on_event);
    return make_session(session_json, std::move(callbacks));
  }
  /// A session whose agent streams its reply (Reply::write, Reply::end). An empty
  /// StreamingAgent means none: for pipelines that answer by themselves (s2s).
  Session create_session(const std::string& session_json, StreamingAgent agent,
                         EventHandler on_event = nullptr) {
    auto callbacks = std::make_unique<detail::SessionCallbacks>();
    callbacks->streaming = std::move(agent);
    callbacks->on_event = std::move(on_event);
    return make_session(session_json, std::move(callbacks));
  }
  /// A session without an agent on this side, polling events: for pipelines that answer by
  /// themselves (s2s), or answered by the built-in agent (the backend's "agent" section).
  Session create_session(const std::string& session_json) {
    return make_session(session_json, std::make_unique<detail::SessionCallbacks>());
  }

  /// Installs the host's auth hook (see AuthHook; both functions are required). Only before
  /// start(); the hook is kept by this Backend until it is freed. From then on a session with
  /// an auth_token is admitted only when authenticate names its user (a user_id in its config
  /// must be that user) and authorize allows "session.create"; a recovered session only when
  /// authorize allows "session.resume". A refusal is VB_ERR_UNAUTHORIZED and creates nothing.
  void set_auth_hook(AuthHook hook) {
    auto stored = std::make_unique<AuthHook>(std::move(hook));
    VbAuthHook c{};
    c.user_data = stored.get();
    c.authenticate = stored->authenticate ? &detail::auth_authenticate_trampoline : nullptr;
    c.authorize = stored->authorize ? &detail::auth_authorize_trampoline : nullptr;
    detail::check(vb_backend_set_auth_hook(handle_, &c));
    auth_hook_ = std::move(stored);  // nothing was admitted yet (only before start)
  }

  /// Installs the host's rate limiter (see RateLimiter; allow is required, wait optional). Only
  /// before start(); the limiter is kept by this Backend until it is freed. Each new session
  /// then takes one admission from it; a refusal is VB_ERR_RATE_LIMITED and creates nothing.
  void set_rate_limiter(RateLimiter limiter) {
    auto stored = std::make_unique<RateLimiter>(std::move(limiter));
    VbRateLimiter c{};
    c.user_data = stored.get();
    c.allow = stored->allow ? &detail::limiter_allow_trampoline : nullptr;
    c.wait = stored->wait ? &detail::limiter_wait_trampoline : nullptr;
    detail::check(vb_backend_set_rate_limiter(handle_, &c));
    rate_limiter_ = std::move(stored);
  }

  /// The sessions found in the session store when this backend was created and not resumed or
  /// discarded since (their process ended without stopping them), oldest first, as a JSON
  /// array: [{"session_id":"…","user_id":"…","turns":3},…]; "[]" when persistence is off.
  std::string recovered_sessions() const {
    VbBackend* h = handle_;
    return detail::fill_string([h](char* buf, size_t cap, size_t* needed) {
      return vb_backend_recovered_sessions(h, buf, cap, needed);
    });
  }
  /// Reopens a recovered session, not started: same id, configuration (without its
  /// auth_token) and history (Session::history). It counts against max_concurrent_sessions
  /// and is admitted by the auth hook ("session.resume") and the rate limiter. Throws Error:
  /// VB_ERR_NOT_FOUND when no recovered session has that id (unknown, resumed or discarded
  /// already, or persistence off).
  Session resume_session(const std::string& session_id, Agent agent,
                         EventHandler on_event = nullptr) {
    auto callbacks = std::make_unique<detail::SessionCallbacks>();
    callbacks->agent = std::move(agent);
    callbacks->on_event = std::move(on_event);
    return resume(session_id, std::move(callbacks));
  }
  /// resume_session with an agent that streams its reply.
  Session resume_session(const std::string& session_id, StreamingAgent agent,
                         EventHandler on_event = nullptr) {
    auto callbacks = std::make_unique<detail::SessionCallbacks>();
    callbacks->streaming = std::move(agent);
    callbacks->on_event = std::move(on_event);
    return resume(session_id, std::move(callbacks));
  }
  /// Forgets a recovered session without resuming it: its record and audio are deleted from
  /// the store before this returns, and no later backend finds it. Throws Error:
  /// VB_ERR_NOT_FOUND as for resume_session; VB_ERR_INTERNAL when the store could not be
  /// written (it stays listed). Blocks for the disk write.
  void discard_recovered(const std::string& session_id) {
    const std::string id = detail::c_string(session_id, "session_id");
    detail::check(vb_backend_discard_recovered(handle_, id.c_str()));
  }
  /// Blocks until every session record written so far is on disk; throws Error
  /// (VB_ERR_INTERNAL) when a write failed since the previous flush.
  void flush_store() { detail::check(vb_backend_flush_store(handle_)); }

  /// False for a moved-from Backend.
  bool valid() const noexcept { return handle_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  /// The C handle, for vb_backend_* calls (still owned by this object).
  VbBackend* native_handle() const noexcept { return handle_; }

 private:
  Session make_session(const std::string& session_json,
                       std::unique_ptr<detail::SessionCallbacks> callbacks) {
    const char* json = session_json.empty() ? nullptr : session_json.c_str();
    return open_session(std::move(callbacks), [&](const VbCallbacks* c, VbSession** out) {
      return vb_session_create(handle_, json, c, out);
    });
  }

  Session resume(const std::string& session_id,
                 std::unique_ptr<detail::SessionCallbacks> callbacks) {
    const std::string id = detail::c_string(session_id, "session_id");
    return open_session(std::move(callbacks), [&](const VbCallbacks* c, VbSession** out) {
      return vb_session_resume(handle_, id.c_str(), c, out);
    });
  }

  // Opens a session with open(callbacks, &handle): vb_session_create or vb_session_resume.
  template <typename Open>
  Session open_session(std::unique_ptr<detail::SessionCallbacks> callbacks, Open open) {
    VbCallbacks c{};
    c.user_data = callbacks.get();
    c.on_transcript = (callbacks->agent || callbacks->streaming)
                          ? &detail::SessionCallbacks::on_transcript_trampoline
                          : nullptr;
    c.on_event = callbacks->on_event ? &detail::SessionCallbacks::on_event_trampoline : nullptr;
    VbSession* handle = nullptr;
    detail::check(open(&c, &handle));
    return Session(handle, std::move(callbacks));
  }

  void reset() noexcept {
    // The backend first (its sessions stop, no processor or hook runs any more), then them.
    vb_backend_free(std::exchange(handle_, nullptr));
    processors_.clear();
    incoming_.reset();
    auth_hook_.reset();
    rate_limiter_.reset();
    tools_.clear();
  }

  VbBackend* handle_ = nullptr;
  std::vector<std::unique_ptr<Processor>> processors_;
  std::unique_ptr<IncomingHandler> incoming_;
  std::unique_ptr<AuthHook> auth_hook_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::vector<std::unique_ptr<ToolFunction>> tools_;
};

}  // namespace voicebackend

#endif  // VOICEBACKEND_HPP
