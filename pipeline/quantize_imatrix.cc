// Imatrix loading with the normalization llama-quantize applies (sums / counts).
#include "pipeline/quantize_imatrix.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "hwyquant/format.h"
#include "pipeline/gguf.h"

namespace hwyquant {
namespace {

bool RemoveSuffix(std::string& name, const std::string& suffix) {
  if (name.size() < suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  name.resize(name.size() - suffix.size());
  return true;
}

Imatrix LoadGgufImatrix(const std::string& path) {
  const auto file = GgufFile::Open(path);
  Imatrix imatrix;
  imatrix.path = path;
  const GgufValue* datasets = file->FindKey("imatrix.datasets");
  const GgufValue* chunk_count = file->FindKey("imatrix.chunk_count");
  const GgufValue* chunk_size = file->FindKey("imatrix.chunk_size");
  if (datasets == nullptr || chunk_count == nullptr || chunk_size == nullptr) {
    throw Error(path +
                ": missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, "
                "imatrix.chunk_size): is this an imatrix file?");
  }
  if (datasets->type() != GgufType::kArray || datasets->element_type() != GgufType::kString) {
    throw Error(path + ": imatrix.datasets is not an array of strings");
  }
  if (chunk_count->type() != GgufType::kU32) {
    throw Error(path + ": imatrix.chunk_count is not a u32");
  }
  imatrix.datasets = datasets->strings();
  imatrix.chunk_count = static_cast<int>(chunk_count->AsUInt());
  if (file->tensors().empty()) throw Error(path + ": the imatrix holds no data");

  // Ordered, as llama-quantize pairs them, so errors are reported deterministically.
  std::map<std::string, std::pair<int64_t, int64_t>> sums_and_counts;
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    std::string name = file->tensors()[i].name;
    if (name.empty()) continue;
    if (RemoveSuffix(name, ".in_sum2")) {
      sums_and_counts.try_emplace(name, -1, -1).first->second.first = static_cast<int64_t>(i);
    } else if (RemoveSuffix(name, ".counts")) {
      sums_and_counts.try_emplace(name, -1, -1).first->second.second = static_cast<int64_t>(i);
    }
  }
  for (const auto& [name, indices] : sums_and_counts) {
    if (indices.first < 0 || indices.second < 0) {
      throw Error(path + ": imatrix entry '" + name + "' lacks its " +
                  (indices.first < 0 ? "in_sum2" : "counts") + " tensor");
    }
    const GgufTensorInfo& sums = file->tensors()[static_cast<size_t>(indices.first)];
    const GgufTensorInfo& counts = file->tensors()[static_cast<size_t>(indices.second)];
    if (sums.type != Type::kF32 || counts.type != Type::kF32) {
      throw Error(path + ": imatrix entry '" + name + "' is not stored as f32");
    }
    const int64_t ne0 = sums.dims[0];
    const int64_t ne1 = sums.dims.size() > 1 ? sums.dims[1] : 1;
    if (ne0 * ne1 != sums.ElementCount() || counts.ElementCount() != ne1) {
      throw Error(path + ": imatrix entry '" + name + "' has " +
                  std::to_string(counts.ElementCount()) + " counts for " + std::to_string(ne1) +
                  " matrices");
    }
    std::vector<float> sum_values(static_cast<size_t>(ne0 * ne1));
    std::vector<float> count_values(static_cast<size_t>(ne1));
    std::memcpy(sum_values.data(), file->TensorData(static_cast<size_t>(indices.first)),
                sum_values.size() * sizeof(float));
    std::memcpy(count_values.data(), file->TensorData(static_cast<size_t>(indices.second)),
                count_values.size() * sizeof(float));
    std::vector<float>& values = imatrix.entries[name];
    values.resize(sum_values.size());
    for (int64_t j = 0; j < ne1; ++j) {
      const float count = count_values[static_cast<size_t>(j)];
      for (int64_t i = 0; i < ne0; ++i) {
        const size_t k = static_cast<size_t>(j * ne0 + i);
        // A matrix that never saw input during calibration gets neutral weights.
        values[k] = count > 0.0f ? sum_values[k] / count : 1.0f;
      }
    }
  }
  return imatrix;
}

// Bounds-checked reader of the legacy format's little-endian fields.
class LegacyReader {
 public:
  LegacyReader(const std::vector<uint8_t>& bytes, const std::string& path)
      : bytes_(bytes), path_(path) {}
  bool AtEnd() const { return position_ >= bytes_.size(); }
  size_t remaining() const { return bytes_.size() - position_; }
  int32_t ReadInt(const std::string& what) {
    int32_t value;
    Read(&value, sizeof(value), what);
    return value;
  }
  void Read(void* out, size_t size, const std::string& what) {
    if (size > remaining()) {
      throw Error(path_ + ": truncated legacy imatrix: " + what + " at byte " +
                  std::to_string(position_) + " needs " + std::to_string(size) + " bytes");
    }
    std::memcpy(out, bytes_.data() + position_, size);
    position_ += size;
  }

