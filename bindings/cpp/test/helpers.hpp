// What the C++ binding's test programs share: configurations, the Error a call throws, an
// event log, conditions to wait for, and the Host (one session's host side: audio pushed at
// real-time pace, reply audio played, events polled). Include after gtest.h or mini_test.hpp.
#ifndef VOICEBACKEND_TEST_HELPERS_HPP
#define VOICEBACKEND_TEST_HELPERS_HPP

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audio.hpp"
#include "voicebackend.hpp"

namespace vb = voicebackend;
using namespace std::chrono_literals;

namespace vbtest {

inline constexpr auto kPatience = 30s;
inline constexpr uint32_t kRate = 16000;

/// The backend configuration on the test providers, with `extra` JSON members merged in.
inline std::string config(const std::string& extra = "") {
  return R"({"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts")" +
         (extra.empty() ? std::string() : "," + extra) + "}";
}

inline std::string session_config(uint32_t in_rate, uint32_t out_rate) {
  return R"({"input_sample_rate":)" + std::to_string(in_rate) + R"(,"output_sample_rate":)" +
         std::to_string(out_rate) + "}";
}

/// The Error thrown by f, if any.
template <typename F>
std::optional<vb::Error> error_of(F&& f) {
  try {
    f();
  } catch (const vb::Error& e) {
    return e;
  }
  return std::nullopt;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Events of one session, filled by polling (Host::pump) or by an event handler.
class EventLog {
 public:
  void add(const vb::Event& event) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(event);
  }
  std::vector<vb::Event> snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  /// The texts of the events of `kind`.
  std::vector<std::string> texts(VbEventKind kind) const {
    std::vector<std::string> out;
    for (const vb::Event& e : snapshot()) {
      if (e.kind == kind) out.push_back(e.text);
    }
    return out;
  }
  size_t count(VbEventKind kind) const {
    const auto events = snapshot();
    return static_cast<size_t>(std::count_if(events.begin(), events.end(),
                                             [kind](const vb::Event& e) { return e.kind == kind; }));
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<vb::Event> events_;
};

using Until = std::function<bool(const std::vector<vb::Event>&)>;

/// A state change to `state` among the events from index `from` on.
inline Until reached(VbSessionState state, size_t from = 0) {
  return [state, from](const std::vector<vb::Event>& events) {
    for (size_t i = from; i < events.size(); i++) {
      if (events[i].kind == VB_EVENT_STATE_CHANGED && events[i].state == state) return true;
    }
    return false;
  };
}

/// A reply that started after index `from` has finished: speaking, then listening again.
inline Until reply_finished(size_t from = 0) {
  return [from](const std::vector<vb::Event>& events) {
    bool spoke = false;
    for (size_t i = from; i < events.size(); i++) {
      if (events[i].kind != VB_EVENT_STATE_CHANGED) continue;
      spoke = spoke || events[i].state == VB_STATE_SPEAKING;
      if (spoke && events[i].state == VB_STATE_LISTENING) return true;
    }
    return false;
  };
}

inline Until has_event(VbEventKind kind, size_t from = 0) {
  return [kind, from](const std::vector<vb::Event>& events) {
    for (size_t i = from; i < events.size(); i++) {
      if (events[i].kind == kind) return true;
    }
    return false;
  };
}

/// The host side of one session: pushes audio at real-time pace, plays reply audio, collects
/// events (polling them unless the session has an event handler).
class Host {
 public:
  Host(vb::Session& session, EventLog& log, bool poll, uint32_t in_rate = kRate)
      : session_(session), log_(log), poll_(poll), in_rate_(in_rate) {}

  /// Pushes pcm in 20 ms pieces, one per 20 ms. False when a piece was not taken whole.
  bool push_realtime(const std::vector<int16_t>& pcm) {
    const size_t piece = in_rate_ / 50;
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0, off = 0; off < pcm.size(); i++, off += piece) {
      std::this_thread::sleep_until(start + std::chrono::milliseconds(20 * i));
      const size_t len = std::min(piece, pcm.size() - off);
      if (session_.process_audio(pcm.data() + off, len) != len) return false;
      pump();
    }
    return true;
  }

  /// Pumps until `until` holds over all events so far; false after patience.
  bool wait_for(const Until& until, std::chrono::steady_clock::duration patience = kPatience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    for (;;) {
      pump();
      if (until(log_.snapshot())) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(2ms);
    }
  }

  /// Pumps for a while (reads the reply audio still in the output ring).
  void pump_for(std::chrono::milliseconds how_long) {
    const auto end = std::chrono::steady_clock::now() + how_long;
    while (std::chrono::steady_clock::now() < end) {
      pump();
      std::this_thread::sleep_for(2ms);
    }
  }

  void pump() {
    if (poll_) {
      while (auto event = session_.poll_event()) log_.add(*event);
    }
    std::array<int16_t, 4096> buf{};
    size_t n = 0;
    while ((n = session_.read_audio(buf)) > 0) {
      played.insert(played.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

  std::vector<int16_t> played;

 private:
  vb::Session& session_;
  EventLog& log_;
  bool poll_;
  uint32_t in_rate_;
};

/// Non-zero samples of pcm.
inline size_t nonzero(const std::vector<int16_t>& pcm) {
  return static_cast<size_t>(
      std::count_if(pcm.begin(), pcm.end(), [](int16_t s) { return s != 0; }));
}

/// The frequency of the non-silent part of pcm, from its zero crossings.
inline double tone_hz(const std::vector<int16_t>& pcm, uint32_t rate) {
  std::vector<int16_t> voiced;
  for (int16_t s : pcm) {
    if (s != 0) voiced.push_back(s);
  }
  if (voiced.size() < 2) return 0;
  size_t crossings = 0;
  for (size_t i = 1; i < voiced.size(); i++) {
    if ((voiced[i - 1] < 0) != (voiced[i] < 0)) crossings++;
  }
  return static_cast<double>(crossings) / 2.0 /
         (static_cast<double>(voiced.size()) / static_cast<double>(rate));
}

/// Checks reply audio: a 440 Hz tone about 20 ms per character of `text` at `rate`.
inline void expect_tone_for(const std::vector<int16_t>& played, const std::string& text,
                            uint32_t rate) {
  const double expected = static_cast<double>(text.size()) * 0.020 * rate;
  const double got = static_cast<double>(nonzero(played));
  EXPECT_GT(got, 0.9 * expected) << "reply audio: " << got << " samples, expected ~" << expected;
  EXPECT_LT(got, 1.1 * expected + 0.05 * rate) << "reply audio: " << got << " samples, expected ~"
                                               << expected;
  const double hz = tone_hz(played, rate);
  EXPECT_GT(hz, 420.0) << "tone " << hz << " Hz";
  EXPECT_LT(hz, 460.0) << "tone " << hz << " Hz";
}

}  // namespace vbtest

#endif  // VOICEBACKEND_TEST_HELPERS_HPP
