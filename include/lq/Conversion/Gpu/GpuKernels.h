//===- GpuKernels.h - generated CUDA kernels of a quantized GEMM -*- C++ -*-===//
//
// The GPU form of a fused quantized GEMM: a gpu.module of kernels built from
// the numerics in NumericsBuilder (the same arithmetic as the CPU kernels
// and the linalg reference), in the gpu/nvvm/llvm dialects. The kernel
// names, parameters and launch geometry are the contract in
// lq/Spec/GpuAbi.h.
//
// The GEMM main loop, per CTA tile and k-step:
//   1. copy the raw operand tiles (f32, bf16 bits or packed codes) from
//      global to a shared-memory stage: cp.async (16-byte chunks, several
//      stages in flight) or plain loads for unaligned layouts;
//   2. convert the stage to an int8 tile in shared memory: LUQ (Philox
//      stream, indexed by the element's place in the stored tensor, so any
//      tiling draws the same sample) or SAWB on float data, widening of
//      packed codes; masked edges give 0;
//   3. tensor cores on the int8 tiles: mma.sync m16n8k32 s8 (sm_80) or
//      wgmma m64nNk32 s8 from shared-memory descriptors (sm_90a), exact
//      int32 accumulation, SMP samples summed in the same accumulators;
// then the epilogue: scale, bias, ReLU, f32 or bf16 stores.
//
// sm_90a modules of two float operands also hold the quantize-once
// placement for the tensor cores: lq_quant8_<side> writes each operand's
// int8 codes K-contiguous once, and lq_gemm_ws_* multiplies them in a
// persistent, warp-specialized kernel (TMA with 128-byte swizzle into a
// ring of stages, wgmma with one group in flight, setmaxnreg).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_CONVERSION_GPUKERNELS_H
#define LQ_CONVERSION_GPUKERNELS_H

#include "lq/Spec/GpuAbi.h"

#include "llvm/ADT/StringRef.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <functional>
#include <string>
#include <vector>

namespace lq {

/// On a generated `gpu.func`: the indices (dense i32 array) of the
/// arguments that are CUtensorMaps passed by value; lq-gpu-kernel-params
/// applies the parameter attributes once the kernel is an llvm.func.
constexpr llvm::StringLiteral kTensorMapArgsAttr = "lq.tensor_map_args";

/// The PTX ISA version features the kernels of `chip` use ("+ptx80").
const char *gpuPtxFeatures(Target chip);

/// The tile configurations the GEMM of `spec` is generated with (small
/// first): the launcher picks one per shape.
std::vector<cuda::GemmTile> gpuGemmTiles(const GemmSpec &spec);

/// Selects kernels of a module by name; an empty filter selects all.
using KernelFilter = std::function<bool(llvm::StringRef)>;

/// Builds a module holding `gpu.module @lq_kernels` with the kernels of
/// `spec` (statistics and quantizers of its float operands, the GEMM in
/// every tile and copy variant, and the epilogue fill of hindsight mode),
/// or those of them that `only` selects: a launch needs two or three.
mlir::OwningOpRef<mlir::ModuleOp>
buildGpuGemmKernels(mlir::MLIRContext &ctx, const GemmSpec &spec,
                    const KernelFilter &only = {});

/// Builds the statistics and quantizer kernels of one float operand
/// (`lq_stats_lhs`, `lq_quant_lhs`), or those that `only` selects.
mlir::OwningOpRef<mlir::ModuleOp>
buildGpuQuantizeKernels(mlir::MLIRContext &ctx, const OperandSpec &op,
                        Target chip, const KernelFilter &only = {});

} // namespace lq

#endif // LQ_CONVERSION_GPUKERNELS_H
