// The safetensors -> GGUF converter: tensor selection, type rules and element
// conversion of convert_hf_to_gguf.py, streamed tensor by tensor.
#include "pipeline/convert.h"

#include <dirent.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <set>

#include "hwyquant/half.h"
#include "hwyquant/hwyquant.h"
#include "pipeline/output_file.h"
#include "pipeline/paths.h"
#include "pipeline/text.h"

namespace hwyquant {
namespace {

// llama_ftype values convert_hf_to_gguf.py writes as general.file_type.
constexpr uint32_t kFtypeAllF32 = 0;
constexpr uint32_t kFtypeMostlyF16 = 1;
constexpr uint32_t kFtypeMostlyQ8_0 = 7;
constexpr uint32_t kFtypeMostlyBF16 = 32;

float F8E4M3ToF32(uint8_t b) {
  const bool negative = b & 0x80;
  const int exponent = (b >> 3) & 0xF;
  const int mantissa = b & 0x7;
  float value;
  if (exponent == 0xF && mantissa == 0x7) {
    value = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -9);  // m/8 * 2^-6
  } else {
    value = std::ldexp(static_cast<float>(8 + mantissa),
                       exponent - 10);  // (1+m/8) * 2^(e-7)
  }
  return negative ? -value : value;
}

// Element i of a tensor of dtype as float32, as torch's .to(torch.float32)
// gives it.
float ElementToF32(StDtype dtype, const uint8_t* data, size_t i) {
  switch (dtype) {
    case StDtype::kF32: {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
    case StDtype::kF16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      return F16ToF32(h);
    }
    case StDtype::kBF16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      return BF16ToF32(h);
    }
    case StDtype::kF64: {
      double v;
      std::memcpy(&v, data + 8 * i, 8);
      return static_cast<float>(v);
    }
    case StDtype::kF8E4M3:
      return F8E4M3ToF32(data[i]);
    case StDtype::kF8E5M2:
      return F16ToF32(static_cast<uint16_t>(data[i] << 8));
    case StDtype::kBool:
      return data[i] ? 1.0f : 0.0f;
    case StDtype::kU8:
      return static_cast<float>(data[i]);
    case StDtype::kI8:
      return static_cast<float>(static_cast<int8_t>(data[i]));
    case StDtype::kI16: {
      int16_t v;
      std::memcpy(&v, data + 2 * i, 2);
      return static_cast<float>(v);
    }
    case StDtype::kI32: {
      int32_t v;
      std::memcpy(&v, data + 4 * i, 4);
      return static_cast<float>(v);
    }
    case StDtype::kI64: {
      int64_t v;
      std::memcpy(&v, data + 8 * i, 8);
      return static_cast<float>(v);
    }
  }
  return 0.0f;
}

uint32_t FileTypeOf(OutType t) {
  switch (t) {
    case OutType::kF32:
      return kFtypeAllF32;
    case OutType::kF16:
      return kFtypeMostlyF16;
    case OutType::kBF16:
      return kFtypeMostlyBF16;
    case OutType::kQ8_0:
      return kFtypeMostlyQ8_0;
    case OutType::kAuto:
      break;
  }
  return kFtypeMostlyF16;
}

Type TypeOfFileType(uint32_t ftype) {
  switch (ftype) {
    case kFtypeAllF32:
      return Type::kF32;
    case kFtypeMostlyBF16:
      return Type::kBF16;
    case kFtypeMostlyQ8_0:
      return Type::kQ8_0;
    default:
      return Type::kF16;
  }
}

}  // namespace

std::optional<OutType> ParseOutType(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "auto") return OutType::kAuto;
  if (lower == "f32") return OutType::kF32;
  if (lower == "f16") return OutType::kF16;
  if (lower == "bf16") return OutType::kBF16;
  if (lower == "q8_0") return OutType::kQ8_0;
  return std::nullopt;
}

HalfBits NumpyF32ToF16(float value) {
  const uint32_t bits = BitsOfF32(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    uint16_t h = static_cast<uint16_t>(0x7C00u + ((bits & 0x7FFFFFu) >> 13));
    if (h == 0x7C00u) ++h;  // a payload only in the low bits must stay a NaN
    return sign | h;
  }
  return F32ToF16(value);
}

