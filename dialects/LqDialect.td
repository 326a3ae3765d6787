//===- LqDialect.td - the lq dialect ------------------------*- tablegen -*-===//
//
// The lq dialect: quantized matrix multiplication for 4-bit training, with
// LUQ gradient quantization and SAWB forward quantization, at tensor level.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_DIALECT_TD
#define LQ_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Lq_Dialect : Dialect {
  let name = "lq";
  let cppNamespace = "::lq";
  let summary = "4-bit quantized GEMMs for neural-network training";
  let description = [{
    The `lq` dialect expresses the three GEMMs of training a linear layer
    (forward, backward-data, weight-gradient) with 4-bit operands, following
    Chmiel et al., "Accurate Neural Training with 4-bit Matrix
    Multiplications at Standard Formats" (ICLR 2023):

    * forward operands (weights, activations) in 4-bit integers with SAWB
      clipping and round-to-nearest (`!lq.sint4`, `!lq.uint4`);
    * neural gradients in a 4-bit radix-2 logarithmic format (`!lq.log4`)
      quantized with LUQ: max scaling, stochastic underflow and stochastic
      logarithmic rounding driven by a counter-based Philox stream, so that
      the quantizer is unbiased and reproducible bit for bit.

    Quantized tensors (`!lq.qtensor`) carry shape and format; their scale is
    an SSA `f32` value next to them. The numerics are those of
    `docs/numerics.md`: every lowering of these ops (the reference lowering
    to linalg, CPU and GPU kernels) produces identical bits.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let hasCanonicalizer = 0;
}

class Lq_Op<string mnemonic, list<Trait> traits = []>
    : Op<Lq_Dialect, mnemonic, traits>;

#endif // LQ_DIALECT_TD
