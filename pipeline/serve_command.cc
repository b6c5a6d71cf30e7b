// `hwyquant serve`: executes hwyquant-serve from the same directory with the same arguments, so
// that quantizing never loads the server's libraries (they cost 4.5 ms of start-up, measured).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/commands.h"
#include "pipeline/sibling_program.h"

namespace hwyquant {

void RegisterServeCommand(CLI::App& app) {
  CLI::App* cmd =
      app.add_subcommand("serve",
                         "Run the quantization job server (LocalAI's /api/quantization API; "
                         "`hwyquant serve --help` lists its options)");
  cmd->prefix_command();  // every argument goes to hwyquant-serve, which checks them
  cmd->set_help_flag();   // ... --help included
  cmd->callback([cmd] {
    const std::string server = SiblingProgram("hwyquant-serve");
    std::vector<std::string> args = cmd->remaining();
    std::vector<char*> argv = {const_cast<char*>(server.c_str())};
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    ::execv(server.c_str(), argv.data());
    throw Error("cannot run the job server '" + server +
                "' (installed beside hwyquant): " + std::strerror(errno));
  });
}

}  // namespace hwyquant
