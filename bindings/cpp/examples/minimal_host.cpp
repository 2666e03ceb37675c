// A minimal C++ host: one session, mono 16 kHz PCM from stdin at real-time pace, the conversation
// printed. argv[1] may replace the backend configuration (JSON).
//   sox speech.wav -t raw -r 16000 -c 1 -b 16 -e signed - | ./minimal_host_cpp
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include "voicebackend.hpp"

int main(int argc, char** argv) try {
  const char* config = argc > 1 ? argv[1]
      : R"({"provider":"local","stt_provider":"whisper","tts_provider":"espeak"})";
  voicebackend::Backend backend(config);
  backend.start();
  auto session = backend.create_session(R"({"input_sample_rate":16000})",
                                        [](const std::string& text) { return "You said: " + text; });
  session.start();
  std::vector<int16_t> frame(320), reply(320);
  auto tick = std::chrono::steady_clock::now();
  for (int tail = 150; ; ) {  // keep the clock running 3 s after the input for the last reply
    size_t n = std::fread(frame.data(), sizeof frame[0], frame.size(), stdin);
    if (n == 0 && tail-- == 0) break;
    std::fill(frame.begin() + static_cast<std::ptrdiff_t>(n), frame.end(), int16_t{0});
    session.process_audio(frame);
    session.read_audio(reply);  // a host would play this
    while (auto e = session.poll_event()) {
      if (e->kind == VB_EVENT_TRANSCRIPT_FINAL) std::cout << "user:  " << e->text << std::endl;
      if (e->kind == VB_EVENT_AGENT_RESPONSE) std::cout << "agent: " << e->text << std::endl;
    }
    std::this_thread::sleep_until(tick += std::chrono::milliseconds(20));
  }
  return 0;
} catch (const voicebackend::Error& e) {
  std::cerr << "error: " << e.what() << '\n';
  return 1;
}
