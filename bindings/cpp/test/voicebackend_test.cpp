// Tests of the C++ wrapper (voicebackend.hpp) against libvoicebackend built with the test
// providers (`cargo build --features test-providers --lib`):
//   STT test-pitch-stt: the transcript is "pitch <hz> hz for <ms> ms", measured from the audio;
//   TTS test-tone-tts: a 440 Hz tone, 20 ms per character, at 24 kHz.
// Speech is pushed at real-time pace; a turn ends after 500 ms of silence. Every wait is bounded
// (30 s) and nothing asserts on timing.
#if defined(VOICEBACKEND_USE_GTEST)
#include <gtest/gtest.h>
#else
#include "mini_test.hpp"
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace vbtest;

// ---------------------------------------------------------------------------------------------

TEST(Library, VersionRegistryAndStatusNames) {
  EXPECT_EQ(vb::abi_version(), static_cast<uint32_t>(VB_ABI_VERSION));
  const std::string version = vb::version();
  EXPECT_FALSE(version.empty());
  EXPECT_EQ(std::count(version.begin(), version.end(), '.'), 2) << version;
  EXPECT_TRUE(contains(vb::registry_list(), "\"local\"")) << vb::registry_list();
  EXPECT_EQ(std::string(vb::status_name(VB_ERR_INVALID_CONFIG)), "VB_ERR_INVALID_CONFIG");
  EXPECT_EQ(std::string(vb::status_name(VB_OK)), "VB_OK");
}

TEST(Turn, FullTurnWithAStringAgent) {
  vb::Backend backend(config());
  backend.start();
  std::atomic<int> calls{0};
  std::atomic<bool> on_main_thread{false};
  std::mutex mutex;
  std::string heard;
  const auto main_thread = std::this_thread::get_id();
  vb::Session session = backend.create_session(
      session_config(kRate, kRate), [&](const std::string& transcript) {
        calls++;
        on_main_thread = std::this_thread::get_id() == main_thread;
        std::lock_guard<std::mutex> lock(mutex);
        heard = transcript;
        return "you said " + transcript;
      });
  session.start();
  EXPECT_EQ(backend.active_sessions(), 1u);
  EXPECT_FALSE(session.id().empty());

  EventLog log;
  Host host(session, log, /*poll=*/true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1200, kRate)));
  ASSERT_TRUE(host.wait_for(reply_finished())) << log.size() << " events";
  host.pump_for(300ms);

  const auto finals = log.texts(VB_EVENT_TRANSCRIPT_FINAL);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_TRUE(contains(finals[0], "pitch 150 hz for ")) << finals[0];
  const auto replies = log.texts(VB_EVENT_AGENT_RESPONSE);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0], "you said " + finals[0]);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_FALSE(on_main_thread.load());
  {
    std::lock_guard<std::mutex> lock(mutex);
    EXPECT_EQ(heard, finals[0]);
  }
  EXPECT_EQ(log.count(VB_EVENT_SPEECH_STARTED), 1u);
  EXPECT_EQ(log.count(VB_EVENT_SPEECH_STOPPED), 1u);
  EXPECT_EQ(log.count(VB_EVENT_TURN_METRICS), 1u);
  EXPECT_EQ(log.count(VB_EVENT_ERROR), 0u);
  EXPECT_TRUE(reached(VB_STATE_PROCESSING)(log.snapshot()));
  for (const vb::Event& e : log.snapshot()) {
    if (e.kind == VB_EVENT_TURN_METRICS) {
      EXPECT_GT(e.metrics.first_output_audio_us, 0u);
    }
  }
  expect_tone_for(host.played, replies[0], kRate);

  const vb::Health health = backend.health();
  EXPECT_GT(health.frames_processed, 0u);
  EXPECT_EQ(health.active_sessions, 1u);
  session.stop();
  EXPECT_EQ(backend.active_sessions(), 0u);
}

