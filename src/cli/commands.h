#pragma once
#include <CLI/CLI.hpp>

namespace kt::cli {

void register_eval(CLI::App& app);
void register_generate(CLI::App& app);
// Runs whichever subcommand was parsed; returns the process exit code.
int run_selected(CLI::App& app);

}  // namespace kt::cli
