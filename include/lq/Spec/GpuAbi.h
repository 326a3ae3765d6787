//===- GpuAbi.h - the contract between generated GPU kernels and launchers -===//
//
// The kernel generator (lib/Conversion/Gpu/) and every launcher
// (the runtime's CUDA backend, AOT consumers) agree on what is written here:
// kernel names, parameter lists in order, launch geometry and the layout of
// the small device buffers the kernels report through. Plain C++ with no
// LLVM, so that a launcher builds on machines that have only the CUDA
// driver.
//
// Kernels of one GEMM module (for a GemmSpec and a target):
//
//   lq_stats_<side>   statistics of a float operand; grid = statsBlocks(rows),
//                     block = kStatsThreads, no dynamic shared memory.
//     parameters: LQ_GPU_STATS_PARAMS
//     stats: StatsHeader, then for SAWB operands two f64 per block (sum x^2,
//     sum |x|) at byte offset sizeof(StatsHeader) + 16 * block. The header's
//     maxima are combined with one atomic max per block (order-free); the
//     f64 partial sums are summed by the host in block order, so the result
//     depends only on the shape.
//
//   lq_quant_<side>   a float operand -> packed 4-bit codes (storage form);
//                     grid = (ceil(ceil(cols/4) / kQuantThreads), min(rows,
//                     kMaxGridY)) (rows in a grid-stride loop), block =
//                     kQuantThreads.
//     parameters: LQ_GPU_QUANT_PARAMS
//     counters: QuantCounters (overflow count, max |x| bits, atomics).
//
//   lq_gemm_<tile>_<copy>  the fused GEMM; grid = (ceil(N/bn), ceil(M/bm)),
//                     block = threads of the tile, dynamic shared memory =
//                     smemBytes of the tile (above 48 KiB the launcher must
//                     raise the function's limit first).
//     parameters: LQ_GPU_GEMM_PARAMS
//     A and B are in the storage the spec names (f32, bf16 bits or packed
//     codes; lda/ldb count elements, bytes for packed). invA/invB are the
//     quantizers' inverse steps of float operands (LUQ 64/m, SAWB levels /
//     clip); `zero` bit 0 / bit 1 zero every code of A / B (a non-finite or
//     unusable range); `scale` multiplies the exact int32 sum. `counters`
//     (QuantCounters) receives the overflow count and max |A| bits of a
//     float LUQ left operand, counted once per element by the CTAs of the
//     first column tile: the statistics of the in-hindsight mode, which has
//     no pre-pass. Once per element, not per SMP sample (every sample
//     saturates the same elements): the launcher multiplies the count by
//     the samples, as the host runtime counts each sample.
//     The `vec` copy variant moves 16-byte chunks with cp.async and needs
//     16-byte aligned base pointers and row strides (in bytes); `any` works
//     for every layout.
//
//   lq_gemm_<tile>_vec_pa  (float LUQ left operand only) the same GEMM
//                     reading the left operand as packed codes written by
//                     lq_quant_lhs into 16-byte aligned rows; `zero` bit 0
//                     and `counters` are unused (the quantizer did both).
//
//   lq_gemm_<tile>_tma[_pa]  (sm_90a) the `vec` GEMM (and its packed-left
//                     variant) with the operand tiles loaded by the tensor
//                     memory accelerator: cp.async.bulk.tensor issued by one
//                     thread, completing on one mbarrier per stage. Two more
//                     parameters after `counters`: LQ_GPU_GEMM_TMA_PARAMS,
//     each a CUtensorMap passed by value (`.param .align 64 .b8 [128]`,
//     CUDA's __grid_constant__ parameters: no copy to global memory, so no
//     tensormap proxy fence), made by
//     cuTensorMapEncodeTiled for the operand as stored: rank 2, dims {cols,
//     rows} (packed: {bytes per row, rows}; SMP samples of a packed left
//     operand stacked: rows * samples), the row pitch in bytes as the one
//     stride, box = tmaBox(), element strides 1, no interleave, no swizzle,
//     out-of-bound elements filled with zeros; data type FLOAT32 (f32),
//     UINT16 (bf16 bits) or UINT8 (packed codes). Same alignment rules as
//     `vec`.
//
//   lq_quant8_<side>  (sm_90a modules of two float operands) a float operand
//                     -> int8 code values (LUQ 0, +-2^(e-1); SAWB -7..7 or
//                     0..15), K-contiguous: the layout the tensor cores
//                     read. A side stored K-contiguous keeps its rows; the
//                     other is written transposed (out[c][r] for element
//                     (r, c) as stored). Same parameters, grid and block as
//                     lq_quant_<side> (LQ_GPU_QUANT_PARAMS); outStride is
//                     the int8 row pitch in bytes, a multiple of 16; `rows`
//                     and `cols` are the operand as stored. Random numbers
//                     come from the element's index as stored, as in every
//                     other placement, so the codes are bit-identical.
//
//   lq_gemm_ws_<bm>x<bn>  (sm_90a) the int8 GEMM of two operands that
//                     lq_quant8_<side> wrote: persistent (grid = at most one
//                     CTA per multiprocessor, walking the output tiles in
//                     groups of kWsGroupRows row tiles), warp-specialized
//                     (block = 384: warpgroup 0 produces, one thread issuing
//                     TMA copies into a ring of `stages` shared-memory
//                     stages with a full and an empty mbarrier each;
//                     warpgroups 1 and 2 consume, 64 rows each, with
//                     wgmma m64n<bn>k32 s8 and one group in flight;
//                     setmaxnreg gives the consumers the registers).
//                     Dynamic shared memory = WsTile::smemBytes.
//     parameters: LQ_GPU_GEMM_WS_PARAMS
//     tmapA: the int8 A codes, rank 2, dims {k, samples * m} (the SMP
//     samples of A stacked along rows: sample s at row s * m), tmapB: dims
//     {k, n}; each with its pitch (a multiple of 16 bytes) as the stride,
//     box {kWsBK, bm} and {kWsBK, bn}, data type UINT8, 128-byte swizzle,
//     zero fill. The k-steps run over every sample (`samples` x ceil(k /
//     kWsBK)); k >= 1 and samples >= 1 (a tensor map has no empty
//     dimension: K = 0 runs a fused GEMM). `scale` multiplies the exact
//     int32 sum, then bias, ReLU and the output type as in lq_gemm_*.
//
//   lq_fill_epilogue  C = epilogue(0) (bias, ReLU, output type): the result
//                     of all-zero codes, for a launch whose in-hindsight
//                     statistics found a non-finite element after the GEMM
//                     ran; grid = (ceil(N/16), ceil(M/16)), block = 256.
//     parameters: LQ_GPU_FILL_PARAMS
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUABI_H
#define LQ_RUNTIME_GPUABI_H

