// `hwyquant convert` (safetensors folder -> GGUF, as convert_hf_to_gguf.py) and
// `hwyquant run` (convert and quantize in one streaming pass, no intermediate
// file).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "hwyquant/hwyquant.h"
#include "pipeline/convert.h"
#include "pipeline/fetch_command.h"
#include "pipeline/paths.h"
#include "pipeline/progress_json.h"
#include "pipeline/quantize.h"
#include "pipeline/quantize_progress.h"
#include "pipeline/tensor_stats_json.h"

namespace hwyquant {
namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  std::string outtype = "auto";
};

struct RunArgs {
  std::string source;
  std::string preset;
  std::string output;
  std::string imatrix;
  int nthreads = 0;
  bool from_source = false;
  bool progress_json = false;  // JSON lines on stderr for `hwyquant serve`
  bool stats = false;          // per-tensor error statistics (with --progress-json: as
                               // JSON lines)
  HubCliOptions hub;           // used when SRC is a Hub id (ORG/NAME[@REV])
};

std::string Basename(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void RunConvert(const ConvertArgs& args) {
  const std::optional<OutType> outtype = ParseOutType(args.outtype);
  if (!outtype) {
    throw Error("convert: unknown --outtype '" + args.outtype +
                "' (known: auto, f32, f16, bf16, q8_0)");
  }
  if (!PathIsDirectory(args.input)) {
    throw Error("convert: '" + args.input + "' is not a Hugging Face model folder");
  }
  HfModelSource source(args.input, ConvertOptions{*outtype, false, ""});
  std::fprintf(stderr, "converting '%s' (%s) to '%s': %zu tensors, file type %u\n",
               args.input.c_str(), source.architecture().hf_name().c_str(), args.output.c_str(),
               source.Tensors().size(), source.file_type());
  WriteModelSource(source, args.output);
  std::fprintf(stderr, "wrote %s\n", args.output.c_str());
}

void RunRun(const RunArgs& args) {
  const std::optional<Preset> preset = FindPreset(args.preset);
  if (!preset) {
    throw Error("run: unknown quantization type '" + args.preset + "' (known: " + PresetNames() +
                ")");
  }
  // A Hub id that is not a local path is downloaded into the HF cache first
  // (fetch_command.h).
  ProgressJsonSink download_sink(2);
  const std::string local_source =
      ResolveModelSource(args.source, args.hub, args.progress_json ? &download_sink : nullptr);
  std::unique_ptr<ModelSource> source;
  if (PathIsDirectory(local_source)) {
    ConvertOptions options;
    options.source_precision = args.from_source;
    // A Hub snapshot folder is named by commit: name the model after the repo.
    if (local_source != args.source)
      options.name_from = args.source.substr(0, args.source.find('@'));
    source = std::make_unique<HfModelSource>(local_source, options);
  } else if (args.source.size() > 5 &&
             args.source.compare(args.source.size() - 5, 5, ".gguf") == 0) {
    if (args.from_source) throw Error("run: --from-source applies to safetensors folders only");
    source = std::make_unique<GgufModelSource>(args.source);
  } else {
    throw Error("run: '" + args.source +
                "' is neither a Hugging Face model folder, a Hub id ORG/NAME, "
                "nor a .gguf file");
  }
  const std::string output =
      args.output.empty()
          ? Basename(local_source == args.source ? args.source
                                                 : args.source.substr(0, args.source.find('@'))) +
                "-" + preset->name + ".gguf"
          : args.output;

  QuantizeOptions options;
  options.preset = args.preset;
  options.nthreads = args.nthreads;
  options.imatrix_path = args.imatrix;
  options.stats = args.stats;
  const std::optional<Imatrix> imatrix = LoadImatrixFor(options);
  const QuantizePlan plan = PlanQuantization(*source, options, imatrix ? &*imatrix : nullptr);
  std::fprintf(
      stderr, "%s '%s' as %s to '%s' in one pass, %zu tensors, kernels: %s\n",
      args.from_source ? "quantizing (from source precision)" : "converting and quantizing",
      args.source.c_str(), plan.preset.name, output.c_str(), plan.tensors.size(), ActiveTarget());
  ConsoleProgress console(stderr);
  ProgressJsonSink json_sink(2);
  QuantizeProgressJson json_progress(&json_sink);
  QuantizeProgressListener* progress =
      args.progress_json ? static_cast<QuantizeProgressListener*>(&json_progress) : &console;
  const QuantizeResult result = RunQuantization(*source, plan, output, options, progress);
  if (args.progress_json) {
    if (options.stats) EmitTensorStatsJson(json_sink, plan, result);  // serve's quality view
    json_sink.Done(output, result.file_bytes, result.target_bytes, result.weights);
  }
  std::printf("wrote %s (%.2f MiB, %s) in %.2f s\n", output.c_str(),
              result.file_bytes / 1024.0 / 1024.0, plan.preset.name, result.seconds);
}

}  // namespace

void RegisterConvertCommands(CLI::App& app) {
  auto convert = std::make_shared<ConvertArgs>();
  CLI::App* c =
      app.add_subcommand("convert",
                         "Convert a Hugging Face safetensors folder to GGUF exactly as "
                         "convert_hf_to_gguf.py does.\n"
                         "  hwyquant convert HF_DIR OUT.gguf [--outtype auto|f32|f16|bf16|q8_0]\n"
                         "Architectures: " +
                             SupportedArchitectures());
  c->add_option("input", convert->input, "Hugging Face model folder (config.json, *.safetensors)")
      ->required();
  c->add_option("output", convert->output, "Output GGUF path")->required();
  c->add_option("--outtype", convert->outtype,
                "auto (f16, or bf16 for bf16 checkpoints), f32, f16, bf16, q8_0");
  c->callback([convert] { RunConvert(*convert); });

  auto run = std::make_shared<RunArgs>();
  CLI::App* r =
      app.add_subcommand("run",
                         "Convert and quantize in one streaming pass, without an intermediate "
                         "file. The output is\n"
                         "byte-identical to `convert` (outtype auto) followed by `quantize`.\n"
                         "  hwyquant run SRC TYPE [-o OUT.gguf]\n"
                         "SRC: a Hugging Face safetensors folder, a Hub id ORG/NAME[@REV] "
                         "(downloaded into the\n"
                         "Hugging Face cache, as `hwyquant fetch`), or a .gguf file. TYPE: " +
                             PresetNames());
  r->add_option("source", run->source, "Hugging Face model folder or GGUF file")->required();
  r->add_option("type", run->preset, "Quantization preset, e.g. Q4_K_M")->required();
  r->add_option("-o,--output", run->output, "Output GGUF (default: SRC-TYPE.gguf here)");
  r->add_option("-t,--threads", run->nthreads, "Threads (0: every core)");
  r->add_option("--imatrix", run->imatrix, "Importance matrix (GGUF or legacy .dat)");
  r->add_flag("--from-source", run->from_source,
              "Quantize from the checkpoint's own precision instead of the 16-bit "
              "intermediate "
              "that convert would write (output then differs from convert + quantize)");
  r->add_flag("--progress-json", run->progress_json,
              "Report progress as JSON lines on stderr (for hwyquant serve)");
  r->add_flag("--stats", run->stats,
              "Per-tensor RMSE, max |error| and ||Wx-W'x||/||Wx|| (JSON lines with "
              "--progress-json; slower)");
  AddHubCliOptions(r, &run->hub);
  r->callback([run] { RunRun(*run); });
}

}  // namespace hwyquant