HfModelSource::HfModelSource(const std::string& dir, ConvertOptions options)
    : dir_(dir), options_(options) {
  arch_ = LoadHfArchitecture(dir);
  checkpoint_ = std::make_unique<SafetensorsModel>(dir);

  // outtype auto: the first tensor of two or more dimensions stored as bf16 or
  // f16 decides; f32-only checkpoints become f16 (convert_hf_to_gguf.py's
  // heuristic).
  file_type_ = FileTypeOf(options.outtype);
  if (options.outtype == OutType::kAuto) {
    file_type_ = kFtypeMostlyF16;
    for (const StEntry& e : checkpoint_->entries()) {
      if (e.tensor->shape.size() < 2) continue;
      if (e.tensor->dtype == StDtype::kBF16) {
        file_type_ = kFtypeMostlyBF16;
        break;
      }
      if (e.tensor->dtype == StDtype::kF16) break;
    }
  }
  const Type default_type = TypeOfFileType(file_type_);

  SetKv(kv_, "general.architecture", GgufValue::String(arch_->gguf_name()));
  std::set<std::string> names;
  int64_t total_params = 0;
  for (HfArchitecture::GeneratedTensor& g : arch_->GenerateTensors(kv_)) {
    names.insert(g.name);
    TensorDescriptor d;
    d.name = g.name;
    d.dims = {static_cast<int64_t>(g.values.size())};
    d.type = Type::kF32;
    total_params += d.ElementCount();
    tensors_.push_back(std::move(d));
    ConvertPlan plan;
    plan.source = nullptr;
    plan.generated = std::move(g.values);
    plans_.push_back(std::move(plan));
  }
  for (const StEntry& e : checkpoint_->entries()) {
    const std::optional<HfArchitecture::Mapped> mapped = arch_->MapTensor(e.tensor->name);
    if (!mapped) continue;
    const std::string where = e.file->path() + ": tensor '" + e.tensor->name + "'";
    if (!names.insert(mapped->name).second) {
      throw Error(where + " maps to " + mapped->name + ", which another tensor already has");
    }
    const std::vector<int64_t>& shape = e.tensor->shape;
    if (shape.empty()) throw Error(where + " is a scalar; GGUF tensors need a dimension");
    if (shape.size() > kGgufMaxDims) {
      throw Error(where + " has " + std::to_string(shape.size()) + " dimensions; GGUF allows 4");
    }
    if (mapped->transform != RowTransform::kNone) {
      const int64_t rows = shape[0];
      if (mapped->groups <= 0 || rows % (2 * mapped->groups) != 0) {
        throw Error(where + ": " + std::to_string(rows) + " rows cannot be split into " +
                    std::to_string(mapped->groups) + " heads of rotary pairs");
      }
    }

    TensorDescriptor d;
    d.name = mapped->name;
    d.dims.assign(shape.rbegin(), shape.rend());
    if (mapped->keep_rows >= 0 && mapped->keep_rows < shape[0]) {
      d.dims.back() = mapped->keep_rows;  // torch's tensor[:n]
    }
    // Norms, 1-D tensors and everything not named .weight (biases) stay f32.
    const bool keep_f32 =
        shape.size() <= 1 || EndsWith(d.name, "_norm.weight") || !EndsWith(d.name, ".weight");
    if (keep_f32) {
      d.type = Type::kF32;
    } else if (options.source_precision) {
      d.type = e.tensor->dtype == StDtype::kF16    ? Type::kF16
               : e.tensor->dtype == StDtype::kBF16 ? Type::kBF16
                                                   : Type::kF32;
    } else {
      d.type = default_type;
      // q8_0 needs whole blocks per row; convert_hf_to_gguf.py falls back to
      // f16.
      if (d.type == Type::kQ8_0 && d.dims[0] % 32 != 0) d.type = Type::kF16;
    }
    total_params += d.ElementCount();
    tensors_.push_back(std::move(d));
    ConvertPlan plan;
    plan.source = &e;
    plan.transform = mapped->transform;
    plan.groups = mapped->groups;
    plan.add = mapped->add_one;
    plans_.push_back(std::move(plan));
  }
  if (tensors_.empty()) throw Error(dir + ": the checkpoint has no tensors to convert");

  SetKv(kv_, "general.type", GgufValue::String("model"));
  AppendGeneralMetadata(dir, total_params, kv_, options_.name_from);
  arch_->AppendParameters(file_type_, kv_);
  SetKv(kv_, "general.quantization_version", GgufValue::U32(2));
  arch_->AppendVocab(dir, kv_);
}