#include "lq/Spec/Spec.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lq::cuda {

/// Version of this contract: part of every GPU cache key and manifest.
/// Bumped on every change of a kernel's name, parameters or buffers.
constexpr int kAbiVersion = 3;

/// A tensor-map parameter of the `_tma` GEMMs: CUtensorMap's size and
/// alignment.
constexpr int64_t kTensorMapBytes = 128;
constexpr int64_t kTensorMapAlign = 64;

constexpr int kStatsThreads = 256;
/// Row blocks of the statistics kernel: one per row up to this many.
constexpr int64_t kStatsMaxBlocks = 1024;
constexpr int kQuantThreads = 128;
/// The largest grid y extent: lq_quant_<side> strides over more rows.
constexpr int64_t kMaxGridY = 65535;
constexpr int kFillThreads = 256;

inline int64_t statsBlocks(int64_t rows) {
  return rows < kStatsMaxBlocks ? (rows > 0 ? rows : 1) : kStatsMaxBlocks;
}

//===----------------------------------------------------------------------===//
// Kernel signatures: written once, here
//===----------------------------------------------------------------------===//
//
// Each kernel's parameters in order, as X(name, kind). The generator builds
// every kernel's function type from these lists and reads its arguments by
// these names; launchers fill the parameter structs below by the same
// names; lq-compile writes its C header from them; and a test holds the
// PTX of every generated kernel to them.

/// How a parameter is passed: a device pointer (8 bytes), a 64- or 32-bit
/// integer, an f32, or a CUtensorMap by value (128 bytes, 64-byte aligned).
enum class ParamKind { Ptr, I64, I32, F32, TensorMap };

