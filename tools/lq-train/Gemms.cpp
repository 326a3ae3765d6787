//===- Gemms.cpp - the three GEMMs of a linear layer, two ways ------------===//

#include "Gemms.h"

#include <cblas.h>

#ifdef LQ_TRAIN_CUDA
#include "lq/Runtime/CudaDriver.h"
#endif

#include <chrono>
#include <cmath>

using namespace lq;
using namespace lq::train;

namespace {

/// OpenBLAS offers no way to run other work on its threads, and waking
/// lq's runtime threads beside OpenBLAS's (which spin after each call)
/// made the baseline's finite check and optimizer slower (0.14 and 0.20 s
/// per MLP epoch against 0.07 and 0.12 s on the calling thread alone on a
/// 2-core Xeon), so the fp32 baseline keeps Gemms' serial parallelFor.
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

/// Runs a kernel on host memory: directly, or (GPU) through device copies.
class Launcher {
public:
  virtual ~Launcher() = default;
  virtual Result<LaunchStatus> launch(const Kernel &kernel,
                                      const LaunchArgs &args) = 0;
  virtual Target target() const = 0;
};

class HostLauncher : public Launcher {
public:
  Result<LaunchStatus> launch(const Kernel &kernel,
                              const LaunchArgs &args) override {
    return kernel.launch(args);
  }
  Target target() const override { return Target::HostCPU; }
};

#ifdef LQ_TRAIN_CUDA
/// Copies each GEMM's operands to the GPU, launches there and copies the
/// result back: every GEMM runs on the GPU while the training loop stays
/// host code.
class CudaLauncher : public Launcher {
public:
  static Result<std::unique_ptr<Launcher>> create() {
    using R = Result<std::unique_ptr<Launcher>>;
    // The runtime makes device 0's primary context current if none is.
    Result<Target> target = Runtime::get().cudaTarget();
    if (!target)
      return R::failure(target.error());
    Result<cuda::CudaDriver *> driver = cuda::CudaDriver::get();
    if (!driver)
      return R::failure(driver.error());
    return std::unique_ptr<Launcher>(new CudaLauncher(**driver, *target));
  }

  Result<LaunchStatus> launch(const Kernel &kernel,
                              const LaunchArgs &hostArgs) override {
    using R = Result<LaunchStatus>;
    LaunchArgs args = hostArgs;
    TensorRef *tensors[3] = {&args.lhs, &args.rhs, &args.out};
    for (int i = 0; i < 3; ++i) {
      TensorRef &t = *tensors[i];
      size_t bytes = size_t(t.rows * t.rowStride) * sizeof(float);
      Result<bool> ok = ensure(buffers[i], bytes);
      if (!ok)
        return R::failure(ok.error());
      if (i < 2)
        if (Status s = driver.copyToDevice(buffers[i].address(), t.data,
                                                bytes, nullptr);
            !s)
          return R::failure(s.error());
      t.data = buffers[i].data();
      t.device = Device::CUDA;
    }
    if (args.bias) {
      size_t bytes = size_t(args.biasLength) * sizeof(float);
      Result<bool> ok = ensure(buffers[3], bytes);
      if (!ok)
        return R::failure(ok.error());
      if (Status s = driver.copyToDevice(buffers[3].address(), args.bias,
                                              bytes, nullptr);
          !s)
        return R::failure(s.error());
      args.bias = static_cast<const float *>(buffers[3].data());
    }
    Result<LaunchStatus> status = kernel.launch(args);
    if (!status)
      return status;
    const TensorRef &out = hostArgs.out;
    if (Status s = driver.copyToHost(
            out.data, buffers[2].address(),
            size_t(out.rows * out.rowStride) * sizeof(float), nullptr);
        !s)
      return R::failure(s.error());
    if (Status s = driver.synchronize(nullptr); !s)
      return R::failure(s.error());
    return status;
  }
  Target target() const override { return gpuTarget; }

private:
  CudaLauncher(cuda::CudaDriver &driver, Target target)
      : driver(driver), gpuTarget(target) {}

  Result<bool> ensure(cuda::DeviceBuffer &buffer, size_t bytes) {
    if (buffer.size() >= bytes)
      return true;
    Result<cuda::DeviceBuffer> grown = cuda::DeviceBuffer::allocate(bytes);
    if (!grown)
      return Result<bool>::failure(grown.error());
    buffer = std::move(*grown);
    return true;
  }

  cuda::CudaDriver &driver;
  Target gpuTarget;
  cuda::DeviceBuffer buffers[4];
};
#endif

class LqGemms : public Gemms {
public:
  LqGemms(const LqOptions &options, std::unique_ptr<Launcher> launcher)
      : options(options), launcher(std::move(launcher)) {}

