// Tests of OutputFile and the GGUF reader/writer: round trips, every value type, v2, and
// corrupt or truncated files (which must fail with a clear Error, never crash).
#include "pipeline/gguf.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pipeline/model_source.h"
#include "pipeline/output_file.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

// The names in directory path, sorted (without "." and "..").
std::vector<std::string> EntriesOf(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

// A fresh temporary directory, removed (with its files) at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp") {
    std::string pattern = parent + "/hwyquant-gguf-test-XXXXXX";
    const char* made = ::mkdtemp(pattern.data());
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  std::vector<std::string> Entries() const { return EntriesOf(path_); }

 private:
  std::string path_;
};

std::vector<GgufKv> EveryKindOfKv() {
  std::vector<GgufKv> kv;
  kv.push_back({"general.architecture", GgufValue::String("llama")});
  kv.push_back({"t.u8", GgufValue::U8(200)});
  kv.push_back({"t.i8", GgufValue::I8(-100)});
  kv.push_back({"t.u16", GgufValue::U16(60000)});
  kv.push_back({"t.i16", GgufValue::I16(-30000)});
  kv.push_back({"t.u32", GgufValue::U32(4000000000u)});
  kv.push_back({"t.i32", GgufValue::I32(-2000000000)});
  kv.push_back({"t.f32", GgufValue::F32(1e-5f)});
  kv.push_back({"t.bool", GgufValue::Bool(true)});
  kv.push_back({"t.string", GgufValue::String(std::string("with\0nul", 8))});
  kv.push_back({"t.u64", GgufValue::U64(0xFEDCBA9876543210ull)});
  kv.push_back({"t.i64", GgufValue::I64(-0x123456789ABCDEFll)});
  kv.push_back({"t.f64", GgufValue::F64(3.141592653589793)});
  kv.push_back({"t.empty_string", GgufValue::String("")});
  kv.push_back({"t.arr_u8", GgufValue::ArrayOf<uint8_t>(GgufType::kU8, {1, 2, 3})});
  kv.push_back({"t.arr_i8", GgufValue::ArrayOf<int8_t>(GgufType::kI8, {-1, 2})});
  kv.push_back({"t.arr_u16", GgufValue::ArrayOf<uint16_t>(GgufType::kU16, {65535})});
  kv.push_back({"t.arr_i16", GgufValue::ArrayOf<int16_t>(GgufType::kI16, {-5, 5})});
  kv.push_back({"t.arr_u32", GgufValue::ArrayOf<uint32_t>(GgufType::kU32, {7, 8, 9})});
  kv.push_back({"t.arr_i32", GgufValue::ArrayOf<int32_t>(GgufType::kI32, {-7, 8})});
  kv.push_back({"t.arr_f32", GgufValue::ArrayOf<float>(GgufType::kF32, {0.5f, -1000.0f})});
  kv.push_back({"t.arr_bool", GgufValue::ArrayOf<uint8_t>(GgufType::kBool, {1, 0, 1})});
  kv.push_back({"t.arr_u64", GgufValue::ArrayOf<uint64_t>(GgufType::kU64, {1ull << 63})});
  kv.push_back({"t.arr_i64", GgufValue::ArrayOf<int64_t>(GgufType::kI64, {-1})});
  kv.push_back({"t.arr_f64", GgufValue::ArrayOf<double>(GgufType::kF64, {1e300})});
  kv.push_back({"t.arr_empty", GgufValue::ArrayOf<uint32_t>(GgufType::kU32, {})});
  kv.push_back({"t.arr_str", GgufValue::StringArray({"<unk>", "", "héllo", "▁the"})});
  kv.push_back({"t.arr_nested",
                GgufValue::ArrayOfArrays({GgufValue::StringArray({"a", "b"}),
                                          GgufValue::ArrayOf<int32_t>(GgufType::kI32, {1, 2, 3}),
                                          GgufValue::ArrayOfArrays({GgufValue::ArrayOf<uint8_t>(
                                              GgufType::kU8, {9})})})});
  return kv;
}

struct SmallModel {
  std::vector<GgufKv> kv;
  std::vector<GgufTensorInfo> tensors;
  std::vector<std::vector<uint8_t>> data;
};

