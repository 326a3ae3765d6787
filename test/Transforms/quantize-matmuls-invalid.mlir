// RUN: lq-opt %s --lq-quantize-matmuls --split-input-file --verify-diagnostics

func.func @unknown_role(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>, %c: tensor<8x4xf32>) -> tensor<8x4xf32> {
  // expected-error @below {{unknown lq.role 'backward': expected forward, backward_data or weight_grad}}
  %r = linalg.matmul {lq.role = "backward"} ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

func.func @role_not_a_string(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>, %c: tensor<8x4xf32>) -> tensor<8x4xf32> {
  // expected-error @below {{lq.role must be a string or #lq.role attribute}}
  %r = linalg.matmul {lq.role = 1 : i32} ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

func.func @integer_gemm(%a: tensor<8x16xi32>, %b: tensor<16x4xi32>) -> tensor<8x4xi32> {
  %zero = arith.constant 0 : i32
  %e = tensor.empty() : tensor<8x4xi32>
  %c = linalg.fill ins(%zero : i32) outs(%e : tensor<8x4xi32>) -> tensor<8x4xi32>
  // expected-error @below {{has lq.role but must take 2-D tensors of f32, bf16 or f16 and produce a 2-D tensor of f32 or bf16}}
  %r = linalg.matmul {lq.role = "forward"} ins(%a, %b : tensor<8x16xi32>, tensor<16x4xi32>) outs(%c : tensor<8x4xi32>) -> tensor<8x4xi32>
  return %r : tensor<8x4xi32>
}

// -----

func.func @dynamic_batch(%a: tensor<?x8x16xf32>, %b: tensor<?x16x4xf32>, %n: index) -> tensor<?x8x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty(%n) : tensor<?x8x4xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<?x8x4xf32>) -> tensor<?x8x4xf32>
  // expected-error @below {{has lq.role but its batch size is dynamic; the batch is split into one GEMM per element, so it must be static}}
  %r = linalg.batch_matmul {lq.role = #lq.role<forward>} ins(%a, %b : tensor<?x8x16xf32>, tensor<?x16x4xf32>) outs(%c : tensor<?x8x4xf32>) -> tensor<?x8x4xf32>
  return %r : tensor<?x8x4xf32>
}

// -----

func.func @batched_nonzero_init(%a: tensor<2x8x16xf32>, %b: tensor<2x16x4xf32>, %c: tensor<2x8x4xf32>) -> tensor<2x8x4xf32> {
  // expected-error @below {{has lq.role but accumulates into an init that is not zero-filled; only C = A B is quantized}}
  %r = linalg.batch_matmul {lq.role = #lq.role<forward>} ins(%a, %b : tensor<2x8x16xf32>, tensor<2x16x4xf32>) outs(%c : tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  return %r : tensor<2x8x4xf32>
}

// -----

func.func @accumulating(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>, %c: tensor<8x4xf32>) -> tensor<8x4xf32> {
  // expected-error @below {{has lq.role but accumulates into an init that is not zero-filled; only C = A B is quantized}}
  %r = linalg.matmul {lq.role = "forward"} ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

func.func @not_a_contraction(%a: tensor<8x4xf32>, %b: tensor<8x4xf32>) -> tensor<8x4xf32> {
  %e = tensor.empty() : tensor<8x4xf32>
  // expected-error @below {{has lq.role but is not a contraction of two tensors (a sum of products)}}
  %r = linalg.add {lq.role = "forward"} ins(%a, %b : tensor<8x4xf32>, tensor<8x4xf32>) outs(%e : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

func.func @transposed_dy(%dy: tensor<4x8xf32>, %w: tensor<4x16xf32>) -> tensor<8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x16xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  // expected-error @below {{backward_data GEMM needs the gradient as its left operand, not transposed (dx = dy W)}}
  %r = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (k, m)>, affine_map<(m, n, k) -> (k, n)>, affine_map<(m, n, k) -> (m, n)>]
      {lq.role = "backward_data"}
      ins(%dy, %w : tensor<4x8xf32>, tensor<4x16xf32>) outs(%c : tensor<8x16xf32>) -> tensor<8x16xf32>
  return %r : tensor<8x16xf32>
}

// -----

func.func @wgrad_no_batch(%dy: tensor<8x4xf32>, %x: tensor<16x4xf32>) -> tensor<8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x16xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  // expected-error @below {{weight_grad GEMM must contract the rows (the batch) of the gradient: dW = dy^T x}}
  %r = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
      {lq.role = "weight_grad"}
      ins(%dy, %x : tensor<8x4xf32>, tensor<16x4xf32>) outs(%c : tensor<8x16xf32>) -> tensor<8x16xf32>
  return %r : tensor<8x16xf32>
}

// -----

func.func @seed_not_i64(%dy: tensor<8x4xf32>, %w: tensor<4x16xf32>, %seed: i32 {lq.seed}) -> tensor<8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x16xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<8x16xf32>) -> tensor<8x16xf32>
  %r = linalg.matmul {lq.role = "backward_data"} ins(%dy, %w : tensor<8x4xf32>, tensor<4x16xf32>) outs(%c : tensor<8x16xf32>) -> tensor<8x16xf32>
  return %r : tensor<8x16xf32>
}
// expected-error @-7 {{the lq.seed argument must be i64}}

// -----

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>

// expected-note @below {{@layer is here}}
func.func @layer(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>)
    -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %ye = tensor.empty() : tensor<4x3xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%x, %w : tensor<4x8xf32>, tensor<3x8xf32>) outs(%y0 : tensor<4x3xf32>) -> tensor<4x3xf32>
  %dxe = tensor.empty() : tensor<4x8xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dx = linalg.matmul ins(%dy, %w : tensor<4x3xf32>, tensor<3x8xf32>) outs(%dx0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dwe = tensor.empty() : tensor<3x8xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<3x8xf32>) -> tensor<3x8xf32>
  %dw = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dy, %x : tensor<4x3xf32>, tensor<4x8xf32>) outs(%dw0 : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %y, %dx, %dw : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
}

func.func @step(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>)
    -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
  // expected-error @below {{refers to @layer, which lq-quantize-matmuls gives a new argument, i64 {lq.seed}, that this use does not pass; declare that argument in @layer and pass it here}}
  %r:3 = func.call @layer(%x, %w, %dy)
      : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)
  return %r#0, %r#1, %r#2 : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
}
