// End-to-end benchmark: writes a synthetic llama GGUF of about 150M f32 parameters, then runs
// `hwyquant quantize` on it per preset in a child process and reports wall time, CPU time and the
// child's peak RSS; with --llama-quantize, runs llama-quantize on the same input and thread count
// too, checks that both outputs are identical and reports the speedups.
//
//   hwyquant-e2e [--hwyquant PATH] [--llama-quantize PATH] [--runs N] [--dir DIR] [--layers N]
//                [--threads N] [--keep-model] [PRESET...]
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "hwyquant/hwyquant.h"
#include "pipeline/gguf.h"
#include "pipeline/output_file.h"

namespace {

struct Shape {
  int64_t embd = 1024, ff = 2816, vocab = 16000, layers = 10, heads = 16, kv_heads = 4;
};

// SplitMix64 values summed into a roughly normal weight (sigma ~0.02), cheap and reproducible.
class Weights {
 public:
  float Next() {
    float sum = 0;
    for (int i = 0; i < 4; ++i) {
      uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      sum += static_cast<float>(z >> 40) / static_cast<float>(1 << 24) - 0.5f;
    }
    return sum * 0.035f;
  }

 private:
  uint64_t state_ = 42;
};

uint64_t WriteModel(const std::string& path, const Shape& s) {
  using hwyquant::GgufKv;
  using hwyquant::GgufValue;
  std::vector<GgufKv> kv = {
      {"general.architecture", GgufValue::String("llama")},
      {"general.name", GgufValue::String("e2e-synthetic")},
      {"general.file_type", GgufValue::U32(0)},
      {"llama.context_length", GgufValue::U32(2048)},
      {"llama.embedding_length", GgufValue::U32(static_cast<uint32_t>(s.embd))},
      {"llama.block_count", GgufValue::U32(static_cast<uint32_t>(s.layers))},
      {"llama.feed_forward_length", GgufValue::U32(static_cast<uint32_t>(s.ff))},
      {"llama.attention.head_count", GgufValue::U32(static_cast<uint32_t>(s.heads))},
      {"llama.attention.head_count_kv", GgufValue::U32(static_cast<uint32_t>(s.kv_heads))},
      {"llama.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5f)},
      {"llama.vocab_size", GgufValue::U32(static_cast<uint32_t>(s.vocab))},
  };
  std::vector<hwyquant::GgufTensorInfo> tensors;
  const auto add = [&](const std::string& name, std::vector<int64_t> dims) {
    tensors.push_back({name, std::move(dims), hwyquant::Type::kF32, 0, 0});
  };
  const int64_t kv_dim = s.embd / s.heads * s.kv_heads;
  add("token_embd.weight", {s.embd, s.vocab});
  add("output_norm.weight", {s.embd});
  add("output.weight", {s.embd, s.vocab});
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.embd});
    add(p + "attn_q.weight", {s.embd, s.embd});
    add(p + "attn_k.weight", {s.embd, kv_dim});
    add(p + "attn_v.weight", {s.embd, kv_dim});
    add(p + "attn_output.weight", {s.embd, s.embd});
    add(p + "ffn_norm.weight", {s.embd});
    add(p + "ffn_gate.weight", {s.embd, s.ff});
    add(p + "ffn_up.weight", {s.embd, s.ff});
    add(p + "ffn_down.weight", {s.ff, s.embd});
  }
  hwyquant::OutputFile out(path);
  hwyquant::GgufWriter writer(out, kv, tensors);
  Weights rng;
  uint64_t params = 0;
  std::vector<float> data;
  for (const hwyquant::GgufTensorInfo& t : writer.tensors()) {
    data.resize(static_cast<size_t>(t.ElementCount()));
    const bool norm = t.dims.size() == 1;
    for (float& v : data) v = norm ? 1.0f + rng.Next() : rng.Next();
    writer.WriteTensorData(data.data(), data.size() * sizeof(float));
    params += data.size();
  }
  writer.Finish();
  out.Commit();
  return params;
}

