// Diagnostic metrics against hand-computed cases, and the streamed accumulation against the
// direct formulas on a real model's activations.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/diagnostics.h"
#include "test_util.h"
#include "transform/kurtail.h"

namespace kt {
namespace {

TEST(Diagnostics, ChannelMagnitudesByHand) {
  // channels: (3, 4) -> 5, (0, 0) -> 0, (6, 8) -> 10: mean 5, std sqrt(50/3), cv sqrt(50/3)/5
  const float X[] = {3, 0, 6, 4, 0, 8};
  double sd, cv;
  channel_magnitude_stats(X, 2, 3, &sd, &cv);
  EXPECT_NEAR(sd, std::sqrt(50.0 / 3), 1e-9);
  EXPECT_NEAR(cv, std::sqrt(50.0 / 3) / 5, 1e-9);
}

TEST(Diagnostics, ChannelKurtosisByHand) {
  // channel 0: +-1 alternating -> kurtosis 1; channel 1: {0,0,0,4} -> c = {-1,-1,-1,3}:
  // m2 = 3, m4 = 21 -> 21/9; channel 2 constant -> skipped
  const float X[] = {1, 0, 5, -1, 0, 5, 1, 0, 5, -1, 4, 5};
  EXPECT_NEAR(mean_channel_kurtosis(X, 4, 3), (1.0 + 21.0 / 9) / 2, 1e-9);
}

TEST(Diagnostics, StreamedStatsMatchDirectFormulas) {
  auto m = Model::open(test::tinyllama());
  auto toks = tokenize_file(*m->tokenizer, test::data() + "/text/calib.txt");
  Windows w = make_windows(toks, 64, 2, "calib");
  QuantSpec zs;
  zs.bits = 4;
  // capture layer 0's attention input directly
  struct Grab : Hooks {
    std::vector<float> x;
    void on_activation(int layer, Site site, float* p, int64_t rows, int64_t cols) override {
      if (layer == 0 && site == Site::AttnIn) x.insert(x.end(), p, p + rows * cols);
    }
  } grab;
  EvalOptions eo;
  eo.progress = false;
  run_windows(Session(*m).observed(&grab), w, eo, [](int, const float*) {});
  auto d = collect_diagnostics(*m, w, zs, false);
  const SiteStats& st = d[0].site[(int)Site::AttnIn];
  const int64_t cols = m->spec.hidden, rows = (int64_t)grab.x.size() / cols;
  ASSERT_EQ(st.rows, rows);
  double km;
  row_kurtosis(grab.x.data(), rows, (int)cols, &km, nullptr);
  EXPECT_NEAR(st.kurt_mean, km, 1e-9 * km);
  EXPECT_NEAR(st.chan_kurt_mean, mean_channel_kurtosis(grab.x.data(), rows, cols), 1e-6 * st.chan_kurt_mean);
  double sd, cv;
  channel_magnitude_stats(grab.x.data(), rows, cols, &sd, &cv);
  EXPECT_NEAR(st.chan_mag_cv, cv, 1e-9);
  EXPECT_NEAR(st.zero_share, zero_share_ref(grab.x.data(), rows, cols, zs), 1e-9);
  float amax = 0;
  for (float v : grab.x) amax = std::max(amax, std::fabs(v));
  EXPECT_EQ(st.absmax, amax);
  EXPECT_GT(st.layer_error, 0);
}

}  // namespace
}  // namespace kt
