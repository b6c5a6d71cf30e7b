// `hwyquant fetch ORG/NAME[@REV]` and the Hub-id support other commands (run) share with it.
#ifndef HWYQUANT_PIPELINE_FETCH_COMMAND_H_
#define HWYQUANT_PIPELINE_FETCH_COMMAND_H_

#include <string>

namespace CLI {
class App;
}

namespace hwyquant {

class ProgressJsonSink;

// Hub options a command exposes (see AddHubCliOptions); empty strings mean "from the
// environment" (HF_TOKEN, HF_HUB_CACHE/HF_HOME, HF_ENDPOINT).
struct HubCliOptions {
  std::string token;
  std::string cache_dir;
  std::string endpoint;
  bool offline = false;
  int jobs = 4;
  bool quiet = false;  // no progress display (errors and the result are still printed)
};

// Adds --token, --cache-dir, --endpoint, --offline and --download-jobs to `command`.
void AddHubCliOptions(CLI::App* command, HubCliOptions* options);

// When `source` is not an existing local path and has the shape ORG/NAME[@REV], downloads what
// conversion needs and returns the local snapshot folder; otherwise returns `source` unchanged.
// Progress goes to stderr (a bar on a terminal), or as "downloading" events to `json` when set.
std::string ResolveModelSource(const std::string& source, const HubCliOptions& options,
                               ProgressJsonSink* json);

// Downloads ORG/NAME@REV (see ResolveModelSource) and returns the snapshot folder.
std::string FetchForCommand(const std::string& spec, const HubCliOptions& options,
                            ProgressJsonSink* json);

// `hwyquant fetch ORG/NAME[@REVISION]`: prints the snapshot folder on stdout.
void RegisterFetchCommand(CLI::App& app);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_FETCH_COMMAND_H_
