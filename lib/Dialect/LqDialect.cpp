//===- LqDialect.cpp - lq dialect, types and attributes -------------------===//

#include "lq/Dialect/LqDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace lq;

#include "lq/Dialect/LqDialect.cpp.inc"
#include "lq/Dialect/LqEnums.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "lq/Dialect/LqTypes.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "lq/Dialect/LqAttrs.cpp.inc"

void LqDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "lq/Dialect/LqTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "lq/Dialect/LqAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "lq/Dialect/LqOps.cpp.inc"
      >();
}

Format lq::getFormat(Type formatType) {
  if (isa<SInt4Type>(formatType))
    return Format::SInt4;
  if (isa<UInt4Type>(formatType))
    return Format::UInt4;
  assert(isa<Log4Type>(formatType) && "not an lq format type");
  return Format::Log4;
}

//===----------------------------------------------------------------------===//
// QTensorType
//===----------------------------------------------------------------------===//

Type QTensorType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  Type format;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/true) ||
      parser.parseType(format) || parser.parseGreater())
    return {};
  return parser.getChecked<QTensorType>(parser.getContext(), shape, format);
}

void QTensorType::print(AsmPrinter &printer) const {
  printer << '<';
  for (int64_t dim : getShape()) {
    if (ShapedType::isDynamic(dim))
      printer << '?';
    else
      printer << dim;
    printer << 'x';
  }
  printer << getFormat() << '>';
}

LogicalResult
QTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                    ArrayRef<int64_t> shape, Type format) {
  if (shape.size() != 2)
    return emitError() << "lq.qtensor must be 2-D, got rank " << shape.size();
  for (int64_t dim : shape)
    if (dim < 0 && !ShapedType::isDynamic(dim))
      return emitError() << "lq.qtensor dimension must be >= 0 or '?', got "
                         << dim;
  if (!isa<SInt4Type, UInt4Type, Log4Type>(format))
    return emitError() << "lq.qtensor format must be !lq.sint4, !lq.uint4 or "
                          "!lq.log4, got "
                       << format;
  return success();
}
