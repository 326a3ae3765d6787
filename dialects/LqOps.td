//===- LqOps.td - lq operations -----------------------------*- tablegen -*-===//

#ifndef LQ_OPS_TD
#define LQ_OPS_TD

include "LqTypes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Lq_FloatMatrix : 2DTensorOf<[F32, BF16, F16]>;
def Lq_F32Matrix : 2DTensorOf<[F32]>;
def Lq_F32Vector : 1DTensorOf<[F32]>;

//===----------------------------------------------------------------------===//
// Scale computation
//===----------------------------------------------------------------------===//

def Lq_MaxAbsOp : Lq_Op<"max_abs", [Pure]> {
  let summary = "maximum of |x| over a tensor, and whether it is finite";
  let description = [{
    Computes `m = max |x_i|` over the finite elements, exactly (the result
    does not depend on the order of evaluation), and `nonfinite`, true when
    any element is NaN or +-Inf. This is the LUQ max scaling statistic; the
    maximum of the signed values would be wrong for tensors whose largest
    magnitude is negative. Ignoring non-finite elements keeps an
    in-hindsight estimate usable after a step that was skipped.

    ```mlir
    %m, %bad = lq.max_abs %dy : tensor<128x512xf32>
    ```
  }];
  let arguments = (ins Lq_FloatMatrix:$input);
  let results = (outs F32:$max, I1:$nonfinite);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Lq_SawbClipOp : Lq_Op<"sawb_clip", [Pure]> {
  let summary = "SAWB clipping value of a tensor";
  let description = [{
    Computes the 4-bit SAWB clip `12.1 * sqrt(E[x^2]) - 12.2 * E[|x|]` from
    f64 moments, rounded to f32. When that value is not finite, not
    positive, or above `max |x|`, the clip is `max |x|`. Non-finite inputs
    give a NaN clip, which `lq.quantize` turns into zero codes and a
    `nonfinite` flag.

    ```mlir
    %clip = lq.sawb_clip %w : tensor<512x784xf32>
    ```
  }];
  let arguments = (ins Lq_FloatMatrix:$input);
  let results = (outs F32:$clip);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

//===----------------------------------------------------------------------===//
// Quantize / dequantize
//===----------------------------------------------------------------------===//

def Lq_QuantizeOp : Lq_Op<"quantize", [Pure]> {
  let summary = "quantize a matrix to 4-bit codes (LUQ or SAWB)";
  let description = [{
    The result type's format selects the quantizer:

    * `!lq.log4`: LUQ. `range` is the max scale `m` (from `lq.max_abs`, or
      an in-hindsight estimate, marked with the `hindsight` unit
      attribute). Stochastic underflow and logarithmic rounding draw their
      uniforms from Philox4x32-10 keyed by `seed`, at counter (element
      index, `sample`, `stream`). `scale` is `alpha = m / 64`. Elements
      whose scaled magnitude exceeds 64 (possible only when `m` is an
      estimate) saturate and are counted in `overflow`.
    * `!lq.sint4` / `!lq.uint4`: SAWB round-to-nearest-even with `range` the
      clip (from `lq.sawb_clip`); `scale` is `clip / 7` (signed) or
      `clip / 15` (unsigned). No seed, stream or sample.

    If any input element or `range` is NaN or +-Inf, every code is zero,
    `scale` is 0 and `nonfinite` is true. A finite `range` below 2^-120
    (zero included) gives zero codes and scale 0 without the flag. Two
    quantize ops with equal operands and attributes produce identical codes,
    whichever device runs them.

    ```mlir
    %q, %alpha, %bad, %ovf = lq.quantize %dy range %m seed %seed
        {stream = 2, sample = 0}
        : tensor<128x512xf32> -> !lq.qtensor<128x512x!lq.log4>
    ```
  }];
  let arguments = (ins Lq_FloatMatrix:$input, F32:$range,
                       Optional<I64>:$seed,
                       DefaultValuedAttr<I64Attr, "0">:$stream,
                       DefaultValuedAttr<I64Attr, "0">:$sample,
                       UnitAttr:$hindsight);
  let results = (outs Lq_QTensor:$result, F32:$scale, I1:$nonfinite,
                      I32:$overflow);
  let assemblyFormat = [{
    $input `range` $range (`seed` $seed^)? attr-dict `:` type($input) `->`
    qualified(type($result))
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def Lq_DequantizeOp : Lq_Op<"dequantize", [Pure]> {
  let summary = "real values of 4-bit codes";
  let description = [{
    `result[i, j] = value(code[i, j]) * scale` in f32, where `value` is the
    integer of an int4 code or `+-2^(e-1)` (0 for e = 0) of a log4 code.

    ```mlir
    %x = lq.dequantize %q scale %alpha
        : !lq.qtensor<128x512x!lq.log4> -> tensor<128x512xf32>
    ```
  }];
  let arguments = (ins Lq_QTensor:$input, F32:$scale);
  let results = (outs Lq_F32Matrix:$result);
  let assemblyFormat = [{
    $input `scale` $scale attr-dict `:` qualified(type($input)) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Lq_PackOp : Lq_Op<"pack", [Pure]> {
  let summary = "codes of a quantized matrix as packed bytes";
  let description = [{
    The storage form of a quantized matrix: two codes per byte, row-major,
    element `2j` of a row in bits 0..3 of byte `j` and element `2j+1` in bits
    4..7; a row with an odd number of codes ends with a zero nibble. The
    result has `ceil(cols / 2)` bytes per row. Signed int4 codes are stored
    in two's complement.

    ```mlir
    %bytes = lq.pack %q : !lq.qtensor<128x5x!lq.log4> -> tensor<128x3xi8>
    ```
  }];
  let arguments = (ins Lq_QTensor:$input);
  let results = (outs 2DTensorOf<[I8]>:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Lq_UnpackOp : Lq_Op<"unpack", [Pure]> {
  let summary = "a quantized matrix from packed bytes";
  let description = [{
    The inverse of `lq.pack`: reads `ceil(cols / 2)` bytes per row and
    yields the codes with the result's shape and format. The padding nibble
    of an odd row is ignored. The scale travels separately, as for every
    quantized matrix.

    ```mlir
    %q = lq.unpack %bytes : tensor<128x3xi8> -> !lq.qtensor<128x5x!lq.log4>
    ```
  }];
  let arguments = (ins 2DTensorOf<[I8]>:$input);
  let results = (outs Lq_QTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Quantized GEMM
//===----------------------------------------------------------------------===//

def Lq_MatmulOp : Lq_Op<"matmul", [Pure, AttrSizedOperandSegments]> {
  let summary = "exact integer GEMM of 4-bit operands with an f32 epilogue";
  let description = [{
    `C = fp32(acc) * s (+ bias) (ReLU) (-> bf16)` with
    `acc[m, n] = sum_k a[m, k] * b[k, n]` over the integer values of the
    codes, computed exactly in 32-bit integers. `a` is `lhs` (transposed
    when `transpose_lhs`), `b` is `rhs` (transposed when `transpose_rhs`).

    Several `lhs` operands are SMP samples of one LUQ-quantized tensor
    (their count N a power of two, at most 64): their accumulators are
    summed exactly and `s = fp32(lhs_scale * rhs_scale) / N`.

    At most one operand is `log4`, so that every product fits the exact
    int32 bound of the numerics. The optional `role` states which training
    GEMM this is and is checked against the operand formats: `forward`
    takes two int4 operands, `backward_data` and `weight_grad` a log4
    gradient on the left and an int4 operand on the right.

    ```mlir
    %dx = lq.matmul (%g) scale %alpha, %w scale %step {role = #lq.role<backward_data>}
        : (!lq.qtensor<128x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4>
        -> tensor<128x784xf32>
    ```
  }];
  let arguments = (ins Variadic<Lq_QTensor>:$lhs, F32:$lhs_scale,
                       Lq_QTensor:$rhs, F32:$rhs_scale,
                       Optional<Lq_F32Vector>:$bias,
                       UnitAttr:$transpose_lhs, UnitAttr:$transpose_rhs,
                       UnitAttr:$relu,
                       OptionalAttr<Lq_GemmRoleAttr>:$role);
  let results = (outs 2DTensorOf<[F32, BF16]>:$result);
  let assemblyFormat = [{
    `(` $lhs `)` `scale` $lhs_scale `,` $rhs `scale` $rhs_scale
    (`bias` $bias^)? attr-dict `:` `(` qualified(type($lhs)) `)` `,`
    qualified(type($rhs)) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Number of SMP samples of the left operand.
    unsigned getNumSamples() { return getLhs().size(); }
    QTensorType getLhsType() {
      return ::llvm::cast<QTensorType>(getLhs().front().getType());
    }
    QTensorType getRhsType() { return getRhs().getType(); }
  }];
}

//===----------------------------------------------------------------------===//
// Training-level linear layer
//===----------------------------------------------------------------------===//

def Lq_LinearOp : Lq_Op<"linear", [Pure]> {
  let summary = "forward pass of a linear layer in 4 bits: y = Q(x) Q(W)^T + b";
  let description = [{
    The forward GEMM of paper Eq. 1: the input `x [B, I]` and the weight
    `W [O, I]` are quantized with SAWB to 4-bit integers (the input
    unsigned when `unsigned_input` says it is non-negative, e.g. after a
    ReLU), multiplied exactly, and the f32 bias `[O]` is added.
    `lq-expand-linear` turns it into `lq.sawb_clip`, `lq.quantize` and
    `lq.matmul`.

    ```mlir
    %y = lq.linear %x, %w bias %b
        : tensor<128x784xf32>, tensor<512x784xf32>, tensor<512xf32>
        -> tensor<128x512xf32>
    ```
  }];
  let arguments = (ins Lq_F32Matrix:$input, Lq_F32Matrix:$weight,
                       Optional<Lq_F32Vector>:$bias,
                       UnitAttr:$unsigned_input);
  let results = (outs Lq_F32Matrix:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

def Lq_LinearGradOp : Lq_Op<"linear_grad", [Pure]> {
  let summary = "backward pass of a linear layer in 4 bits (dx and dW)";
  let description = [{
    The two backward GEMMs of paper Eqs. 2-3 for `y = x W^T`, given the
    output gradient `dy [B, O]`:

    * backward data `dx = Q_luq(dy) Q_int(W)`,
    * weight gradient `dW = Q_luq(dy)^T Q_int(x)`.

    `dy` is quantized with LUQ once per SMP sample (`smp`, a power of two)
    and the same codes feed both GEMMs, so both see the same sample. The
    Philox stream is `stream`; when absent, `lq-expand-linear` assigns one
    that no other layer of the function uses. With `max_estimate` the LUQ
    scale is that in-hindsight estimate instead of `max |dy|`.

    Results: `dx`, `dW`, `grad_max` (this step's `max |dy|`, from which the
    caller forms the next in-hindsight estimate), `nonfinite` (dy held NaN
    or Inf: both gradients are zero and the caller should skip the step),
    and `overflow` (elements above the in-hindsight estimate, saturated).

    ```mlir
    %dx, %dw, %gmax, %bad, %ovf = lq.linear_grad %x, %w, %dy seed %seed
        {smp = 2}
        : tensor<128x784xf32>, tensor<512x784xf32>, tensor<128x512xf32>
        -> tensor<128x784xf32>, tensor<512x784xf32>
    ```
  }];
  let arguments = (ins Lq_F32Matrix:$input, Lq_F32Matrix:$weight,
                       Lq_F32Matrix:$grad, I64:$seed,
                       Optional<F32>:$max_estimate,
                       OptionalAttr<I64Attr>:$stream,
                       DefaultValuedAttr<I64Attr, "1">:$smp,
                       UnitAttr:$unsigned_input);
  let results = (outs Lq_F32Matrix:$input_grad, Lq_F32Matrix:$weight_grad,
                      F32:$grad_max, I1:$nonfinite, I32:$overflow);
  let assemblyFormat = [{
    $input `,` $weight `,` $grad `seed` $seed
    (`max_estimate` $max_estimate^)? attr-dict `:` type($input) `,`
    type($weight) `,` type($grad) `->` type($input_grad) `,`
    type($weight_grad)
  }];
  let hasVerifier = 1;
}

#endif // LQ_OPS_TD
