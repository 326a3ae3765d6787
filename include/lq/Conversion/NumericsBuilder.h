//===- NumericsBuilder.h - the numerics as arith ops ------------*- C++ -*-===//
//
// Emits the scalar math of docs/numerics.md as arith/math ops: Philox4x32-10,
// the per-element uniform, LUQ and SAWB codes, and code decoding. Every
// lq lowering (the linalg reference, CPU and GPU kernels) builds its
// quantizers from these functions, so they agree bit for bit by
// construction; the numerics core in lib/Numerics is the independent
// check.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_CONVERSION_NUMERICSBUILDER_H
#define LQ_CONVERSION_NUMERICSBUILDER_H

#include "lq/Dialect/LqDialect.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>

namespace lq {

/// LUQ/SAWB math on i32/i64/f32 SSA values: scalars, or vectors of `width`
/// lanes (every value then has that many lanes and the math is elementwise,
/// so a vectorized kernel computes exactly what a scalar loop computes).
class NumericsBuilder {
public:
  explicit NumericsBuilder(mlir::ImplicitLocOpBuilder &b, int64_t width = 0)
      : b(b), width(width) {}

  mlir::ImplicitLocOpBuilder &builder() { return b; }

  /// `elementType`, or a vector of it in vector mode.
  mlir::Type shaped(mlir::Type elementType);
  /// A constant of `type` (scalar) splat to the builder's shape.
  mlir::Value constant(mlir::Type elementType, mlir::TypedAttr value);

  mlir::Value i8(int64_t v);
  mlir::Value i32(int64_t v);
  mlir::Value i64(int64_t v);
  mlir::Value f32(float v);
  mlir::Value f32FromBits(uint32_t bits);

  /// Philox4x32-10 of a 4-word counter under a 2-word key (i32 values).
  std::array<mlir::Value, 4> philox(std::array<mlir::Value, 4> counter,
                                    std::array<mlir::Value, 2> key);

  /// The four Philox words of counter block `block` (i64): the random words
  /// of elements 4 * block + 0..3.
  std::array<mlir::Value, 4> philoxBlock(mlir::Value seed, mlir::Value stream,
                                         mlir::Value sample, mlir::Value block);
  /// The f32 uniform in [0, 1) of a random word: its top 24 bits * 2^-24.
  mlir::Value wordToUniform(mlir::Value word);

  /// The f32 uniform in [0, 1) of element `index` (i64) for `seed` (i64),
  /// `sample` and `stream` (i32).
  mlir::Value uniform(mlir::Value seed, mlir::Value stream, mlir::Value sample,
                      mlir::Value index);

  /// |x| as i32 bits of a non-negative f32; NaN and Inf compare above every
  /// finite magnitude, which makes max |x| and the non-finite test one
  /// unsigned integer maximum.
  mlir::Value absBits(mlir::Value x);
  /// True when absBits value `bits` is NaN or Inf.
  mlir::Value isNonfiniteBits(mlir::Value bits);

  /// True when a scale range `m` (f32) is usable: 2^-120 <= m < Inf.
  mlir::Value isUsableRange(mlir::Value m);

  /// r = |x| * inv, the magnitude of f32 `x` in units of alpha.
  mlir::Value luqScaled(mlir::Value x, mlir::Value inv);
  /// True (i1) when `x` saturates above the top LUQ level: r > 64.
  mlir::Value luqOverflows(mlir::Value x, mlir::Value inv);
  /// The LUQ code (i8, 0..15) of f32 `x` with inverse scale `inv` (64 / m)
  /// and uniform `u`.
  mlir::Value luqCode(mlir::Value x, mlir::Value inv, mlir::Value u);

  /// The SAWB code (i8 nibble, 0..15; signed codes in two's complement) of
  /// f32 `x` with inverse step `inv` (7 / clip or 15 / clip).
  mlir::Value sawbCode(mlir::Value x, mlir::Value inv, bool isUnsigned);

  /// f32 -> bf16 bits (i16), round to nearest even; a NaN stays a quiet
  /// NaN. In integer ops, so that no runtime library call is needed.
  mlir::Value toBf16Bits(mlir::Value x);

  /// The GEMM epilogue of an exact sum `acc` (i32): f32(acc) * scale
  /// (+ bias) (ReLU, keeping NaN), as f32 or as bf16 bits (i16).
  mlir::Value epilogue(mlir::Value acc, mlir::Value scale, mlir::Value bias,
                       bool relu, bool bf16Output);

  /// The integer value (i32) of a code nibble (i8) of `format`.
  mlir::Value decode(mlir::Value code, Format format);

private:
  mlir::ImplicitLocOpBuilder &b;
  int64_t width;
};

} // namespace lq

#endif // LQ_CONVERSION_NUMERICSBUILDER_H
