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

/// How a GEMM operand reaches the kernel.
enum class OperandStorage { F32, BF16, Packed };

struct CpuOperandSpec {
  Format format = Format::SInt4;
  OperandStorage storage = OperandStorage::F32;
  /// The operand is given transposed: [K, M] for the left one, [N, K] for
  /// the right one.
  bool transposed = false;
};

struct CpuGemmSpec {
  CpuOperandSpec lhs, rhs;
  bool bias = false;
  bool relu = false;
  bool bf16Output = false;

  /// A stable, human-readable description (part of the cache key).
  std::string describe() const;
};

/// How `operand` of `op` reaches a fused kernel, read off its producer:
/// lq.quantize (f32/bf16, quantized in the kernel) or lq.unpack (packed).
/// Emits an error naming `side` and `device` otherwise.
mlir::FailureOr<CpuOperandSpec> matmulOperandSpec(MatmulOp op,
                                                  mlir::Value operand,
                                                  bool transposed,
                                                  llvm::StringRef side,
                                                  llvm::StringRef device);

/// Micro-kernel tile: rows of the left operand and columns of the right one
/// held in accumulators; K advances in pairs (one vpmaddwd).
constexpr int64_t kCpuTileRows = 6;
constexpr int64_t kCpuTileCols = 16;

/// Builds the stage functions of `spec` (see above), each with a C
/// interface (`_mlir_ciface_lq_<stage>_<side>`).
mlir::OwningOpRef<mlir::ModuleOp> buildCpuGemmKernels(mlir::MLIRContext &ctx,
                                                      const CpuGemmSpec &spec);

/// Builds the stages that quantize one float operand to packed storage:
/// its statistics, `lq_quant_lhs` and `lq_pack4` (codes -> two per byte).
mlir::OwningOpRef<mlir::ModuleOp>
buildCpuQuantizeKernels(mlir::MLIRContext &ctx, const CpuOperandSpec &op);

/// Lowers a module of CPU kernels (scf, vector, arith, math, memref, func,
/// llvm intrinsics) to the LLVM dialect.
mlir::LogicalResult lowerCpuKernelsToLLVM(mlir::ModuleOp module);

} // namespace lq

#endif // LQ_CONVERSION_CPUKERNELS_H
