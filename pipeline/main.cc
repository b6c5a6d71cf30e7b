// hwyquant: the command-line tool; every subcommand registers itself (see pipeline/commands.h).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "hwyquant/format.h"
#include "pipeline/commands.h"
#include "pipeline/convert.h"
#include "pipeline/output_file.h"

int main(int argc, char** argv) {
  hwyquant::RemoveTemporariesOnTerminationSignals();
  CLI::App app{"hwyquant: exact, fast GGUF quantization (bit-identical to llama-quantize)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hwyquant 0.1.0");

  // One line per command.
  hwyquant::RegisterQuantizeCommand(app);
  hwyquant::RegisterFetchCommand(app);
  hwyquant::RegisterConvertCommands(app);
  hwyquant::RegisterServeCommand(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const hwyquant::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "hwyquant: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "hwyquant: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
