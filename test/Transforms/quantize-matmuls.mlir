// RUN: lq-opt %s --lq-quantize-matmuls --split-input-file --allow-unregistered-dialect | FileCheck %s
// RUN: lq-opt %s --lq-quantize-matmuls=smp=2 --split-input-file --allow-unregistered-dialect | FileCheck %s --check-prefix=SMP
// RUN: lq-opt %s --lq-quantize-matmuls=hindsight=true --split-input-file --allow-unregistered-dialect | FileCheck %s --check-prefix=HIND

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>

// One layer y = x W^T with no annotation: dy feeds dx = dy W and
// dW = dy^T x, and the forward GEMM before them reads W. Both backward GEMMs
// read one LUQ quantize of dy; the seed becomes a new argument.
// CHECK-LABEL: func.func @inferred
// CHECK-SAME: (%[[X:.*]]: tensor<8x16xf32>, %[[W:.*]]: tensor<4x16xf32>, %[[DY:.*]]: tensor<8x4xf32>, %[[SEED:.*]]: i64 {lq.seed})
// CHECK-DAG: %[[QW:.*]], %[[SW:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[W]] range %{{.*}} : tensor<4x16xf32> -> !lq.qtensor<4x16x!lq.sint4>
// CHECK-DAG: %[[QX:.*]], %[[SX:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[X]] range %{{.*}} : tensor<8x16xf32> -> !lq.qtensor<8x16x!lq.sint4>
// CHECK-DAG: %[[M:.*]], %{{.*}} = lq.max_abs %[[DY]]
// CHECK-DAG: %[[G:.*]], %[[A:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[DY]] range %[[M]] seed %[[SEED]] : tensor<8x4xf32> -> !lq.qtensor<8x4x!lq.log4>
// CHECK: %[[Y:.*]] = lq.matmul(%[[QX]]) scale %[[SX]], %[[QW]] scale %[[SW]] {role = #lq.role<forward>, transpose_rhs}
// CHECK: %[[DX:.*]] = lq.matmul(%[[G]]) scale %[[A]], %[[QW]] scale %[[SW]] {role = #lq.role<backward_data>} : {{.*}} -> tensor<8x16xf32>
// CHECK: %[[DW:.*]] = lq.matmul(%[[G]]) scale %[[A]], %[[QX]] scale %[[SX]] {role = #lq.role<weight_grad>, transpose_lhs} : {{.*}} -> tensor<4x16xf32>
// CHECK-NOT: lq.quantize
// CHECK-NOT: linalg.matmul
// CHECK: return %[[Y]], %[[DX]], %[[DW]]

// SMP-LABEL: func.func @inferred
// SMP: %[[G0:.*]], %[[A:.*]], %{{.*}}, %{{.*}} = lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} : tensor<8x4xf32> -> !lq.qtensor<8x4x!lq.log4>
// SMP: %[[G1:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize %{{.*}} range %{{.*}} seed %{{.*}} {sample = 1 : i64}
// SMP: lq.matmul(%[[G0]], %[[G1]]) scale %[[A]], {{.*}}role = #lq.role<backward_data>
// SMP: lq.matmul(%[[G0]], %[[G1]]) scale %[[A]], {{.*}}role = #lq.role<weight_grad>

// The in-hindsight scale is a new argument; this step's max is returned.
// HIND-LABEL: func.func @inferred
// HIND-SAME: %[[SEED:[^:]*]]: i64 {lq.seed}, %[[MHAT:[^:]*]]: f32 {lq.max_estimate = 0 : i64})
// HIND-SAME: -> (tensor<8x4xf32>, tensor<8x16xf32>, tensor<4x16xf32>, f32 {lq.grad_max = 0 : i64})
// HIND: %[[M:.*]], %{{.*}} = lq.max_abs
// HIND: lq.quantize %{{.*}} range %[[MHAT]] seed %[[SEED]] {hindsight}
// HIND: return %{{.*}}, %{{.*}}, %{{.*}}, %[[M]] :
func.func @inferred(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %dy: tensor<8x4xf32>)
    -> (tensor<8x4xf32>, tensor<8x16xf32>, tensor<4x16xf32>) {
  %zero = arith.constant 0.0 : f32
  %ye = tensor.empty() : tensor<8x4xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<8x4xf32>) -> tensor<8x4xf32>
  %y = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%x, %w : tensor<8x16xf32>, tensor<4x16xf32>) outs(%y0 : tensor<8x4xf32>) -> tensor<8x4xf32>
  %dxe = tensor.empty() : tensor<8x16xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dx = linalg.matmul ins(%dy, %w : tensor<8x4xf32>, tensor<4x16xf32>) outs(%dx0 : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dwe = tensor.empty() : tensor<4x16xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<4x16xf32>) -> tensor<4x16xf32>
  %dw = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dy, %x : tensor<8x4xf32>, tensor<8x16xf32>) outs(%dw0 : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y, %dx, %dw : tensor<8x4xf32>, tensor<8x16xf32>, tensor<4x16xf32>
}

// -----

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(i, j) -> (i, j)>

