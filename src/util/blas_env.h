// Process start-up fix-ups that must happen before OpenBLAS and OpenMP initialise.
#pragma once

namespace kt {

// OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons and falls back to its
// generic "Prescott" kernels (3-4x slower sgemm); and OpenMP threads that spin after a
// parallel region steal the cores OpenBLAS's own threads need. Both are read from the
// environment when the libraries load, so when either is unset this re-executes the
// program once with OPENBLAS_CORETYPE (chosen from CPUID) and OMP_WAIT_POLICY=passive.
// Users can override both by setting them.
void ensure_runtime_env(int argc, char** argv);

}  // namespace kt