SmallModel MakeSmallModel(std::vector<GgufKv> kv) {
  SmallModel m;
  m.kv = std::move(kv);
  test::Rng rng(7);
  auto add = [&](const std::string& name, std::vector<int64_t> dims, Type type) {
    GgufTensorInfo info;
    info.name = name;
    info.dims = std::move(dims);
    info.type = type;
    const uint64_t size = TensorByteSize(info.name, info.type, info.dims);
    std::vector<uint8_t> bytes(size);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng.Next());
    m.tensors.push_back(info);
    m.data.push_back(std::move(bytes));
  };
  add("token_embd.weight", {32, 3}, Type::kF32);
  add("norm.weight", {5}, Type::kF16);
  add("blk.0.q.weight", {64, 2}, Type::kQ8_0);
  add("blk.0.k.weight", {256, 1, 2}, Type::kQ4_K);
  return m;
}

std::vector<uint8_t> SerializeWhole(const SmallModel& m) {
  std::vector<GgufTensorInfo> infos = m.tensors;
  std::vector<uint8_t> bytes = SerializeGgufHeader(m.kv, infos);
  const uint32_t alignment = GgufAlignmentOf(m.kv);
  for (size_t i = 0; i < infos.size(); ++i) {
    REQUIRE(bytes.size() % alignment == 0);
    bytes.insert(bytes.end(), m.data[i].begin(), m.data[i].end());
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
  return bytes;
}

void CheckModelEquals(const GgufFile& file, const SmallModel& m) {
  REQUIRE(file.kv().size() == m.kv.size());
  for (size_t i = 0; i < m.kv.size(); ++i) {
    INFO("key " << m.kv[i].key);
    CHECK(file.kv()[i].key == m.kv[i].key);
    CHECK(file.kv()[i].value == m.kv[i].value);
  }
  REQUIRE(file.tensors().size() == m.tensors.size());
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    INFO("tensor " << m.tensors[i].name);
    CHECK(file.tensors()[i].name == m.tensors[i].name);
    CHECK(file.tensors()[i].dims == m.tensors[i].dims);
    CHECK(file.tensors()[i].type == m.tensors[i].type);
    REQUIRE(file.tensors()[i].size == m.data[i].size());
    CHECK(std::memcmp(file.TensorData(i), m.data[i].data(), m.data[i].size()) == 0);
  }
}

// Parses bytes from an exact-size heap copy, so a sanitizer sees any read past the end.
std::unique_ptr<GgufFile> ParseCopy(const std::vector<uint8_t>& bytes, size_t length,
                                    std::vector<uint8_t>& storage) {
  storage.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
  storage.shrink_to_fit();
  return GgufFile::FromMemory(storage.data(), storage.size(), "mem.gguf");
}

std::string ErrorOf(const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> storage;
  try {
    ParseCopy(bytes, bytes.size(), storage);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Little-endian builder for hand-made (corrupt) files.
struct Builder {
  std::vector<uint8_t> bytes;
  template <class T>
  Builder& Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  Builder& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Builder& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
    return Put(version).Put(n_tensors).Put(n_kv);
  }
};

TEST_CASE("OutputFile commits by rename and leaves nothing when abandoned", "[output_file]") {
  TempDir dir;
  const std::string path = dir.path() + "/out.bin";
  {
    OutputFile out(path);
    out.Write("hello", 5);
    out.WriteZeros(3);
    CHECK(out.size() == 8);
    CHECK_FALSE(test::FileExists(path));
    CHECK(test::FileExists(out.temp_path()));
    out.WriteAt(1, "EL", 2);
    out.Commit();
    CHECK_THROWS_AS(out.Write("x", 1), Error);
  }
  const std::vector<uint8_t> bytes = test::ReadFileBytes(path);
  CHECK(std::string(bytes.begin(), bytes.end()) == std::string("hELlo\0\0\0", 8));
  CHECK(dir.Entries().size() == 1);

  const std::string abandoned = dir.path() + "/abandoned.bin";
  {
    OutputFile out(abandoned);
    std::vector<uint8_t> big(3 << 20, 0xAB);  // larger than the internal buffer
    out.Write(big.data(), big.size());
  }
  CHECK_FALSE(test::FileExists(abandoned));
  CHECK(dir.Entries().size() == 1);

  // An existing file is replaced only on commit.
  {
    OutputFile out(path);
    out.Write("new", 3);
    CHECK(test::ReadFileBytes(path).size() == 8);
  }
  CHECK(test::ReadFileBytes(path).size() == 8);
}

// Bytes that differ at every offset, so a block written at the wrong place shows.
std::vector<uint8_t> PatternBytes(size_t size) {
  std::vector<uint8_t> bytes(size);
  uint32_t state = 12345;
  for (uint8_t& b : bytes) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(state >> 24);
  }
  return bytes;
}

// Appends expected[done, done + size) to out and to nothing else.
void AppendPart(OutputFile& out, const std::vector<uint8_t>& expected, size_t& done, size_t size) {
  out.Write(expected.data() + done, size);
  done += size;
}

