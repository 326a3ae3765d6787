// RUN: lq-opt %s --canonicalize --split-input-file | FileCheck %s

// SAWB codes survive dequantize + quantize with the producer's clip. With
// the clip lq.sawb_clip computes from the same input, a non-finite input
// makes the clip NaN and both quantizers report zero codes, scale 0 and the
// flag: every result is the producer's.
// CHECK-LABEL: func.func @sawb_requantize
// CHECK: %[[Q:.*]], %[[S:.*]], %[[NF:.*]], %{{.*}} = lq.quantize
// CHECK-NOT: lq.dequantize
// CHECK-NOT: lq.quantize
// CHECK: return %[[Q]], %[[S]], %[[NF]], %c0_i32
func.func @sawb_requantize(%x: tensor<4x8xf32>) -> (!lq.qtensor<4x8x!lq.sint4>, f32, i1, i32) {
  %clip = lq.sawb_clip %x : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q2, %s2, %nf2, %ov2 : !lq.qtensor<4x8x!lq.sint4>, f32, i1, i32
}

// -----

// A constant clip: the codes are the producer's, and the scale and flag are
// the clip's (2 / 7 in f32, finite), whatever the input: after a NaN input
// the producer reports scale 0 and the flag, the requantize of its zeros
// does not.
// CHECK-LABEL: func.func @sawb_requantize_constant_clip
// CHECK-DAG: %[[STEP:.*]] = arith.constant 0.285714298 : f32
// CHECK-DAG: %[[FALSE:.*]] = arith.constant false
// CHECK: %[[Q:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize
// CHECK-NOT: lq.dequantize
// CHECK-NOT: lq.quantize
// CHECK: return %[[Q]], %[[STEP]], %[[FALSE]], %c0_i32
func.func @sawb_requantize_constant_clip(%x: tensor<4x8xf32>) -> (!lq.qtensor<4x8x!lq.sint4>, f32, i1, i32) {
  %clip = arith.constant 2.0 : f32
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q2, %s2, %nf2, %ov2 : !lq.qtensor<4x8x!lq.sint4>, f32, i1, i32
}

// -----

// A NaN constant clip: both quantizers give zero codes, scale 0 and the flag.
// CHECK-LABEL: func.func @sawb_requantize_nan_clip
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG: %[[TRUE:.*]] = arith.constant true
// CHECK: %[[Q:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize
// CHECK-NOT: lq.quantize
// CHECK: return %[[Q]], %[[ZERO]], %[[TRUE]], %c0_i32
func.func @sawb_requantize_nan_clip(%x: tensor<4x8xf32>) -> (!lq.qtensor<4x8x!lq.uint4>, f32, i1, i32) {
  %clip = arith.constant 0x7FC00000 : f32
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.uint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.uint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.uint4>
  return %q2, %s2, %nf2, %ov2 : !lq.qtensor<4x8x!lq.uint4>, f32, i1, i32
}

// -----

// The same clip, but one the input does not decide: a NaN in %x makes the
// producer report scale 0 and the flag, while the requantize of its zero
// codes with a finite %c reports scale %c / 7 and no flag. No fold.
// CHECK-LABEL: func.func @sawb_requantize_argument_clip
// CHECK: lq.dequantize
// CHECK: lq.quantize
// CHECK: return
func.func @sawb_requantize_argument_clip(%x: tensor<4x8xf32>, %c: f32) -> (!lq.qtensor<4x8x!lq.sint4>, f32, i1, i32) {
  %q, %s, %nf, %ov = lq.quantize %x range %c : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %c : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q2, %s2, %nf2, %ov2 : !lq.qtensor<4x8x!lq.sint4>, f32, i1, i32
}

// -----

// The SAWB clip of another tensor is finite when %x holds a NaN: no fold.
// CHECK-LABEL: func.func @sawb_requantize_clip_of_other_tensor
// CHECK: lq.dequantize
// CHECK: lq.quantize
// CHECK: return
func.func @sawb_requantize_clip_of_other_tensor(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> (f32, i1) {
  %clip = lq.sawb_clip %y : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %s2, %nf2 : f32, i1
}

// -----

// A different clip changes the codes: no fold.
// CHECK-LABEL: func.func @sawb_requantize_other_clip
// CHECK: lq.dequantize
// CHECK: lq.quantize
func.func @sawb_requantize_other_clip(%x: tensor<4x8xf32>, %c2: f32) -> !lq.qtensor<4x8x!lq.sint4> {
  %clip = lq.sawb_clip %x : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %c2 : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q2 : !lq.qtensor<4x8x!lq.sint4>
}

// -----

// Re-quantizing to the other int4 format is a different quantizer: no fold.
// CHECK-LABEL: func.func @sawb_requantize_other_format
// CHECK: lq.dequantize
// CHECK: lq.quantize {{.*}} -> !lq.qtensor<4x8x!lq.uint4>
func.func @sawb_requantize_other_format(%x: tensor<4x8xf32>) -> !lq.qtensor<4x8x!lq.uint4> {
  %clip = lq.sawb_clip %x : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.uint4>
  return %q2 : !lq.qtensor<4x8x!lq.uint4>
}

// -----

// LUQ is not idempotent (64 / m is rounded and the rounding is stochastic):
// no fold.
// CHECK-LABEL: func.func @luq_requantize
// CHECK: lq.dequantize
// CHECK: lq.quantize
func.func @luq_requantize(%x: tensor<4x8xf32>, %seed: i64) -> !lq.qtensor<4x8x!lq.log4> {
  %m, %bad = lq.max_abs %x : tensor<4x8xf32>
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %seed : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  %d = lq.dequantize %q scale %a : !lq.qtensor<4x8x!lq.log4> -> tensor<4x8xf32>
  %q2, %a2, %nf2, %ov2 = lq.quantize %d range %m seed %seed : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return %q2 : !lq.qtensor<4x8x!lq.log4>
}

// -----

// CHECK-LABEL: func.func @unpack_of_pack
// CHECK-SAME: (%[[Q:.*]]: !lq.qtensor
// CHECK-NEXT: return %[[Q]]
func.func @unpack_of_pack(%q: !lq.qtensor<4x5x!lq.log4>) -> !lq.qtensor<4x5x!lq.log4> {
  %p = lq.pack %q : !lq.qtensor<4x5x!lq.log4> -> tensor<4x3xi8>
  %u = lq.unpack %p : tensor<4x3xi8> -> !lq.qtensor<4x5x!lq.log4>
  return %u : !lq.qtensor<4x5x!lq.log4>
}

// -----

// Quantizers have no side effects: one without users is erased.
// CHECK-LABEL: func.func @unused_quantize_erased
// CHECK-NOT: lq.
// CHECK: return
func.func @unused_quantize_erased(%x: tensor<4x8xf32>, %m: f32, %seed: i64) {
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %seed : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return
}
