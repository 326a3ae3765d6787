// RUN: lq-opt %s --lq-expand-linear --split-input-file --verify-diagnostics \
// RUN:   --allow-unregistered-dialect | FileCheck %s

// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[X:.*]]: tensor<128x784xf32>, %[[W:.*]]: tensor<512x784xf32>, %[[B:.*]]: tensor<512xf32>)
// CHECK-DAG: %[[CX:.*]] = lq.sawb_clip %[[X]]
// CHECK-DAG: %[[QX:.*]], %[[SX:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[X]] range %[[CX]] : tensor<128x784xf32> -> !lq.qtensor<128x784x!lq.uint4>
// CHECK-DAG: %[[CW:.*]] = lq.sawb_clip %[[W]]
// CHECK-DAG: %[[QW:.*]], %[[SW:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[W]] range %[[CW]] : tensor<512x784xf32> -> !lq.qtensor<512x784x!lq.sint4>
// CHECK: %[[Y:.*]] = lq.matmul(%[[QX]]) scale %[[SX]], %[[QW]] scale %[[SW]] bias %[[B]] {role = #lq.role<forward>, transpose_rhs}
// CHECK: return %[[Y]]
func.func @forward(%x: tensor<128x784xf32>, %w: tensor<512x784xf32>, %b: tensor<512xf32>) -> tensor<128x512xf32> {
  %y = lq.linear %x, %w bias %b {unsigned_input}
      : tensor<128x784xf32>, tensor<512x784xf32>, tensor<512xf32> -> tensor<128x512xf32>
  return %y : tensor<128x512xf32>
}

// -----

// Both backward GEMMs consume the same LUQ codes of dy, one quantize per SMP
// sample, all on the layer's stream.
// CHECK-LABEL: func.func @backward_smp
// CHECK-SAME: (%[[X:.*]]: tensor<?x784xf32>, %[[W:.*]]: tensor<512x784xf32>, %[[DY:.*]]: tensor<?x512xf32>, %[[SEED:.*]]: i64)
// CHECK: %[[M:.*]], %{{.*}} = lq.max_abs %[[DY]]
// CHECK: %[[G0:.*]], %[[A:.*]], %[[NF:.*]], %[[OV:.*]] = lq.quantize %[[DY]] range %[[M]] seed %[[SEED]] {stream = 4 : i64} : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
// CHECK: %[[G1:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize %[[DY]] range %[[M]] seed %[[SEED]] {sample = 1 : i64, stream = 4 : i64}
// CHECK: lq.quantize %[[W]] range %{{.*}} : tensor<512x784xf32> -> !lq.qtensor<512x784x!lq.sint4>
// CHECK: lq.quantize %[[X]] range %{{.*}} : tensor<?x784xf32> -> !lq.qtensor<?x784x!lq.sint4>
// CHECK: %[[DX:.*]] = lq.matmul(%[[G0]], %[[G1]]) scale %[[A]], %{{.*}} {role = #lq.role<backward_data>} : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4> -> tensor<?x784xf32>
// CHECK: %[[DW:.*]] = lq.matmul(%[[G0]], %[[G1]]) scale %[[A]], %{{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<?x784x!lq.sint4> -> tensor<512x784xf32>
// CHECK: return %[[DX]], %[[DW]], %[[M]], %[[NF]], %[[OV]]
func.func @backward_smp(%x: tensor<?x784xf32>, %w: tensor<512x784xf32>, %dy: tensor<?x512xf32>, %seed: i64)
    -> (tensor<?x784xf32>, tensor<512x784xf32>, f32, i1, i32) {
  %dx, %dw, %gmax, %bad, %ovf = lq.linear_grad %x, %w, %dy seed %seed {smp = 2, stream = 4}
      : tensor<?x784xf32>, tensor<512x784xf32>, tensor<?x512xf32> -> tensor<?x784xf32>, tensor<512x784xf32>
  return %dx, %dw, %gmax, %bad, %ovf : tensor<?x784xf32>, tensor<512x784xf32>, f32, i1, i32
}

// -----

// In hindsight mode the LUQ scale is the caller's estimate; max |dy| is
// still returned for the next estimate.
// CHECK-LABEL: func.func @backward_hindsight
// CHECK-SAME: %[[MHAT:[^:]*]]: f32
// CHECK: %[[M:.*]], %{{.*}} = lq.max_abs
// CHECK: lq.quantize %{{.*}} range %[[MHAT]] seed %{{.*}} {hindsight} :
// CHECK: return %{{.*}}, %{{.*}}, %[[M]]
func.func @backward_hindsight(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %dy: tensor<8x4xf32>, %seed: i64, %mhat: f32)
    -> (tensor<8x16xf32>, tensor<4x16xf32>, f32) {
  %dx, %dw, %gmax, %bad, %ovf = lq.linear_grad %x, %w, %dy seed %seed max_estimate %mhat
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  return %dx, %dw, %gmax : tensor<8x16xf32>, tensor<4x16xf32>, f32
}

// -----

// Layers without a stream get the smallest ids not taken explicitly (stream
// 0, the default, prints without an attribute).
// CHECK-LABEL: func.func @stream_assignment
// CHECK: lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} {stream = 1 : i64}
// CHECK: lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} : tensor<8x4xf32>
// CHECK: lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} {stream = 2 : i64}
func.func @stream_assignment(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %dy: tensor<8x4xf32>, %seed: i64) {
  %a:5 = lq.linear_grad %x, %w, %dy seed %seed
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  %b:5 = lq.linear_grad %x, %w, %dy seed %seed {stream = 0}
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  %c:5 = lq.linear_grad %x, %w, %dy seed %seed
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  "test.use"(%a#0, %b#0, %c#0) : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> ()
  return
}

// -----

func.func @stream_reused(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %dy: tensor<8x4xf32>, %seed: i64) {
  // expected-note @below {{first use here}}
  %a:5 = lq.linear_grad %x, %w, %dy seed %seed {stream = 3}
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  // expected-error @below {{stream 3 and this seed are already used by another lq.linear_grad: both layers would draw the same random numbers}}
  %b:5 = lq.linear_grad %x, %w, %dy seed %seed {stream = 3}
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  return
}
