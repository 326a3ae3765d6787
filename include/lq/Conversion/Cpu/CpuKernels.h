//===- CpuKernels.h - generated x86-64 kernels of a quantized GEMM -*- C++ -*-===//
//
// The CPU form of a fused quantized GEMM is a set of stage functions on
// memrefs, built from the numerics in NumericsBuilder and lowered to LLVM:
//
//   maxabs / moments   scale statistics of a float operand (row range)
//   quant              f32/bf16 rows -> 4-bit codes (one per byte), once
//                      per element: LUQ (Philox) or SAWB
//   pack_a / pack_b    codes (one per byte, or packed two per byte) ->
//                      integer values in int16 panels laid out for the
//                      micro-kernel (pairs along K, zero padded)
//   gemm               AVX2 micro-kernel: vpmaddwd into exact int32
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

#include <string>

namespace lq {

/// The kernel description the CPU generator records (`lq.cpu_spec`): the
/// operands, the epilogue and the micro-kernel tile.
std::string describeCpuKernels(const GemmSpec &spec);

/// Micro-kernel tile: rows of the left operand and columns of the right one
/// held in accumulators; K advances in pairs (one vpmaddwd).
constexpr int64_t kCpuTileRows = 6;
constexpr int64_t kCpuTileCols = 16;

/// Builds the stage functions of `spec` (see above), each with a C
/// interface (`_mlir_ciface_lq_<stage>_<side>`).
mlir::OwningOpRef<mlir::ModuleOp> buildCpuGemmKernels(mlir::MLIRContext &ctx,
                                                      const GemmSpec &spec);

/// Builds the stages that quantize one float operand to packed storage:
/// its statistics, `lq_quant_lhs` and `lq_pack4` (codes -> two per byte).
mlir::OwningOpRef<mlir::ModuleOp>
buildCpuQuantizeKernels(mlir::MLIRContext &ctx, const OperandSpec &op);

/// Lowers a module of CPU kernels (scf, vector, arith, math, memref, func,
/// llvm intrinsics) to the LLVM dialect.
mlir::LogicalResult lowerCpuKernelsToLLVM(mlir::ModuleOp module);

} // namespace lq

#endif // LQ_CONVERSION_CPUKERNELS_H