TEST_CASE("OutputFile writes exact bytes across direct-I/O blocks, patches and the tail",
          "[output_file]") {
  TempDir dir;
  // Pieces straddle 4 KiB blocks and the 8 MiB direct buffer, end mid-block, and one is larger
  // than the buffer.
  const std::vector<size_t> pieces = {1,       4095,    4097, (1 << 20) + 3, 3 << 20,
                                      5 << 20, 9 << 20, 7,    (2 << 20) - 11};
  size_t total = 0;
  for (size_t piece : pieces) total += piece;
  std::vector<uint8_t> expected = PatternBytes(total);

  SECTION("appends only") {
    const std::string path = dir.path() + "/appended.bin";
    OutputFile out(path);
    // Where the file system takes O_DIRECT, OutputFile must be using it for this to test it.
    const std::string probe = dir.path() + "/probe";
    const int probe_fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0600);
    if (probe_fd >= 0) {
      ::close(probe_fd);
      ::unlink(probe.c_str());
      CHECK(out.uses_direct_io());
    }
    size_t done = 0;
    for (size_t piece : pieces) AppendPart(out, expected, done, piece);
    CHECK(out.size() == total);
    out.Commit();
    CHECK(test::BytesDifference(test::ReadFileBytes(path), expected) == "");
  }
  SECTION("patches already written bytes, then appends more") {
    const std::string path = dir.path() + "/patched.bin";
    OutputFile out(path);
    size_t done = 0;
    for (size_t i = 0; i < 6; ++i) AppendPart(out, expected, done, pieces[i]);
    // Past 8 MiB, so the first patch lands in bytes already on disk.
    REQUIRE(done > (size_t{8} << 20) + 10);
    const uint8_t patch[3] = {0xDE, 0xAD, 0x01};
    out.WriteAt(5, patch, 3);
    out.WriteAt((size_t{8} << 20) + 7, patch, 3);
    std::memcpy(expected.data() + 5, patch, 3);
    std::memcpy(expected.data() + (size_t{8} << 20) + 7, patch, 3);
    for (size_t i = 6; i < pieces.size(); ++i) AppendPart(out, expected, done, pieces[i]);
    out.Commit();
    CHECK(test::BytesDifference(test::ReadFileBytes(path), expected) == "");
  }
}

TEST_CASE("OutputFile keeps exact bytes while flushing in the background", "[output_file]") {
  // Full direct-I/O buffers are written and flushed (every 8 MiB) on a helper thread while more
  // are filled; a patch lands in bytes flushed before it, and a file is abandoned with writes
  // still queued.
  TempDir dir;
  const size_t total = (size_t{75} << 20) + 4093;
  const std::vector<uint8_t> expected = PatternBytes(total);
  {
    OutputFile abandoned(dir.path() + "/abandoned.bin");
    abandoned.Write(expected.data(), size_t{40} << 20);
  }
  CHECK(dir.Entries().empty());
  const std::string path = dir.path() + "/big.bin";
  OutputFile out(path);
  size_t done = 0;
  const size_t piece = (size_t{3} << 20) + 1;
  while (done < total) AppendPart(out, expected, done, std::min(total - done, piece));
  std::vector<uint8_t> patched = expected;
  const uint8_t patch[2] = {0x5A, 0xA5};
  out.WriteAt(size_t{33} << 20, patch, 2);
  std::memcpy(patched.data() + (size_t{33} << 20), patch, 2);
  out.Commit();
  CHECK(test::BytesDifference(test::ReadFileBytes(path), patched) == "");
}

TEST_CASE("OutputFile fits a file that ends exactly at RLIMIT_FSIZE", "[output_file]") {
  // Direct I/O writes the last partial block padded; the padding must not trip the limit.
  TempDir dir;
  const std::string path = dir.path() + "/exact.bin";
  const size_t size = (size_t{8} << 20) + 1000;
  const std::vector<uint8_t> expected = PatternBytes(size);
  const int code = test::ExitCodeUnderFileSizeLimit(size, [&] {
    try {
      OutputFile out(path);
      out.Write(expected.data(), 3);
      out.Write(expected.data() + 3, size - 3);
      out.Commit();
      return 0;
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 11;
    }
  });
  REQUIRE(code >= 0);  // not killed
  CHECK(code == 0);
  CHECK(test::BytesDifference(test::ReadFileBytes(path), expected) == "");
}

TEST_CASE("OutputFile reports an unwritable directory naming the file", "[output_file]") {
  try {
    OutputFile out("/nonexistent-dir-hwyquant/x.gguf");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent-dir-hwyquant/x.gguf"));
  }
}

