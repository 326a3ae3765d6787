// GEMMs in the forms frontends (torch-mlir, IREE input pipelines,
// StableHLO-to-linalg) emit, with no lq.role: transposes as
// linalg.transpose or permuting linalg.generic copies, bf16 operands,
// generic contractions over 3-D activations, bias and ReLU epilogues, and
// calls of a function whose results grow.

// RUN: lq-opt %s --lq-quantize-matmuls --split-input-file | FileCheck %s
// RUN: lq-opt %s --lq-quantize-matmuls=hindsight=true --split-input-file \
// RUN:   | FileCheck %s --check-prefix=HINDSIGHT
// RUN: lq-opt %s --lq-quantize-matmuls=keep-first=true --split-input-file \
// RUN:   | FileCheck %s --check-prefix=KEEP

func.func @transposes(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %b: tensor<3xf32>, %dy: tensor<4x3xf32>)
    -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %wt0 = tensor.empty() : tensor<8x3xf32>
  %wt = linalg.transpose ins(%w : tensor<3x8xf32>) outs(%wt0 : tensor<8x3xf32>) permutation = [1, 0]
  %ye = tensor.empty() : tensor<4x3xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<4x3xf32>) -> tensor<4x3xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<4x8xf32>, tensor<8x3xf32>) outs(%y0 : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%mm, %b : tensor<4x3xf32>, tensor<3xf32>) outs(%ye : tensor<4x3xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %s = arith.addf %in, %in_1 : f32
    linalg.yield %s : f32
  } -> tensor<4x3xf32>
  %dxe = tensor.empty() : tensor<4x8xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dx = linalg.matmul ins(%dy, %w : tensor<4x3xf32>, tensor<3x8xf32>) outs(%dx0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dyt0 = tensor.empty() : tensor<3x4xf32>
  %dyt = linalg.transpose ins(%dy : tensor<4x3xf32>) outs(%dyt0 : tensor<3x4xf32>) permutation = [1, 0]
  %dwe = tensor.empty() : tensor<3x8xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<3x8xf32>) -> tensor<3x8xf32>
  %dw = linalg.matmul ins(%dyt, %x : tensor<3x4xf32>, tensor<4x8xf32>) outs(%dw0 : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %y, %dx, %dw : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
}

// A linear layer as torch-mlir writes it: W^T and dy^T by linalg.transpose,
// the bias added by a broadcasting linalg.generic. The transposes fold into
// the operand layouts and the bias into the forward epilogue.
// CHECK-LABEL: func.func @transposes
// CHECK-SAME: %[[X:[^:]*]]: tensor<4x8xf32>, %[[W:[^:]*]]: tensor<3x8xf32>, %[[B:[^:]*]]: tensor<3xf32>, %[[DY:[^:]*]]: tensor<4x3xf32>, %[[SEED:[^:]*]]: i64 {lq.seed}
// CHECK-DAG: %[[QW:.*]], %[[SW:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[W]] range
// CHECK-DAG: %[[QX:.*]], %[[SX:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[X]] range
// CHECK-DAG: %[[G:.*]], %[[SG:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[DY]] range %{{.*}} seed %[[SEED]]
// CHECK: %[[Y:.*]] = lq.matmul(%[[QX]]) scale %[[SX]], %[[QW]] scale %[[SW]] bias %[[B]] {role = #lq.role<forward>, transpose_rhs}
// CHECK: %[[DX:.*]] = lq.matmul(%[[G]]) scale %[[SG]], %[[QW]] scale %[[SW]] {role = #lq.role<backward_data>}
// CHECK: %[[DW:.*]] = lq.matmul(%[[G]]) scale %[[SG]], %[[QX]] scale %[[SX]] {role = #lq.role<weight_grad>, transpose_lhs}
// CHECK-NOT: linalg.transpose
// CHECK-NOT: linalg.generic
// CHECK: return %[[Y]], %[[DX]], %[[DW]]

// -----

#id = affine_map<(i, j) -> (i, j)>
#t = affine_map<(i, j) -> (j, i)>

