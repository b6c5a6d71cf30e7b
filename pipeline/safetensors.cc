// Safetensors header validation, file mapping and shard discovery.
#include "pipeline/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_set>

#include "hwyquant/format.h"
#include "pipeline/paths.h"

namespace hwyquant {
namespace {

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::kBool, "BOOL", 1}, {StDtype::kU8, "U8", 1},          {StDtype::kI8, "I8", 1},
    {StDtype::kI16, "I16", 2},   {StDtype::kI32, "I32", 4},        {StDtype::kI64, "I64", 8},
    {StDtype::kF16, "F16", 2},   {StDtype::kBF16, "BF16", 2},      {StDtype::kF32, "F32", 4},
    {StDtype::kF64, "F64", 8},   {StDtype::kF8E4M3, "F8_E4M3", 1}, {StDtype::kF8E5M2, "F8_E5M2", 1},
};

// A few hundred dimensions is already absurd; the bound keeps the overflow
// checks simple.
constexpr size_t kMaxRank = 16;

[[noreturn]] void Fail(const std::string& label, const std::string& what) {
  throw Error(label + ": " + what);
}

std::string Quoted(const std::string& s) {
  // Names come from untrusted files; keep messages printable and short.
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 200) out += "...";
  return out + "'";
}

// Rejects duplicate keys, which nlohmann would otherwise silently collapse.
class DuplicateKeyCheck {
 public:
  explicit DuplicateKeyCheck(const std::string& label) : label_(label) {}
  bool operator()(int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    (void)depth;
    if (event == E::object_start) {
      keys_.emplace_back();
    } else if (event == E::object_end) {
      if (!keys_.empty()) keys_.pop_back();
    } else if (event == E::key && !keys_.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys_.back().insert(key).second) {
        Fail(label_, "header JSON has the key " + Quoted(key) + " twice");
      }
    }
    return true;
  }

 private:
  std::string label_;
  std::vector<std::unordered_set<std::string>> keys_;
};

}  // namespace