TEST_CASE("OutputFile refuses a directory or a name ending in / before anything is written",
          "[output_file]") {
  TempDir dir;
  const std::string sub = dir.path() + "/sub";
  REQUIRE(::mkdir(sub.c_str(), 0755) == 0);
  CHECK_THROWS_WITH(OutputFile(sub),
                    Catch::Contains("cannot write '" + sub + "': it is a directory"));
  CHECK_THROWS_WITH(OutputFile(sub + "/"), Catch::Contains("not a file name"));
  CHECK(dir.Entries() == std::vector<std::string>{"sub"});  // no temporary left beside it
  // Nor a FIFO or a device, which the rename would replace with a file (as root even
  // /dev/null). Nothing is committed here, so even a wrong answer would replace nothing.
  const std::string fifo = dir.path() + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THROWS_WITH(OutputFile(fifo), Catch::Contains("cannot write '" + fifo +
                                                      "': it is a FIFO, not a regular file"));
  CHECK(dir.Entries() == std::vector<std::string>{"fifo", "sub"});
  CHECK_THROWS_WITH(OutputFile("/dev/null"), Catch::Contains("it is a character device"));
}

// Whether path is a symbolic link whose text is target.
bool IsLinkTo(const std::string& path, const std::string& target) {
  char text[4096];
  const ssize_t length = ::readlink(path.c_str(), text, sizeof(text));
  return length >= 0 && std::string(text, static_cast<size_t>(length)) == target;
}

TEST_CASE("OutputFile writes through symbolic links and keeps them", "[output_file]") {
  TempDir dir;
  const std::string real = dir.path() + "/real.gguf";
  {
    OutputFile out(real);
    out.Write("old", 3);
    out.Commit();
  }
  // A relative link, a chain of two, and a link whose target does not exist yet.
  REQUIRE(::symlink("real.gguf", (dir.path() + "/link.gguf").c_str()) == 0);
  REQUIRE(::mkdir((dir.path() + "/sub").c_str(), 0755) == 0);
  REQUIRE(::symlink("../link.gguf", (dir.path() + "/sub/chain.gguf").c_str()) == 0);
  REQUIRE(::symlink((dir.path() + "/sub/new.gguf").c_str(),
                    (dir.path() + "/dangling.gguf").c_str()) == 0);

  const auto commit = [](const std::string& path, const std::string& text) {
    OutputFile out(path);
    out.Write(text.data(), text.size());
    out.Commit();
  };
  commit(dir.path() + "/link.gguf", "first");
  CHECK(IsLinkTo(dir.path() + "/link.gguf", "real.gguf"));
  CHECK(test::ReadFileBytes(real) == std::vector<uint8_t>{'f', 'i', 'r', 's', 't'});
  commit(dir.path() + "/sub/chain.gguf", "second");
  CHECK(IsLinkTo(dir.path() + "/sub/chain.gguf", "../link.gguf"));
  CHECK(IsLinkTo(dir.path() + "/link.gguf", "real.gguf"));
  CHECK(test::ReadFileBytes(real).size() == 6);
  commit(dir.path() + "/dangling.gguf", "third");
  CHECK(IsLinkTo(dir.path() + "/dangling.gguf", dir.path() + "/sub/new.gguf"));
  CHECK(test::ReadFileBytes(dir.path() + "/sub/new.gguf").size() == 5);
  // Nothing but the links, the files they lead to and the sub-directory: no temporaries.
  CHECK(dir.Entries() ==
        std::vector<std::string>{"dangling.gguf", "link.gguf", "real.gguf", "sub"});
  CHECK(EntriesOf(dir.path() + "/sub") == std::vector<std::string>{"chain.gguf", "new.gguf"});

  // A loop of links is an error that names the output, before anything is written.
  REQUIRE(::symlink("loop-b.gguf", (dir.path() + "/loop-a.gguf").c_str()) == 0);
  REQUIRE(::symlink("loop-a.gguf", (dir.path() + "/loop-b.gguf").c_str()) == 0);
  CHECK_THROWS_WITH(OutputFile(dir.path() + "/loop-a.gguf"),
                    Catch::Contains("cannot write '" + dir.path() + "/loop-a.gguf'") &&
                        Catch::Contains("too many levels of symbolic links"));
}

