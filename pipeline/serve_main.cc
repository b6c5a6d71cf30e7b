// hwyquant-serve: the job server, a program of its own so that only it loads cpp-httplib (with
// OpenSSL) and SQLite; `hwyquant serve ARGS` executes it, and its jobs run the hwyquant beside it.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "pipeline/server.h"

int main(int argc, char** argv) {
  CLI::App app{"Run the quantization job server (LocalAI's /api/quantization API)",
               "hwyquant serve"};
  hwyquant::serve::ConfigureServeCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "hwyquant serve: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