size_t StDtypeSize(StDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

const char* StDtypeName(StDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

int64_t StTensor::ElementCount() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

StHeader ParseSafetensorsHeader(const uint8_t* bytes, size_t size, uint64_t file_size,
                                const std::string& label) {
  if (size < 8 || file_size < 8) {
    Fail(label, "file is " + std::to_string(file_size) +
                    " bytes, too short for the 8-byte safetensors header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxSafetensorsHeader) {
    Fail(label, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                    std::to_string(kMaxSafetensorsHeader) + " bytes");
  }
  if (header_len > file_size - 8) {
    Fail(label, "header length " + std::to_string(header_len) + " runs past the end of the " +
                    std::to_string(file_size) + "-byte file");
  }
  if (header_len > size - 8) {
    Fail(label, "header length " + std::to_string(header_len) + " is larger than the " +
                    std::to_string(size - 8) + " bytes available");
  }
  if (header_len == 0 || bytes[8] != '{') {
    Fail(label, "header does not start with a JSON object '{'");
  }
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text, text + header_len, DuplicateKeyCheck(label));
  } catch (const nlohmann::json::exception& e) {
    Fail(label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) Fail(label, "header JSON is not an object");

  StHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = file_size - header.data_offset;

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) Fail(label, "__metadata__ is not an object");
      for (auto m = info.begin(); m != info.end(); ++m) {
        if (!m.value().is_string()) {
          Fail(label, "__metadata__ value of " + Quoted(m.key()) + " is not a string");
        }
      }
      continue;
    }
    const std::string where = "tensor " + Quoted(name);
    if (name.empty()) Fail(label, "a tensor has an empty name");
    if (!info.is_object()) Fail(label, where + " is not a JSON object");
    StTensor t;
    t.name = name;

    const auto dtype_it = info.find("dtype");
    if (dtype_it == info.end() || !dtype_it->is_string()) {
      Fail(label, where + ": field 'dtype' is missing or not a string");
    }
    const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
    const DtypeInfo* found = nullptr;
    for (const DtypeInfo& d : kDtypes) {
      if (dtype_name == d.name) found = &d;
    }
    if (!found) Fail(label, where + ": unknown dtype " + Quoted(dtype_name));
    t.dtype = found->dtype;

    const auto shape_it = info.find("shape");
    if (shape_it == info.end() || !shape_it->is_array()) {
      Fail(label, where + ": field 'shape' is missing or not an array");
    }
    if (shape_it->size() > kMaxRank) {
      Fail(label, where + ": shape has " + std::to_string(shape_it->size()) + " dimensions");
    }
    // The byte count is checked against data_offsets, which are bounded by the
    // file size, so the element count may not exceed the file size either: that
    // bounds the products.
    unsigned __int128 bytes_needed = found->size;
    bool zero_dim = false;
    for (const nlohmann::json& dim : *shape_it) {
      if (!dim.is_number_unsigned()) {
        Fail(label, where + ": field 'shape' holds " + dim.dump() + ", not a non-negative integer");
      }
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX)) Fail(label, where + ": dimension too large");
      t.shape.push_back(static_cast<int64_t>(d));
      if (d == 0) zero_dim = true;
      if (!zero_dim) {
        bytes_needed *= d;
        if (bytes_needed > file_size) {
          Fail(label, where + ": shape needs more bytes than the whole file holds");
        }
      }
    }
    if (zero_dim) bytes_needed = 0;

    const auto off_it = info.find("data_offsets");
    if (off_it == info.end() || !off_it->is_array() || off_it->size() != 2 ||
        !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
      Fail(label, where + ": field 'data_offsets' must be two non-negative integers");
    }
    t.begin = (*off_it)[0].get<uint64_t>();
    t.end = (*off_it)[1].get<uint64_t>();
    if (t.end < t.begin) {
      Fail(label, where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                      std::to_string(t.end) + "] end before they begin");
    }
    if (t.end > data_size) {
      Fail(label, where + ": data_offsets end " + std::to_string(t.end) +
                      " is past the data section's " + std::to_string(data_size) + " bytes");
    }
    if (static_cast<unsigned __int128>(t.end - t.begin) != bytes_needed) {
      Fail(label, where + ": data_offsets cover " + std::to_string(t.end - t.begin) +
                      " bytes but dtype " + dtype_name + " and the shape need " +
                      std::to_string(static_cast<uint64_t>(bytes_needed)));
    }
    header.tensors.push_back(std::move(t));
  }

  // The data section must be tiled exactly: no overlap (two tensors sharing
  // bytes), no gap, no trailing bytes. Zero-sized tensors sit anywhere.
  std::vector<const StTensor*> by_offset;
  for (const StTensor& t : header.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const StTensor* a, const StTensor* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  const StTensor* previous = nullptr;
  for (const StTensor* t : by_offset) {
    if (t->begin == t->end) continue;
    if (t->begin < expected) {
      Fail(label, "tensor " + Quoted(t->name) + " data overlaps tensor " + Quoted(previous->name) +
                      " at byte " + std::to_string(t->begin));
    }
    if (t->begin > expected) {
      Fail(label, "gap of " + std::to_string(t->begin - expected) +
                      " unused bytes in the data section before tensor " + Quoted(t->name));
    }
    expected = t->end;
    previous = t;
  }
  if (expected != data_size) {
    Fail(label, "data section is " + std::to_string(data_size) + " bytes but the tensors cover " +
                    std::to_string(expected));
  }

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const StTensor& a, const StTensor& b) { return a.name < b.name; });
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    Fail(path, std::string("cannot stat: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    Fail(path, "not a regular file");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    Fail(path, "file is " + std::to_string(map_size_) +
                   " bytes, too short for the 8-byte safetensors header length");
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    Fail(path, std::string("cannot map: ") + std::strerror(err));
  }
  try {
    header_ = ParseSafetensorsHeader(static_cast<const uint8_t*>(map_), map_size_, map_size_, path);
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const StTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = std::lower_bound(header_.tensors.begin(), header_.tensors.end(), name,
                             [](const StTensor& t, const std::string& n) { return t.name < n; });
  if (it == header_.tensors.end() || it->name != name) return nullptr;
  return &*it;
}

