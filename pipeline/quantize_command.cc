// `hwyquant quantize`: llama-quantize's command line on top of the quantization driver.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "hwyquant/hwyquant.h"
#include "pipeline/commands.h"
#include "pipeline/progress_json.h"
#include "pipeline/quantize.h"
#include "pipeline/tensor_stats_json.h"
#include "pipeline/text.h"

namespace hwyquant {
namespace {

struct QuantizeArgs {
  std::string input;
  std::vector<std::string> rest;  // [OUT.gguf] TYPE [nthreads]
  std::string imatrix;
  std::vector<std::string> include_weights;
  std::vector<std::string> exclude_weights;
  std::string output_tensor_type;
  std::string token_embedding_type;
  std::vector<std::string> tensor_types;
  std::vector<std::string> tensor_type_files;
  // REGEX=TYPE entries of --tensor-type and --tensor-type-file in command-line order (the first
  // match wins), each with where it came from, for messages.
  std::vector<std::pair<std::string, std::string>> tensor_type_entries;
  std::vector<std::string> kv_overrides;
  bool pure = false;
  bool leave_output_tensor = false;
  bool allow_requantize = false;
  bool dry_run = false;
  bool stats = false;
  bool progress_json = false;  // JSON lines on stderr for `hwyquant serve`
  bool keep_split = false;
  std::string prune_layers;  // L0,L1,...
};

// The whitespace-separated REGEX=TYPE entries of a --tensor-type-file, as llama-quantize reads it.
std::vector<std::string> ReadTensorTypeFile(const std::string& path) {
  const std::string where = "--tensor-type-file '" + path + "'";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(where + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(where + ": not a regular file");
  std::ifstream file(path);
  if (!file) throw Error(where + ": " + std::strerror(errno));
  std::vector<std::string> entries;
  std::string entry;
  while (file >> entry) entries.push_back(entry);
  if (file.bad()) throw Error(where + ": read error");
  return entries;
}

// --prune-layers L0,L1,...: layer numbers, sorted and without repeats.
std::vector<int> ParsePruneLayers(const std::string& text) {
  std::vector<int> layers;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || value < 0 || value > 1000000) {
      throw Error("--prune-layers '" + text + "': invalid layer number '" + item + "'");
    }
    layers.push_back(static_cast<int>(value));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

// Like llama-quantize, a count of zero or less means every core.
int ParseThreads(const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < -4096 || value > 4096) {
    throw Error("invalid thread count '" + text +
                "': expected a whole number up to 4096 (0 or less means every core)");
  }
  return static_cast<int>(std::max(0L, value));
}

void PrintSummary(const QuantizePlan& plan, const QuantizeResult& result, bool dry_run) {
  const double weights = plan.weights > 0 ? static_cast<double>(plan.weights) : 1.0;
  std::printf("model size  = %10.2f MiB (%.2f BPW)\n", plan.source_bytes / 1024.0 / 1024.0,
              plan.source_bytes * 8.0 / weights);
  std::printf("quant size  = %10.2f MiB (%.2f BPW)\n", plan.target_bytes / 1024.0 / 1024.0,
              plan.target_bytes * 8.0 / weights);
  if (dry_run) {
    std::printf("dry run: nothing written\n");
  } else {
    std::string files = result.files.empty() ? std::string() : result.files[0];
    if (result.files.size() > 1) {
      files +=
          " ... " + result.files.back() + " (" + std::to_string(result.files.size()) + " splits)";
    }
    std::printf("wrote %s (%.2f MiB, %s) in %.2f s, %.1f MB/s\n", files.c_str(),
                result.file_bytes / 1024.0 / 1024.0, plan.preset.name, result.seconds,
                result.seconds > 0 ? result.source_bytes / 1e6 / result.seconds : 0.0);
  }
  if (!result.stats.empty()) {
    std::printf("\n%-40s %-6s %12s %12s %12s\n", "tensor", "type", "rmse", "max|err|",
                "|Wx-W'x|/|Wx|");
    for (const TensorStats& s : result.stats) {
      std::printf("%-40s %-6s %12.4e %12.4e %12.4e\n", s.name.c_str(), TypeName(s.type), s.rmse,
                  s.max_abs_error, s.relative_output_error);
    }
  }
}

void RunQuantizeCommand(const QuantizeArgs& args) {
  QuantizeOptions options;
  std::string output;
  // As llama-quantize: "IN OUT TYPE [n]", or "IN TYPE [n]", which writes
  // ggml-model-TYPE.gguf beside IN (TYPE spelled as llama-quantize's table does).
  size_t next = 0;
  if (!args.rest.empty() && FindPreset(args.rest[0])) {
    options.preset = args.rest[next++];
    if (!args.dry_run) {
      const size_t slash = args.input.find_last_of('/');
      const std::string directory =
          slash == std::string::npos ? std::string() : args.input.substr(0, slash + 1);
      output = directory + "ggml-model-" + FindPreset(options.preset)->name +
               (args.keep_split ? "" : ".gguf");
    }
  } else {
    if (args.rest.size() < 2) throw Error("quantize: expected IN.gguf [OUT.gguf] TYPE [nthreads]");
    output = args.rest[next++];
    options.preset = args.rest[next++];
    // With --keep-split OUT names the splits' prefix: OUT-00001-of-0000N.gguf and so on.
    const std::string_view suffix = ".gguf";
    if (args.keep_split && output.size() > suffix.size() && EndsWith(output, suffix)) {
      output.resize(output.size() - suffix.size());
    }
  }
  if (next < args.rest.size()) options.nthreads = ParseThreads(args.rest[next++]);
  if (next < args.rest.size())
    throw Error("quantize: unexpected argument '" + args.rest[next] + "'");
  if (!FindPreset(options.preset)) {
    throw Error("unknown quantization type '" + options.preset + "' (known: " + PresetNames() +
                ")");
  }
  options.imatrix_path = args.imatrix;
  options.include_weights = args.include_weights;
  options.exclude_weights = args.exclude_weights;
  if (!args.output_tensor_type.empty()) {
    options.output_tensor_type =
        ParseQuantizableType(args.output_tensor_type, "--output-tensor-type");
  }
  if (!args.token_embedding_type.empty()) {
    options.token_embedding_type =
        ParseQuantizableType(args.token_embedding_type, "--token-embedding-type");
  }
  for (const auto& [spec, origin] : args.tensor_type_entries) {
    const std::string where = origin + " '" + spec + "'";
    const size_t equals = spec.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == spec.size()) {
      throw Error(where + ": expected REGEX=TYPE");
    }
    // llama-quantize lower-cases the pattern; tensor names are lower case.
    std::string pattern = spec.substr(0, equals);
    std::transform(pattern.begin(), pattern.end(), pattern.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    TensorTypePattern(pattern, where);  // here, so that the message says where it came from
    options.tensor_types.emplace_back(pattern,
                                      ParseQuantizableType(spec.substr(equals + 1), where));
  }
  for (const std::string& spec : args.kv_overrides) {
    options.kv_overrides.push_back(ParseKvOverride(spec));
  }
  options.pure = args.pure;
  options.leave_output_tensor = args.leave_output_tensor;
  options.allow_requantize = args.allow_requantize;
  options.dry_run = args.dry_run;
  options.keep_split = args.keep_split;
  if (!args.prune_layers.empty()) options.prune_layers = ParsePruneLayers(args.prune_layers);
  options.stats = args.stats && !args.dry_run;

  GgufModelSource source(args.input);
  const std::optional<Imatrix> imatrix = LoadImatrixFor(options);
  if (imatrix) {
    std::fprintf(stderr, "loaded %zu importance matrix entries from %s\n", imatrix->entries.size(),
                 options.imatrix_path.c_str());
  }
  const QuantizePlan plan = PlanQuantization(source, options, imatrix ? &*imatrix : nullptr);
  // With --keep-split the files are OUT-0000i-of-0000N.gguf.
  const std::string first_output = plan.OutputPath(output, 0);
  const std::string destination = options.dry_run ? "" : " to '" + first_output + "'";
  std::fprintf(stderr, "%s '%s'%s as %s, %zu tensors, kernels: %s\n",
               options.dry_run ? "sizing" : "quantizing", args.input.c_str(), destination.c_str(),
               plan.preset.name, plan.tensors.size(), ActiveTarget());
  ConsoleProgress console(stderr);
  ProgressJsonSink json_sink(2);
  QuantizeProgressJson json_progress(&json_sink);
  QuantizeProgressListener* progress =
      args.progress_json ? static_cast<QuantizeProgressListener*>(&json_progress) : &console;
  const QuantizeResult result = RunQuantization(source, plan, output, options, progress);
  if (args.progress_json && !options.dry_run) {
    if (options.stats) EmitTensorStatsJson(json_sink, plan, result);  // serve's quality view
    json_sink.Done(first_output, result.file_bytes, result.target_bytes, result.weights);
  }
  if (!plan.warnings.empty()) {
    std::fprintf(stderr, "%zu warning(s); see above\n", plan.warnings.size());
  }
  PrintSummary(plan, result, options.dry_run);
}

}  // namespace

void RegisterQuantizeCommand(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd =
      app.add_subcommand("quantize",
                         "Quantize a GGUF model exactly as llama-quantize does.\n"
                         "  hwyquant quantize [options] IN.gguf [OUT.gguf] TYPE [nthreads]\n"
                         "TYPE: " +
                             PresetNames() + " (case-insensitive)");
  cmd->add_option("input", args->input,
                  "Input GGUF (f32/f16/bf16, or quantized with "
                  "--allow-requantize)")
      ->required();
  cmd->add_option("output_type_threads", args->rest, "[OUT.gguf] TYPE [nthreads]")
      ->expected(1, 3)
      ->required();
  cmd->add_option("--imatrix", args->imatrix,
                  "Importance matrix: GGUF from llama-imatrix, or the legacy .dat");
  cmd->add_option("--include-weights", args->include_weights,
                  "Use the imatrix only for tensors whose name contains this (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--exclude-weights", args->exclude_weights,
                  "Do not use the imatrix for tensors whose name contains this (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--output-tensor-type", args->output_tensor_type, "ggml type for output.weight");
  cmd->add_option("--token-embedding-type", args->token_embedding_type,
                  "ggml type for token_embd.weight");
  CLI::Option* tensor_type = cmd->add_option(
      "--tensor-type", args->tensor_types,
      "REGEX=TYPE: tensors whose name matches get TYPE (repeatable; first match wins)");
  tensor_type->allow_extra_args(false);
  CLI::Option* tensor_type_file =
      cmd->add_option("--tensor-type-file", args->tensor_type_files,
                      "File of REGEX=TYPE entries separated by spaces or newlines (repeatable)");
  tensor_type_file->allow_extra_args(false);
  cmd->add_option("--override-kv", args->kv_overrides,
                  "KEY=TYPE:VALUE metadata override, TYPE int|float|bool|str (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--pure", args->pure, "No mixes: every eligible tensor gets the default type");
  cmd->add_flag("--leave-output-tensor", args->leave_output_tensor, "Keep output.weight as it is");
  cmd->add_flag("--allow-requantize", args->allow_requantize,
                "Allow already-quantized input tensors (dequantized, then quantized)");
  cmd->add_flag("--dry-run", args->dry_run, "Print types and sizes; write nothing");
  cmd->add_option("--prune-layers", args->prune_layers,
                  "L0,L1,...: drop these layers and renumber the rest (llama-quantize's option)");
  cmd->add_flag("--keep-split", args->keep_split,
                "One output file per split of the input, OUT-00001-of-0000N.gguf and so on");
  cmd->add_flag("--progress-json", args->progress_json,
                "Report progress as JSON lines on stderr (for hwyquant serve)");
  cmd->add_flag("--stats", args->stats,
                "Per-tensor RMSE, max |error| and ||Wx-W'x||/||Wx|| on random activations");
  cmd->callback([args, cmd, tensor_type, tensor_type_file] {
    // CLI11 keeps each option's values apart; parse_order() says how they interleave.
    size_t next_type = 0, next_file = 0;
    args->tensor_type_entries.clear();
    for (const CLI::Option* option : cmd->parse_order()) {
      if (option == tensor_type && next_type < args->tensor_types.size()) {
        args->tensor_type_entries.emplace_back(args->tensor_types[next_type++], "--tensor-type");
      } else if (option == tensor_type_file && next_file < args->tensor_type_files.size()) {
        const std::string& path = args->tensor_type_files[next_file++];
        for (std::string& entry : ReadTensorTypeFile(path)) {
          args->tensor_type_entries.emplace_back(std::move(entry),
                                                 "--tensor-type-file '" + path + "', entry");
        }
      }
    }
    if (next_type != args->tensor_types.size() || next_file != args->tensor_type_files.size()) {
      throw Error("quantize: could not order --tensor-type and --tensor-type-file");
    }
    RunQuantizeCommand(*args);
  });
}

}  // namespace hwyquant