// Reads the whole file, so that a run finds the model in the page cache. Done before every run,
// not once: a VM that pages out memory it finds idle (DAMON's pageout, as on the development VM)
// dropped 14-74 MiB of the 555 MiB model from the page cache within minutes, and `perf` caught a
// hwyquant run reading them back from disk.
void WarmPageCache(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(8 << 20);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
  }
}

struct Measurement {
  double wall = 0, cpu = 0, peak_rss_mib = 0;
};

// Runs `tool IN OUT PRESET [threads]` (hwyquant with "quantize" in front) in a child process after
// a sync, so neither tool pays for the other's dirty pages, and after reading the input. The
// previous run's output is removed first, so every run starts as the first does: replacing an
// existing file frees its blocks, which on a file system mounted with `discard` costs about 0.3 ms
// per MiB (README), and that is the file system's work, not the quantizer's. False when the child
// failed.
bool RunOnce(const std::vector<std::string>& command, const std::string& input,
             const std::string& output, Measurement& m) {
  std::fflush(stdout);  // the child must not inherit (and repeat) buffered output
  std::remove(output.c_str());
  ::sync();
  WarmPageCache(input);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t child = ::fork();
  if (child == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    std::vector<const char*> args;
    for (const std::string& a : command) args.push_back(a.c_str());
    args.push_back(nullptr);
    ::execv(args[0], const_cast<char* const*>(args.data()));
    ::_exit(127);
  }
  int status = 0;
  struct rusage usage;
  ::wait4(child, &status, 0, &usage);
  m.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
          usage.ru_stime.tv_usec / 1e6;
  m.peak_rss_mib = usage.ru_maxrss / 1024.0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double FileMiB(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size / 1024.0 / 1024.0 : 0;
}

// One line naming the CPU, its core count and the kernels' SIMD target: the ratios to
// llama-quantize differ by CPU (README: lower on Zen 4, which splits 512-bit operations in two,
// than on Zen 5), so a table is only comparable with others from the same kind of machine.
std::string MachineLine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string name, family, model, line;
  const auto value = [&line] {
    const size_t colon = line.find(':');
    const size_t start =
        colon == std::string::npos ? colon : line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  };
  while (std::getline(cpuinfo, line) && line.find_first_not_of(" \t") != std::string::npos) {
    if (name.empty() && line.rfind("model name", 0) == 0) name = value();
    if (family.empty() && line.rfind("cpu family", 0) == 0) family = value();
    if (model.empty() && line.rfind("model\t", 0) == 0) model = value();
  }
  std::string text = name.empty() ? "unknown CPU" : name;
  if (!family.empty() && !model.empty()) text += " (family " + family + ", model " + model + ")";
  return text + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " cores, kernels " +
         hwyquant::ActiveTarget();
}

