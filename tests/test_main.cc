#include <gtest/gtest.h>

#include "util/blas_env.h"

int main(int argc, char** argv) {
  kt::ensure_runtime_env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
