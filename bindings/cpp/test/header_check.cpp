// Compiles voicebackend.hpp (and, through it, voicebackend.h) on its own under strict warnings
// (-Wconversion -Wsign-conversion -Wshadow -Wold-style-cast …); it instantiates the templates.
#include "voicebackend.hpp"

#include <array>
#include <vector>

void voicebackend_header_check(voicebackend::Session& session);
void voicebackend_header_check(voicebackend::Session& session) {
  std::vector<int16_t> in(320);
  std::array<int16_t, 320> out{};
  int16_t raw[320] = {};
  session.process_audio(in);
  session.process_audio(out);
  session.process_audio(raw);
  session.read_audio(out);
  session.read_audio(in);
  session.read_audio(raw);
}