 private:
  const std::vector<uint8_t>& bytes_;
  const std::string& path_;
  size_t position_ = 0;
};

Imatrix LoadLegacyImatrix(const std::string& path, const std::vector<uint8_t>& bytes) {
  Imatrix imatrix;
  imatrix.path = path;
  LegacyReader in(bytes, path);
  const int32_t n_entries = in.ReadInt("entry count");
  if (n_entries < 1) {
    throw Error(path + ": the legacy imatrix holds no entries (its entry count at byte 0 is " +
                std::to_string(n_entries) + "); is this an imatrix file?");
  }
  for (int32_t e = 0; e < n_entries; ++e) {
    const std::string what = "entry " + std::to_string(e);
    const int32_t name_length = in.ReadInt(what + " name length");
    if (name_length < 1 || static_cast<size_t>(name_length) > in.remaining()) {
      throw Error(path + ": legacy imatrix " + what + " has a bad name length " +
                  std::to_string(name_length));
    }
    std::string name(static_cast<size_t>(name_length), '\0');
    in.Read(name.data(), name.size(), what + " name");
    const int32_t ncall = in.ReadInt(what + " call count");
    const int32_t nval = in.ReadInt(what + " value count");
    if (nval < 1 || static_cast<size_t>(nval) > in.remaining() / sizeof(float)) {
      throw Error(path + ": legacy imatrix entry '" + name + "' has a bad value count " +
                  std::to_string(nval));
    }
    std::vector<float>& values = imatrix.entries[name];
    values.resize(static_cast<size_t>(nval));
    in.Read(values.data(), values.size() * sizeof(float), "values of '" + name + "'");
    // Legacy sums hold mean * ncall; dividing by the call count gives the mean.
    if (ncall > 0) {
      const float divisor = static_cast<float>(ncall);
      for (float& v : values) v = v / divisor;
    }
  }
  if (in.remaining() >= sizeof(int32_t)) {
    imatrix.chunk_count = in.ReadInt("chunk count");
    if (in.remaining() >= sizeof(int32_t)) {
      const int32_t length = in.ReadInt("dataset name length");
      if (length < 0 || static_cast<size_t>(length) > in.remaining()) {
        throw Error(path + ": legacy imatrix has a bad dataset name length " +
                    std::to_string(length));
      }
      std::string dataset(static_cast<size_t>(length), '\0');
      in.Read(dataset.data(), dataset.size(), "dataset name");
      imatrix.datasets.push_back(std::move(dataset));
    }
  }
  return imatrix;
}

}  // namespace

Imatrix LoadImatrix(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open imatrix '" + path + "': " + std::strerror(errno));
  char magic[4] = {};
  in.read(magic, 4);
  Imatrix imatrix;
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) {
    in.close();
    imatrix = LoadGgufImatrix(path);
  } else {
    in.seekg(0);
    in.clear();
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    imatrix = LoadLegacyImatrix(path, bytes);
  }
  for (const auto& [name, values] : imatrix.entries) {
    for (float v : values) {
      if (!std::isfinite(v)) {
        throw Error(path + ": imatrix entry '" + name + "' contains a non-finite value");
      }
    }
  }
  return imatrix;
}

void FilterImatrix(Imatrix& imatrix, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude) {
  if (!include.empty() && !exclude.empty()) {
    throw Error("--include-weights and --exclude-weights cannot be used together");
  }
  const auto matches_any = [](const std::string& name, const std::vector<std::string>& parts) {
    for (const std::string& part : parts) {
      if (name.find(part) != std::string::npos) return true;
    }
    return false;
  };
  for (auto it = imatrix.entries.begin(); it != imatrix.entries.end();) {
    const bool keep =
        include.empty() ? !matches_any(it->first, exclude) : matches_any(it->first, include);
    it = keep ? std::next(it) : imatrix.entries.erase(it);
  }
}

}  // namespace hwyquant
