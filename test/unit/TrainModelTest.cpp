//===- TrainModelTest.cpp - lq-train's finite check and optimizer step ----===//
//
// Every training step checks every gradient for NaN and Inf before the
// optimizer may touch the weights; a step with one is skipped. The check
// is branch-free over blocks, so these cases put the bad value at block
// edges and in each tensor of each layer.
//
//===----------------------------------------------------------------------===//

#include "Model.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <iterator>
#include <limits>

using namespace lq;
using namespace lq::train;

namespace {

/// No GEMMs; parallelFor hands out uneven ranges, as several threads of
/// different counts would, or uses the runtime's threads.
class RangesGemms : public Gemms {
public:
  explicit RangesGemms(bool runtimeThreads) : runtimeThreads(runtimeThreads) {}
  Result<bool> forward(const float *, const float *, const float *, float *,
                       int64_t, int64_t, int64_t, bool, bool, int,
                       StepReport &) override {
    return Result<bool>::failure("no GEMMs here");
  }
  Result<bool> backwardData(const float *, const float *, float *, int64_t,
                            int64_t, int64_t, int, StepReport &) override {
    return Result<bool>::failure("no GEMMs here");
  }
  Result<bool> weightGrad(const float *, const float *, float *, int64_t,
                          int64_t, int64_t, bool, int, StepReport &) override {
    return Result<bool>::failure("no GEMMs here");
  }
  void parallelFor(
      int64_t count, int64_t grain,
      const std::function<void(int64_t, int64_t)> &body) override {
    if (runtimeThreads)
      return Runtime::get().parallelFor(count, grain, body);
    // Thirds, last first: ranges need not come in order.
    int64_t a = count / 3, b = 2 * count / 3;
    body(b, count);
    body(0, a);
    body(a, b);
  }

private:
  bool runtimeThreads;
};

Net makeMlp() {
  std::mt19937_64 rng(7);
  Result<Net> net = Net::make("mlp", 28, 28, rng);
  EXPECT_TRUE(bool(net));
  return std::move(*net);
}

class TrainModel : public ::testing::TestWithParam<bool> {
protected:
  RangesGemms gemms{GetParam()};
};

TEST_P(TrainModel, FreshGradientsAreFinite) {
  Net net = makeMlp();
  EXPECT_TRUE(net.gradientsFinite(gemms));
}

TEST_P(TrainModel, EveryNonFiniteValueAnywhereFailsTheCheck) {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       -std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  Net net = makeMlp();
  for (Params *p : net.parameters())
    for (std::vector<float> *g : {&p->gw, &p->gb}) {
      size_t n = g->size();
      // Both ends, both sides of the 4096-element blocks, the middle.
      for (size_t at : {size_t(0), size_t(4095), size_t(4096), n / 2, n - 1}) {
        if (at >= n)
          continue;
        for (float value : bad) {
          (*g)[at] = value;
          EXPECT_FALSE(net.gradientsFinite(gemms))
              << value << " at " << at << " of " << n;
          (*g)[at] = 0.0f;
        }
      }
    }
  EXPECT_TRUE(net.gradientsFinite(gemms));
}

TEST_P(TrainModel, ExtremeFiniteValuesPassTheCheck) {
  Net net = makeMlp();
  const float edge[] = {FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN, -0.0f,
                        std::nextafter(std::numeric_limits<float>::infinity(),
                                       0.0f)};
  for (Params *p : net.parameters())
    for (size_t i = 0; i < p->gw.size(); ++i)
      p->gw[i] = edge[i % std::size(edge)];
  EXPECT_TRUE(net.gradientsFinite(gemms));
}

TEST_P(TrainModel, SgdStepAppliesMomentumAndDecayToWeightsOnly) {
  Net net = makeMlp();
  const float lr = 0.05f, momentum = 0.9f, decay = 5e-4f;
  std::vector<Params> before;
  for (Params *p : net.parameters()) {
    for (size_t i = 0; i < p->gw.size(); ++i) {
      p->gw[i] = float(int(i % 7) - 3) * 0.25f;
      p->vw[i] = float(int(i % 5) - 2) * 0.5f;
    }
    for (size_t i = 0; i < p->gb.size(); ++i) {
      p->b[i] = 1.0f;
      p->gb[i] = 0.5f;
      p->vb[i] = -1.0f;
    }
    before.push_back(*p);
  }
  net.sgdStep(lr, momentum, decay, gemms);
  std::vector<Params *> after = net.parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t l = 0; l < after.size(); ++l) {
    const Params &p0 = before[l], &p1 = *after[l];
    for (size_t i = 0; i < p0.w.size(); ++i) {
      float v = momentum * p0.vw[i] + p0.gw[i] + decay * p0.w[i];
      ASSERT_FLOAT_EQ(p1.vw[i], v) << "layer " << l << " element " << i;
      ASSERT_FLOAT_EQ(p1.w[i], p0.w[i] - lr * v);
    }
    for (size_t i = 0; i < p0.b.size(); ++i) {
      // Biases are not decayed: 0.9 * -1 + 0.5.
      ASSERT_FLOAT_EQ(p1.vb[i], -0.4f);
      ASSERT_FLOAT_EQ(p1.b[i], 1.0f + lr * 0.4f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, TrainModel, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &info) {
                           return info.param ? "RuntimeThreads"
                                             : "UnevenRanges";
                         });

} // namespace
