//===- CpuKernels.h - generated x86-64 kernels of a quantized GEMM -*- C++ -*-===//
//
// The CPU form of a fused quantized GEMM is a set of stage functions on
// memrefs, built from the numerics in NumericsBuilder and lowered to LLVM:
//
//   maxabs / moments   scale statistics of a float operand (row range)
//   quant              f32/bf16 rows -> 4-bit codes (one per byte), once
//                      per element: LUQ (Philox) or SAWB
//   pack_a / pack_b    codes (one per byte, or packed two per byte) ->
//                      8-bit integer values in 32-bit panel words, four K
//                      steps per word (one operand offset into the unsigned
//                      range), with the offset's correction per row or column
//   gemm               8-bit dot-product micro-kernel (vpdpbusd, or
//                      vpmaddubsw widened with vpmaddwd) into exact int32
//                      accumulators, SMP samples summed in registers, then
//                      the f32 epilogue (scale, bias, ReLU, bf16)
//
// Every stage takes a row or block range, so the runtime splits the work
// across threads; results do not depend on the split.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_CONVERSION_CPUKERNELS_H
#define LQ_CONVERSION_CPUKERNELS_H

#include "lq/Dialect/LqDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>
#include <string>
#include <string_view>

namespace lq {

/// The instruction that multiplies 8-bit values in the GEMM micro-kernel,
/// chosen from the target CPU's features (the JIT's, or lq-compile's --cpu).
/// All three give the same exact int32 sums.
enum class CpuDotProduct {
  /// AVX2: vpmaddubsw (unsigned x signed bytes, pairs summed to i16), i16
  /// sums of up to 16 K quads widened to i32 with vpmaddwd.
  Avx2,
  /// AVX-VNNI: vpdpbusd on 256-bit vectors (VEX), quads summed into i32.
  AvxVnni,
  /// AVX-512 VNNI: vpdpbusd on 512-bit vectors, a K quad of a tile row's
  /// 16 columns per instruction.
  Avx512Vnni,
};

/// "avx2-vpmaddubsw", "avx-vnni", "avx512-vnni": as tools, cache keys and
/// the lq-cpu-kernels pass spell it.
const char *cpuDotProductName(CpuDotProduct dot);
std::optional<CpuDotProduct> parseCpuDotProduct(std::string_view name);

/// How the CPU kernels of a spec are generated: the target's choices.
struct CpuKernelOptions {
  CpuDotProduct dot = CpuDotProduct::Avx2;
};

/// The kernel description the CPU generator records (`lq.cpu_spec`): the
/// operands, the epilogue, the micro-kernel tile and its dot product.
std::string describeCpuKernels(const GemmSpec &spec,
                               const CpuKernelOptions &options = {});

/// Micro-kernel tile: rows of the left operand and columns of the right one
/// held in accumulators; K advances in quads (four bytes of a 32-bit lane).
constexpr int64_t kCpuTileRows = 6;
constexpr int64_t kCpuTileCols = 16;
constexpr int64_t kCpuKQuad = 4;
/// Adjacent column blocks (of kCpuTileCols, as the B panels hold them) a
/// micro-kernel tile covers: four on the AVX-512 path, whose 6 x 64 tile
/// runs 24 vpdpbusd per K quad on 4 B loads and 6 A broadcasts (a tile of
/// one block, 6 vpdpbusd on 1 load and 6 broadcasts, is bound by the
/// loads), else one.
inline int64_t cpuTileColBlocks(CpuDotProduct dot) {
  return dot == CpuDotProduct::Avx512Vnni ? 4 : 1;
}

/// The panels lq_pack_a and lq_pack_b write, in 32-bit words. A block of
/// kCpuTileRows rows of A is a header of one correction word per row, then
/// per SMP sample and K quad one word per row; a block of kCpuTileCols
/// columns of B is a header of one correction word per column, then per K
/// quad one word per column.
inline int64_t cpuKQuads(int64_t k) { return (k + kCpuKQuad - 1) / kCpuKQuad; }
inline int64_t cpuPanelABlockWords(int64_t k, int64_t samples) {
  return kCpuTileRows * (1 + samples * cpuKQuads(k));
}
inline int64_t cpuPanelBBlockWords(int64_t k) {
  return kCpuTileCols * (1 + cpuKQuads(k));
}

/// Builds the stage functions of `spec` (see above), each with a C
/// interface (`_mlir_ciface_lq_<stage>_<side>`).
mlir::OwningOpRef<mlir::ModuleOp>
buildCpuGemmKernels(mlir::MLIRContext &ctx, const GemmSpec &spec,
                    const CpuKernelOptions &options = {});

/// Builds the stages that quantize one float operand to packed storage:
/// its statistics, `lq_quant_lhs` and `lq_pack4` (codes -> two per byte).
mlir::OwningOpRef<mlir::ModuleOp>
buildCpuQuantizeKernels(mlir::MLIRContext &ctx, const OperandSpec &op);

/// Lowers a module of CPU kernels (scf, vector, arith, math, memref, func,
/// llvm intrinsics) to the LLVM dialect.
mlir::LogicalResult lowerCpuKernelsToLLVM(mlir::ModuleOp module);

} // namespace lq

#endif // LQ_CONVERSION_CPUKERNELS_H