TEST(Turn, StreamingAgentAt48kHz) {
  vb::Backend backend(config());
  backend.start();
  std::atomic<int> write_after_end{-1};
  vb::Session session = backend.create_session(
      session_config(48000, 48000), [&](const std::string& transcript, vb::Reply& reply) {
        EXPECT_FALSE(reply.cancelled());
        reply.write("one. ");
        reply.write(std::string_view("two three. and more", 10));
        reply.end();
        const auto e = error_of([&] { reply.write(transcript); });
        write_after_end = e ? static_cast<int>(e->status()) : VB_OK;
      });
  session.start();
  EventLog log;
  Host host(session, log, true, 48000);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(200, 1000, 48000)));
  ASSERT_TRUE(host.wait_for(reply_finished()));
  host.pump_for(300ms);

  const auto finals = log.texts(VB_EVENT_TRANSCRIPT_FINAL);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_TRUE(contains(finals[0], "pitch 200 hz for ")) << finals[0];
  const auto replies = log.texts(VB_EVENT_AGENT_RESPONSE);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0], "one. two three.");
  EXPECT_EQ(write_after_end.load(), static_cast<int>(VB_ERR_INVALID_STATE));
  expect_tone_for(host.played, replies[0], 48000);
}

TEST(Turn, ThrowingAgentIsAProviderError) {
  vb::Backend backend(config());
  backend.start();
  std::atomic<int> calls{0};
  vb::Session session =
      backend.create_session(session_config(kRate, kRate), [&](const std::string&) -> std::string {
        calls++;
        throw std::runtime_error("the agent failed");
      });
  session.start();
  EventLog log;
  Host host(session, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1000, kRate)));
  ASSERT_TRUE(host.wait_for(has_event(VB_EVENT_ERROR)));
  EXPECT_EQ(calls.load(), 1);
  for (const vb::Event& e : log.snapshot()) {
    if (e.kind == VB_EVENT_ERROR) {
      EXPECT_EQ(e.error, VB_ERR_PROVIDER) << vb::status_name(e.error) << ": " << e.text;
    }
  }
  // The session goes on listening: a second turn reaches the agent again.
  host.pump_for(200ms);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1000, kRate)));
  ASSERT_TRUE(host.wait_for([&](const std::vector<vb::Event>&) { return calls.load() == 2; }));
}

TEST(Events, HandlerGetsEveryEventOnItsOwnThread) {
  vb::Backend backend(config());
  backend.start();
  EventLog log;
  const auto main_thread = std::this_thread::get_id();
  std::atomic<int> on_main_thread{0};
  vb::Session session = backend.create_session(
      session_config(kRate, kRate),
      [](const std::string& transcript) { return "heard " + transcript; },
      [&](const vb::Event& event) {
        if (std::this_thread::get_id() == main_thread) on_main_thread++;
        log.add(event);
        // An exception from the handler must stay in the wrapper.
        if (event.kind == VB_EVENT_STATE_CHANGED) throw std::runtime_error("handler failure");
      });
  const auto polled = error_of([&] { session.poll_event(); });
  ASSERT_TRUE(polled.has_value());
  EXPECT_EQ(polled->status(), VB_ERR_INVALID_STATE) << polled->what();
  session.start();
  Host host(session, log, /*poll=*/false);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(180, 1000, kRate)));
  ASSERT_TRUE(host.wait_for(reply_finished()));
  const auto finals = log.texts(VB_EVENT_TRANSCRIPT_FINAL);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_TRUE(contains(finals[0], "pitch 180 hz")) << finals[0];
  const auto replies = log.texts(VB_EVENT_AGENT_RESPONSE);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0], "heard " + finals[0]);
  EXPECT_EQ(on_main_thread.load(), 0);
  session.stop();
  // No event arrives after stop() returned.
  const size_t after_stop = log.size();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.size(), after_stop);
}