TEST_CASE("OutputFile turns RLIMIT_FSIZE into an Error and removes the temporary",
          "[output_file]") {
  // On ext4 a direct write past the limit fails with EINVAL and the file falls back to buffered
  // writes; on tmpfs (direct I/O since Linux 6.6) it fails with EFBIG on the writing thread.
  const std::string parent = GENERATE(std::string("/tmp"), std::string("/dev/shm"));
  if (::access(parent.c_str(), W_OK) != 0) {
    WARN(parent << " is not writable here: tested in /tmp only");
    return;
  }
  TempDir dir(parent);
  const std::string path = dir.path() + "/limited.bin";
  // Within the first direct-I/O buffer, and past two of them, with more queued behind.
  const size_t limit = GENERATE(size_t{100000}, (size_t{5} << 20) + 123);
  CAPTURE(parent, limit);
  const int code = test::ExitCodeUnderFileSizeLimit(limit, [&] {
    try {
      OutputFile out(path);
      std::vector<uint8_t> chunk(1 << 16, 1);
      for (int i = 0; i < 320; ++i) out.Write(chunk.data(), chunk.size());
      out.Commit();
      return 11;  // no error: wrong
    } catch (const Error& e) {
      const std::string message = e.what();
      return (message.find(path) != std::string::npos &&
              message.find("file size limit") != std::string::npos)
                 ? 0
                 : 12;
    }
  });
  REQUIRE(code >= 0);  // not killed by SIGXFSZ
  CHECK(code == 0);
  CHECK(dir.Entries().empty());
}

TEST_CASE("GGUF round trip keeps every value type, tensor and byte", "[gguf]") {
  TempDir dir;
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::string path = dir.path() + "/small.gguf";
  WriteGgufFile(path, m.kv, m.tensors, m.data);
  const auto file = GgufFile::Open(path);
  CHECK(file->version() == 3);
  CHECK(file->alignment() == 32);
  CheckModelEquals(*file, m);
  CHECK(file->FindKey("t.u32")->AsUInt() == 4000000000u);
  CHECK(file->FindKey("t.i8")->AsInt() == -100);
  CHECK(file->FindKey("t.f64")->AsDouble() == 3.141592653589793);
  CHECK(file->FindKey("t.bool")->AsBool());
  CHECK(file->FindKey("t.arr_str")->strings()[3] == "▁the");
  CHECK(file->FindKey("t.arr_nested")->arrays()[2].arrays()[0].scalar_bytes()[0] == 9);
  CHECK(file->FindTensor("blk.0.k.weight") == 3);
  CHECK(file->FindTensor("missing") == -1);
  CHECK_THROWS_AS(file->FindKey("t.string")->AsUInt(), Error);

  // Writing what was read gives the same bytes.
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    data.emplace_back(file->TensorData(i), file->TensorData(i) + file->tensors()[i].size);
  }
  const std::string copy = dir.path() + "/copy.gguf";
  WriteGgufFile(copy, file->kv(), file->tensors(), data);
  CHECK(test::FileDifference(copy, path) == "");
}

TEST_CASE("GgufWriter takes a tensor's data in parts and checks their total", "[gguf]") {
  TempDir dir;
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::string whole = dir.path() + "/whole.gguf";
  WriteGgufFile(whole, m.kv, m.tensors, m.data);
  const std::string parts = dir.path() + "/parts.gguf";
  {
    OutputFile out(parts);
    GgufWriter writer(out, m.kv, m.tensors);
    for (const std::vector<uint8_t>& bytes : m.data) {
      // Uneven parts, one of them empty: 1, 0, 2, 3, ... bytes until the tensor is complete.
      size_t done = 0;
      for (size_t part = 1; done < bytes.size(); ++part) {
        const size_t n = std::min(part == 2 ? 0 : part, bytes.size() - done);
        writer.AppendTensorData(bytes.data() + done, n);
        done += n;
      }
      if (bytes.empty()) writer.AppendTensorData(nullptr, 0);
    }
    writer.Finish();
    out.Commit();
  }
  CHECK(test::FileDifference(parts, whole) == "");

  OutputFile out(dir.path() + "/bad.gguf");
  GgufWriter writer(out, m.kv, m.tensors);
  const std::vector<uint8_t>& first = m.data[0];
  REQUIRE(first.size() > 1);
  writer.AppendTensorData(first.data(), 1);
  CHECK_THROWS_WITH(writer.WriteTensorData(first.data(), first.size()),
                    Catch::Contains("'" + m.tensors[0].name + "' data is " +
                                    std::to_string(first.size() + 1) + " bytes"));
  std::vector<uint8_t> too_many(first.size(), 0);
  CHECK_THROWS_WITH(writer.AppendTensorData(too_many.data(), too_many.size()),
                    Catch::Contains("more than the " + std::to_string(first.size()) + " bytes"));
  CHECK_THROWS_WITH(writer.Finish(), Catch::Contains("only 0 of"));
}