TensorBytes HfModelSource::LoadTensor(size_t index) {
  if (index >= tensors_.size()) throw Error(dir_ + ": tensor index out of range");
  const TensorDescriptor& d = tensors_[index];
  const ConvertPlan& plan = plans_[index];
  if (plan.source == nullptr) {
    std::vector<uint8_t> out(plan.generated.size() * sizeof(float));
    if (!out.empty()) std::memcpy(out.data(), plan.generated.data(), out.size());
    return TensorBytes::FromBuffer(std::move(out));
  }
  const StTensor& st = *plan.source->tensor;
  const uint8_t* src = plan.source->file->Data(st);
  const int64_t row_len = st.shape[0] == 0 ? 0 : st.ElementCount() / st.shape[0];
  // Output rows: the source's, or its first rows when the plan keeps fewer.
  const int64_t rows = d.dims.back();
  const size_t elem = StDtypeSize(st.dtype);

  // Source row for each output row: llama's q/k permutation regroups each
  // head's rows from [first halves; second halves] to interleaved pairs.
  auto source_row = [&](int64_t r) -> int64_t {
    if (plan.transform == RowTransform::kNone) return r;
    const int64_t half = st.shape[0] / plan.groups / 2;
    const int64_t head = r / (2 * half);
    const int64_t within = r % (2 * half);
    return head * 2 * half + (within % 2) * half + within / 2;
  };

  std::vector<uint8_t> out(d.ByteSize());
  std::vector<float> row_f32(static_cast<size_t>(row_len));
  const size_t out_row_bytes = rows == 0 ? 0 : out.size() / static_cast<size_t>(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in_row = src + static_cast<size_t>(source_row(r)) * row_len * elem;
    uint8_t* out_row = out.data() + static_cast<size_t>(r) * out_row_bytes;
    const bool same_type = (d.type == Type::kF16 && st.dtype == StDtype::kF16) ||
                           (d.type == Type::kBF16 && st.dtype == StDtype::kBF16) ||
                           (d.type == Type::kF32 && st.dtype == StDtype::kF32);
    if (same_type && plan.add == 0.0f) {
      std::memcpy(out_row, in_row, out_row_bytes);
      continue;
    }
    for (int64_t i = 0; i < row_len; ++i) row_f32[i] = ElementToF32(st.dtype, in_row, i);
    if (plan.add != 0.0f) {
      // torch adds f16 tensors in f16 (rounded once); everything else was
      // widened to f32 first.
      for (int64_t i = 0; i < row_len; ++i) {
        const float sum = row_f32[i] + plan.add;
        row_f32[i] = st.dtype == StDtype::kF16 ? F16ToF32(F32ToF16(sum)) : sum;
      }
    }
    switch (d.type) {
      case Type::kF32:
        std::memcpy(out_row, row_f32.data(), out_row_bytes);
        break;
      case Type::kF16:
        for (int64_t i = 0; i < row_len; ++i) {
          const HalfBits h = NumpyF32ToF16(row_f32[i]);
          std::memcpy(out_row + 2 * i, &h, 2);
        }
        break;
      case Type::kBF16:
        for (int64_t i = 0; i < row_len; ++i) {
          const BF16Bits h = F32ToBF16(row_f32[i]);
          std::memcpy(out_row + 2 * i, &h, 2);
        }
        break;
      case Type::kQ8_0:
        Quantize(Type::kQ8_0, row_f32.data(), out_row, 1, row_len);
        break;
      default:
        throw Error(dir_ + ": internal: unexpected output type for " + d.name);
    }
  }
  plan.source->file->ReleasePages(st);
  return TensorBytes::FromBuffer(std::move(out));
}

std::vector<std::string> HfModelSource::InputFiles() const {
  std::vector<std::string> paths;
  DIR* dir = ::opendir(dir_.c_str());
  if (dir == nullptr) return paths;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || EndsWith(name, ".gguf")) continue;
    if (PathIsFile(dir_ + "/" + name)) paths.push_back(dir_ + "/" + name);
  }
  ::closedir(dir);
  return paths;
}

void WriteModelSource(ModelSource& source, const std::string& out_path) {
  RefuseToReplaceInputs(source, "", out_path);
  std::vector<GgufTensorInfo> infos;
  for (const TensorDescriptor& d : source.Tensors()) {
    GgufTensorInfo info;
    info.name = d.name;
    info.dims = d.dims;
    info.type = d.type;
    infos.push_back(std::move(info));
  }
  OutputFile out(out_path);
  GgufWriter writer(out, source.Metadata(), std::move(infos));
  for (size_t i = 0; i < source.Tensors().size(); ++i) {
    TensorBytes bytes = source.LoadTensor(i);
    writer.WriteTensorData(bytes.data(), bytes.size());
  }
  writer.Finish();
  out.Commit();
}

}  // namespace hwyquant