TEST(Errors, UnknownProvider) {
  auto e = error_of([] { vb::Backend backend(R"({"provider":"no-such-backend"})"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_PROVIDER_NOT_FOUND) << e->what();
  EXPECT_TRUE(contains(e->message(), "no-such-backend")) << e->what();
  // what(): the message, led by the status name once.
  const std::string what = e->what();
  EXPECT_EQ(what.rfind("VB_ERR_PROVIDER_NOT_FOUND", 0), 0u) << what;
  EXPECT_EQ(what.find("VB_ERR_PROVIDER_NOT_FOUND", 1), std::string::npos) << what;

  e = error_of([] {
    vb::Backend backend(
        R"({"provider":"local","stt_provider":"no-such-stt","tts_provider":"test-tone-tts"})");
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_PROVIDER_NOT_FOUND) << e->what();
  EXPECT_TRUE(contains(e->message(), "no-such-stt")) << e->what();
}

TEST(Errors, InvalidConfigNamesTheField) {
  auto e = error_of([] { vb::Backend backend(config(R"("turn":{"silence_ms":0})")); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_CONFIG) << e->what();
  EXPECT_TRUE(contains(e->message(), "turn.silence_ms")) << e->what();

  e = error_of([] { vb::Backend backend(config(R"("no_such_key":1)")); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_CONFIG) << e->what();
  EXPECT_TRUE(contains(e->message(), "no_such_key")) << e->what();

  e = error_of([] { vb::Backend backend("{not json"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_CONFIG) << e->what();
  EXPECT_FALSE(e->message().empty());

  vb::Backend backend(config());
  backend.start();
  e = error_of([&] {
    backend.create_session(R"({"input_sample_rate":12345})", [](const std::string&) {
      return std::string();
    });
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_CONFIG) << e->what();
  EXPECT_TRUE(contains(e->message(), "input_sample_rate")) << e->what();
}

TEST(Errors, CallsInTheWrongState) {
  vb::Backend backend(config());
  const auto agent = [](const std::string& t) { return t; };
  // A session needs a started backend.
  auto e = error_of([&] { backend.create_session("", agent); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();

  backend.start();
  e = error_of([&] { backend.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  // Processors only before start.
  e = error_of([&] { backend.add_processor("late", 0, [](int16_t*, size_t, uint32_t) {}); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();

  // An stt_tts session needs an agent.
  e = error_of([&] { backend.create_session(""); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();

  vb::Session session = backend.create_session("", agent);  // "" = all defaults
  const std::vector<int16_t> frame(320, 0);
  e = error_of([&] { session.process_audio(frame); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  EXPECT_FALSE(e->message().empty());
  e = error_of([&] { session.say("hello"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();

  session.start();
  e = error_of([&] { session.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  EXPECT_EQ(session.process_audio(frame), frame.size());
  // Text with a NUL byte is refused before it reaches C (where it would be cut short).
  e = error_of([&] { session.say(std::string("a\0b", 3)); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
  EXPECT_EQ(std::string(e->what()), "VB_ERR_INVALID_ARGUMENT: say text contains a NUL byte");

  session.stop();
  session.stop();  // idempotent
  e = error_of([&] { session.process_audio(frame); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
}

TEST(Backend, StopEndsSessionsAndRefusesNewOnes) {
  vb::Backend backend(config());
  EXPECT_EQ(backend.health().status, VB_HEALTH_UNHEALTHY);  // not started
  backend.start();
  vb::Session session = backend.create_session("", [](const std::string& t) { return t; });
  session.start();
  EXPECT_EQ(backend.active_sessions(), 1u);
  backend.stop(std::chrono::milliseconds(500));  // nothing in flight: returns without waiting
  EXPECT_EQ(backend.active_sessions(), 0u);
  const std::vector<int16_t> frame(320, 0);
  auto e = error_of([&] { session.process_audio(frame); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  e = error_of([&] { backend.create_session("", [](const std::string& t) { return t; }); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  e = error_of([&] { backend.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
}

TEST(Raii, MovedFromObjectsThrowAndMovedSessionsKeepTheirAgent) {
  vb::Backend original(config());
  vb::Backend backend(std::move(original));
  EXPECT_FALSE(original.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(backend.valid());
  auto e = error_of([&] { original.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
  EXPECT_EQ(original.active_sessions(), 0u);
  backend.start();

  std::atomic<int> calls{0};
  vb::Session first = backend.create_session(session_config(kRate, kRate), [&](const std::string& t) {
    calls++;
    return "moved " + t;
  });
  // Moves, including through a reallocating container: the agent's state must not move.
  std::vector<vb::Session> sessions;
  sessions.push_back(std::move(first));
  EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move)
  e = error_of([&] { first.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
  e = error_of([&] { first.id(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
  for (int i = 0; i < 8; i++) sessions.emplace_back();  // reallocates
  vb::Session session = std::move(sessions.front());
  sessions.clear();
  session.start();

  // Move-assigning over a live session frees it.
  vb::Session other = backend.create_session("", [](const std::string& t) { return t; });
  other.start();
  EXPECT_EQ(backend.active_sessions(), 2u);
  other = vb::Session();
  EXPECT_EQ(backend.active_sessions(), 1u);

  EventLog log;
  Host host(session, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1000, kRate)));
  ASSERT_TRUE(host.wait_for(has_event(VB_EVENT_AGENT_RESPONSE)));
  EXPECT_EQ(calls.load(), 1);
  const auto replies = log.texts(VB_EVENT_AGENT_RESPONSE);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(contains(replies[0], "moved pitch 150 hz")) << replies[0];

  // Backends move too, with their sessions still running.
  vb::Backend moved_backend = std::move(backend);
  EXPECT_EQ(moved_backend.active_sessions(), 1u);
}

TEST(Raii, SessionOutlivesItsBackend) {
  auto backend = std::make_unique<vb::Backend>(config());
  backend->start();
  vb::Session session = backend->create_session(session_config(kRate, kRate),
                                                [](const std::string& t) { return t; });
  session.start();
  const std::vector<int16_t> frame(320, 0);
  EXPECT_EQ(session.process_audio(frame), frame.size());
  backend.reset();  // stops the session; its handle stays ours to free
  auto e = error_of([&] { session.process_audio(frame); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
  EXPECT_FALSE(session.id().empty());
  session.stop();
  // ~Session runs after the backend is gone.
}

TEST(Raii, DestroyingASessionWaitsForItsAgent) {
  vb::Backend backend(config());
  backend.start();
  std::atomic<bool> started{false}, returned{false};
  struct SetOnExit {
    std::atomic<bool>& flag;
    ~SetOnExit() { flag = true; }
  };
  std::optional<vb::Session> session = backend.create_session(
      session_config(kRate, kRate), [&](const std::string&, vb::Reply& reply) {
        SetOnExit on_exit{returned};
        started = true;
        std::this_thread::sleep_for(300ms);
        reply.write("late.");  // may throw: the session is stopping
      });
  session->start();
  EventLog log;
  Host host(*session, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 800, kRate)));
  ASSERT_TRUE(host.wait_for([&](const std::vector<vb::Event>&) { return started.load(); }));
  session.reset();  // vb_session_free, then the agent's state
  // No callback runs after the free returned: the agent call had ended before the state it
  // uses (the std::function and its captures) was freed.
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(backend.active_sessions(), 0u);
}

TEST(Processors, RunInOrderInPlaceAndStayWithTheBackend) {
  auto token = std::make_shared<int>(0);
  std::atomic<uint64_t> calls{0}, out_of_order{0}, wrong_format{0};
  std::atomic<int> stage{0};
  {
    vb::Backend backend(config());
    // Added out of order on purpose; "early" (order -1) must run before "late" (order 5).
    backend.add_processor("late", 5, [&, token](int16_t* pcm, size_t samples, uint32_t rate) {
      if (stage.exchange(2) != 1) out_of_order++;
      if (pcm == nullptr || samples != 320 || rate != 16000) wrong_format++;
      calls++;
    });
    backend.add_processor("early", -1, [&](int16_t*, size_t, uint32_t) { stage = 1; });
    backend.add_processor("throws", 10, [](int16_t*, size_t, uint32_t) {
      throw std::runtime_error("processor failure");  // must not reach the engine
    });
    auto e = error_of([&] { backend.add_processor("empty", 0, vb::Processor()); });
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
    EXPECT_EQ(token.use_count(), 2);  // kept by the backend
    backend.start();

    vb::Session session = backend.create_session(session_config(48000, 48000),
                                                 [](const std::string& t) { return t; });
    session.start();
    EventLog log;
    Host host(session, log, true, 48000);
    ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1000, 48000)));
    ASSERT_TRUE(host.wait_for(has_event(VB_EVENT_AGENT_RESPONSE)));
    const auto finals = log.texts(VB_EVENT_TRANSCRIPT_FINAL);
    ASSERT_EQ(finals.size(), 1u);
    EXPECT_TRUE(contains(finals[0], "pitch 150 hz")) << finals[0];
    EXPECT_GT(calls.load(), 50u);  // 1.8 s of audio = 90 frames
    EXPECT_EQ(out_of_order.load(), 0u);
    EXPECT_EQ(wrong_format.load(), 0u);
  }
  EXPECT_EQ(token.use_count(), 1);  // released with the backend
}

TEST(Processors, ProcessInPlace) {
  // A processor that mutes the audio: the VAD then hears no speech, so no turn starts.
  vb::Backend backend(config());
  std::atomic<uint64_t> muted{0};
  backend.add_processor("mute", 0, [&](int16_t* pcm, size_t samples, uint32_t) {
    std::fill(pcm, pcm + samples, int16_t{0});
    muted++;
  });
  backend.start();
  std::atomic<int> calls{0};
  vb::Session session = backend.create_session(session_config(kRate, kRate),
                                               [&](const std::string& t) {
                                                 calls++;
                                                 return t;
                                               });
  session.start();
  EventLog log;
  Host host(session, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 1000, kRate)));
  host.pump_for(500ms);
  EXPECT_GT(muted.load(), 50u);
  EXPECT_EQ(log.count(VB_EVENT_SPEECH_STARTED), 0u);
  EXPECT_EQ(log.count(VB_EVENT_TRANSCRIPT_FINAL), 0u);
  EXPECT_EQ(calls.load(), 0);
}

TEST(Session, SayInterruptAndIds) {
  vb::Backend backend(config());
  backend.start();
  vb::Session session = backend.create_session(session_config(kRate, 24000),
                                               [](const std::string& t) { return t; });
  vb::Session second = backend.create_session("", [](const std::string& t) { return t; });
  EXPECT_NE(session.id(), second.id());
  second = vb::Session();
  session.start();
  EventLog log;
  Host host(session, log, true);

  const std::string greeting = "Hello there.";
  session.say(greeting);
  ASSERT_TRUE(host.wait_for(reply_finished()));
  host.pump_for(300ms);
  expect_tone_for(host.played, greeting, 24000);
  EXPECT_EQ(log.count(VB_EVENT_ERROR), 0u);

  // A long reply, cut short by the host.
  const size_t mark = log.size();
  session.say(std::string(200, 'a') + ".");  // 4 s of tone
  ASSERT_TRUE(host.wait_for(reached(VB_STATE_SPEAKING, mark)));
  session.interrupt();
  ASSERT_TRUE(host.wait_for(has_event(VB_EVENT_INTERRUPTED, mark)));
  ASSERT_TRUE(host.wait_for(reached(VB_STATE_LISTENING, mark)));
}

// ---- Opus packets in and out ----

// A host relays one session's Opus output into another's Opus input, losing every fifth packet:
// the listener hears the speaker's tone (200 Hz here) as a turn at its pitch. A buffer too small
// is an error that keeps the packet; garbage is refused without an exception; each side throws
// for the other codec's call.
TEST(Opus, RelayBetweenTwoSessions) {
  vb::Backend backend(config(R"("tts_config":{"frequency_hz":200})"));
  backend.start();
  const auto echo = [](const std::string& t) { return t; };
  vb::Session speaker = backend.create_session(
      R"({"output_codec":"opus","output_sample_rate":48000,"opus_bitrate":24000})", echo);
  vb::Session listener =
      backend.create_session(R"({"input_codec":"opus","input_sample_rate":16000})", echo);
  speaker.start();
  listener.start();
  EventLog heard;
  speaker.say("Hello over Opus, long enough to be one turn.");

  std::array<uint8_t, VB_OPUS_MAX_PACKET> buf{};
  const auto too_small = error_of([&] {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
      speaker.read_opus(buf.data(), 1);
      std::this_thread::sleep_for(5ms);
    }
  });
  ASSERT_TRUE(too_small.has_value());
  EXPECT_EQ(too_small->status(), VB_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(too_small->message(), "kept for the next call"));

  size_t packets = 0, quiet = 0;
  auto tick = std::chrono::steady_clock::now();
  while (quiet < 50) {  // then one second of silence (lost packets, concealed to silence)
    tick += 20ms;
    std::this_thread::sleep_until(tick);
    const size_t n = speaker.read_opus(buf);
    if (n == 0) {
      quiet++;
      EXPECT_TRUE(listener.process_opus_lost());
    } else if (++packets % 5 == 0) {
      EXPECT_TRUE(listener.process_opus_lost());
    } else {
      EXPECT_TRUE(listener.process_opus(buf.data(), n));
    }
    while (auto event = listener.poll_event()) heard.add(*event);
  }
  EXPECT_GE(packets, 44u);  // 44 characters x 20 ms, the first packet kept above included
  EXPECT_LE(packets, 46u);
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (heard.texts(VB_EVENT_TRANSCRIPT_FINAL).empty() &&
         std::chrono::steady_clock::now() < deadline) {
    while (auto event = listener.poll_event()) heard.add(*event);
    std::this_thread::sleep_for(5ms);
  }
  const auto finals = heard.texts(VB_EVENT_TRANSCRIPT_FINAL);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].rfind("pitch 200 hz", 0), 0u);

  const std::array<uint8_t, 2> garbage{0x03, 0x00};
  EXPECT_FALSE(listener.process_opus(garbage));
  EXPECT_TRUE(contains(vb_last_error_message(), "nothing was queued"));
  const std::array<int16_t, 320> pcm{};
  const auto pcm_in = error_of([&] { listener.process_audio(pcm); });
  ASSERT_TRUE(pcm_in.has_value());
  EXPECT_EQ(pcm_in->status(), VB_ERR_INVALID_STATE);
  EXPECT_TRUE(contains(pcm_in->message(), "vb_session_process_opus"));
  const auto opus_in = error_of([&] { speaker.process_opus_lost(); });
  ASSERT_TRUE(opus_in.has_value());
  EXPECT_EQ(opus_in->status(), VB_ERR_INVALID_STATE);
  EXPECT_TRUE(error_of([&] { listener.read_opus(buf); }).has_value());
  EXPECT_TRUE(error_of([&] { vb::Session().process_opus_lost(); }).has_value());
}

// ---- Sessions that arrive by themselves, and the LiveKit room service (no server needed) ----

namespace {

/// A livekit backend whose server does not exist (nothing listens on port 9), failing fast.
std::string unreachable_livekit(const std::string& provider_extra = "") {
  return R"({"provider":"livekit","provider_config":{"url":"ws://127.0.0.1:9","api_key":"devkey",)"
         R"("api_secret":"secret","timeout_ms":300)" +
         (provider_extra.empty() ? std::string() : "," + provider_extra) +
         R"(},"stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",)"
         R"("retry":{"max_attempts":2,"initial_backoff_ms":10}})";
}

VbStatus no_agent(void*, VbSession*, const char*, VbReply*) { return VB_OK; }

/// A session as the engine opens one that arrives (not started), still the engine's.
VbSession* arriving_session(vb::Backend& backend) {
  VbCallbacks callbacks{};
  callbacks.on_transcript = &no_agent;
  VbSession* handle = nullptr;
  vb::detail::check(vb_session_create(backend.native_handle(), nullptr, &callbacks, &handle));
  return handle;
}

const char* const kInfo =
    R"({"source":"livekit-dispatch","room":"r1","participant":"p1","job_id":"AJ_1"})";

}  // namespace

TEST(Incoming, WorkerStartReportsAnUnreachableServer) {
  vb::Backend backend(unreachable_livekit(R"("worker":{"agent_name":"cpp-test","max_jobs":2})"));
  std::atomic<int> calls{0};
  backend.set_incoming([&](vb::Session, const std::string&) -> std::optional<vb::SessionHandlers> {
    ++calls;
    return std::nullopt;
  });
  auto e = error_of([&] { backend.start(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_CONNECTION_FAILED);
  EXPECT_TRUE(contains(e->message(), "registering as an agent worker at ws://127.0.0.1:9"))
      << e->message();
  EXPECT_EQ(calls.load(), 0);
}

TEST(Incoming, OnlyBeforeStart) {
  vb::Backend backend(config());
  backend.start();
  auto e = error_of([&] {
    backend.set_incoming([](vb::Session, const std::string&) { return std::nullopt; });
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE);
}

// The hook as the engine calls it: ownership follows the Session object.
TEST(Incoming, OwnershipFollowsTheSession) {
  vb::Backend backend(config());
  backend.start();
  std::mutex mu;
  std::optional<vb::Session> kept;
  std::string seen_info;
  std::vector<vb::Event> events;

  // Let go, nullopt: refused; the handle is still the engine's (freed here as the engine would).
  vb::IncomingHandler refuse = [&](vb::Session s, const std::string& info) {
    EXPECT_TRUE(s.valid());
    EXPECT_FALSE(s.id().empty());
    seen_info = info;
    return std::optional<vb::SessionHandlers>();
  };
  VbSession* handle = arriving_session(backend);
  VbCallbacks callbacks{};
  EXPECT_EQ(vb::detail::on_session_trampoline(&refuse, handle, kInfo, &callbacks),
            VB_ERR_UNAUTHORIZED);
  EXPECT_EQ(seen_info, kInfo);
  EXPECT_TRUE(callbacks.user_data == nullptr);
  EXPECT_EQ(vb_session_state(handle), VB_STATE_IDLE);  // not freed, not stopped
  vb_session_free(handle);

  // A thrown Error refuses with its status; other exceptions with VB_ERR_PROVIDER.
  using Answer = std::optional<vb::SessionHandlers>;
  vb::IncomingHandler full = [](vb::Session, const std::string&) -> Answer {
    throw vb::Error(VB_ERR_SESSION_LIMIT, "full");
  };
  vb::IncomingHandler broken = [](vb::Session, const std::string&) -> Answer {
    throw std::runtime_error("broken");
  };
  handle = arriving_session(backend);
  EXPECT_EQ(vb::detail::on_session_trampoline(&full, handle, kInfo, &callbacks),
            VB_ERR_SESSION_LIMIT);
  EXPECT_EQ(vb::detail::on_session_trampoline(&broken, handle, kInfo, &callbacks),
            VB_ERR_PROVIDER);
  // Handlers for a session not kept: refused too (nobody would own it).
  vb::IncomingHandler forgetful = [](vb::Session, const std::string&) {
    return std::optional<vb::SessionHandlers>(vb::SessionHandlers{});
  };
  EXPECT_EQ(vb::detail::on_session_trampoline(&forgetful, handle, kInfo, &callbacks),
            VB_ERR_INVALID_STATE);
  vb_session_free(handle);

  // Kept, with handlers: taken; the callbacks reach the handlers.
  vb::IncomingHandler take = [&](vb::Session s, const std::string&) {
    std::lock_guard<std::mutex> lock(mu);
    kept = std::move(s);
    vb::SessionHandlers h;
    h.agent = [](const std::string& t) { return t; };
    h.on_event = [&](const vb::Event& e) { events.push_back(e); };
    return std::optional<vb::SessionHandlers>(std::move(h));
  };
  handle = arriving_session(backend);
  EXPECT_EQ(vb::detail::on_session_trampoline(&take, handle, kInfo, &callbacks), VB_OK);
  ASSERT_TRUE(kept.has_value());
  EXPECT_TRUE(kept->native_handle() == handle);
  EXPECT_TRUE(callbacks.user_data != nullptr);
  EXPECT_TRUE(callbacks.on_transcript != nullptr);
  ASSERT_TRUE(callbacks.on_event != nullptr);
  VbEvent event{};
  event.kind = VB_EVENT_SPEECH_STARTED;
  callbacks.on_event(callbacks.user_data, &event);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, VB_EVENT_SPEECH_STARTED);
  kept->start();  // as the backend does after VB_OK
  EXPECT_NE(vb_session_state(kept->native_handle()), VB_STATE_STOPPED);
  kept.reset();  // the host frees it: vb_session_free

  // Kept, but nullopt: the host owns it, stopped, so that it never runs.
  callbacks = VbCallbacks{};
  vb::IncomingHandler keep_but_refuse = [&](vb::Session s, const std::string&) {
    kept = std::move(s);
    return std::optional<vb::SessionHandlers>();
  };
  handle = arriving_session(backend);
  EXPECT_EQ(vb::detail::on_session_trampoline(&keep_but_refuse, handle, kInfo, &callbacks),
            VB_OK);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(vb_session_state(kept->native_handle()), VB_STATE_STOPPED);
  EXPECT_TRUE(callbacks.on_transcript == nullptr);
  EXPECT_TRUE(error_of([&] { kept->start(); }).has_value());
  kept.reset();
}

TEST(RoomService, NeedsALiveKitServer) {
  vb::Backend local(config());
  auto e = error_of([&] { local.room_service(R"({"op":"list_rooms"})"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_CONFIG);

  vb::Backend livekit(unreachable_livekit());
  e = error_of([&] { livekit.room_service(R"({"op":"list_rooms"})"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_CONNECTION_FAILED);
  EXPECT_TRUE(contains(e->message(), "list_rooms at http://127.0.0.1:9")) << e->message();
  e = error_of([&] { livekit.room_service(R"({"op":"no_such_op"})"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
  e = error_of([&] { livekit.room_service(std::string("{\"op\":\"list_rooms\"}\0x", 20)); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
}

TEST(Logging, HandlerReceivesRecordsUntilRemoved) {
  struct Seen {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::pair<VbLogLevel, std::string>> records;
  };
  auto seen = std::make_shared<Seen>();
  vb::set_log_handler(
      [seen](VbLogLevel level, std::string_view target, std::string_view message) {
        std::lock_guard<std::mutex> lock(seen->mutex);
        seen->records.emplace_back(level, std::string(target) + " " + std::string(message));
        seen->changed.notify_all();
      },
      VB_LOG_INFO);
  {
    vb::Backend backend(config());
    backend.start();
  }
  {
    std::unique_lock<std::mutex> lock(seen->mutex);
    const bool stopped = seen->changed.wait_for(lock, kPatience, [&] {
      return std::any_of(seen->records.begin(), seen->records.end(), [](const auto& r) {
        return r.second.find("backend stopped") != std::string::npos;
      });
    });
    EXPECT_TRUE(stopped);
    for (const auto& r : seen->records) {
      EXPECT_LE(r.first, VB_LOG_INFO);
      EXPECT_EQ(r.second.rfind("voicebackend", 0), 0u);
    }
  }
  vb::set_log_handler(nullptr);
  size_t count = 0;
  {
    std::lock_guard<std::mutex> lock(seen->mutex);
    count = seen->records.size();
  }
  {
    vb::Backend backend(config());
    backend.start();
  }
  std::this_thread::sleep_for(100ms);
  std::lock_guard<std::mutex> lock(seen->mutex);
  EXPECT_EQ(seen->records.size(), count);
}