TEST_CASE("GGUF honours general.alignment", "[gguf]") {
  std::vector<GgufKv> kv = {{"general.alignment", GgufValue::U32(256)}};
  const SmallModel m = MakeSmallModel(kv);
  const std::vector<uint8_t> bytes = SerializeWhole(m);
  std::vector<uint8_t> storage;
  const auto file = ParseCopy(bytes, bytes.size(), storage);
  CHECK(file->alignment() == 256);
  CHECK(file->data_offset() % 256 == 0);
  for (const GgufTensorInfo& t : file->tensors()) CHECK(t.offset % 256 == 0);
  CheckModelEquals(*file, m);

  CHECK_THAT(ErrorOf(SerializeWhole(MakeSmallModel({{"general.alignment", GgufValue::U32(256)}}))),
             Catch::Equals(""));
  std::vector<GgufKv> bad = {{"general.alignment", GgufValue::U32(48)}};
  std::vector<GgufTensorInfo> none;
  CHECK_THROWS_WITH(SerializeGgufHeader(bad, none), Catch::Contains("power of two"));
}

TEST_CASE("GGUF v2 files are read like v3", "[gguf]") {
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  std::vector<uint8_t> bytes = SerializeWhole(m);
  bytes[4] = 2;
  std::vector<uint8_t> storage;
  const auto file = ParseCopy(bytes, bytes.size(), storage);
  CHECK(file->version() == 2);
  CheckModelEquals(*file, m);
}

TEST_CASE("GGUF truncated at every offset fails cleanly", "[gguf]") {
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::vector<uint8_t> bytes = SerializeWhole(m);
  std::vector<uint8_t> storage;
  const auto whole = ParseCopy(bytes, bytes.size(), storage);
  const GgufTensorInfo& last = whole->tensors().back();
  const size_t data_end = whole->data_offset() + last.offset + last.size;
  for (size_t length = 0; length < bytes.size(); ++length) {
    INFO("truncated to " << length << " of " << bytes.size() << " bytes");
    if (length < data_end) {
      try {
        ParseCopy(bytes, length, storage);
        FAIL("no error");
      } catch (const Error& e) {
        CHECK_THAT(e.what(), Catch::Contains("mem.gguf"));
      }
    } else {
      // Only trailing padding is missing: the data is all there.
      CHECK_NOTHROW(ParseCopy(bytes, length, storage));
    }
  }
}

TEST_CASE("GGUF with flipped bytes never crashes", "[gguf]") {
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::vector<uint8_t> bytes = SerializeWhole(m);
  std::vector<uint8_t> storage;
  const auto whole = ParseCopy(bytes, bytes.size(), storage);
  const size_t header_end = static_cast<size_t>(whole->data_offset());
  size_t failures = 0;
  for (size_t i = 0; i < header_end; ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xFF}) {
      std::vector<uint8_t> corrupt = bytes;
      corrupt[i] ^= flip;
      try {
        ParseCopy(corrupt, corrupt.size(), storage);
      } catch (const Error& e) {
        ++failures;
        CHECK_THAT(e.what(), Catch::Contains("mem.gguf"));
      }
    }
  }
  CHECK(failures > header_end);  // most header corruptions are detected
}

