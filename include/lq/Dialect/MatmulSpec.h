//===- MatmulSpec.h - the kernel spec of an lq.matmul -----------*- C++ -*-===//
//
// One reader of lq.matmul ops for everything that turns them into kernels:
// the CPU and GPU generator passes and the runtime's program compile.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_DIALECT_MATMULSPEC_H
#define LQ_DIALECT_MATMULSPEC_H

#include "lq/Dialect/LqDialect.h"
#include "lq/Spec/Spec.h"

namespace lq {

/// The kernel spec of `op`, read off its ops: each operand's format (its
/// qtensor type), transpose, and how it reaches the kernel (lq.quantize of
/// f32 or bf16: quantized inside it; lq.unpack: packed codes), the SMP
/// samples, in-hindsight scaling (the left lq.quantize's), bias, ReLU and
/// the output type. The target is left to the caller (HostCPU). An operand
/// of any other producer or element type is an error emitted on `op`,
/// naming the side and the kind of kernel (`device`: "CPU", "GPU").
mlir::FailureOr<GemmSpec> readMatmulSpec(MatmulOp op, llvm::StringRef device);

} // namespace lq

#endif // LQ_DIALECT_MATMULSPEC_H
