//===- Runtime.h - compile, cache and launch lq kernels ---------*- C++ -*-===//
//
// The public C++ API of lq's runtime:
//
//   lq::Runtime &rt = lq::Runtime::get();
//   lq::Result<lq::Kernel> k = rt.compile(lq::GemmSpec::backwardData());
//   lq::LaunchArgs args;
//   args.lhs = lq::TensorRef::f32(dy, batch, out_features);
//   args.rhs = lq::TensorRef::f32(w, out_features, in_features);
//   args.out = lq::TensorRef::f32(dx, batch, in_features);
//   args.seed = step_seed;
//   lq::Result<lq::LaunchStatus> st = k->launch(args);
//
// A kernel is compiled once per GemmSpec (shapes are launch arguments),
// cached in memory and on disk, and runs the whole fused pipeline:
// statistics, quantization (LUQ or SAWB, each element once), packing, the
// exact int32 GEMM and the f32 epilogue. Results are bit-identical to the
// numerics in docs/numerics.md. Errors come back as Result values with a
// message; nothing here throws or aborts on bad input.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_RUNTIME_H
#define LQ_RUNTIME_RUNTIME_H

#include "lq/Spec/Result.h"
#include "lq/Spec/Spec.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lq {

enum class Device { CPU, CUDA };

/// A 2-D row-major view of caller memory (DLPack-like): `rowStride` counts
/// elements between rows (bytes for Packed4).
struct TensorRef {
  void *data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t rowStride = 0;
  Device device = Device::CPU;

  static TensorRef f32(float *data, int64_t rows, int64_t cols) {
    return {data, DType::F32, rows, cols, cols, Device::CPU};
  }
  static TensorRef f32(const float *data, int64_t rows, int64_t cols) {
    return f32(const_cast<float *>(data), rows, cols);
  }
  /// bf16 as raw 16-bit patterns.
  static TensorRef bf16(uint16_t *data, int64_t rows, int64_t cols) {
    return {data, DType::BF16, rows, cols, cols, Device::CPU};
  }
  static TensorRef bf16(const uint16_t *data, int64_t rows, int64_t cols) {
    return bf16(const_cast<uint16_t *>(data), rows, cols);
  }
  static TensorRef packed4(uint8_t *data, int64_t rows, int64_t cols) {
    return {data, DType::Packed4, rows, cols, (cols + 1) / 2, Device::CPU};
  }
  static TensorRef packed4(const uint8_t *data, int64_t rows, int64_t cols) {
    return packed4(const_cast<uint8_t *>(data), rows, cols);
  }
};

/// Buffers and per-launch values of a GEMM. `out` must not share memory
/// with `lhs`, `rhs` or the bias (on host kernels a launch that would is an
/// error).
struct LaunchArgs {
  TensorRef lhs, rhs, out;
  /// `bias` has `out.cols` elements when the spec has a bias.
  const float *bias = nullptr;
  int64_t biasLength = 0;
  /// LUQ random stream: the 64-bit seed and the 32-bit stream id. Both
  /// backward GEMMs of a layer must use the same pair to see one sample.
  uint64_t seed = 0;
  uint32_t stream = 0;
  /// Scales of Packed4 operands (what quantize() returned with them).
  float lhsScale = 0.0f;
  float rhsScale = 0.0f;
  /// In-hindsight max estimate of the left operand (GemmSpec::hindsight).
  float maxEstimate = 0.0f;
  /// CUDA kernels: the CUstream to launch on (null: the default stream).
  void *cudaStream = nullptr;
};

/// What a launch reports besides its output.
struct LaunchStatus {
  /// An operand (or the hindsight estimate) held NaN or Inf: its codes
  /// were zeroed; the caller should skip the step.
  bool nonfinite = false;
  /// Elements above the in-hindsight estimate (saturated), all samples.
  uint64_t overflow = 0;
  /// max |A| over the finite elements of a float LUQ left operand: the
  /// input of the next in-hindsight estimate.
  float lhsMax = 0.0f;
  /// Scales of the operands as quantized (alpha or step).
  float lhsScale = 0.0f;
  float rhsScale = 0.0f;
  /// Ranges the float operands were quantized with: the LUQ max (or
  /// estimate) or the SAWB clip.
  float lhsRange = 0.0f;
  float rhsRange = 0.0f;
};

