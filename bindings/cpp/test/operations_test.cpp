// Tests of the C++ wrapper's operations side (voicebackend.hpp) against libvoicebackend built
// with the test providers: an agent failing its reply, sessions recovered after their process
// died (resumed or discarded), the host's auth hook and rate limiter.
#if defined(VOICEBACKEND_USE_GTEST)
#include <gtest/gtest.h>
#else
#include "mini_test.hpp"
#endif

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace vbtest;

namespace {

/// Where the child process of Recovery.ResumedOrDiscarded keeps its session store.
constexpr const char* kDyingStore = "VBCPP_DYING_STORE";

/// The backend configuration on the test providers with its session store at path.
std::string store_config(const std::string& path) {
  return config(R"("persistence":{"path":")" + path + R"("})");
}

/// A fresh directory under the system's temporary directory.
std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("vbcpp-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Runs the test `name` of this program in a child process with `env` (NAME=value …) before
/// it; returns what it printed.
std::string run_child(const std::string& name, const std::string& env) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
#if defined(VOICEBACKEND_USE_GTEST)
  const std::string args = "--gtest_filter=" + name;
#else
  const std::string args = name;
#endif
  const std::string command = "env " + env + " '" + self + "' '" + args + "'";
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
    ::pclose(pipe);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(ReplyFail, TheAgentsOwnErrorEndsTheTurn) {
  vb::Backend backend(config());
  backend.start();
  std::atomic<int> refused_ok{0}, refused_after{0};
  vb::Session session = backend.create_session(
      session_config(kRate, kRate), [&](const std::string&, vb::Reply& reply) {
        reply.write("Let me look. ");
        auto e = error_of([&] { reply.fail(VB_OK, "no failure"); });
        if (e && e->status() == VB_ERR_INVALID_ARGUMENT) refused_ok++;
        reply.fail(VB_ERR_CONNECTION_FAILED, "the order database is down");
        e = error_of([&] { reply.fail(VB_ERR_PROVIDER, "again"); });
        if (e && e->status() == VB_ERR_INVALID_STATE && contains(e->message(), "failed")) {
          refused_after++;
        }
        throw std::runtime_error("thrown after failing: not reported again");
      });
  session.start();
  EventLog log;
  Host host(session, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 800, kRate)));
  ASSERT_TRUE(host.wait_for(reply_finished()));
  host.pump_for(200ms);
  std::vector<vb::Event> errors;
  for (const vb::Event& e : log.snapshot()) {
    if (e.kind == VB_EVENT_ERROR) errors.push_back(e);
  }
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error, VB_ERR_CONNECTION_FAILED) << vb::status_name(errors[0].error);
  EXPECT_EQ(errors[0].text, "agent: the order database is down");
  EXPECT_EQ(log.texts(VB_EVENT_AGENT_RESPONSE), std::vector<std::string>{"Let me look. "});
  EXPECT_EQ(refused_ok.load(), 1);
  EXPECT_EQ(refused_after.load(), 1);
}

// Not a test of its own: the child process of Recovery.ResumedOrDiscarded. It holds a turn in
// one session, opens a second that says nothing, and exits without stopping either, as a
// process that died would.
TEST(Recovery, ChildDiesWithSessionsActive) {
  const char* path = std::getenv(kDyingStore);
  if (path == nullptr) return;
  vb::Backend backend(store_config(path));
  backend.start();
  vb::Session talker = backend.create_session(
      R"({"user_id":"ada"})", [](const std::string& t) { return "you said " + t; });
  talker.start();
  EventLog log;
  Host host(talker, log, true);
  ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 800, kRate)));
  ASSERT_TRUE(host.wait_for(reply_finished()));
  vb::Session idle = backend.create_session(
      R"({"user_id":"bob"})", [](const std::string& t) { return "you said " + t; });
  idle.start();
  backend.flush_store();
  std::printf("SESSIONS %s %s\n", talker.id().c_str(), idle.id().c_str());
  std::fflush(stdout);
  std::_Exit(0);
}

