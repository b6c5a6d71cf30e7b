// libFuzzer target: the GGUF reader must reject any malformed input with hwyquant::Error, never
// crash, read out of bounds, or allocate more than the input's size allows.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pipeline/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = hwyquant::GgufFile::FromMemory(data, size, "fuzz.gguf");
    // Touch everything the reader promises is valid: values and every tensor byte.
    size_t checksum = 0;
    for (const hwyquant::GgufKv& kv : file->kv()) checksum += kv.value.ToString().size();
    for (size_t i = 0; i < file->tensors().size(); ++i) {
      const uint8_t* bytes = file->TensorData(i);
      const uint64_t n = file->tensors()[i].size;
      if (n > 0) checksum += bytes[0] + bytes[n - 1];
    }
    // Serializing what was read must work too.
    std::vector<hwyquant::GgufTensorInfo> infos = file->tensors();
    checksum += hwyquant::SerializeGgufHeader(file->kv(), infos).size();
    if (checksum == 1) return 1;
  } catch (const hwyquant::Error&) {
  }
  return 0;
}
