#include <gtest/gtest.h>

#include "test_util.h"
#include "util/blas_env.h"

int main(int argc, char** argv) {
  kt::ensure_runtime_env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  kt::test::remove_temp_dirs();
  return rc;
}
