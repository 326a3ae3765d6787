//===- LqDialect.h - the lq dialect -----------------------------*- C++ -*-===//

#ifndef LQ_DIALECT_LQDIALECT_H
#define LQ_DIALECT_LQDIALECT_H

#include "lq/Spec/Spec.h"

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

/// Largest SMP sample count (the contract's, lq/Spec/Spec.h).
constexpr unsigned kMaxSmpSamples = kMaxSamples;

} // namespace lq

#endif // LQ_DIALECT_LQDIALECT_H
