// RUN: lq-opt %s --lq-quantize-matmuls --split-input-file --allow-unregistered-dialect | FileCheck %s
// RUN: lq-opt %s --lq-quantize-matmuls=smp=2 --split-input-file --allow-unregistered-dialect | FileCheck %s --check-prefix=SMP
// RUN: lq-opt %s --lq-quantize-matmuls=hindsight=true --split-input-file --allow-unregistered-dialect | FileCheck %s --check-prefix=HIND
// RUN: lq-opt %s --lq-quantize-matmuls=keep-first=true --split-input-file --allow-unregistered-dialect | FileCheck %s --check-prefix=KEEP

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

// -----

// A batched forward GEMM becomes one GEMM per batch element, on
// rank-reducing slices, each slice SAWB-quantized; the results are inserted
// into the [B, M, N] result. The two slices are one layer, so keep-first
// keeps both.
// CHECK-LABEL: func.func @batched_forward
// CHECK-SAME: (%[[X:.*]]: tensor<2x8x16xf32>, %[[W:.*]]: tensor<2x16x4xf32>)
// CHECK-DAG: %[[W0:.*]] = tensor.extract_slice %[[W]][0, 0, 0] [1, 16, 4] [1, 1, 1] : tensor<2x16x4xf32> to tensor<16x4xf32>
// CHECK-DAG: %[[W1:.*]] = tensor.extract_slice %[[W]][1, 0, 0] [1, 16, 4] [1, 1, 1] : tensor<2x16x4xf32> to tensor<16x4xf32>
// CHECK-DAG: %[[X0:.*]] = tensor.extract_slice %[[X]][0, 0, 0] [1, 8, 16] [1, 1, 1] : tensor<2x8x16xf32> to tensor<8x16xf32>
// CHECK-DAG: %[[X1:.*]] = tensor.extract_slice %[[X]][1, 0, 0] [1, 8, 16] [1, 1, 1] : tensor<2x8x16xf32> to tensor<8x16xf32>
// CHECK-DAG: %[[QW0:.*]], %[[SW0:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[W0]] range %{{.*}} : tensor<16x4xf32> -> !lq.qtensor<16x4x!lq.sint4>
// CHECK-DAG: %[[QW1:.*]], %[[SW1:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[W1]] range %{{.*}} : tensor<16x4xf32> -> !lq.qtensor<16x4x!lq.sint4>
// CHECK-DAG: %[[QX0:.*]], %[[SX0:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[X0]] range %{{.*}} : tensor<8x16xf32> -> !lq.qtensor<8x16x!lq.sint4>
// CHECK-DAG: %[[QX1:.*]], %[[SX1:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[X1]] range %{{.*}} : tensor<8x16xf32> -> !lq.qtensor<8x16x!lq.sint4>
// CHECK: %[[E:.*]] = tensor.empty() : tensor<2x8x4xf32>
// CHECK: %[[Y0:.*]] = lq.matmul(%[[QX0]]) scale %[[SX0]], %[[QW0]] scale %[[SW0]] {role = #lq.role<forward>} : {{.*}} -> tensor<8x4xf32>
// CHECK: %[[R0:.*]] = tensor.insert_slice %[[Y0]] into %[[E]][0, 0, 0] [1, 8, 4] [1, 1, 1] : tensor<8x4xf32> into tensor<2x8x4xf32>
// CHECK: %[[Y1:.*]] = lq.matmul(%[[QX1]]) scale %[[SX1]], %[[QW1]] scale %[[SW1]] {role = #lq.role<forward>} : {{.*}} -> tensor<8x4xf32>
// CHECK: %[[R1:.*]] = tensor.insert_slice %[[Y1]] into %[[R0]][1, 0, 0] [1, 8, 4] [1, 1, 1] : tensor<8x4xf32> into tensor<2x8x4xf32>
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[R1]]

