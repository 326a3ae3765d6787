//===- Gemms.cpp - the three GEMMs of a linear layer, two ways ------------===//

#include "Gemms.h"

#include <cblas.h>

#include <cmath>

using namespace lq;
using namespace lq::train;

namespace {

class Fp32Gemms : public Gemms {
public:
  Result<bool> forward(const float *x, const float *w, const float *b,
                       float *y, int64_t batch, int64_t in, int64_t out,
                       bool relu, bool, int, StepReport &) override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(batch), int(out),
                int(in), 1.0f, x, int(in), w, int(in), 0.0f, y, int(out));
    for (int64_t r = 0; r < batch; ++r)
      for (int64_t c = 0; c < out; ++c) {
        float v = y[r * out + c] + b[c];
        y[r * out + c] = relu ? std::fmax(v, 0.0f) : v;
      }
    return true;
  }
  Result<bool> backwardData(const float *dy, const float *w, float *dx,
                            int64_t batch, int64_t in, int64_t out, int,
                            StepReport &) override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(batch), int(in),
                int(out), 1.0f, dy, int(out), w, int(in), 0.0f, dx, int(in));
    return true;
  }
  Result<bool> weightGrad(const float *dy, const float *x, float *dw,
                          int64_t batch, int64_t in, int64_t out, bool, int,
                          StepReport &) override {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(out), int(in),
                int(batch), 1.0f, dy, int(out), x, int(in), 0.0f, dw, int(in));
    return true;
  }
};

class LqGemms : public Gemms {
public:
  explicit LqGemms(const LqOptions &options) : options(options) {}

  void beginStep(uint64_t stepSeed) override { seed = stepSeed; }

  Result<bool> forward(const float *x, const float *w, const float *b,
                       float *y, int64_t batch, int64_t in, int64_t out,
                       bool relu, bool nonnegativeInput, int,
                       StepReport &report) override {
    GemmSpec spec = GemmSpec::forward(DType::F32, nonnegativeInput);
    spec.bias = true;
    spec.relu = relu;
    LaunchArgs args;
    args.lhs = TensorRef::f32(x, batch, in);
    args.rhs = TensorRef::f32(w, out, in);
    args.out = TensorRef::f32(y, batch, out);
    args.bias = b;
    args.biasLength = out;
    return run(spec, args, report);
  }

  Result<bool> backwardData(const float *dy, const float *w, float *dx,
                            int64_t batch, int64_t in, int64_t out, int layer,
                            StepReport &report) override {
    GemmSpec spec = GemmSpec::backwardData(DType::F32, options.samples);
    LaunchArgs args;
    args.lhs = TensorRef::f32(dy, batch, out);
    args.rhs = TensorRef::f32(w, out, in);
    args.out = TensorRef::f32(dx, batch, in);
    return runGradient(spec, args, layer, report, /*updatesEstimate=*/false);
  }

  Result<bool> weightGrad(const float *dy, const float *x, float *dw,
                          int64_t batch, int64_t in, int64_t out,
                          bool nonnegativeInput, int layer,
                          StepReport &report) override {
    GemmSpec spec =
        GemmSpec::weightGrad(DType::F32, options.samples, nonnegativeInput);
    LaunchArgs args;
    args.lhs = TensorRef::f32(dy, batch, out);
    args.rhs = TensorRef::f32(x, batch, in);
    args.out = TensorRef::f32(dw, out, in);
    return runGradient(spec, args, layer, report, /*updatesEstimate=*/true);
  }

private:
  Result<bool> run(const GemmSpec &spec, LaunchArgs &args, StepReport &report,
                   LaunchStatus *statusOut = nullptr) {
    std::string key = spec.describe();
    auto it = kernels.find(key);
    if (it == kernels.end()) {
      Result<Kernel> kernel = Runtime::get().compile(spec);
      if (!kernel)
        return Result<bool>::failure(kernel.error());
      it = kernels.emplace(key, *kernel).first;
    }
    Result<LaunchStatus> status = it->second.launch(args);
    if (!status)
      return Result<bool>::failure(status.error());
    report.nonfinite |= status->nonfinite;
    report.overflow += status->overflow;
    if (statusOut)
      *statusOut = *status;
    return true;
  }

  /// Both backward GEMMs of a layer draw one LUQ sample: the same seed and
  /// stream (the layer) and, in hindsight mode, the same estimate.
  Result<bool> runGradient(GemmSpec spec, LaunchArgs &args, int layer,
                           StepReport &report, bool updatesEstimate) {
    args.seed = seed;
    args.stream = uint32_t(layer);
    auto estimate = estimates.find(layer);
    bool useEstimate = options.hindsight && estimate != estimates.end();
    if (useEstimate) {
      spec.hindsight = true;
      args.maxEstimate = estimate->second;
    }
    LaunchStatus status;
    Result<bool> ok = run(spec, args, report, &status);
    if (!ok || !options.hindsight || !updatesEstimate || status.nonfinite)
      return ok;
    // The next step's estimate from this step's max |dy|.
    float max = status.lhsMax;
    if (useEstimate)
      estimates[layer] =
          (1.0f - options.eta) * max + options.eta * estimate->second;
    else if (max > 0.0f && std::isfinite(max))
      estimates[layer] = max;
    return ok;
  }

  LqOptions options;
  uint64_t seed = 0;
  std::map<std::string, Kernel> kernels;
  std::map<int, float> estimates;
};

class FineTuneGemms : public Gemms {
public:
  FineTuneGemms(Gemms &forwardGemms, Gemms &backwardGemms)
      : forwardGemms(forwardGemms), backwardGemms(backwardGemms) {}

  void beginStep(uint64_t stepSeed) override {
    forwardGemms.beginStep(stepSeed);
    backwardGemms.beginStep(stepSeed);
  }
  Result<bool> forward(const float *x, const float *w, const float *b,
                       float *y, int64_t batch, int64_t in, int64_t out,
                       bool relu, bool nonnegativeInput, int layer,
                       StepReport &report) override {
    return forwardGemms.forward(x, w, b, y, batch, in, out, relu,
                                nonnegativeInput, layer, report);
  }
  Result<bool> backwardData(const float *dy, const float *w, float *dx,
                            int64_t batch, int64_t in, int64_t out, int layer,
                            StepReport &report) override {
    return backwardGemms.backwardData(dy, w, dx, batch, in, out, layer,
                                      report);
  }
  Result<bool> weightGrad(const float *dy, const float *x, float *dw,
                          int64_t batch, int64_t in, int64_t out,
                          bool nonnegativeInput, int layer,
                          StepReport &report) override {
    return backwardGemms.weightGrad(dy, x, dw, batch, in, out,
                                    nonnegativeInput, layer, report);
  }

private:
  Gemms &forwardGemms, &backwardGemms;
};

} // namespace

std::unique_ptr<Gemms> lq::train::makeFineTuneGemms(Gemms &forward,
                                                    Gemms &backward) {
  return std::make_unique<FineTuneGemms>(forward, backward);
}

std::unique_ptr<Gemms> lq::train::makeFp32Gemms() {
  return std::make_unique<Fp32Gemms>();
}

std::unique_ptr<Gemms> lq::train::makeLqGemms(const LqOptions &options) {
  return std::make_unique<LqGemms>(options);
}