// Transposes as permuting linalg.generic copies, bf16 operands multiplied
// into f32, and a fused bias + ReLU generic.
// CHECK-LABEL: func.func @generic_copies_bf16
// CHECK: lq.quantize %{{.*}} range %{{.*}} : tensor<3x8xbf16> -> !lq.qtensor<3x8x!lq.sint4>
// CHECK: lq.matmul({{.*}} bias %{{.*}} {relu, role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<3x8x!lq.sint4>, tensor<3xf32> -> tensor<4x3xf32>
// CHECK: lq.matmul({{.*}} {role = #lq.role<backward_data>} : (!lq.qtensor<4x3x!lq.log4>), !lq.qtensor<3x8x!lq.sint4> -> tensor<4x8xf32>
// CHECK: lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<4x3x!lq.log4>), !lq.qtensor<4x8x!lq.sint4> -> tensor<3x8xf32>
// CHECK-NOT: linalg.
func.func @generic_copies_bf16(%x: tensor<4x8xbf16>, %w: tensor<3x8xbf16>, %b: tensor<3xf32>, %dy: tensor<4x3xbf16>)
    -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %wt0 = tensor.empty() : tensor<8x3xbf16>
  %wt = linalg.generic {indexing_maps = [#t, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w : tensor<3x8xbf16>) outs(%wt0 : tensor<8x3xbf16>) {
  ^bb0(%v: bf16, %o: bf16):
    linalg.yield %v : bf16
  } -> tensor<8x3xbf16>
  %ye = tensor.empty() : tensor<4x3xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<4x3xf32>) -> tensor<4x3xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<4x8xbf16>, tensor<8x3xbf16>) outs(%y0 : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, j) -> (j)>, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%b, %mm : tensor<3xf32>, tensor<4x3xf32>) outs(%ye : tensor<4x3xf32>) {
  ^bb0(%bias: f32, %v: f32, %o: f32):
    %s = arith.addf %bias, %v : f32
    %r = arith.maximumf %s, %zero : f32
    linalg.yield %r : f32
  } -> tensor<4x3xf32>
  %dxe = tensor.empty() : tensor<4x8xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dx = linalg.matmul ins(%dy, %w : tensor<4x3xbf16>, tensor<3x8xbf16>) outs(%dx0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dyt0 = tensor.empty() : tensor<3x4xbf16>
  %dyt = linalg.generic {indexing_maps = [#t, #id], iterator_types = ["parallel", "parallel"]}
      ins(%dy : tensor<4x3xbf16>) outs(%dyt0 : tensor<3x4xbf16>) {
  ^bb0(%v: bf16, %o: bf16):
    linalg.yield %v : bf16
  } -> tensor<3x4xbf16>
  %dwe = tensor.empty() : tensor<3x8xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<3x8xf32>) -> tensor<3x8xf32>
  %dw = linalg.matmul ins(%dyt, %x : tensor<3x4xbf16>, tensor<4x8xbf16>) outs(%dw0 : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %y, %dx, %dw : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
}

// -----

#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#dw_dy = affine_map<(n, k, b, s) -> (b, s, n)>
#dw_x = affine_map<(n, k, b, s) -> (b, s, k)>
#dw = affine_map<(n, k, b, s) -> (n, k)>

// Contractions written directly on 3-D activations: y[b, s] = x[b, s] W^T,
// dx[b, s] = dy[b, s] W and dW = sum over (b, s) of dy^T x become 2-D GEMMs
// on [b * s] rows, their results expanded back. With hindsight, the grown
// results reach the caller.
// CHECK-LABEL: func.func @activations_3d
// CHECK: %[[X2:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
// CHECK: lq.quantize %[[X2]] range
// CHECK: %[[Y:.*]] = lq.matmul({{.*}} {role = #lq.role<forward>, transpose_rhs} {{.*}} -> tensor<6x4xf32>
// CHECK: tensor.expand_shape %[[Y]] {{\[}}[0, 1], [2]] output_shape [2, 3, 4]
// CHECK: lq.matmul({{.*}} {role = #lq.role<backward_data>} {{.*}} -> tensor<6x8xf32>
// CHECK: lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} {{.*}} -> tensor<4x8xf32>
// CHECK-NOT: linalg.generic
// CHECK-LABEL: func.func @caller
// CHECK: call @activations_3d({{.*}}) {no_inline} : (tensor<2x3x8xf32>, tensor<4x8xf32>, tensor<2x3x4xf32>, i64, f32) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>)
// HINDSIGHT-LABEL: func.func @activations_3d
// HINDSIGHT-SAME: %{{.*}}: f32 {lq.max_estimate = 0 : i64}) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>, f32 {lq.grad_max = 0 : i64})
// HINDSIGHT-LABEL: func.func @caller
// HINDSIGHT: %[[R:.*]]:4 = call @activations_3d({{.*}}) {no_inline} : ({{.*}}) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>, f32)
// HINDSIGHT: return %[[R]]#0, %[[R]]#1, %[[R]]#2
func.func @activations_3d(%x: tensor<2x3x8xf32>, %w: tensor<4x8xf32>, %dy: tensor<2x3x4xf32>,
                          %seed: i64 {lq.seed}, %est: f32 {lq.max_estimate = 0})
    -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %ye = tensor.empty() : tensor<2x3x4xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %y = linalg.generic {indexing_maps = [#x3, #w, #y3], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%x, %w : tensor<2x3x8xf32>, tensor<4x8xf32>) outs(%y0 : tensor<2x3x4xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<2x3x4xf32>
  %dxe = tensor.empty() : tensor<2x3x8xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<2x3x8xf32>) -> tensor<2x3x8xf32>
  %dx = linalg.generic {indexing_maps = [affine_map<(b, s, k, n) -> (b, s, n)>, affine_map<(b, s, k, n) -> (n, k)>, affine_map<(b, s, k, n) -> (b, s, k)>], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%dy, %w : tensor<2x3x4xf32>, tensor<4x8xf32>) outs(%dx0 : tensor<2x3x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  %dwe = tensor.empty() : tensor<4x8xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dw = linalg.generic {indexing_maps = [#dw_dy, #dw_x, #dw], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%dy, %x : tensor<2x3x4xf32>, tensor<2x3x8xf32>) outs(%dw0 : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  return %y, %dx, %dw : tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>
}

func.func @caller(%x: tensor<2x3x8xf32>, %w: tensor<4x8xf32>, %dy: tensor<2x3x4xf32>, %seed: i64, %est: f32)
    -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>) {
  %r:3 = func.call @activations_3d(%x, %w, %dy, %seed, %est) {no_inline}
      : (tensor<2x3x8xf32>, tensor<4x8xf32>, tensor<2x3x4xf32>, i64, f32) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>)
  return %r#0, %r#1, %r#2 : tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<4x8xf32>
}

// -----

// GEMMs that stay in high precision stay as written: attention scores
// q k^T (k transposed by linalg.transpose) are no layer's GEMM.
// CHECK-LABEL: func.func @attention_scores
// CHECK: %[[KT:.*]] = linalg.transpose ins(%{{.*}} : tensor<4x8xf32>) outs(%{{.*}} : tensor<8x4xf32>) permutation = [1, 0]
// CHECK: linalg.matmul ins(%{{.*}}, %[[KT]] : tensor<4x8xf32>, tensor<8x4xf32>)
// CHECK-NOT: lq.
func.func @attention_scores(%q: tensor<4x8xf32>, %k: tensor<4x8xf32>) -> tensor<4x4xf32> {
  %zero = arith.constant 0.0 : f32
  %kt0 = tensor.empty() : tensor<8x4xf32>
  %kt = linalg.transpose ins(%k : tensor<4x8xf32>) outs(%kt0 : tensor<8x4xf32>) permutation = [1, 0]
  %se = tensor.empty() : tensor<4x4xf32>
  %s0 = linalg.fill ins(%zero : f32) outs(%se : tensor<4x4xf32>) -> tensor<4x4xf32>
  %s = linalg.matmul ins(%q, %kt : tensor<4x8xf32>, tensor<8x4xf32>) outs(%s0 : tensor<4x4xf32>) -> tensor<4x4xf32>
  return %s : tensor<4x4xf32>
}

// -----

// Two layers with no activation between them: layer 2's forward GEMM reads
// layer 1's result, which is an lq.matmul by the time layer 2 is rewritten.
// With keep-first, layer 1 stays exactly as written, transposes included.
// CHECK-LABEL: func.func @chained_layers
// CHECK-COUNT-6: lq.matmul
// CHECK-NOT: linalg.matmul
// KEEP-LABEL: func.func @chained_layers
// KEEP: %[[W1T:.*]] = linalg.transpose ins(%arg1 : tensor<16x8xf32>)
// KEEP: %[[H:.*]] = linalg.matmul ins(%arg0, %[[W1T]] : tensor<6x8xf32>, tensor<8x16xf32>)
// KEEP: lq.quantize %[[H]] range
// KEEP-COUNT-3: lq.matmul
// KEEP: linalg.matmul
// KEEP: linalg.matmul
func.func @chained_layers(%x: tensor<6x8xf32>, %w1: tensor<16x8xf32>, %w2: tensor<4x16xf32>, %dy: tensor<6x4xf32>, %seed: i64 {lq.seed})
    -> (tensor<6x4xf32>, tensor<6x8xf32>, tensor<16x8xf32>, tensor<4x16xf32>) {
  %zero = arith.constant 0.0 : f32
  %w1t_e = tensor.empty() : tensor<8x16xf32>
  %w1t = linalg.transpose ins(%w1 : tensor<16x8xf32>) outs(%w1t_e : tensor<8x16xf32>) permutation = [1, 0]
  %h_e = tensor.empty() : tensor<6x16xf32>
  %h_0 = linalg.fill ins(%zero : f32) outs(%h_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %h = linalg.matmul ins(%x, %w1t : tensor<6x8xf32>, tensor<8x16xf32>) outs(%h_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %w2t_e = tensor.empty() : tensor<16x4xf32>
  %w2t = linalg.transpose ins(%w2 : tensor<4x16xf32>) outs(%w2t_e : tensor<16x4xf32>) permutation = [1, 0]
  %y_e = tensor.empty() : tensor<6x4xf32>
  %y_0 = linalg.fill ins(%zero : f32) outs(%y_e : tensor<6x4xf32>) -> tensor<6x4xf32>
  %y = linalg.matmul ins(%h, %w2t : tensor<6x16xf32>, tensor<16x4xf32>) outs(%y_0 : tensor<6x4xf32>) -> tensor<6x4xf32>
  // layer 2 backward: dh = dy W2, dW2 = dy^T h
  %dh_0 = linalg.fill ins(%zero : f32) outs(%h_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %dh = linalg.matmul ins(%dy, %w2 : tensor<6x4xf32>, tensor<4x16xf32>) outs(%dh_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %dyt_e = tensor.empty() : tensor<4x6xf32>
  %dyt = linalg.transpose ins(%dy : tensor<6x4xf32>) outs(%dyt_e : tensor<4x6xf32>) permutation = [1, 0]
  %dw2_e = tensor.empty() : tensor<4x16xf32>
  %dw2_0 = linalg.fill ins(%zero : f32) outs(%dw2_e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %dw2 = linalg.matmul ins(%dyt, %h : tensor<4x6xf32>, tensor<6x16xf32>) outs(%dw2_0 : tensor<4x16xf32>) -> tensor<4x16xf32>
  // layer 1 backward: dx = dh W1, dW1 = dh^T x
  %dx_e = tensor.empty() : tensor<6x8xf32>
  %dx_0 = linalg.fill ins(%zero : f32) outs(%dx_e : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dx = linalg.matmul ins(%dh, %w1 : tensor<6x16xf32>, tensor<16x8xf32>) outs(%dx_0 : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dht_e = tensor.empty() : tensor<16x6xf32>
  %dht = linalg.transpose ins(%dh : tensor<6x16xf32>) outs(%dht_e : tensor<16x6xf32>) permutation = [1, 0]
  %dw1_e = tensor.empty() : tensor<16x8xf32>
  %dw1_0 = linalg.fill ins(%zero : f32) outs(%dw1_e : tensor<16x8xf32>) -> tensor<16x8xf32>
  %dw1 = linalg.matmul ins(%dht, %x : tensor<16x6xf32>, tensor<6x8xf32>) outs(%dw1_0 : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %y, %dx, %dw1, %dw2 : tensor<6x4xf32>, tensor<6x8xf32>, tensor<16x8xf32>, tensor<4x16xf32>
}

// -----

// Layer 1 is unmarked and has no dx GEMM, so it stays in high precision as
// written; layer 2's quantizers read its result, which is put back.
// CHECK-LABEL: func.func @first_layer_unmarked
// CHECK: %[[W1T:.*]] = linalg.transpose ins(%arg1 : tensor<16x8xf32>)
// CHECK: %[[H:.*]] = linalg.matmul ins(%arg0, %[[W1T]] : tensor<6x8xf32>, tensor<8x16xf32>)
// CHECK: lq.quantize %[[H]] range
// CHECK-COUNT-3: lq.matmul
// CHECK: linalg.matmul
func.func @first_layer_unmarked(%x: tensor<6x8xf32>, %w1: tensor<16x8xf32>, %w2: tensor<4x16xf32>, %dy: tensor<6x4xf32>, %seed: i64 {lq.seed})
    -> (tensor<6x4xf32>, tensor<6x8xf32>, tensor<16x8xf32>, tensor<16x4xf32>) {
  %zero = arith.constant 0.0 : f32
  %w1t_e = tensor.empty() : tensor<8x16xf32>
  %w1t = linalg.transpose ins(%w1 : tensor<16x8xf32>) outs(%w1t_e : tensor<8x16xf32>) permutation = [1, 0]
  %h_e = tensor.empty() : tensor<6x16xf32>
  %h_0 = linalg.fill ins(%zero : f32) outs(%h_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %h = linalg.matmul ins(%x, %w1t : tensor<6x8xf32>, tensor<8x16xf32>) outs(%h_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %w2t_e = tensor.empty() : tensor<16x4xf32>
  %w2t = linalg.transpose ins(%w2 : tensor<4x16xf32>) outs(%w2t_e : tensor<16x4xf32>) permutation = [1, 0]
  %y_e = tensor.empty() : tensor<6x4xf32>
  %y_0 = linalg.fill ins(%zero : f32) outs(%y_e : tensor<6x4xf32>) -> tensor<6x4xf32>
  %y = linalg.matmul ins(%h, %w2t : tensor<6x16xf32>, tensor<16x4xf32>) outs(%y_0 : tensor<6x4xf32>) -> tensor<6x4xf32>
  // layer 2 backward: dh = dy W2, dW2 = dy^T h
  %dh_0 = linalg.fill ins(%zero : f32) outs(%h_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %dh = linalg.matmul ins(%dy, %w2 : tensor<6x4xf32>, tensor<4x16xf32>) outs(%dh_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %ht_e = tensor.empty() : tensor<16x6xf32>
  %ht = linalg.transpose ins(%h : tensor<6x16xf32>) outs(%ht_e : tensor<16x6xf32>) permutation = [1, 0]
  %dw2_e = tensor.empty() : tensor<16x4xf32>
  %dw2_0 = linalg.fill ins(%zero : f32) outs(%dw2_e : tensor<16x4xf32>) -> tensor<16x4xf32>
  %dw2 = linalg.matmul ins(%ht, %dy : tensor<16x6xf32>, tensor<6x4xf32>) outs(%dw2_0 : tensor<16x4xf32>) -> tensor<16x4xf32>
  // layer 1 backward: dx = dh W1, dW1 = dh^T x
  %dx_e = tensor.empty() : tensor<6x8xf32>
  %dx_0 = linalg.fill ins(%zero : f32) outs(%dx_e : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dx = linalg.fill ins(%zero : f32) outs(%dx_e : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dht_e = tensor.empty() : tensor<16x6xf32>
  %dht = linalg.transpose ins(%dh : tensor<6x16xf32>) outs(%dht_e : tensor<16x6xf32>) permutation = [1, 0]
  %dw1_e = tensor.empty() : tensor<16x8xf32>
  %dw1_0 = linalg.fill ins(%zero : f32) outs(%dw1_e : tensor<16x8xf32>) -> tensor<16x8xf32>
  %dw1 = linalg.matmul ins(%dht, %x : tensor<16x6xf32>, tensor<6x8xf32>) outs(%dw1_0 : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %y, %dx, %dw1, %dw2 : tensor<6x4xf32>, tensor<6x8xf32>, tensor<16x8xf32>, tensor<16x4xf32>
}

// -----

// Two marked batched forward GEMMs with broadcast weights, one reading the
// other: each is one 2-D GEMM.
// CHECK-LABEL: func.func @batched_chain
// CHECK-COUNT-2: lq.matmul({{.*}} {role = #lq.role<forward>}
// CHECK-NOT: linalg.batch_matmul
func.func @batched_chain(%x: tensor<2x3x8xf32>, %w1: tensor<8x16xf32>, %w2: tensor<16x4xf32>, %seed: i64 {lq.seed})
    -> tensor<2x3x4xf32> {
  %zero = arith.constant 0.0 : f32
  %w1b_e = tensor.empty() : tensor<2x8x16xf32>
  %w1b = linalg.broadcast ins(%w1 : tensor<8x16xf32>) outs(%w1b_e : tensor<2x8x16xf32>) dimensions = [0]
  %h_e = tensor.empty() : tensor<2x3x16xf32>
  %h_0 = linalg.fill ins(%zero : f32) outs(%h_e : tensor<2x3x16xf32>) -> tensor<2x3x16xf32>
  %h = linalg.batch_matmul {lq.role = "forward"} ins(%x, %w1b : tensor<2x3x8xf32>, tensor<2x8x16xf32>) outs(%h_0 : tensor<2x3x16xf32>) -> tensor<2x3x16xf32>
  %w2b_e = tensor.empty() : tensor<2x16x4xf32>
  %w2b = linalg.broadcast ins(%w2 : tensor<16x4xf32>) outs(%w2b_e : tensor<2x16x4xf32>) dimensions = [0]
  %y_e = tensor.empty() : tensor<2x3x4xf32>
  %y_0 = linalg.fill ins(%zero : f32) outs(%y_e : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %y = linalg.batch_matmul {lq.role = "forward"} ins(%h, %w2b : tensor<2x3x16xf32>, tensor<2x16x4xf32>) outs(%y_0 : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}

// -----

// The role may sit on the batched contraction that a sum over its batch
// reads.
// CHECK-LABEL: func.func @role_on_summed_batch
// CHECK: lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} {{.*}} -> tensor<8x16xf32>
// CHECK-NOT: linalg.reduce
func.func @role_on_summed_batch(%x: tensor<2x3x8xf32>, %dy: tensor<2x3x16xf32>, %seed: i64 {lq.seed}) -> tensor<8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %xt_e = tensor.empty() : tensor<2x8x3xf32>
  %xt = linalg.transpose ins(%x : tensor<2x3x8xf32>) outs(%xt_e : tensor<2x8x3xf32>) permutation = [0, 2, 1]
  %p_e = tensor.empty() : tensor<2x8x16xf32>
  %p_0 = linalg.fill ins(%zero : f32) outs(%p_e : tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  %p = linalg.batch_matmul {lq.role = "weight_grad"} ins(%xt, %dy : tensor<2x8x3xf32>, tensor<2x3x16xf32>) outs(%p_0 : tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  %e = tensor.empty() : tensor<8x16xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dw = linalg.reduce ins(%p : tensor<2x8x16xf32>) outs(%f : tensor<8x16xf32>) dimensions = [0]
    (%in: f32, %acc: f32) {
      %s = arith.addf %in, %acc : f32
      linalg.yield %s : f32
    }
  return %dw : tensor<8x16xf32>
}