#define LQ_GPU_STATS_PARAMS(X)                                                 \
  X(in, Ptr) X(rows, I64) X(cols, I64) X(rowStride, I64) X(stats, Ptr)

#define LQ_GPU_QUANT_PARAMS(X)                                                 \
  X(in, Ptr) X(rows, I64) X(cols, I64) X(rowStride, I64) X(out, Ptr)           \
  X(outStride, I64) X(inv, F32) X(seed, I64) X(stream, I32) X(sample, I32)     \
  X(zero, I32) X(counters, Ptr)

#define LQ_GPU_GEMM_PARAMS(X)                                                  \
  X(a, Ptr) X(lda, I64) X(b, Ptr) X(ldb, I64) X(c, Ptr) X(ldc, I64)            \
  X(bias, Ptr) X(m, I32) X(n, I32) X(k, I32) X(invA, F32) X(invB, F32)         \
  X(scale, F32) X(zero, I32) X(seed, I64) X(stream, I32) X(counters, Ptr)

/// The `_tma` GEMMs take these after the GEMM's parameters.
#define LQ_GPU_GEMM_TMA_PARAMS(X) X(tmapA, TensorMap) X(tmapB, TensorMap)

#define LQ_GPU_GEMM_WS_PARAMS(X)                                               \
  X(c, Ptr) X(ldc, I64) X(bias, Ptr) X(m, I32) X(n, I32) X(k, I32)             \
  X(samples, I32) X(scale, F32) X(tmapA, TensorMap) X(tmapB, TensorMap)

#define LQ_GPU_FILL_PARAMS(X)                                                  \
  X(c, Ptr) X(ldc, I64) X(bias, Ptr) X(m, I32) X(n, I32)

/// The storage of a parameter of `Kind` in a launcher's parameter struct.
template <ParamKind Kind> struct ParamStorage;
template <> struct ParamStorage<ParamKind::Ptr> { using type = uint64_t; };
template <> struct ParamStorage<ParamKind::I64> { using type = int64_t; };
template <> struct ParamStorage<ParamKind::I32> { using type = int32_t; };
template <> struct ParamStorage<ParamKind::F32> { using type = float; };
struct alignas(64) TensorMapBytes {
  unsigned char bytes[128];
};
template <> struct ParamStorage<ParamKind::TensorMap> {
  using type = TensorMapBytes;
};

#define LQ_GPU_PARAM_FIELD(name, kind)                                         \
  typename ParamStorage<ParamKind::kind>::type name{};
#define LQ_GPU_PARAM_ADDRESS(name, kind) static_cast<void *>(&name),
#define LQ_GPU_PARAM_INFO(name, kind) ParamInfo{#name, ParamKind::kind},

/// The parameters of lq_stats_<side>, lq_quant_<side>, lq_gemm_* (with the
/// tensor maps of the `_tma` variants last) and lq_fill_epilogue, as
/// cuLaunchKernel takes them: `pointers()` lists each field's address in
/// order (the driver reads as many as the kernel declares).
struct StatsParams {
  LQ_GPU_STATS_PARAMS(LQ_GPU_PARAM_FIELD)
  std::vector<void *> pointers() { return {LQ_GPU_STATS_PARAMS(LQ_GPU_PARAM_ADDRESS)}; }
};
struct QuantParams {
  LQ_GPU_QUANT_PARAMS(LQ_GPU_PARAM_FIELD)
  std::vector<void *> pointers() { return {LQ_GPU_QUANT_PARAMS(LQ_GPU_PARAM_ADDRESS)}; }
};
struct GemmParams {
  LQ_GPU_GEMM_PARAMS(LQ_GPU_PARAM_FIELD)
  LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_PARAM_FIELD)
  std::vector<void *> pointers() {
    return {LQ_GPU_GEMM_PARAMS(LQ_GPU_PARAM_ADDRESS)
                LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_PARAM_ADDRESS)};
  }
};
struct GemmWsParams {
  LQ_GPU_GEMM_WS_PARAMS(LQ_GPU_PARAM_FIELD)
  std::vector<void *> pointers() { return {LQ_GPU_GEMM_WS_PARAMS(LQ_GPU_PARAM_ADDRESS)}; }
};
struct FillParams {
  LQ_GPU_FILL_PARAMS(LQ_GPU_PARAM_FIELD)
  std::vector<void *> pointers() { return {LQ_GPU_FILL_PARAMS(LQ_GPU_PARAM_ADDRESS)}; }
};

