// Subcommands of the hwyquant CLI. Each command lives in its own file and adds itself to the app
// through one registration function; main.cc calls every Register*Command once.
//
// To add a command: declare `void RegisterFooCommand(CLI::App& app);` here (or in your own
// header), implement it with app.add_subcommand("foo", ...) and a callback that does the work,
// and add one line `RegisterFooCommand(app);` to main.cc. In the callback, report failures by
// throwing hwyquant::Error (main prints "hwyquant: error: <message>" and exits 1) or
// CLI::RuntimeError(code) for a specific exit code.
#ifndef HWYQUANT_PIPELINE_COMMANDS_H_
#define HWYQUANT_PIPELINE_COMMANDS_H_

namespace CLI {
class App;
}

namespace hwyquant {

// `hwyquant quantize [options] IN.gguf OUT.gguf TYPE [nthreads]` (pipeline/quantize_command.cc).
void RegisterQuantizeCommand(CLI::App& app);

// `hwyquant fetch ORG/NAME[@REV]` (pipeline/fetch_command.cc; Hub helpers in fetch_command.h).
void RegisterFetchCommand(CLI::App& app);

// `hwyquant serve [options]`, which runs hwyquant-serve (pipeline/serve_command.cc).
void RegisterServeCommand(CLI::App& app);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_COMMANDS_H_
