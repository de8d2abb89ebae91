#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace kt::cli {

void register_eval(CLI::App& app);
void register_generate(CLI::App& app);
void register_quantize(CLI::App& app);
void register_analyze(CLI::App& app);
void register_run(CLI::App& app);
void register_bench(CLI::App& app);
void register_info(CLI::App& app);
void register_export(CLI::App& app);
void register_runner(CLI::App* sub, std::function<int()> fn);
// Runs whichever subcommand was parsed; returns the process exit code.
int run_selected(CLI::App& app);

}  // namespace kt::cli