// KEEP-LABEL: func.func @batched_forward
// KEEP-NOT: lq.
// KEEP-COUNT-2: linalg.generic {{.*}} attrs = {lq.role = #lq.role<forward>}
// KEEP-NOT: lq.
// KEEP: return
func.func @batched_forward(%x: tensor<2x8x16xf32>, %w: tensor<2x16x4xf32>) -> tensor<2x8x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8x4xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  %y = linalg.batch_matmul {lq.role = #lq.role<forward>}
      ins(%x, %w : tensor<2x8x16xf32>, tensor<2x16x4xf32>) outs(%c : tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  return %y : tensor<2x8x4xf32>
}

// -----

#bmk = affine_map<(b, m, n, k) -> (b, m, k)>
#bkm = affine_map<(b, m, n, k) -> (b, k, m)>
#bnk = affine_map<(b, m, n, k) -> (b, n, k)>
#bkn = affine_map<(b, m, n, k) -> (b, k, n)>
#bmn = affine_map<(b, m, n, k) -> (b, m, n)>

// A batched backward pair, dx = dy W^T as linalg.batch_matmul and
// dW = dy^T x as a batched linalg.generic. Each dy slice is one gradient:
// one LUQ quantize on a stream of its own, read by the dx and dW GEMMs of
// that batch element.
// CHECK-LABEL: func.func @batched_backward
// CHECK-SAME: (%[[DY:.*]]: tensor<2x8x4xf32>, %{{.*}}: tensor<2x16x4xf32>, %{{.*}}: tensor<2x8x16xf32>, %[[SEED:.*]]: i64 {lq.seed})
// CHECK-DAG: %[[D0:.*]] = tensor.extract_slice %[[DY]][0, 0, 0] [1, 8, 4] [1, 1, 1] : tensor<2x8x4xf32> to tensor<8x4xf32>
// CHECK-DAG: %[[D1:.*]] = tensor.extract_slice %[[DY]][1, 0, 0] [1, 8, 4] [1, 1, 1] : tensor<2x8x4xf32> to tensor<8x4xf32>
// CHECK-DAG: %[[M0:.*]], %{{.*}} = lq.max_abs %[[D0]]
// CHECK-DAG: %[[M1:.*]], %{{.*}} = lq.max_abs %[[D1]]
// CHECK-DAG: %[[G0:.*]], %[[A0:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[D0]] range %[[M0]] seed %[[SEED]] : tensor<8x4xf32> -> !lq.qtensor<8x4x!lq.log4>
// CHECK-DAG: %[[G1:.*]], %[[A1:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[D1]] range %[[M1]] seed %[[SEED]] {stream = 1 : i64} : tensor<8x4xf32> -> !lq.qtensor<8x4x!lq.log4>
// CHECK: lq.matmul(%[[G0]]) scale %[[A0]], {{.*}} {role = #lq.role<backward_data>, transpose_rhs} : {{.*}} -> tensor<8x16xf32>
// CHECK: lq.matmul(%[[G1]]) scale %[[A1]], {{.*}} {role = #lq.role<backward_data>, transpose_rhs} : {{.*}} -> tensor<8x16xf32>
// CHECK: lq.matmul(%[[G0]]) scale %[[A0]], {{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : {{.*}} -> tensor<4x16xf32>
// CHECK: lq.matmul(%[[G1]]) scale %[[A1]], {{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : {{.*}} -> tensor<4x16xf32>
// CHECK-NOT: lq.quantize
// CHECK-NOT: linalg.batch_matmul
// CHECK-NOT: linalg.generic
// CHECK: return

// HIND-LABEL: func.func @batched_backward
// HIND-SAME: %{{[^:]*}}: f32 {lq.max_estimate = 0 : i64}, %{{[^:]*}}: f32 {lq.max_estimate = 1 : i64})
// HIND-SAME: f32 {lq.grad_max = 0 : i64}, f32 {lq.grad_max = 1 : i64})
func.func @batched_backward(%dy: tensor<2x8x4xf32>, %w: tensor<2x16x4xf32>, %x: tensor<2x8x16xf32>)
    -> (tensor<2x8x16xf32>, tensor<2x4x16xf32>) {
  %zero = arith.constant 0.0 : f32
  %dxe = tensor.empty() : tensor<2x8x16xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  %dx = linalg.batch_matmul indexing_maps = [#bmk, #bnk, #bmn] {lq.role = "backward_data"}
      ins(%dy, %w : tensor<2x8x4xf32>, tensor<2x16x4xf32>) outs(%dx0 : tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  %dwe = tensor.empty() : tensor<2x4x16xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %dw = linalg.generic {indexing_maps = [#bkm, #bkn, #bmn],
                        iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%dy, %x : tensor<2x8x4xf32>, tensor<2x8x16xf32>) outs(%dw0 : tensor<2x4x16xf32>)
      attrs = {lq.role = "weight_grad"} {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<2x4x16xf32>
  return %dx, %dw : tensor<2x8x16xf32>, tensor<2x4x16xf32>
}