TEST_CASE("GGUF corrupt headers give specific errors", "[gguf]") {
  CHECK_THAT(ErrorOf({'G', 'G', 'U'}), Catch::Contains("too short"));
  CHECK_THAT(ErrorOf({'G', 'G', 'M', 'L', 3, 0, 0, 0}), Catch::Contains("not a GGUF file"));
  CHECK_THAT(ErrorOf(Builder().Header(1, 0, 0).bytes), Catch::Contains("version 1"));
  CHECK_THAT(ErrorOf(Builder().Header(4, 0, 0).bytes),
             Catch::Contains("unsupported GGUF version 4"));
  CHECK_THAT(ErrorOf(Builder().Header(0x03000000, 0, 0).bytes), Catch::Contains("big-endian"));
  CHECK_THAT(ErrorOf(Builder().Header(3, 0, 1ull << 60).bytes), Catch::Contains("metadata count"));
  CHECK_THAT(ErrorOf(Builder().Header(3, 1ull << 60, 0).bytes), Catch::Contains("tensor count"));
  CHECK_THAT(ErrorOf(Builder().Header(3, 0, 1).Put<uint64_t>(1ull << 62).Put<uint64_t>(0).bytes),
             Catch::Contains("key of metadata pair 0 of length 4611686018427387904"));
  CHECK_THAT(ErrorOf(Builder().Header(3, 0, 1).Str("k").Put<uint32_t>(13).Put<uint32_t>(0).bytes),
             Catch::Contains("unknown value type 13"));
  CHECK_THAT(ErrorOf(Builder().Header(3, 0, 1).Str("").Put<uint32_t>(4).Put<uint32_t>(0).bytes),
             Catch::Contains("empty key"));
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 2)
                         .Str("k")
                         .Put<uint32_t>(0)
                         .Put<uint8_t>(1)
                         .Str("k")
                         .Put<uint32_t>(0)
                         .Put<uint8_t>(1)
                         .bytes),
             Catch::Contains("duplicate metadata key 'k'"));
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 1)
                         .Str("k")
                         .Put<uint32_t>(9)
                         .Put<uint32_t>(4)
                         .Put<uint64_t>(1ull << 61)
                         .bytes),
             Catch::Contains("claims"));
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 1)
                         .Str("k")
                         .Put<uint32_t>(9)
                         .Put<uint32_t>(8)
                         .Put<uint64_t>(1ull << 40)
                         .bytes),
             Catch::Contains("claims"));
  {
    Builder deep;
    deep.Header(3, 0, 1).Str("k").Put<uint32_t>(9);
    for (int i = 0; i < 100; ++i) deep.Put<uint32_t>(9).Put<uint64_t>(1);
    CHECK_THAT(ErrorOf(deep.bytes), Catch::Contains("nests arrays deeper"));
  }
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 1)
                         .Str("general.alignment")
                         .Put<uint32_t>(4)
                         .Put<uint32_t>(0)
                         .bytes),
             Catch::Contains("not a power of two"));
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 1)
                         .Str("general.alignment")
                         .Put<uint32_t>(10)
                         .Put<uint64_t>(32)
                         .bytes),
             Catch::Contains("must be a u32"));
  // No tensors, but an alignment no writer could have padded the header to (rewriting the
  // header would allocate 1 GiB of padding).
  CHECK_THAT(ErrorOf(Builder()
                         .Header(3, 0, 1)
                         .Str("general.alignment")
                         .Put<uint32_t>(4)
                         .Put<uint32_t>(1u << 30)
                         .bytes),
             Catch::Contains("general.alignment 1073741824 is larger than the whole file"));

  auto tensor = [](uint32_t n_dims, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    Builder b;
    b.Header(3, 1, 0).Str("t").Put(n_dims);
    for (uint64_t d : dims) b.Put(d);
    b.Put(type).Put(offset);
    while (b.bytes.size() % 32) b.bytes.push_back(0);
    b.bytes.resize(b.bytes.size() + 4096, 0);
    return b.bytes;
  };
  CHECK(ErrorOf(tensor(2, {32, 2}, 0, 0)).empty());
  CHECK_THAT(ErrorOf(tensor(5, {1, 1, 1, 1, 1}, 0, 0)), Catch::Contains("5 dimensions"));
  CHECK_THAT(ErrorOf(tensor(1, {33}, 8, 0)), Catch::Contains("not a multiple of the block size"));
  CHECK_THAT(ErrorOf(tensor(1, {32}, 99, 0)), Catch::Contains("unknown type id 99"));
  CHECK_THAT(ErrorOf(tensor(1, {1ull << 63}, 0, 0)), Catch::Contains("too large"));
  CHECK_THAT(ErrorOf(tensor(4, {1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, 0, 0)),
             Catch::Contains("64-bit"));
  CHECK_THAT(ErrorOf(tensor(1, {32}, 0, 16)), Catch::Contains("not a multiple of the alignment"));
  CHECK_THAT(ErrorOf(tensor(1, {32}, 0, 1ull << 40)), Catch::Contains("past the end"));
  CHECK_THAT(ErrorOf(tensor(2, {1024, 2}, 0, 0)), Catch::Contains("past the end"));
  {
    Builder b;
    b.Header(3, 2, 0);
    b.Str("t").Put<uint32_t>(1).Put<uint64_t>(32).Put<uint32_t>(0).Put<uint64_t>(0);
    b.Str("t").Put<uint32_t>(1).Put<uint64_t>(32).Put<uint32_t>(0).Put<uint64_t>(128);
    b.bytes.resize(1024, 0);
    CHECK_THAT(ErrorOf(b.bytes), Catch::Contains("duplicate tensor name 't'"));
  }
}

TEST_CASE("GGUF reader opens files by path and names them in errors", "[gguf]") {
  TempDir dir;
  CHECK_THROWS_WITH(GgufFile::Open(dir.path() + "/missing.gguf"), Catch::Contains("missing.gguf"));
  const std::string empty = dir.path() + "/empty.gguf";
  std::fclose(std::fopen(empty.c_str(), "wb"));
  CHECK_THROWS_WITH(GgufFile::Open(empty),
                    Catch::Contains("empty.gguf") && Catch::Contains("empty"));
  CHECK_THROWS_WITH(GgufFile::Open(dir.path()), Catch::Contains("not a regular file"));
}

