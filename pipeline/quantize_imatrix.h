// Importance matrices for quantization: llama-imatrix's GGUF files and the legacy .dat format.
#ifndef HWYQUANT_PIPELINE_QUANTIZE_IMATRIX_H_
#define HWYQUANT_PIPELINE_QUANTIZE_IMATRIX_H_

#include <string>
#include <unordered_map>
#include <vector>

namespace hwyquant {

struct Imatrix {
  std::string path;
  // Per weight-tensor name: mean squared activation per input column (per expert, concatenated),
  // i.e. the stored sums divided by their counts, as llama-quantize computes them.
  std::unordered_map<std::string, std::vector<float>> entries;
  std::vector<std::string> datasets;
  int chunk_count = -1;  // -1 when the file does not say
};

// Loads a GGUF imatrix (tensors NAME.in_sum2 and NAME.counts, imatrix.* metadata) or, when the
// file does not start with "GGUF", the legacy binary format. Throws Error naming the file and the
// problem for anything malformed, including non-finite values.
Imatrix LoadImatrix(const std::string& path);

// --include-weights / --exclude-weights: keeps or drops entries whose name contains any of the
// given substrings (include and exclude together is an error).
void FilterImatrix(Imatrix& imatrix, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_QUANTIZE_IMATRIX_H_
