// libFuzzer target for the safetensors header validator: any input must either
// parse into a self-consistent header or throw hwyquant::Error, never crash,
// hang or over-allocate.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "hwyquant/format.h"
#include "pipeline/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const hwyquant::StHeader header =
        hwyquant::ParseSafetensorsHeader(data, size, size, "fuzz.safetensors");
    // What the converter relies on: every tensor's bytes lie inside the buffer
    // and match its dtype and shape.
    const uint64_t data_size = size - header.data_offset;
    for (const hwyquant::StTensor& t : header.tensors) {
      if (t.begin > t.end || t.end > data_size) std::abort();
      const uint64_t bytes = t.end - t.begin;
      if (bytes != static_cast<uint64_t>(t.ElementCount()) * hwyquant::StDtypeSize(t.dtype)) {
        std::abort();
      }
    }
  } catch (const hwyquant::Error&) {
  }
  return 0;
}