// Explicit roles on GEMMs written as linalg.generic, with W stored [I, O]
// (y = x W) and the weight gradient written x^T dy: it is computed as
// dy^T x, with the gradient on the left, and transposed. The ReLU input is
// quantized unsigned. The marked seed argument is used.
// CHECK-LABEL: func.func @explicit_generic
// CHECK-SAME: %[[SEED:[^:]*]]: i64 {lq.seed}, %{{.*}}: f32)
// CHECK-DAG: %[[QA:.*]], %[[SA:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[RELU:.*]] range %{{.*}} : tensor<8x16xf32> -> !lq.qtensor<8x16x!lq.uint4>
// CHECK-DAG: lq.quantize %{{.*}} seed %[[SEED]] {stream = 3 : i64} : tensor<8x4xf32> -> !lq.qtensor<8x4x!lq.log4>
// CHECK: lq.matmul(%[[QA]]) scale %[[SA]], %{{.*}} {role = #lq.role<forward>} : (!lq.qtensor<8x16x!lq.uint4>), !lq.qtensor<16x4x!lq.sint4> -> tensor<8x4xf32>
// CHECK: lq.matmul({{.*}} {role = #lq.role<backward_data>, transpose_rhs} : (!lq.qtensor<8x4x!lq.log4>), !lq.qtensor<16x4x!lq.sint4> -> tensor<8x16xf32>
// CHECK: %[[DWT:.*]] = lq.matmul({{.*}}, %[[QA]] scale %[[SA]] {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<8x4x!lq.log4>), !lq.qtensor<8x16x!lq.uint4> -> tensor<4x16xf32>
// CHECK: %[[DW:.*]] = linalg.transpose ins(%[[DWT]] : tensor<4x16xf32>) outs(%{{.*}} : tensor<16x4xf32>) permutation = [1, 0]
// CHECK: return %{{.*}}, %{{.*}}, %[[DW]]
func.func @explicit_generic(%h: tensor<8x16xf32>, %w: tensor<16x4xf32>, %dy: tensor<8x4xf32>,
                            %seed: i64 {lq.seed}, %other: f32)
    -> (tensor<8x4xf32>, tensor<8x16xf32>, tensor<16x4xf32>) {
  %zero = arith.constant 0.0 : f32
  %he = tensor.empty() : tensor<8x16xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h : tensor<8x16xf32>) outs(%he : tensor<8x16xf32>) {
  ^bb0(%v: f32, %o: f32):
    %r = arith.maximumf %v, %zero : f32
    linalg.yield %r : f32
  } -> tensor<8x16xf32>
  // Stream 3 is taken, so this layer gets the next free one.
  %used = arith.constant dense<1.0> : tensor<2x2xf32>
  %one = arith.constant 1.0 : f32
  %q, %s, %nf, %ov = lq.quantize %used range %one seed %seed {stream = 0}
      : tensor<2x2xf32> -> !lq.qtensor<2x2x!lq.log4>
  %q1, %s1, %nf1, %ov1 = lq.quantize %used range %one seed %seed {stream = 1}
      : tensor<2x2xf32> -> !lq.qtensor<2x2x!lq.log4>
  %q2, %s2, %nf2, %ov2 = lq.quantize %used range %one seed %seed {stream = 2}
      : tensor<2x2xf32> -> !lq.qtensor<2x2x!lq.log4>
  %ye = tensor.empty() : tensor<8x4xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<8x4xf32>) -> tensor<8x4xf32>
  %y = linalg.generic {indexing_maps = [#mk, #kn, #mn], iterator_types = ["parallel", "parallel", "reduction"], lq.role = #lq.role<forward>}
      ins(%a, %w : tensor<8x16xf32>, tensor<16x4xf32>) outs(%y0 : tensor<8x4xf32>) {
  ^bb0(%l: f32, %r: f32, %acc: f32):
    %p = arith.mulf %l, %r : f32
    %t = arith.addf %acc, %p : f32
    linalg.yield %t : f32
  } -> tensor<8x4xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%he : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dx = linalg.matmul indexing_maps = [#mk, affine_map<(m, n, k) -> (n, k)>, #mn] {lq.role = "backward_data"}
      ins(%dy, %w : tensor<8x4xf32>, tensor<16x4xf32>) outs(%dx0 : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dwe = tensor.empty() : tensor<16x4xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<16x4xf32>) -> tensor<16x4xf32>
  %dw = linalg.matmul indexing_maps = [#km, #kn, #mn] {lq.role = "weight_grad"}
      ins(%a, %dy : tensor<8x16xf32>, tensor<8x4xf32>) outs(%dw0 : tensor<16x4xf32>) -> tensor<16x4xf32>
  "test.use"(%q, %q1, %q2) : (!lq.qtensor<2x2x!lq.log4>, !lq.qtensor<2x2x!lq.log4>, !lq.qtensor<2x2x!lq.log4>) -> ()
  return %y, %dx, %dw : tensor<8x4xf32>, tensor<8x16xf32>, tensor<16x4xf32>
}

// -----

#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>

// Without a gradient pair the graph does not say what these GEMMs are (two
// chained products, like attention), so they keep their precision.
// CHECK-LABEL: func.func @unclassified
// CHECK-NOT: lq.
// CHECK-COUNT-2: linalg.matmul
// CHECK-NOT: lq.
func.func @unclassified(%q: tensor<8x16xf32>, %k: tensor<8x16xf32>, %v: tensor<8x16xf32>) -> tensor<8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %se = tensor.empty() : tensor<8x8xf32>
  %s0 = linalg.fill ins(%zero : f32) outs(%se : tensor<8x8xf32>) -> tensor<8x8xf32>
  %s = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%q, %k : tensor<8x16xf32>, tensor<8x16xf32>) outs(%s0 : tensor<8x8xf32>) -> tensor<8x8xf32>
  %oe = tensor.empty() : tensor<8x16xf32>
  %o0 = linalg.fill ins(%zero : f32) outs(%oe : tensor<8x16xf32>) -> tensor<8x16xf32>
  %o = linalg.matmul ins(%s, %v : tensor<8x8xf32>, tensor<8x16xf32>) outs(%o0 : tensor<8x16xf32>) -> tensor<8x16xf32>
  return %o : tensor<8x16xf32>
}
