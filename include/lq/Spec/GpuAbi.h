//===- GpuAbi.h - the contract between generated GPU kernels and launchers -===//
//
// The kernel generator (lib/Conversion/GpuKernels.cpp) and every launcher
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
//     (ptr in, i64 rows, i64 cols, i64 rowStride, ptr stats)
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
//     (ptr in, i64 rows, i64 cols, i64 rowStride, ptr out, i64 outStride,
//      f32 inv, i64 seed, i32 stream, i32 sample, i32 zero, ptr counters)
//     counters: QuantCounters (overflow count, max |x| bits, atomics).
//
//   lq_gemm_<tile>_<copy>  the fused GEMM; grid = (ceil(N/bn), ceil(M/bm)),
//                     block = threads of the tile, dynamic shared memory =
//                     smemBytes of the tile (above 48 KiB the launcher must
//                     raise the function's limit first).
//     (ptr A, i64 lda, ptr B, i64 ldb, ptr C, i64 ldc, ptr bias,
//      i32 M, i32 N, i32 K, f32 invA, f32 invB, f32 scale, i32 zero,
//      i64 seed, i32 stream, ptr counters)
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
//                     parameters after `counters`:
//     (..., CUtensorMap tmapA, CUtensorMap tmapB)
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
//   lq_fill_epilogue  C = epilogue(0) (bias, ReLU, output type): the result
//                     of all-zero codes, for a launch whose in-hindsight
//                     statistics found a non-finite element after the GEMM
//                     ran; grid = (ceil(N/16), ceil(M/16)), block = 256.
//     (ptr C, i64 ldc, ptr bias, i32 M, i32 N)
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPUABI_H
#define LQ_RUNTIME_GPUABI_H

#include "lq/Spec/Spec.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lq::gpu {

/// Version of this contract: part of every GPU cache key and manifest.
/// Bumped on every change of a kernel's name, parameters or buffers.
constexpr int kAbiVersion = 2;

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

/// Written by lq_stats_<side> (zero it before the launch).
struct StatsHeader {
  /// max |x| over finite elements, as f32 bits.
  uint32_t maxFiniteBits;
  /// max |x| over all elements as f32 bits: >= 0x7f800000 means NaN/Inf.
  uint32_t maxAnyBits;
  uint32_t reserved[2];
};
static_assert(sizeof(StatsHeader) == 16, "ABI layout");

inline int64_t statsBytes(int64_t rows) {
  return int64_t(sizeof(StatsHeader)) + 16 * statsBlocks(rows);
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
///   abi=2
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

} // namespace lq::gpu

#endif // LQ_RUNTIME_GPUABI_H
