//===- InitAll.h - register lq and what it uses -----------------*- C++ -*-===//
//
// One place that lists the dialects and passes lq tools work with, shared by
// lq-opt and every later tool or binding.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_INITALL_H
#define LQ_INITALL_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace lq {

/// The lq dialect and the upstream dialects its programs and lowerings use
/// (func, arith, math, tensor, linalg, bufferization, memref, scf, vector,
/// llvm, gpu, nvvm) and the NVVM target serializer.
void registerAllDialects(mlir::DialectRegistry &registry);

/// lq's passes and the upstream passes of its pipelines.
void registerAllPasses();

} // namespace lq

#endif // LQ_INITALL_H
