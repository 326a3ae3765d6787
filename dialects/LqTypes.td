//===- LqTypes.td - lq types and attributes -----------------*- tablegen -*-===//

#ifndef LQ_TYPES_TD
#define LQ_TYPES_TD

include "LqDialect.td"

class Lq_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Lq_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Lq_SInt4Type : Lq_Type<"SInt4", "sint4"> {
  let summary = "signed 4-bit integer code (SAWB, values -7..7)";
  let description = [{
    A two's-complement 4-bit integer code in -7..7 (-8 is never produced, so
    the format is symmetric). The real value is `code * step` with the
    tensor's SAWB step. Used for weights and for activations that can be
    negative.
  }];
}

def Lq_UInt4Type : Lq_Type<"UInt4", "uint4"> {
  let summary = "unsigned 4-bit integer code (SAWB, values 0..15)";
  let description = [{
    An unsigned 4-bit integer code in 0..15 for tensors known to be
    non-negative, such as ReLU outputs. The real value is `code * step`.
  }];
}

def Lq_Log4Type : Lq_Type<"Log4", "log4"> {
  let summary = "4-bit radix-2 logarithmic code [sign, 3-bit exponent] (LUQ)";
  let description = [{
    Bit 3 is the sign, bits 2..0 the exponent `e`. `e = 0` is zero and
    `e = 1..7` is the magnitude `alpha * 2^(e-1)`, so the levels are
    `0, +-alpha * {1, 2, 4, 8, 16, 32, 64}`. Produced by LUQ from neural
    gradients.
  }];
}

def Lq_Format : AnyTypeOf<[Lq_SInt4Type, Lq_UInt4Type, Lq_Log4Type],
                          "lq 4-bit format">;

def Lq_QTensorType : Lq_Type<"QTensor", "qtensor"> {
  let summary = "2-D tensor of 4-bit codes in one lq format";
  let description = [{
    A quantized matrix: its logical shape (static or `?` dimensions) and the
    format of its codes. The scale that turns codes into real values is not
    part of the type: it is an `f32` SSA value produced with the codes.

    Example: `!lq.qtensor<128x512x!lq.log4>`.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape,
                        "::mlir::Type":$format);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    int64_t getDimSize(unsigned i) const { return getShape()[i]; }
    bool isLog4() const { return ::llvm::isa<Log4Type>(getFormat()); }
    bool isInt4() const { return !isLog4(); }
  }];
}

def Lq_QTensor : Type<CPred<"::llvm::isa<::lq::QTensorType>($_self)">,
                      "lq quantized matrix", "::lq::QTensorType">;

def Lq_GemmRole : I32EnumAttr<"GemmRole", "role of a GEMM in training a linear layer", [
  I32EnumAttrCase<"forward", 0>,
  I32EnumAttrCase<"backward_data", 1>,
  I32EnumAttrCase<"weight_grad", 2>
]> {
  let cppNamespace = "::lq";
  let genSpecializedAttr = 0;
}

def Lq_GemmRoleAttr : EnumAttr<Lq_Dialect, Lq_GemmRole, "role"> {
  let assemblyFormat = "`<` $value `>`";
}

#endif // LQ_TYPES_TD
