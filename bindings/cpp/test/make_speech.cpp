// make_speech [f0_hz] [speech_ms] [rate]: writes one utterance (speech + 800 ms of silence) as
// raw signed 16-bit little-endian mono PCM to stdout, for the minimal host example.
#include <cstdio>
#include <cstdlib>

#include "audio.hpp"

int main(int argc, char** argv) {
  const float f0 = argc > 1 ? std::strtof(argv[1], nullptr) : 150.0f;
  const auto ms = static_cast<uint32_t>(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1200);
  const auto rate = static_cast<uint32_t>(argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 16000);
  const std::vector<int16_t> pcm = vbtest::utterance(f0, ms, rate);
  return std::fwrite(pcm.data(), sizeof pcm[0], pcm.size(), stdout) == pcm.size() ? 0 : 1;
}
