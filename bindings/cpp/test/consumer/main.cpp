// A tiny consumer of an installed voicebackend: C header, C++ wrapper, shared library.
#include <cstdio>

#include "voicebackend.hpp"

int main() {
  std::printf("voicebackend %s (ABI %u)\n", voicebackend::version(), voicebackend::abi_version());
  try {
    voicebackend::Backend backend("{}");  // no provider: refused
  } catch (const voicebackend::Error& e) {
    std::printf("%s\n", e.what());
    return e.status() == VB_ERR_INVALID_CONFIG && vb_abi_version() == VB_ABI_VERSION ? 0 : 1;
  }
  return 1;
}