TEST_CASE("GgufModelSource streams tensors from the mapping", "[gguf]") {
  TempDir dir;
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::string path = dir.path() + "/src.gguf";
  WriteGgufFile(path, m.kv, m.tensors, m.data);
  GgufModelSource source(path);
  CHECK(source.Describe() == path);
  REQUIRE(source.Tensors().size() == m.tensors.size());
  CHECK(source.Metadata().size() == m.kv.size());
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorDescriptor& d = source.Tensors()[i];
    CHECK(d.name == m.tensors[i].name);
    CHECK(d.ByteSize() == m.data[i].size());
    const TensorBytes bytes = source.LoadTensor(i);
    REQUIRE(bytes.size() == m.data[i].size());
    CHECK(std::memcmp(bytes.data(), m.data[i].data(), bytes.size()) == 0);
  }
  // Pages released after use are still readable (they come back from the file).
  const TensorBytes again = source.LoadTensor(0);
  CHECK(std::memcmp(again.data(), m.data[0].data(), again.size()) == 0);
  const TensorBytes owned = TensorBytes::FromBuffer({1, 2, 3});
  CHECK(owned.size() == 3);
  CHECK(owned.data()[2] == 3);
}

TEST_CASE("GgufModelSource reads tensor ranges with pread, and names a truncated file", "[gguf]") {
  TempDir dir;
  const SmallModel m = MakeSmallModel(EveryKindOfKv());
  const std::string path = dir.path() + "/src.gguf";
  WriteGgufFile(path, m.kv, m.tensors, m.data);
  GgufModelSource source(path);
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorBytes bytes = source.LoadTensor(i);
    REQUIRE(bytes.has_file());
    // Every split of the tensor into a head and a tail reads the file's bytes.
    for (size_t head = 0; head <= bytes.size(); head += std::max<size_t>(1, bytes.size() / 7)) {
      std::vector<uint8_t> read(bytes.size(), 0xAA);
      bytes.Read(0, head, read.data());
      bytes.Read(head, bytes.size() - head, read.data() + head);
      CHECK(read == m.data[i]);
    }
    uint8_t one = 0;
    CHECK_THROWS_WITH(bytes.Read(bytes.size(), 1, &one), Catch::Contains("passes its end"));
  }
  // A buffer without a file reads by copying.
  const TensorBytes owned = TensorBytes::FromBuffer({1, 2, 3});
  CHECK_FALSE(owned.has_file());
  uint8_t two[2] = {};
  owned.Read(1, 2, two);
  CHECK((two[0] == 2 && two[1] == 3));
  // Cut the file inside the last tensor's data: the read fails naming the file (a mapping
  // would raise SIGBUS instead).
  const size_t last = m.tensors.size() - 1;
  const TensorBytes tail = source.LoadTensor(last);
  REQUIRE(tail.size() >= 2);
  const uint64_t cut = source.file().TensorFileOffset(last) + tail.size() / 2;
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(cut)) == 0);
  std::vector<uint8_t> sink(tail.size());
  CHECK_THROWS_WITH(tail.Read(0, tail.size(), sink.data()),
                    Catch::Contains(path) && Catch::Contains("truncated"));
}

TEST_CASE("GGUF reader agrees with gguf_mini.py and the writer reproduces its bytes", "[gguf]") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  TempDir dir;
  const std::string model = dir.path() + "/pub_odd.gguf";
  const std::string command =
      "python3 '" + shared + "/tools/gguf_synth.py' '" + model + "' pub_odd";
  REQUIRE(std::system(command.c_str()) == 0);
  const auto file = GgufFile::Open(model);
  CHECK(file->FindKey("general.architecture")->AsString() == "llama");
  CHECK(file->FindKey("llama.block_count")->AsUInt() == 3);
  REQUIRE(file->tensors().size() == 30);
  CHECK(file->tensors()[0].name == "token_embd.weight");
  CHECK(file->tensors()[0].dims == std::vector<int64_t>{96, 128});
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    data.emplace_back(file->TensorData(i), file->TensorData(i) + file->tensors()[i].size);
  }
  const std::string copy = dir.path() + "/copy.gguf";
  WriteGgufFile(copy, file->kv(), file->tensors(), data);
  CHECK(test::FileDifference(copy, model) == "");
}

}  // namespace
}  // namespace hwyquant
