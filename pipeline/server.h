// `hwyquant serve`: LocalAI's quantization job API over HTTP (cpp-httplib), jobs run by JobManager.
#ifndef HWYQUANT_PIPELINE_SERVER_H_
#define HWYQUANT_PIPELINE_SERVER_H_

#include <cstddef>
#include <string>

namespace CLI {
class App;
}

namespace hwyquant::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";  // loopback unless the user asks otherwise
  int port = 8080;                 // 0: any free port (the chosen one is printed)
  std::string data_dir;            // empty: $XDG_DATA_HOME/hwyquant or ~/.local/share/hwyquant
  std::string api_key;             // empty: no authentication
  int max_concurrent = 1;
  size_t max_body_bytes = 64 * 1024;
};

// The data directory used when --data-dir is not given.
std::string DefaultDataDir();

// Runs the server until SIGINT or SIGTERM; returns the process exit code. Prints
// "hwyquant serve: listening on http://HOST:PORT" on stdout once it accepts connections.
int RunServer(const ServeOptions& options);

// Gives cmd the server's options and a callback that runs it. hwyquant-serve (serve_main.cc) is
// this command; `hwyquant serve` executes it.
void ConfigureServeCommand(CLI::App& cmd);

}  // namespace hwyquant::serve

#endif  // HWYQUANT_PIPELINE_SERVER_H_
