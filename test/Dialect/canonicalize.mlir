// RUN: lq-opt %s --canonicalize --split-input-file | FileCheck %s

// SAWB codes survive dequantize + quantize with the same clip unchanged.
// CHECK-LABEL: func.func @sawb_requantize
// CHECK: %[[Q:.*]], %[[S:.*]], %{{.*}}, %{{.*}} = lq.quantize
// CHECK-NOT: lq.dequantize
// CHECK-NOT: lq.quantize
// CHECK: return %[[Q]], %[[S]], %false, %c0_i32
func.func @sawb_requantize(%x: tensor<4x8xf32>) -> (!lq.qtensor<4x8x!lq.sint4>, f32, i1, i32) {
  %clip = lq.sawb_clip %x : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  %d = lq.dequantize %q scale %s : !lq.qtensor<4x8x!lq.sint4> -> tensor<4x8xf32>
  %q2, %s2, %nf2, %ov2 = lq.quantize %d range %clip : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q2, %s2, %nf2, %ov2 : !lq.qtensor<4x8x!lq.sint4>, f32, i1, i32
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