/// Standalone quantization of one float tensor to packed 4-bit storage.
struct QuantizeArgs {
  TensorRef input;
  TensorRef output; // Packed4, same shape, not overlapping the input
  Format format = Format::Log4;
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint32_t sample = 0;
  /// LUQ only: use this max instead of computing max |x|.
  std::optional<float> maxEstimate;
  /// Device::CUDA tensors: the CUstream to run on (null: the default one).
  void *cudaStream = nullptr;
};

struct QuantizeStatus {
  float scale = 0.0f;
  bool nonfinite = false;
  uint64_t overflow = 0;
  /// max |x| over the finite elements (LUQ) or the SAWB clip.
  float range = 0.0f;
};

/// Scale statistics of one float tensor, as the kernels compute them.
struct TensorStatistics {
  /// max |x| over the finite elements: the LUQ scale input.
  float maxAbs = 0.0f;
  /// The SAWB clip (NaN when an element is not finite).
  float sawbClip = 0.0f;
  bool nonfinite = false;
};

class KernelImpl;

/// A compiled kernel: cheap to copy, safe to launch from several threads.
class Kernel {
public:
  const GemmSpec &spec() const;
  Result<LaunchStatus> launch(const LaunchArgs &args) const;

private:
  friend class Runtime;
  explicit Kernel(std::shared_ptr<const KernelImpl> impl)
      : impl(std::move(impl)) {}
  std::shared_ptr<const KernelImpl> impl;
};

/// Counters of the compile cache.
struct CacheCounters {
  uint64_t memoryHits = 0;
  uint64_t diskHits = 0;
  uint64_t compiles = 0;
};

class RuntimeImpl;

/// The process-wide runtime: host JIT, compile cache and worker threads.
class Runtime {
public:
  static Runtime &get();

  Result<Kernel> compile(const GemmSpec &spec);
  /// compile(spec) with the host kernel made for the LLVM CPU `cpu`
  /// ("x86-64-v3", "sapphirerapids"; "host" is this machine's), optionally
  /// followed by feature flags ("x86-64-v3,+avxvnni"), instead of for this
  /// machine's CPU: the CPU's features choose the GEMM's dot product (see
  /// cpuDotProduct). The CPU must have no feature this machine lacks.
  Result<Kernel> compileForCpu(const GemmSpec &spec, std::string_view cpu);
  /// compile(GemmSpec::fromProgram(program)).
  Result<Kernel> compileProgram(std::string_view program);
  /// max |x| and the SAWB clip of a float tensor, in one pass.
  Result<TensorStatistics> statistics(const TensorRef &input);
  /// Quantizes `args.input` to `args.output` (LUQ or SAWB), as the GEMM
  /// kernels would.
  Result<QuantizeStatus> quantize(const QuantizeArgs &args);

  CacheCounters cacheCounters() const;
  /// Forgets compiled kernels held in memory (the disk cache stays).
  void clearMemoryCache();
  /// The CUDA target of the current context's device (device 0's primary
  /// context when none is current): sm_90a on compute capability 9.0,
  /// sm_80 from 8.0 up; an error without a usable device.
  Result<Target> cudaTarget() const;
  /// The host CPU as the JIT targets it (name and features).
  std::string hostDescription() const;
  /// The 8-bit dot product of the host GEMM micro-kernel on `cpu` (named
  /// as for compileForCpu): "avx512-vnni" (AVX-512 VNNI vpdpbusd),
  /// "avx-vnni" (AVX-VNNI vpdpbusd) or "avx2-vpmaddubsw".
  Result<std::string> cpuDotProduct(std::string_view cpu = "host") const;
  unsigned threads() const;
  /// Runs body(begin, end) on contiguous ranges that together cover
  /// [0, count), on the threads host kernels launch on (the caller and the
  /// runtime's workers), and returns when every range is done. Each thread
  /// gets at least `grain` items, so a small count runs on the calling
  /// thread alone. For a caller's own elementwise passes between launches,
  /// e.g. an optimizer step: they reuse the kernels' threads instead of
  /// waking a second pool. Launches and parallelFor calls from several
  /// threads take turns, so body must not launch a kernel or call
  /// parallelFor itself.
  void parallelFor(int64_t count, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)> &body);

  ~Runtime();

private:
  Runtime();
  std::unique_ptr<RuntimeImpl> impl;
};

} // namespace lq

#endif // LQ_RUNTIME_RUNTIME_H
