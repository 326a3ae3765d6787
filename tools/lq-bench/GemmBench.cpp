//===- GemmBench.cpp - fused 4-bit GEMMs against OpenBLAS SGEMM -----------===//
//
// Fused 4-bit GEMM kernels (quantization, packing, int32 GEMM, epilogue)
// against OpenBLAS SGEMM with the same shapes, transposes and thread count.
//
//===----------------------------------------------------------------------===//

#include "GemmBench.h"

#include <cblas.h>

#include <cmath>
#include <map>

namespace lq::bench {
namespace {

/// 2*M*N*K per iteration, shown per second with decimal prefixes.
benchmark::Counter flopRate(const GemmCase &c) {
  return benchmark::Counter(c.flops(),
                            benchmark::Counter::kIsIterationInvariantRate,
                            benchmark::Counter::OneK::kIs1000);
}

void sgemm(const GemmCase &c, const float *a, const float *b, float *out) {
  cblas_sgemm(CblasRowMajor, c.lhsT() ? CblasTrans : CblasNoTrans,
              c.rhsT() ? CblasTrans : CblasNoTrans, int(c.M), int(c.N),
              int(c.K), 1.0f, a, int(c.lhsCols()), b, int(c.rhsCols()), 0.0f,
              out, int(c.N));
}

/// The f32 product of a case's inputs, computed once with OpenBLAS.
const std::vector<float> &sgemmReference(const GemmCase &c) {
  static std::map<std::string, std::vector<float>> references;
  std::string key = c.name("reference");
  auto it = references.find(key);
  if (it != references.end())
    return it->second;
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  sgemm(c, c.lhs().data(), c.rhs().data(), out.data());
  markBlasRan();
  return references.emplace(key, std::move(out)).first->second;
}

/// ||x - ref|| / ||ref||.
double relativeError(const std::vector<float> &x,
                     const std::vector<float> &ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = double(x[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// A 4-bit GEMM is not an f32 GEMM, but it must approximate one: anything
/// this far off means wrong operands or transposes, not quantization noise
/// (an all-zero or uncorrelated output gives 1.0 or more).
constexpr double kMaxRelativeError = 0.75;

/// Launches `kernel` once and checks its output against the SGEMM product,
/// then times launches. `args` has the operands; the output is set here.
void launchLoop(benchmark::State &state, const GemmCase &c,
                const Kernel &kernel, LaunchArgs args,
                const std::vector<float> &reference) {
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  args.out = TensorRef::f32(out.data(), c.M, c.N);
  auto warm = kernel.launch(args);
  if (!warm) {
    state.SkipWithError(("launch failed: " + warm.error()).c_str());
    return;
  }
  double error = relativeError(out, reference);
  if (!(error <= kMaxRelativeError)) {
    state.SkipWithError(("output is not an approximation of the SGEMM "
                         "product: relative error " +
                         std::to_string(error))
                            .c_str());
    return;
  }
  for (auto _ : state) {
    auto status = kernel.launch(args);
    if (!status) {
      state.SkipWithError(("launch failed: " + status.error()).c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = flopRate(c);
  state.counters["rel_err"] = error;
}

void benchGemmLq(benchmark::State &state, const GemmCase &c) {
  Runtime &rt = Runtime::get();
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  const std::vector<float> &reference = sgemmReference(c);
  waitForBlasToPark();
  auto kernel = compileGemm(c.spec());
  if (!kernel) {
    state.SkipWithError(("compile failed: " + kernel.error()).c_str());
    return;
  }
  LaunchArgs args;
  args.lhs = TensorRef::f32(a.data(), c.lhsRows(), c.lhsCols());
  args.rhs = TensorRef::f32(b.data(), c.rhsRows(), c.rhsCols());
  args.seed = 0x5eed;
  args.stream = 7;
  launchLoop(state, c, *kernel, args, reference);
  state.SetLabel("lq threads=" + std::to_string(rt.threads()) +
                 " dot=" + gemmDotProduct());
}

/// The same GEMM from operands quantized beforehand (Packed4 inputs): what
/// is left of the fused kernel without its quantizers.
void benchGemmLqPacked(benchmark::State &state, const GemmCase &c) {
  Runtime &rt = Runtime::get();
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  const std::vector<float> &reference = sgemmReference(c);
  waitForBlasToPark();
  GemmSpec spec = c.spec();
  spec.lhs.dtype = DType::Packed4;
  spec.rhs.dtype = DType::Packed4;
  auto kernel = compileGemm(spec);
  if (!kernel) {
    state.SkipWithError(("compile failed: " + kernel.error()).c_str());
    return;
  }
  std::vector<uint8_t> qa(size_t(c.lhsRows() * ((c.lhsCols() + 1) / 2)));
  std::vector<uint8_t> qb(size_t(c.rhsRows() * ((c.rhsCols() + 1) / 2)));
  LaunchArgs args;
  args.lhs = TensorRef::packed4(qa.data(), c.lhsRows(), c.lhsCols());
  args.rhs = TensorRef::packed4(qb.data(), c.rhsRows(), c.rhsCols());
  float *scales[2] = {&args.lhsScale, &args.rhsScale};
  const OperandSpec *ops[2] = {&spec.lhs, &spec.rhs};
  const std::vector<float> *inputs[2] = {&a, &b};
  const TensorRef *packed[2] = {&args.lhs, &args.rhs};
  for (int side = 0; side < 2; ++side) {
    QuantizeArgs q;
    q.input = TensorRef::f32(inputs[side]->data(), packed[side]->rows,
                             packed[side]->cols);
    q.output = *packed[side];
    q.format = ops[side]->format;
    q.seed = 0x5eed;
    q.stream = 7;
    auto status = rt.quantize(q);
    if (!status) {
      state.SkipWithError(("quantize failed: " + status.error()).c_str());
      return;
    }
    *scales[side] = status->scale;
  }
  launchLoop(state, c, *kernel, args, reference);
  state.SetLabel("pre-quantized operands, lq threads=" +
                 std::to_string(rt.threads()) + " dot=" + gemmDotProduct());
}

void benchGemmBlas(benchmark::State &state, const GemmCase &c) {
  const std::vector<float> &a = c.lhs(), &b = c.rhs();
  std::vector<float> out(size_t(c.M * c.N), 0.0f);
  sgemm(c, a.data(), b.data(), out.data()); // warm-up: threads, buffers
  for (auto _ : state) {
    sgemm(c, a.data(), b.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  markBlasRan();
  state.counters["FLOP/s"] = flopRate(c);
  state.SetLabel("openblas threads=" +
                 std::to_string(openblas_get_num_threads()));
}

} // namespace

std::vector<GemmCase> registerGemmBenchmarks() {
  bool quick = options.quick;
  // GEMMs: square sizes with the forward kernel, then the three GEMMs of a
  // 784 -> 512 linear layer at batch 128.
  std::vector<GemmCase> gemms;
  if (quick)
    gemms.push_back({Role::Forward, 64, 64, 64, "64^3"});
  else {
    gemms.push_back({Role::Forward, 512, 512, 512, "512^3"});
    gemms.push_back({Role::Forward, 2048, 2048, 2048, "2048^3"});
  }
  gemms.push_back({Role::Forward, 128, 512, 784, "y[128,512] 784->512"});
  gemms.push_back({Role::BackwardData, 128, 784, 512, "dx[128,784] 784->512"});
  gemms.push_back({Role::WeightGrad, 512, 784, 128, "dW[512,784] 784->512"});
  for (const GemmCase &c : gemms) {
    bool big = c.flops() > 1e10;
    auto tune = [&](benchmark::internal::Benchmark *b) {
      b->UseRealTime()->Unit(benchmark::kMillisecond);
      if (quick)
        b->Iterations(1);
      else if (big)
        b->Iterations(2);
      else
        b->MinTime(0.2);
      repeatThroughput(b);
    };
    tune(benchmark::RegisterBenchmark(
        c.name("lq").c_str(),
        [c](benchmark::State &s) { benchGemmLq(s, c); }));
    tune(benchmark::RegisterBenchmark(
        c.name("lq-packed").c_str(),
        [c](benchmark::State &s) { benchGemmLqPacked(s, c); }));
    tune(benchmark::RegisterBenchmark(
        c.name("openblas").c_str(),
        [c](benchmark::State &s) { benchGemmBlas(s, c); }));
  }
  return gemms;
}

} // namespace lq::bench