/// One parameter of a signature.
struct ParamInfo {
  const char *name;
  ParamKind kind;
};

/// The kinds of kernel of a module, each with its signature.
enum class KernelKind { Stats, Quant, Gemm, GemmTma, GemmWs, Fill };

/// The parameters of a kernel of `kind`, in order.
const std::vector<ParamInfo> &signature(KernelKind kind);
/// The kind of the kernel named `name` (lq_stats_lhs, lq_gemm_64x64_tma_pa,
/// ...), or nothing for a name outside the ABI.
std::optional<KernelKind> kernelKind(std::string_view name);

/// Success when every `.entry` of `ptx` is a kernel of this ABI and
/// declares the parameters of its signature, in order and with their PTX
/// types (a pointer `.u64 .ptr .global`, `.u64`, `.u32`, `.f32`, a tensor
/// map `.align 64 .b8 [128]`); else the first disagreement, named by kernel
/// and parameter. `entries` counts the kernels checked.
Status checkSignatures(std::string_view ptx, size_t *entries = nullptr);

/// Written by lq_stats_<side> (zero it before the launch).
struct StatsHeader {
  /// max |x| over finite elements, as f32 bits.
  uint32_t maxFiniteBits;
  /// max |x| over all elements as f32 bits: >= 0x7f800000 means NaN/Inf.
  uint32_t maxAnyBits;
  uint32_t reserved[2];
};
static_assert(sizeof(StatsHeader) == 16, "ABI layout");

/// After the header, one per block of lq_stats_<side> of a SAWB operand.
struct StatsPartial {
  double sumSquares;
  double sumMagnitudes;
};
static_assert(sizeof(StatsPartial) == 16, "ABI layout");

inline int64_t statsBytes(int64_t rows) {
  return int64_t(sizeof(StatsHeader)) +
         int64_t(sizeof(StatsPartial)) * statsBlocks(rows);
}

/// Written by lq_quant_<side> and lq_gemm_* (zero it before the launch).
struct QuantCounters {
  uint32_t overflow;
  uint32_t maxAnyBits;
  uint32_t reserved[2];
};
static_assert(sizeof(QuantCounters) == 16, "ABI layout");

/// One GEMM tile configuration of a module.
struct GemmTile {
  int bm = 0, bn = 0, bk = 0;
  int stages = 0;
  int threads = 0;
  int64_t smemBytes = 0;
};

/// Kernel names.
inline std::string statsKernel(bool lhs) {
  return lhs ? "lq_stats_lhs" : "lq_stats_rhs";
}
inline std::string quantKernel(bool lhs) {
  return lhs ? "lq_quant_lhs" : "lq_quant_rhs";
}
/// `packedLhs`: the variant of a module with a float LUQ left operand that
/// reads that operand already quantized (packed codes, samples stacked
/// along the stored rows, 16-byte aligned rows) by lq_quant_lhs: the
/// quantize-once placement, for grids with many column tiles.
inline std::string gemmKernel(const GemmTile &t, bool vec,
                              bool packedLhs = false) {
  return "lq_gemm_" + std::to_string(t.bm) + "x" + std::to_string(t.bn) +
         (vec ? "_vec" : "_any") + (packedLhs ? "_pa" : "");
}
/// The TMA variant (sm_90a modules only).
inline std::string gemmTmaKernel(const GemmTile &t, bool packedLhs = false) {
  return "lq_gemm_" + std::to_string(t.bm) + "x" + std::to_string(t.bn) +
         "_tma" + (packedLhs ? "_pa" : "");
}

/// The TMA box of one operand's tile, {inner, outer} as cuTensorMapEncode-
/// Tiled takes it: the operand as stored is K-contiguous (a non-transposed
/// left operand, a transposed right one) -> {bk, bm or bn} elements, else
/// {bm or bn, bk}; for packed codes the inner extent is in bytes (half the
/// elements).
struct TmaBox {
  uint32_t inner = 0, outer = 0;
};
inline TmaBox tmaBox(const GemmTile &t, bool lhs, bool transposed,
                     bool packed) {
  bool kContiguous = lhs ? !transposed : transposed;
  uint32_t mn = uint32_t(lhs ? t.bm : t.bn), k = uint32_t(t.bk);
  TmaBox box{kContiguous ? k : mn, kContiguous ? mn : k};
  if (packed)
    box.inner /= 2;
  return box;
}

