//===- LqDialect.h - the lq dialect -----------------------------*- C++ -*-===//

#ifndef LQ_DIALECT_LQDIALECT_H
#define LQ_DIALECT_LQDIALECT_H

#include "lq/Format.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "lq/Dialect/LqDialect.h.inc"
#include "lq/Dialect/LqEnums.h.inc"

#define GET_TYPEDEF_CLASSES
#include "lq/Dialect/LqTypes.h.inc"

#define GET_ATTRDEF_CLASSES
#include "lq/Dialect/LqAttrs.h.inc"

#define GET_OP_CLASSES
#include "lq/Dialect/LqOps.h.inc"

namespace lq {

/// Format of an lq format type (`!lq.sint4`, `!lq.uint4`, `!lq.log4`).
Format getFormat(mlir::Type formatType);

/// Largest SMP sample count: keeps N * K * 960 in int32 for useful K.
constexpr unsigned kMaxSmpSamples = 64;

/// Largest |a * b| of two codes when at most one is log4 (15 * 64): with it,
/// `K * samples * kMaxCodeProduct < 2^31` bounds the exact int32 accumulator.
constexpr int64_t kMaxCodeProduct = 15 * 64;

} // namespace lq

#endif // LQ_DIALECT_LQDIALECT_H
