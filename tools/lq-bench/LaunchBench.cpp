//===- LaunchBench.cpp - the cost of launching a tiny GEMM ----------------===//
//
// A layer of a small model makes GEMMs of a few thousand multiply-adds,
// where the arithmetic takes well under a microsecond and what a launch
// costs besides it (checks, finding workspace, handing work to threads)
// is the whole price. These benchmarks launch an already compiled kernel
// on 16x16x16 again and again, beside an ordinary C++ function computing
// the same product in f32: the floor a launch is compared with.
//
//===----------------------------------------------------------------------===//

#include "LaunchBench.h"

#include <cmath>

namespace lq::bench {
namespace {

/// y[M, N] = a[M, K] b[N, K]^T in f32: the forward GEMM a caller could
/// write by hand. Not inlined, so that each iteration pays for a call.
__attribute__((noinline)) void plainForward(const float *a, const float *b,
                                            float *y, int64_t m, int64_t n,
                                            int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < k; ++p)
        sum += a[i * k + p] * b[j * k + p];
      y[i * n + j] = sum;
    }
}

/// Stored shapes of a role's operands for M = N = K = kTinySize: all
/// square, so only the transposes differ.
struct TinyOperands {
  const std::vector<float> &a = randomBuffer(kTinySize * kTinySize, 11);
  const std::vector<float> &b = randomBuffer(kTinySize * kTinySize, 12);
};

/// The f32 product the role's GEMM approximates, from stored operands.
std::vector<float> tinyReference(Role role, const TinyOperands &in) {
  GemmSpec spec = specOf(role);
  int64_t n = kTinySize;
  std::vector<float> y(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < n; ++p) {
        float a = spec.lhs.transposed ? in.a[p * n + i] : in.a[i * n + p];
        float b = spec.rhs.transposed ? in.b[j * n + p] : in.b[p * n + j];
        sum += double(a) * double(b);
      }
      y[i * n + j] = float(sum);
    }
  return y;
}

/// A wrong operand or transpose gives an uncorrelated output (relative
/// error near 1 or more); 4-bit quantization noise stays far below.
bool approximates(const std::vector<float> &y, const std::vector<float> &ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den > 0.0 && std::sqrt(num / den) <= 0.75;
}

void benchCachedLaunch(benchmark::State &state, Role role) {
  TinyOperands in;
  auto kernel = Runtime::get().compile(specOf(role));
  if (!kernel) {
    state.SkipWithError(("compile failed: " + kernel.error()).c_str());
    return;
  }
  std::vector<float> y(size_t(kTinySize * kTinySize), 0.0f);
  LaunchArgs args;
  args.lhs = TensorRef::f32(in.a.data(), kTinySize, kTinySize);
  args.rhs = TensorRef::f32(in.b.data(), kTinySize, kTinySize);
  args.out = TensorRef::f32(y.data(), kTinySize, kTinySize);
  args.seed = 0x5eed;
  auto warm = kernel->launch(args);
  if (!warm || !approximates(y, tinyReference(role, in))) {
    state.SkipWithError(warm ? "output is not an approximation of the f32 "
                               "product"
                             : ("launch failed: " + warm.error()).c_str());
    return;
  }
  for (auto _ : state) {
    auto status = kernel->launch(args);
    if (!status) {
      state.SkipWithError(("launch failed: " + status.error()).c_str());
      break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel("lq threads=" + std::to_string(Runtime::get().threads()));
}

void benchPlainCall(benchmark::State &state) {
  TinyOperands in;
  std::vector<float> y(size_t(kTinySize * kTinySize), 0.0f);
  for (auto _ : state) {
    plainForward(in.a.data(), in.b.data(), y.data(), kTinySize, kTinySize,
                 kTinySize);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel("f32, one thread");
}

} // namespace

std::string launchName(const char *impl, Role role) {
  std::string n = std::to_string(kTinySize);
  return std::string("launch/") + impl + "/" + roleName(role) + "/m" + n + "n" +
         n + "k" + n;
}

std::vector<Role> registerLaunchBenchmarks() {
  std::vector<Role> roles = {Role::Forward, Role::BackwardData};
  auto tune = [](benchmark::internal::Benchmark *b) {
    b->UseRealTime()->Unit(benchmark::kMicrosecond);
    if (options.quick)
      b->Iterations(10);
    else
      b->MinTime(0.2);
    repeatThroughput(b);
  };
  for (Role role : roles)
    tune(benchmark::RegisterBenchmark(
        launchName("lq-cached", role).c_str(),
        [role](benchmark::State &s) { benchCachedLaunch(s, role); }));
  tune(benchmark::RegisterBenchmark(
      launchName("plain-call", Role::Forward).c_str(), benchPlainCall));
  return roles;
}

} // namespace lq::bench
