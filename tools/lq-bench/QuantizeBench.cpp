//===- QuantizeBench.cpp - quantizers against memcpy ----------------------===//
//
// Runtime::quantize (LUQ with its max pass, SAWB with its statistics pass)
// against a memcpy of the same input bytes.
//
//===----------------------------------------------------------------------===//

#include "QuantizeBench.h"
#include "Harness.h"

#include <cstring>

namespace lq::bench {
namespace {

void benchMemcpy(benchmark::State &state, int64_t rows, int64_t cols) {
  waitForBlasToPark();
  const std::vector<float> &src = randomBuffer(rows * cols, 1);
  std::vector<float> dst(src.size(), 0.0f); // touched: no page faults below
  size_t bytes = src.size() * sizeof(float);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.SetLabel("1 thread");
}

/// `hindsight`: LUQ with the max given (QuantizeArgs::maxEstimate, the
/// tensor's true max), so without the max pass.
void benchQuantize(benchmark::State &state, Format format, int64_t rows,
                   int64_t cols, bool hindsight = false) {
  waitForBlasToPark();
  Runtime &rt = Runtime::get();
  const std::vector<float> &src = randomBuffer(rows * cols, 1);
  std::vector<uint8_t> out(size_t(rows * ((cols + 1) / 2)), 0);
  QuantizeArgs args;
  args.input = TensorRef::f32(src.data(), rows, cols);
  args.output = TensorRef::packed4(out.data(), rows, cols);
  args.format = format;
  args.seed = 0x5eed;
  args.stream = 1;
  // The first call compiles the quantizer (or loads it from the cache).
  auto warm = rt.quantize(args);
  if (!warm) {
    state.SkipWithError(("quantize failed: " + warm.error()).c_str());
    return;
  }
  if (hindsight) {
    args.maxEstimate = warm->range;
    if (!(warm = rt.quantize(args))) {
      state.SkipWithError(("quantize failed: " + warm.error()).c_str());
      return;
    }
  }
  for (auto _ : state) {
    auto status = rt.quantize(args);
    if (!status) {
      state.SkipWithError(("quantize failed: " + status.error()).c_str());
      break;
    }
    benchmark::DoNotOptimize(status);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * cols *
                          int64_t(sizeof(float)));
  state.SetLabel("lq threads=" + std::to_string(rt.threads()));
}

} // namespace

std::vector<std::string> registerQuantizeBenchmarks() {
  bool quick = options.quick;
  // Quantizer sizes: a large tensor and a training-sized one.
  std::vector<std::pair<int64_t, int64_t>> quantShapes =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{128, 512}}
            : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096},
                                                       {128, 512}};
  std::vector<std::string> quantSizes;
  for (auto [rows, cols] : quantShapes) {
    std::string size = std::to_string(rows) + "x" + std::to_string(cols);
    quantSizes.push_back(size);
    bool big = rows * cols >= (int64_t(1) << 20);
    auto tune = [&](benchmark::internal::Benchmark *b) {
      b->UseRealTime()->Unit(big ? benchmark::kMillisecond
                                 : benchmark::kMicrosecond);
      if (quick)
        b->Iterations(1);
      else
        b->MinTime(0.2);
      repeatThroughput(b);
    };
    tune(benchmark::RegisterBenchmark(
        ("quantize/memcpy/" + size).c_str(),
        [=](benchmark::State &s) { benchMemcpy(s, rows, cols); }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/luq/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::Log4, rows, cols);
        }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/sawb/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::SInt4, rows, cols);
        }));
    tune(benchmark::RegisterBenchmark(
        ("quantize/luq-hindsight/" + size).c_str(), [=](benchmark::State &s) {
          benchQuantize(s, Format::Log4, rows, cols, /*hindsight=*/true);
        }));
  }
  return quantSizes;
}

} // namespace lq::bench
