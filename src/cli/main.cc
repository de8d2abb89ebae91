// kurtail command line: one subcommand per job. Every error becomes one line on stderr
// and a non-zero exit code.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "util/blas_env.h"
#include "util/error.h"
#include "util/interrupt.h"

int main(int argc, char** argv) {
  kt::ensure_runtime_env(argc, argv);
  CLI::App app{"kurtail: 4-bit weights, activations and KV cache for Llama-family models"};
  app.require_subcommand(1);
  kt::cli::register_eval(app);
  kt::cli::register_generate(app);
  kt::cli::register_quantize(app);
  kt::cli::register_analyze(app);
  kt::cli::register_run(app);
  kt::cli::register_info(app);
  kt::cli::register_export(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  kt::install_interrupt_handlers();
  try {
    return kt::cli::run_selected(app);
  } catch (const kt::Interrupted& e) {
    std::fprintf(stderr, "kurtail: %s\n", e.what());
    return 128 + e.signo;
  } catch (const kt::Error& e) {
    std::fprintf(stderr, "kurtail: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kurtail: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kurtail: error: %s\n", e.what());
    return 1;
  }
}