const uint8_t* SafetensorsFile::Data(const StTensor& tensor) const {
  return static_cast<const uint8_t*>(map_) + header_.data_offset + tensor.begin;
}

void SafetensorsFile::ReleasePages(const StTensor& tensor) const {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(map_);
  // Only whole pages inside the tensor: neighbours sharing a page keep theirs.
  uintptr_t begin = reinterpret_cast<uintptr_t>(Data(tensor));
  uintptr_t end = begin + (tensor.end - tensor.begin);
  begin = (begin + page - 1) / page * page;
  end = end / page * page;
  if (begin < base || end <= begin) return;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

namespace {

std::vector<std::string> ListModelShards(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) Fail(dir, std::string("cannot open directory: ") + std::strerror(errno));
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const std::string suffix = ".safetensors";
    if (name.rfind("model", 0) == 0 && name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      names.push_back(name);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  const bool has_index = PathIsFile(index_path);
  if (has_index) {
    std::ifstream in(index_path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    if (!in) Fail(index_path, "cannot read");
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(buffer.str());
    } catch (const nlohmann::json::exception& e) {
      Fail(index_path, std::string("not valid JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      Fail(index_path, "field 'weight_map' is missing or not an object");
    }
    std::set<std::string> unique_shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        Fail(index_path, "weight_map entry " + Quoted(it.key()) + " is not a file name");
      }
      const std::string& shard = it.value().get_ref<const std::string&>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..") {
        Fail(index_path, "weight_map entry " + Quoted(it.key()) + " names " + Quoted(shard) +
                             ", not a file of this folder");
      }
      weight_map[it.key()] = shard;
      unique_shards.insert(shard);
    }
    shard_names.assign(unique_shards.begin(), unique_shards.end());
  } else {
    shard_names = ListModelShards(dir);
  }
  if (shard_names.empty()) {
    Fail(dir, "no model*.safetensors files (and no model.safetensors.index.json)");
  }

  std::map<std::string, std::string> seen;  // tensor name -> shard, to reject duplicates
  for (const std::string& shard : shard_names) {
    const std::string path = dir + "/" + shard;
    if (has_index && !PathIsFile(path)) {
      Fail(index_path, "names shard " + Quoted(shard) + ", which is missing from " + dir);
    }
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    const SafetensorsFile* file = files_.back().get();
    for (const StTensor& t : file->tensors()) {
      auto [pos, inserted] = seen.emplace(t.name, shard);
      if (!inserted) {
        Fail(path, "tensor " + Quoted(t.name) + " is also in " + pos->second);
      }
      entries_.push_back(StEntry{file, &t});
    }
  }

  if (has_index) {
    std::vector<std::string> missing, extra;
    for (const auto& [name, shard] : weight_map) {
      auto it = seen.find(name);
      if (it == seen.end()) {
        missing.push_back(name + " (expected in " + shard + ")");
      } else if (it->second != shard) {
        extra.push_back(name + " (found in " + it->second + ", index says " + shard + ")");
      }
    }
    for (const auto& [name, shard] : seen) {
      if (!weight_map.count(name)) extra.push_back(name + " (in " + shard + ", not in index)");
    }
    if (!missing.empty() || !extra.empty()) {
      std::string msg = "weight_map disagrees with the shards:";
      for (size_t i = 0; i < missing.size() && i < 10; ++i) msg += " missing " + missing[i] + ";";
      for (size_t i = 0; i < extra.size() && i < 10; ++i) msg += " " + extra[i] + ";";
      Fail(index_path, msg);
    }
  }
}

const StEntry* SafetensorsModel::Find(const std::string& name) const {
  for (const StEntry& e : entries_) {
    if (e.tensor->name == name) return &e;
  }
  return nullptr;
}

}  // namespace hwyquant