TEST(Recovery, ResumedOrDiscarded) {
  const auto dir = scratch_dir("recovery");
  const std::string path = (dir / "sessions.redb").string();
  // The child has a cache of its own: this process may hold its default store file.
  const std::string out =
      run_child("Recovery.ChildDiesWithSessionsActive",
                std::string(kDyingStore) + "='" + path + "' XDG_CACHE_HOME='" + dir.string() + "'");
  char talker_buf[128] = "", idle_buf[128] = "";
  const auto at = out.find("SESSIONS ");
  ASSERT_NE(at, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + at, "SESSIONS %127s %127s", talker_buf, idle_buf), 2);
  const std::string talker = talker_buf, idle = idle_buf;

  {
    vb::Backend backend(store_config(path));
    backend.start();
    EXPECT_EQ(backend.recovered_sessions(),
              R"([{"session_id":")" + talker + R"(","user_id":"ada","turns":1},)" +
                  R"({"session_id":")" + idle + R"(","user_id":"bob","turns":0}])");

    // Discarded: gone from the list, and it cannot be resumed.
    auto e = error_of([&] { backend.discard_recovered("sess-nobody"); });
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->status(), VB_ERR_NOT_FOUND);
    EXPECT_TRUE(contains(e->message(), "sess-nobody")) << e->message();
    backend.discard_recovered(idle);
    e = error_of([&] { backend.discard_recovered(idle); });
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->status(), VB_ERR_NOT_FOUND);
    e = error_of([&] { backend.resume_session(idle, [](const std::string&) { return ""; }); });
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->status(), VB_ERR_NOT_FOUND);

    // Resumed: same id and history; the conversation goes on.
    vb::Session session = backend.resume_session(
        talker, [](const std::string& t, vb::Reply& reply) { reply.write("again: " + t); });
    EXPECT_EQ(session.id(), talker);
    EXPECT_EQ(backend.recovered_sessions(), "[]");
    const std::string history = session.history();
    EXPECT_TRUE(contains(history, R"([{"transcript":"pitch 150 hz for )")) << history;
    EXPECT_TRUE(contains(history, R"("reply":"you said pitch 150 hz for )")) << history;
    session.start();
    EventLog log;
    Host host(session, log, true);
    ASSERT_TRUE(host.push_realtime(vbtest::utterance(220, 800, kRate)));
    ASSERT_TRUE(host.wait_for(reply_finished()));
    const std::string after = session.history();
    EXPECT_TRUE(contains(after, R"("reply":"again: pitch 220 hz for )")) << after;
    backend.flush_store();
  }
  // The resumed session stopped (completed), the other was discarded: nothing is left.
  vb::Backend later(store_config(path));
  EXPECT_EQ(later.recovered_sessions(), "[]");
  std::filesystem::remove_all(dir);
}

TEST(Recovery, WithoutAStoreNothingIsRecovered) {
  vb::Backend backend(config(R"("persistence":{"path":""})"));
  backend.start();
  EXPECT_EQ(backend.recovered_sessions(), "[]");
  for (auto e : {error_of([&] { backend.discard_recovered("sess-1"); }),
                 error_of([&] { backend.resume_session("sess-1", vb::StreamingAgent()); })}) {
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->status(), VB_ERR_NOT_FOUND);
    EXPECT_TRUE(contains(e->message(), "persistence is off")) << e->message();
  }
  backend.flush_store();
}

TEST(Access, AuthHookAdmitsWhomItNames) {
  vb::Backend backend(config());
  std::atomic<int> authorized{0};
  backend.set_auth_hook(vb::AuthHook{
      [](const std::string& token, const std::string&) -> std::optional<std::string> {
        if (token == "down") throw vb::Error(VB_ERR_CONNECTION_FAILED, "the user directory");
        if (token == "ada-token" || token == "eve-token") return token.substr(0, 3);
        return std::nullopt;
      },
      [&](const std::string& user, const std::string& operation) {
        authorized++;
        return user == "ada" && operation == "session.create";
      }});
  backend.start();
  auto echo = [](const std::string& t) { return "you said " + t; };
  vb::Session ada = backend.create_session(R"({"auth_token":"ada-token"})", echo);
  EXPECT_TRUE(ada.valid());
  EXPECT_EQ(authorized.load(), 1);
  struct Case {
    const char* token;
    const char* user_id;
    VbStatus status;
  };
  for (const Case& c : {Case{"eve-token", "", VB_ERR_UNAUTHORIZED},  // authorize says no
                        Case{"forged", "", VB_ERR_UNAUTHORIZED},     // authenticate says no
                        Case{"down", "", VB_ERR_CONNECTION_FAILED},  // its Error's status
                        Case{"ada-token", "eve", VB_ERR_UNAUTHORIZED}}) {  // not the token's user
    const std::string json = std::string(R"({"auth_token":")") + c.token + R"(","user_id":")" +
                             c.user_id + R"("})";
    auto e = error_of([&] { backend.create_session(json, echo); });
    ASSERT_TRUE(e.has_value()) << json;
    EXPECT_EQ(e->status(), c.status) << json << ": " << e->what();
    EXPECT_FALSE(contains(e->message(), c.token)) << "the token is quoted: " << e->what();
  }
  EXPECT_EQ(backend.active_sessions(), 1u);
  // Only before start; and both functions are needed.
  auto e = error_of([&] {
    backend.set_auth_hook(vb::AuthHook{
        [](const std::string&, const std::string&) { return std::optional<std::string>(); },
        [](const std::string&, const std::string&) { return false; }});
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE);
  vb::Backend other(config());
  e = error_of([&] { other.set_auth_hook(vb::AuthHook{}); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(e->message(), "authenticate")) << e->what();
}

TEST(Access, RateLimiterAdmitsByKey) {
  vb::Backend backend(config());
  std::mutex mutex;
  std::vector<std::string> keys;
  std::atomic<int> waits{0};
  backend.set_rate_limiter(vb::RateLimiter{
      [&](const std::string& key) {
        std::lock_guard<std::mutex> lock(mutex);
        keys.push_back(key);
        return key != "busy";
      },
      [&](const std::string& key, std::chrono::milliseconds timeout) {
        waits++;
        return key == "patient" && timeout == 250ms;
      }});
  backend.start();
  auto echo = [](const std::string& t) { return "you said " + t; };
  vb::Session first = backend.create_session(R"({"user_id":"ada"})", echo);
  auto e = error_of([&] { backend.create_session(R"({"user_id":"busy"})", echo); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_RATE_LIMITED);
  EXPECT_TRUE(contains(e->message(), "busy")) << e->what();
  vb::Session waited =
      backend.create_session(R"({"user_id":"patient","admission_wait_ms":250})", echo);
  EXPECT_EQ(waits.load(), 1);
  {
    std::lock_guard<std::mutex> lock(mutex);
    EXPECT_EQ(keys, (std::vector<std::string>{"ada", "busy"}));
  }
  // A limiter needs allow.
  vb::Backend other(config());
  e = error_of([&] { other.set_rate_limiter(vb::RateLimiter{}); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
}
