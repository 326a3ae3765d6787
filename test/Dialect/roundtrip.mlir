// RUN: lq-opt %s | lq-opt | FileCheck %s
// RUN: lq-opt %s --mlir-print-op-generic | lq-opt | FileCheck %s

// CHECK-LABEL: func.func @types
// CHECK-SAME: !lq.qtensor<4x8x!lq.sint4>
// CHECK-SAME: !lq.qtensor<?x8x!lq.uint4>
// CHECK-SAME: !lq.qtensor<?x?x!lq.log4>
func.func @types(%a: !lq.qtensor<4x8x!lq.sint4>, %b: !lq.qtensor<?x8x!lq.uint4>,
                 %c: !lq.qtensor<?x?x!lq.log4>) {
  return
}

// CHECK-LABEL: func.func @scales
// CHECK: lq.max_abs %{{.*}} : tensor<128x512xbf16>
// CHECK: lq.sawb_clip %{{.*}} : tensor<?x784xf32>
func.func @scales(%dy: tensor<128x512xbf16>, %w: tensor<?x784xf32>) -> (f32, i1, f32) {
  %m, %bad = lq.max_abs %dy : tensor<128x512xbf16>
  %clip = lq.sawb_clip %w : tensor<?x784xf32>
  return %m, %bad, %clip : f32, i1, f32
}

// CHECK-LABEL: func.func @quantizers
// CHECK: lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} {hindsight, sample = 3 : i64, stream = 5 : i64} : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
// CHECK: lq.quantize %{{.*}} range %{{.*}} : tensor<4x8xf16> -> !lq.qtensor<4x8x!lq.uint4>
// CHECK: lq.dequantize %{{.*}} scale %{{.*}} : !lq.qtensor<4x8x!lq.log4> -> tensor<4x8xf32>
// CHECK: lq.pack %{{.*}} : !lq.qtensor<4x8x!lq.uint4> -> tensor<4x4xi8>
// CHECK: lq.unpack %{{.*}} : tensor<4x4xi8> -> !lq.qtensor<4x7x!lq.uint4>
func.func @quantizers(%x: tensor<4x8xf32>, %h: tensor<4x8xf16>, %m: f32, %seed: i64)
    -> (tensor<4x8xf32>, !lq.qtensor<4x7x!lq.uint4>, i1, i32) {
  %q, %alpha, %nf, %ov = lq.quantize %x range %m seed %seed {stream = 5, sample = 3, hindsight}
      : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  %u, %step, %nf2, %ov2 = lq.quantize %h range %m : tensor<4x8xf16> -> !lq.qtensor<4x8x!lq.uint4>
  %d = lq.dequantize %q scale %alpha : !lq.qtensor<4x8x!lq.log4> -> tensor<4x8xf32>
  %p = lq.pack %u : !lq.qtensor<4x8x!lq.uint4> -> tensor<4x4xi8>
  %u7 = lq.unpack %p : tensor<4x4xi8> -> !lq.qtensor<4x7x!lq.uint4>
  return %d, %u7, %nf, %ov : tensor<4x8xf32>, !lq.qtensor<4x7x!lq.uint4>, i1, i32
}

// CHECK-LABEL: func.func @gemms
// CHECK: lq.matmul(%{{.*}}) scale %{{.*}}, %{{.*}} scale %{{.*}} bias %{{.*}} {relu, role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<4x8x!lq.uint4>), !lq.qtensor<6x8x!lq.sint4>, tensor<6xf32> -> tensor<4x6xbf16>
// CHECK: lq.matmul(%{{.*}}, %{{.*}}) scale %{{.*}}, %{{.*}} scale %{{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<4x6x!lq.log4>, !lq.qtensor<4x6x!lq.log4>), !lq.qtensor<4x8x!lq.uint4> -> tensor<6x8xf32>
func.func @gemms(%x: !lq.qtensor<4x8x!lq.uint4>, %w: !lq.qtensor<6x8x!lq.sint4>,
                 %g0: !lq.qtensor<4x6x!lq.log4>, %g1: !lq.qtensor<4x6x!lq.log4>,
                 %s: f32, %b: tensor<6xf32>) -> (tensor<4x6xbf16>, tensor<6x8xf32>) {
  %y = lq.matmul (%x) scale %s, %w scale %s bias %b {transpose_rhs, relu, role = #lq.role<forward>}
      : (!lq.qtensor<4x8x!lq.uint4>), !lq.qtensor<6x8x!lq.sint4>, tensor<6xf32> -> tensor<4x6xbf16>
  %dw = lq.matmul (%g0, %g1) scale %s, %x scale %s {transpose_lhs, role = #lq.role<weight_grad>}
      : (!lq.qtensor<4x6x!lq.log4>, !lq.qtensor<4x6x!lq.log4>), !lq.qtensor<4x8x!lq.uint4> -> tensor<6x8xf32>
  return %y, %dw : tensor<4x6xbf16>, tensor<6x8xf32>
}

// CHECK-LABEL: func.func @layer
// CHECK: lq.linear %{{.*}}, %{{.*}} bias %{{.*}} {unsigned_input} : tensor<?x784xf32>, tensor<512x784xf32>, tensor<512xf32> -> tensor<?x512xf32>
// CHECK: lq.linear_grad %{{.*}}, %{{.*}}, %{{.*}} seed %{{.*}} max_estimate %{{.*}} {smp = 4 : i64, stream = 9 : i64} : tensor<?x784xf32>, tensor<512x784xf32>, tensor<?x512xf32> -> tensor<?x784xf32>, tensor<512x784xf32>
func.func @layer(%x: tensor<?x784xf32>, %w: tensor<512x784xf32>, %b: tensor<512xf32>,
                 %dy: tensor<?x512xf32>, %seed: i64, %mhat: f32)
    -> (tensor<?x512xf32>, tensor<?x784xf32>, tensor<512x784xf32>, f32, i1, i32) {
  %y = lq.linear %x, %w bias %b {unsigned_input}
      : tensor<?x784xf32>, tensor<512x784xf32>, tensor<512xf32> -> tensor<?x512xf32>
  %dx, %dw, %gmax, %bad, %ovf = lq.linear_grad %x, %w, %dy seed %seed max_estimate %mhat {smp = 4, stream = 9}
      : tensor<?x784xf32>, tensor<512x784xf32>, tensor<?x512xf32> -> tensor<?x784xf32>, tensor<512x784xf32>
  return %y, %dx, %dw, %gmax, %bad, %ovf : tensor<?x512xf32>, tensor<?x784xf32>, tensor<512x784xf32>, f32, i1, i32
}
