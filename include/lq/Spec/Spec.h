//===- Spec.h - lq's vocabulary: formats, dtypes, targets, GEMM specs -*- C++ -*-===//
//
// The leaf every layer shares (plain C++, no LLVM or MLIR): what a GEMM
// kernel computes and for which target, the names every tool and cache key
// spells them with, and the limits of the numerics contract. The compiler
// (generators, passes), the runtimes (host JIT, CUDA launcher), AOT output,
// lq-train and the Python package all speak it; nothing converts between
// parallel versions of it.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_SPEC_SPEC_H
#define LQ_SPEC_SPEC_H

#include "lq/Spec/Result.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq {

/// The 4-bit formats of the numerics: SAWB signed int4 (-7..7), SAWB
/// unsigned int4 (0..15), and the LUQ radix-2 log format [sign, exponent].
enum class Format { SInt4, UInt4, Log4 };

/// Element types of tensors handed to kernels. `Packed4` is the storage
/// form of 4-bit codes: two per byte, low nibble first, rows padded to
/// whole bytes.
enum class DType { F32, BF16, Packed4 };

/// Where a kernel runs: the host CPU, or a CUDA chip (the PTX target the
/// kernels are written for).
enum class Target { HostCPU, CudaSm80, CudaSm90a };

/// The format's name as the dialect spells it ("sint4", "uint4", "log4"),
/// or "?" for a value outside the enum.
const char *formatName(Format format);
/// "f32", "bf16", "packed4".
const char *dtypeName(DType dtype);
/// The one name table of targets: "host", "sm_80", "sm_90a" (as chips are
/// spelled in tools, packs, module info and cache keys).
const char *targetName(Target target);
std::optional<Target> parseTarget(std::string_view name);
/// The CUDA targets ("sm_80", "sm_90a"), in that order.
const std::vector<Target> &cudaTargets();
/// "sm_80 or sm_90a": what an error about a chip name lists.
std::string cudaTargetNames();
inline bool isCudaTarget(Target t) {
  return t == Target::CudaSm80 || t == Target::CudaSm90a;
}

/// Bytes of one element (a packed byte holds two codes).
size_t elementBytes(DType dtype);
bool knownFormat(Format format);
bool knownDType(DType dtype);

/// Limits of the numerics contract (docs/numerics.md).
/// Largest |a * b| of two codes when at most one is log4 (int4 15, log4
/// 2^6): with K * samples * this below 2^31 the int32 sums are exact.
constexpr int64_t kMaxCodeProduct = 15 * 64;
/// SMP samples: a power of two up to this.
constexpr unsigned kMaxSamples = 64;
/// f32 bits of +Inf: max |x| bits at or above it mean NaN or Inf.
constexpr uint32_t kF32InfBits = 0x7F800000u;
/// Below this range the inverse step (64 / m, 15 / clip) overflows f32.
constexpr float kMinRange = 0x1p-120f;

/// lq's version (the CMake project's): part of every compile-cache key and
/// manifest.
const char *lqVersion();

/// One GEMM operand: its 4-bit format, how it is passed (f32 or bf16,
/// quantized in the kernel; or Packed4 codes), and whether it is stored
/// transposed ([K, M] for the left operand, [N, K] for the right).
struct OperandSpec {
  Format format = Format::SInt4;
  DType dtype = DType::F32;
  bool transposed = false;

  bool isFloat() const { return dtype != DType::Packed4; }
  /// Stored with K contiguous: a non-transposed left operand [M, K] or a
  /// transposed right one [N, K].
  bool kContiguous(bool isLhs) const { return isLhs ? !transposed : transposed; }
};

/// What a GEMM kernel computes: C = Q(A) Q(B) * s (+ bias) (ReLU).
struct GemmSpec {
  OperandSpec lhs;
  OperandSpec rhs;
  /// SMP: LUQ samples of the left operand (a power of two, 1..64).
  unsigned samples = 1;
  /// The left operand's LUQ scale is the caller's in-hindsight estimate
  /// (LaunchArgs::maxEstimate) instead of a max pass over it.
  bool hindsight = false;
  bool bias = false;
  bool relu = false;
  DType output = DType::F32;
  Target target = Target::HostCPU;

  /// y[B, O] = Q(x[B, I]) Q(W[O, I])^T (+ bias) (ReLU); SAWB int4 operands,
  /// x unsigned when it is known to be non-negative.
  static GemmSpec forward(DType input = DType::F32,
                          bool unsignedInput = false);
  /// dx[B, I] = Q_luq(dy[B, O]) Q(W[O, I]).
  static GemmSpec backwardData(DType input = DType::F32, unsigned samples = 1);
  /// dW[O, I] = Q_luq(dy[B, O])^T Q(x[B, I]).
  static GemmSpec weightGrad(DType input = DType::F32, unsigned samples = 1,
                             bool unsignedInput = false);

  /// The spec of the one lq.matmul in an lq program (MLIR text): its
  /// operand formats and producers (lq.quantize: f32/bf16 quantized in the
  /// kernel; lq.unpack: packed), transposes, SMP samples, hindsight,
  /// epilogue. lq.linear / lq.linear_grad are expanded first. (Reading MLIR
  /// needs the compiler: defined in LQRuntime.)
  static Result<GemmSpec> fromProgram(std::string_view program);
  /// The specs of every lq.matmul of an lq program, in program order.
  static Result<std::vector<GemmSpec>> allFromProgram(std::string_view program);

  /// A stable description, e.g. for logs and cache keys.
  std::string describe() const;
  bool bf16Output() const { return output == DType::BF16; }
};

/// Success when `spec` is a valid GEMM, else why not. Target-agnostic:
/// which runtime can run the spec's target is for the runtime to say.
Status validateSpec(const GemmSpec &spec);

} // namespace lq

#endif // LQ_SPEC_SPEC_H