  void beginStep(uint64_t stepSeed) override { seed = stepSeed; }
  /// Host kernels: the runtime's threads, still spinning from the step's
  /// last launch. GPU kernels leave them asleep: the calling thread.
  void parallelFor(
      int64_t count, int64_t grain,
      const std::function<void(int64_t, int64_t)> &body) override {
    if (launcher->target() == Target::HostCPU)
      Runtime::get().parallelFor(count, grain, body);
    else
      Gemms::parallelFor(count, grain, body);
  }
  std::map<int, float> estimates() const override { return maxEstimates; }
  void restoreEstimates(const std::map<int, float> &saved) override {
    maxEstimates = saved;
  }

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
  Result<bool> run(GemmSpec spec, LaunchArgs &args, StepReport &report,
                   LaunchStatus *statusOut = nullptr) {
    spec.target = launcher->target();
    std::string key = spec.describe();
    auto it = kernels.find(key);
    if (it == kernels.end()) {
      Result<Kernel> kernel = Runtime::get().compile(spec);
      if (!kernel)
        return Result<bool>::failure(kernel.error());
      it = kernels.emplace(key, *kernel).first;
    }
    Result<LaunchStatus> status = launcher->launch(it->second, args);
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
    auto estimate = maxEstimates.find(layer);
    bool useEstimate = options.hindsight && estimate != maxEstimates.end();
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
      maxEstimates[layer] =
          (1.0f - options.eta) * max + options.eta * estimate->second;
    else if (max > 0.0f && std::isfinite(max))
      maxEstimates[layer] = max;
    return ok;
  }

  LqOptions options;
  std::unique_ptr<Launcher> launcher;
  uint64_t seed = 0;
  std::map<std::string, Kernel> kernels;
  std::map<int, float> maxEstimates;
};

class FineTuneGemms : public Gemms {
public:
  FineTuneGemms(Gemms &forwardGemms, Gemms &backwardGemms)
      : forwardGemms(forwardGemms), backwardGemms(backwardGemms) {}

  void beginStep(uint64_t stepSeed) override {
    forwardGemms.beginStep(stepSeed);
    backwardGemms.beginStep(stepSeed);
  }
  /// The elementwise passes follow the backward GEMMs.
  void parallelFor(
      int64_t count, int64_t grain,
      const std::function<void(int64_t, int64_t)> &body) override {
    backwardGemms.parallelFor(count, grain, body);
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

/// Adds the wall-clock time of every call of `inner` to a GemmTimes.
class TimedGemms : public Gemms {
public:
  TimedGemms(Gemms &inner, GemmTimes &times) : inner(inner), times(times) {}

  void beginStep(uint64_t stepSeed) override { inner.beginStep(stepSeed); }
  void parallelFor(
      int64_t count, int64_t grain,
      const std::function<void(int64_t, int64_t)> &body) override {
    inner.parallelFor(count, grain, body);
  }
  std::map<int, float> estimates() const override {
    return inner.estimates();
  }
  void restoreEstimates(const std::map<int, float> &saved) override {
    inner.restoreEstimates(saved);
  }
  Result<bool> forward(const float *x, const float *w, const float *b,
                       float *y, int64_t batch, int64_t in, int64_t out,
                       bool relu, bool nonnegativeInput, int layer,
                       StepReport &report) override {
    return timed(times.forward, [&] {
      return inner.forward(x, w, b, y, batch, in, out, relu, nonnegativeInput,
                           layer, report);
    });
  }
  Result<bool> backwardData(const float *dy, const float *w, float *dx,
                            int64_t batch, int64_t in, int64_t out, int layer,
                            StepReport &report) override {
    return timed(times.backwardData, [&] {
      return inner.backwardData(dy, w, dx, batch, in, out, layer, report);
    });
  }
  Result<bool> weightGrad(const float *dy, const float *x, float *dw,
                          int64_t batch, int64_t in, int64_t out,
                          bool nonnegativeInput, int layer,
                          StepReport &report) override {
    return timed(times.weightGrad, [&] {
      return inner.weightGrad(dy, x, dw, batch, in, out, nonnegativeInput,
                              layer, report);
    });
  }

private:
  template <typename Call>
  static Result<bool> timed(double &seconds, Call call) {
    auto start = std::chrono::steady_clock::now();
    Result<bool> result = call();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             start)
                   .count();
    return result;
  }

  Gemms &inner;
  GemmTimes &times;
};

} // namespace

std::unique_ptr<Gemms> lq::train::makeTimedGemms(Gemms &inner,
                                                 GemmTimes &times) {
  return std::make_unique<TimedGemms>(inner, times);
}

std::unique_ptr<Gemms> lq::train::makeFineTuneGemms(Gemms &forward,
                                                    Gemms &backward) {
  return std::make_unique<FineTuneGemms>(forward, backward);
}

std::unique_ptr<Gemms> lq::train::makeFp32Gemms() {
  return std::make_unique<Fp32Gemms>();
}

Result<std::unique_ptr<Gemms>> lq::train::makeLqGemms(const LqOptions &options,
                                                     bool gpu) {
  using R = Result<std::unique_ptr<Gemms>>;
  std::unique_ptr<Launcher> launcher;
  if (gpu) {
#ifdef LQ_TRAIN_CUDA
    Result<std::unique_ptr<Launcher>> cuda = CudaLauncher::create();
    if (!cuda)
      return R::failure(cuda.error());
    launcher = std::move(*cuda);
#else
    return R::failure("this lq-train was built without CUDA support");
#endif
  } else {
    launcher = std::make_unique<HostLauncher>();
  }
  return std::unique_ptr<Gemms>(
      std::make_unique<LqGemms>(options, std::move(launcher)));
}
