// A tiny stand-in for GoogleTest, used only when find_package(GTest) finds nothing. It offers
// the subset the tests use: TEST, EXPECT_/ASSERT_ TRUE FALSE EQ NE LT LE GT GE, FAIL,
// ADD_FAILURE, GTEST_SKIP (the case passes; its message is printed), with `<< message`
// streaming. Values are not printed (stream them if needed).
// Run all tests, or only those whose "Suite.Name" contains argv[1].
#ifndef VOICEBACKEND_MINI_TEST_HPP
#define VOICEBACKEND_MINI_TEST_HPP

#include <cstdio>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace minitest {

struct Case {
  std::string name;
  std::function<void()> body;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

inline int& failures_of_current_case() {
  static int failures = 0;
  return failures;
}

struct Registrar {
  Registrar(const char* suite, const char* name, void (*body)()) {
    registry().push_back({std::string(suite) + "." + name, body});
  }
};

class Message {
 public:
  template <typename T>
  Message& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }
  std::string str() const { return stream_.str(); }

 private:
  std::ostringstream stream_;
};

class Failure {
 public:
  Failure(const char* file, int line, const char* what) : file_(file), line_(line), what_(what) {}
  // `return Failure(...) = Message() << ...;` in a void function: records, returns void.
  void operator=(const Message& message) const {
    std::printf("%s:%d: Failure: %s %s\n", file_, line_, what_, message.str().c_str());
    std::fflush(stdout);
    failures_of_current_case()++;
  }

 private:
  const char* file_;
  int line_;
  const char* what_;
};

// `return Skip() = Message() << ...;`: prints why the case is skipped; it still passes.
struct Skip {
  void operator=(const Message& message) const {
    std::printf("[  SKIPPED ] %s\n", message.str().c_str());
    std::fflush(stdout);
  }
};

inline int run_all(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  int passed = 0, failed = 0;
  for (const Case& c : registry()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    std::printf("[ RUN      ] %s\n", c.name.c_str());
    std::fflush(stdout);
    failures_of_current_case() = 0;
    try {
      c.body();
    } catch (const std::exception& e) {
      std::printf("unexpected exception: %s\n", e.what());
      failures_of_current_case()++;
    } catch (...) {
      std::printf("unexpected exception\n");
      failures_of_current_case()++;
    }
    const bool ok = failures_of_current_case() == 0;
    (ok ? passed : failed)++;
    std::printf("%s %s\n", ok ? "[       OK ]" : "[  FAILED  ]", c.name.c_str());
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}

}  // namespace minitest

#define MINITEST_CHECK_(cond, text, on_failure)                                     \
  switch (0)                                                                        \
  case 0:                                                                           \
  default:                                                                          \
    if (cond) {                                                                     \
    } else                                                                          \
      on_failure ::minitest::Failure(__FILE__, __LINE__, text) = ::minitest::Message()

#define MINITEST_EXPECT_(cond, text) MINITEST_CHECK_(cond, text, )
#define MINITEST_ASSERT_(cond, text) MINITEST_CHECK_(cond, text, return)

#define TEST(suite, name)                                                              \
  static void minitest_##suite##_##name();                                             \
  static const ::minitest::Registrar minitest_registrar_##suite##_##name(#suite, #name, \
                                                                        &minitest_##suite##_##name); \
  static void minitest_##suite##_##name()

#define EXPECT_TRUE(c) MINITEST_EXPECT_(static_cast<bool>(c), "expected true: " #c)
#define EXPECT_FALSE(c) MINITEST_EXPECT_(!static_cast<bool>(c), "expected false: " #c)
#define EXPECT_EQ(a, b) MINITEST_EXPECT_((a) == (b), "expected " #a " == " #b)
#define EXPECT_NE(a, b) MINITEST_EXPECT_((a) != (b), "expected " #a " != " #b)
#define EXPECT_LT(a, b) MINITEST_EXPECT_((a) < (b), "expected " #a " < " #b)
#define EXPECT_LE(a, b) MINITEST_EXPECT_((a) <= (b), "expected " #a " <= " #b)
#define EXPECT_GT(a, b) MINITEST_EXPECT_((a) > (b), "expected " #a " > " #b)
#define EXPECT_GE(a, b) MINITEST_EXPECT_((a) >= (b), "expected " #a " >= " #b)
#define ASSERT_TRUE(c) MINITEST_ASSERT_(static_cast<bool>(c), "expected true: " #c)
#define ASSERT_FALSE(c) MINITEST_ASSERT_(!static_cast<bool>(c), "expected false: " #c)
#define ASSERT_EQ(a, b) MINITEST_ASSERT_((a) == (b), "expected " #a " == " #b)
#define ASSERT_NE(a, b) MINITEST_ASSERT_((a) != (b), "expected " #a " != " #b)
#define ASSERT_GT(a, b) MINITEST_ASSERT_((a) > (b), "expected " #a " > " #b)
#define ASSERT_GE(a, b) MINITEST_ASSERT_((a) >= (b), "expected " #a " >= " #b)
#define FAIL() MINITEST_ASSERT_(false, "failed")
#define ADD_FAILURE() MINITEST_EXPECT_(false, "failed")
#define GTEST_SKIP() return ::minitest::Skip() = ::minitest::Message()

int main(int argc, char** argv) { return ::minitest::run_all(argc, argv); }

#endif  // VOICEBACKEND_MINI_TEST_HPP
