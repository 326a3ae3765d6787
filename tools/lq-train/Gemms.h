//===- Gemms.h - the three GEMMs of a linear layer, two ways ----*- C++ -*-===//
//
// Training calls every GEMM through this interface: OpenBLAS SGEMM for the
// fp32 baseline, lq kernels (SAWB int4 forward, LUQ log4 backward) for the
// 4-bit modes. Matrices are row-major f32.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TRAIN_GEMMS_H
#define LQ_TRAIN_GEMMS_H

#include "lq/Runtime/Runtime.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lq::train {

/// What one training step's GEMMs reported.
struct StepReport {
  /// A gradient or activation held NaN/Inf: the step must be skipped.
  bool nonfinite = false;
  /// In-hindsight saturations (elements above the estimate).
  uint64_t overflow = 0;
};

class Gemms {
public:
  virtual ~Gemms() = default;
  /// y[B, O] = x[B, I] W[O, I]^T + b (ReLU); `nonnegativeInput` when x >= 0.
  virtual Result<bool> forward(const float *x, const float *w, const float *b,
                               float *y, int64_t batch, int64_t in,
                               int64_t out, bool relu, bool nonnegativeInput,
                               int layer, StepReport &report) = 0;
  /// dx[B, I] = dy[B, O] W[O, I].
  virtual Result<bool> backwardData(const float *dy, const float *w, float *dx,
                                    int64_t batch, int64_t in, int64_t out,
                                    int layer, StepReport &report) = 0;
  /// dW[O, I] = dy[B, O]^T x[B, I].
  virtual Result<bool> weightGrad(const float *dy, const float *x, float *dw,
                                  int64_t batch, int64_t in, int64_t out,
                                  bool nonnegativeInput, int layer,
                                  StepReport &report) = 0;
  /// Runs body(begin, end) on ranges that together cover [0, count), for
  /// a step's elementwise passes (the finite check, the optimizer), with
  /// at least `grain` items a thread: on the threads this backend's GEMMs
  /// run on, where it can share them and they are awake; by default on the
  /// calling thread.
  virtual void parallelFor(
      int64_t count, int64_t grain,
      const std::function<void(int64_t begin, int64_t end)> &body) {
    (void)grain;
    if (count > 0)
      body(0, count);
  }
  /// Called before each step with its seed (LUQ draws from it).
  virtual void beginStep(uint64_t seed) { (void)seed; }
  /// State carried from step to step (the in-hindsight estimates, per
  /// layer), for checkpoints; the step seed is not: beginStep sets it.
  virtual std::map<int, float> estimates() const { return {}; }
  virtual void restoreEstimates(const std::map<int, float> &saved) {
    (void)saved;
  }
};

/// OpenBLAS SGEMM.
std::unique_ptr<Gemms> makeFp32Gemms();

struct LqOptions {
  /// SMP samples of the gradient quantizer (a power of two).
  unsigned samples = 1;
  /// In-hindsight max scaling of gradients: m_hat(t) = (1 - eta) max|dy(t-1)|
  /// + eta m_hat(t-1), per layer.
  bool hindsight = false;
  float eta = 0.5f;
};

/// lq's generated kernels through the JIT runtime: on the host CPU, or
/// with `gpu` on the first CUDA device (an error without one).
Result<std::unique_ptr<Gemms>> makeLqGemms(const LqOptions &options,
                                           bool gpu);

/// Wall-clock seconds of each kind of GEMM call.
struct GemmTimes {
  double forward = 0, backwardData = 0, weightGrad = 0;
  double total() const { return forward + backwardData + weightGrad; }
};

/// `inner`, timing each call into `times` (for lq-train --profile). Both
/// must outlive the result.
std::unique_ptr<Gemms> makeTimedGemms(Gemms &inner, GemmTimes &times);

/// Fine-tuning in high precision (FNT): `forward`'s forward GEMM, and
/// `backward`'s backward-data and weight-gradient GEMMs. Both must outlive
/// the result.
std::unique_ptr<Gemms> makeFineTuneGemms(Gemms &forward, Gemms &backward);

} // namespace lq::train

#endif // LQ_TRAIN_GEMMS_H
