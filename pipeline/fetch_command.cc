// `hwyquant fetch`: downloads a Hub model into the huggingface_hub cache, prints the snapshot path.
#include "pipeline/fetch_command.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "pipeline/hf_hub.h"
#include "pipeline/progress_json.h"

namespace hwyquant {
namespace {

struct FetchArgs {
  std::string spec;
  std::string revision;
  HubCliOptions hub;
  bool quiet = false;
  bool progress_json = false;
};

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void RunFetch(const FetchArgs& args) {
  std::string spec = args.spec;
  if (!args.revision.empty()) {
    if (spec.find('@') != std::string::npos) {
      throw Error("fetch: give the revision either as ORG/NAME@REV or with --revision, not both");
    }
    spec += "@" + args.revision;
  }
  std::unique_ptr<ProgressJsonSink> json;
  if (args.progress_json) json = std::make_unique<ProgressJsonSink>(2);
  HubCliOptions hub = args.hub;
  hub.quiet = args.quiet;
  std::string snapshot;
  try {
    snapshot = FetchForCommand(spec, hub, json.get());
  } catch (const Error& e) {
    if (json) json->Failed(e.what());
    throw;
  }
  if (json) json->Done(snapshot, 0, 0);
  std::printf("%s\n", snapshot.c_str());
}

}  // namespace

void AddHubCliOptions(CLI::App* command, HubCliOptions* options) {
  command->add_option("--token", options->token,
                      "Hugging Face token for gated or private repositories (default: $HF_TOKEN, "
                      "then the huggingface-cli login token file)");
  command->add_option("--cache-dir", options->cache_dir,
                      "Hub cache (default: $HF_HUB_CACHE, else $HF_HOME/hub, else "
                      "~/.cache/huggingface/hub)");
  command->add_option("--endpoint", options->endpoint,
                      "Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)");
  command->add_flag("--offline", options->offline, "Use only the cache (also $HF_HUB_OFFLINE=1)");
  command->add_option("--download-jobs", options->jobs, "Files downloaded in parallel")
      ->check(CLI::Range(1, 32));
}

std::string FetchForCommand(const std::string& spec, const HubCliOptions& hub,
                            ProgressJsonSink* json) {
  const hf::RepoSpec parsed = hf::ParseRepoSpec(spec);
  hf::FetchOptions options;
  options.repo_id = parsed.repo_id;
  options.revision = parsed.revision;
  options.cache_dir = hub.cache_dir;
  options.http.endpoint = hub.endpoint;
  options.http.token = hub.token;
  hf::ApplyTimeoutEnvironment(&options.http);
  options.offline = hub.offline;
  options.parallel_downloads = hub.jobs;

  hf::TerminalProgress terminal(stderr);
  if (json) {
    options.on_progress = [json](const hf::DownloadProgress& p) {
      ProgressEvent event;
      event.stage = "downloading";
      event.done = p.done;
      event.total = p.total;
      event.unit = "bytes";
      event.message = (p.file_finished ? "downloaded " : "downloading ") + p.file;
      json->Emit(std::move(event));
    };
  } else if (!hub.quiet) {
    options.on_progress = terminal.Callback();
  }
  options.on_log = [&terminal](const std::string& message) {
    terminal.Finish();
    std::fprintf(stderr, "%s\n", message.c_str());
  };
  if (!hub.quiet) {
    std::fprintf(stderr, "fetching %s@%s from the Hub\n", options.repo_id.c_str(),
                 options.revision.c_str());
  }
  std::string snapshot;
  try {
    snapshot = hf::FetchModel(options);
  } catch (...) {
    terminal.Finish();
    throw;
  }
  terminal.Finish();
  if (!hub.quiet) std::fprintf(stderr, "snapshot: %s\n", snapshot.c_str());
  return snapshot;
}

std::string ResolveModelSource(const std::string& source, const HubCliOptions& options,
                               ProgressJsonSink* json) {
  if (PathExists(source) || !hf::LooksLikeHubRepoId(source)) return source;
  try {
    return FetchForCommand(source, options, json);
  } catch (const hf::HubError& e) {
    throw Error("'" + source +
                "' is not a local path, and as a Hugging Face Hub model id: " + e.what());
  }
}

void RegisterFetchCommand(CLI::App& app) {
  auto args = std::make_shared<FetchArgs>();
  CLI::App* command = app.add_subcommand(
      "fetch",
      "Download a model from the Hugging Face Hub into the huggingface_hub cache (shared with\n"
      "Python tools) and print its local snapshot folder, usable as SRC of convert and run.\n"
      "Only what conversion needs is downloaded: the model card, configs, tokenizer files and the\n"
      "safetensors weights (never .bin/.pth/.gguf).\n"
      "  hwyquant fetch ORG/NAME[@REVISION] [--token T] [--cache-dir DIR]");
  command->add_option("model", args->spec, "Hub model id ORG/NAME, optionally @REVISION")
      ->required();
  command->add_option("--revision", args->revision, "Branch, tag or commit (default: main)");
  AddHubCliOptions(command, &args->hub);
  command->add_flag("-q,--quiet", args->quiet, "No progress display");
  command->add_flag("--progress-json", args->progress_json,
                    "Machine-readable progress lines on stderr (for hwyquant serve)");
  command->callback([args] { RunFetch(*args); });
}

}  // namespace hwyquant
