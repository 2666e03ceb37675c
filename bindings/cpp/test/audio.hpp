// Synthetic audio for the tests: a port of speech()/silence()/utterance() in
// tests/common/mod.rs (a voiced buzz that webrtc-vad classifies as speech).
#ifndef VOICEBACKEND_TEST_AUDIO_HPP
#define VOICEBACKEND_TEST_AUDIO_HPP

#include <cmath>
#include <cstdint>
#include <vector>

namespace vbtest {

/// Fundamental f0 plus harmonics 2..10 (amplitude 1/h), 4 Hz syllable-like amplitude
/// modulation, peak around 7000.
inline std::vector<int16_t> speech(float f0, uint32_t ms, uint32_t rate) {
  const float tau = 6.283185307179586f;
  const size_t n = static_cast<size_t>(uint64_t{rate} * ms / 1000);
  std::vector<int16_t> pcm(n);
  for (size_t i = 0; i < n; i++) {
    const float t = static_cast<float>(i) / static_cast<float>(rate);
    float harmonics = 0.0f;
    for (int h = 1; h <= 10; h++) {
      harmonics += std::sin(t * f0 * static_cast<float>(h) * tau) / static_cast<float>(h);
    }
    const float syllables = 0.75f + 0.25f * std::sin(t * 4.0f * tau);
    pcm[i] = static_cast<int16_t>(harmonics * syllables * 7000.0f);
  }
  return pcm;
}

/// Digital silence.
inline std::vector<int16_t> silence(uint32_t ms, uint32_t rate) {
  return std::vector<int16_t>(static_cast<size_t>(uint64_t{rate} * ms / 1000), 0);
}

/// One user turn: speech followed by 800 ms of silence (a turn ends after 500 ms of it).
inline std::vector<int16_t> utterance(float f0, uint32_t speech_ms, uint32_t rate) {
  std::vector<int16_t> pcm = speech(f0, speech_ms, rate);
  std::vector<int16_t> quiet = silence(800, rate);
  pcm.insert(pcm.end(), quiet.begin(), quiet.end());
  return pcm;
}

}  // namespace vbtest

#endif  // VOICEBACKEND_TEST_AUDIO_HPP