/// Whether a module of `spec` holds the int8 placement (lq_quant8_<side>
/// and lq_gemm_ws_*): sm_90a modules of two float operands.
inline bool hasInt8Gemm(const GemmSpec &spec) {
  return spec.target == Target::CudaSm90a &&
         spec.lhs.dtype != DType::Packed4 && spec.rhs.dtype != DType::Packed4;
}

/// The int8 quantizer of the quantize-once placement (lq_quant8_<side>).
inline std::string quant8Kernel(bool lhs) {
  return lhs ? "lq_quant8_lhs" : "lq_quant8_rhs";
}

/// K per stage of lq_gemm_ws_*: 128 int8 codes, one 128-byte swizzle row.
constexpr int kWsBK = 128;
/// The int8 code rows' pitch: a multiple of this (TMA strides).
constexpr int64_t kInt8PitchAlign = 16;
/// Output row tiles walked together by a persistent CTA's tile order, so
/// that the B tiles they share stay in L2.
constexpr int kWsGroupRows = 8;
/// Threads of lq_gemm_ws_*: a producer and two consumer warpgroups.
constexpr int kWsThreads = 384;
/// The dynamic shared memory's base is aligned to this by the kernel
/// itself (the 128-byte swizzle atoms); WsTile::smemBytes includes it.
constexpr int64_t kWsAlign = 1024;

/// A tile of lq_gemm_ws_*: bm x bn outputs, `stages` ring stages of
/// (bm + bn) x kWsBK bytes.
struct WsTile {
  int bm = 0, bn = 0, stages = 0;
  int64_t smemBytes() const {
    return int64_t(stages) * (bm + bn) * kWsBK + kWsAlign;
  }
};
/// The tiles of lq_gemm_ws_*, small first: 128 x 128 with 6 stages and
/// 128 x 256 with 4 (192 KiB of ring each, within sm_90's 227 KiB).
inline std::vector<WsTile> wsTiles() { return {{128, 128, 6}, {128, 256, 4}}; }
inline std::string gemmWsKernel(const WsTile &t) {
  return "lq_gemm_ws_" + std::to_string(t.bm) + "x" + std::to_string(t.bn);
}

constexpr const char *kFillKernel = "lq_fill_epilogue";

/// What a launcher must know about one generated module besides its code.
struct GpuModuleInfo {
  /// The GEMM; its target is the chip the PTX is written for (CudaSm80 or
  /// CudaSm90a).
  GemmSpec spec;
  /// The GEMM tile configurations, small first; empty for a quantize
  /// module.
  std::vector<GemmTile> tiles;
  /// A quantize module: lq_stats_lhs and lq_quant_lhs of spec.lhs only (the
  /// GPU form of Runtime::quantize), no GEMM.
  bool quantizeOnly = false;
};

/// The chip a module's PTX is written for, by its name ("sm_80", "sm_90a").
inline std::string chipName(const GpuModuleInfo &info) {
  return targetName(info.spec.target);
}

/// The text form of `info`, one key=value per line, the ABI version first:
///
///   abi=3
///   chip=sm_90a
///   quantize=0
///   lhs=log4 f32 n          (format, dtype, n or t for transposed)
///   rhs=sint4 f32 n
///   samples=1
///   hindsight=0
///   bias=0
///   relu=0
///   output=f32
///   tile=128 128 64 4 256 98304   (bm bn bk stages threads smemBytes), one
///                                 line per tile, small first
std::string writeModuleInfo(const GpuModuleInfo &info);

/// Reads writeModuleInfo's text. An error names the line and the problem: a
/// different ABI version, an unknown or repeated key, a missing key, a bad
/// value, a spec that is not a valid GEMM, a GEMM without tiles.
Result<GpuModuleInfo> parseModuleInfo(std::string_view text);

} // namespace lq::cuda

#endif // LQ_RUNTIME_GPUABI_H