// The mean of runs measurements of one command; false (after saying why) when a run failed.
bool Measure(const char* tool, const std::vector<std::string>& command, const std::string& input,
             const std::string& output, int runs, const std::string& preset, Measurement& mean) {
  mean = Measurement();
  for (int r = 0; r < runs; ++r) {
    Measurement m;
    if (!RunOnce(command, input, output, m)) {
      std::printf("%-8s %s failed (run `%s` by hand to see why)\n", preset.c_str(), tool,
                  command[0].c_str());
      return false;
    }
    mean.wall += m.wall / runs;
    mean.cpu += m.cpu / runs;
    mean.peak_rss_mib = std::max(mean.peak_rss_mib, m.peak_rss_mib);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string hwyquant_path;
  std::string llama_quantize_path;
  std::string dir = "/tmp";
  std::string threads;
  int runs = 1;
  bool keep_model = false;
  Shape shape;
  std::vector<std::string> presets;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--hwyquant" && i + 1 < argc) {
      hwyquant_path = argv[++i];
    } else if (arg == "--llama-quantize" && i + 1 < argc) {
      llama_quantize_path = argv[++i];
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg == "--layers" && i + 1 < argc) {
      shape.layers = std::atoi(argv[++i]);
    } else if (arg == "--threads" && i + 1 < argc) {
      threads = argv[++i];
    } else if (arg == "--keep-model") {
      keep_model = true;
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr,
                   "usage: %s [--hwyquant PATH] [--llama-quantize PATH] [--runs N] [--dir DIR] "
                   "[--layers N] [--threads N] [--keep-model] [PRESET...]\n"
                   "  --keep-model leaves DIR/hwyquant-e2e-model.gguf and reuses it next time\n"
                   "  without PRESETs, every llama-quantize preset from Q2_K to BF16\n",
                   argv[0]);
      return 2;
    } else {
      presets.push_back(arg);
    }
  }
  if (hwyquant_path.empty()) {
    // Default: the CLI built beside this benchmark.
    const std::string self = argv[0];
    const size_t slash = self.find_last_of('/');
    hwyquant_path = (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) +
                    "/../pipeline/hwyquant";
  }
  if (presets.empty()) {
    presets = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M",
               "Q5_0", "Q5_1",   "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16",    "BF16"};
  }

  const std::string model = dir + "/hwyquant-e2e-model.gguf";
  const std::string output = dir + "/hwyquant-e2e-out.gguf";
  const std::string llama_output = dir + "/hwyquant-e2e-llama-out.gguf";
  uint64_t params = 0;
  try {
    std::unique_ptr<hwyquant::GgufFile> existing;
    if (keep_model && ::access(model.c_str(), R_OK) == 0) {
      existing = hwyquant::GgufFile::Open(model);
      for (size_t i = 0; i < existing->tensors().size(); ++i) {
        params += static_cast<uint64_t>(existing->tensors()[i].ElementCount());
      }
      std::printf("model: %s, %.1fM f32 parameters (reused)\n", model.c_str(), params / 1e6);
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      params = WriteModel(model, shape);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("model: %s, %.1fM f32 parameters (%.0f MiB), written in %.1f s\n", model.c_str(),
                  params / 1e6, params * 4.0 / 1024 / 1024, seconds);
    }
  } catch (const hwyquant::Error& e) {
    std::fprintf(stderr, "hwyquant-e2e: %s\n", e.what());
    return 1;
  }
  std::printf("machine: %s\n", MachineLine().c_str());
  std::printf("runs per tool and preset: %d (means; peak RSS is the largest)\n", runs);
  std::printf("%-8s %10s %10s %10s %12s %10s", "preset", "wall s", "cpu s", "MB/s", "peak RSS MiB",
              "out MiB");
  if (!llama_quantize_path.empty()) {
    std::printf(" %10s %10s %12s %9s %9s %s", "lq wall s", "lq cpu s", "lq RSS MiB", "wall x",
                "cpu x", "identical");
  }
  std::printf("\n");
  int status_all = 0;
  for (const std::string& preset : presets) {
    std::vector<std::string> command = {hwyquant_path, "quantize", model, output, preset};
    if (!threads.empty()) command.push_back(threads);
    Measurement ours;
    if (!Measure("hwyquant", command, model, output, runs, preset, ours)) {
      status_all = 1;
      continue;
    }
    std::printf("%-8s %10.3f %10.3f %10.1f %12.1f %10.1f", preset.c_str(), ours.wall, ours.cpu,
                params * 4.0 / 1e6 / ours.wall, ours.peak_rss_mib, FileMiB(output));
    if (!llama_quantize_path.empty()) {
      std::vector<std::string> theirs_command = {llama_quantize_path, model, llama_output, preset};
      if (!threads.empty()) theirs_command.push_back(threads);
      Measurement theirs;
      if (!Measure("llama-quantize", theirs_command, model, llama_output, runs, preset, theirs)) {
        status_all = 1;
        continue;
      }
      const bool identical = ReadAll(output) == ReadAll(llama_output);
      if (!identical) status_all = 1;
      std::printf(" %10.3f %10.3f %12.1f %8.1fx %8.1fx %s", theirs.wall, theirs.cpu,
                  theirs.peak_rss_mib, theirs.wall / ours.wall, theirs.cpu / ours.cpu,
                  identical ? "yes" : "NO");
      std::remove(llama_output.c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
    std::remove(output.c_str());
  }
  if (!keep_model) std::remove(model.c_str());
  return status_all;
}
