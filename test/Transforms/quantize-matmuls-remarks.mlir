// Every GEMM that lq-quantize-matmuls leaves in high precision gets a
// remark saying which one and why, without strict.

// RUN: lq-opt %s --lq-quantize-matmuls=keep-first=true --split-input-file \
// RUN:   --verify-diagnostics

func.func @no_role(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>) -> tensor<8x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x4xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<8x4xf32>) -> tensor<8x4xf32>
  // expected-remark @below {{GEMM stays in high precision: its training role is neither marked (lq.role) nor inferred: no gradient is the untransposed left operand of exactly one GEMM and contracted over its rows by exactly one other, with a forward GEMM before both reading the same weight}}
  %r = linalg.matmul ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

func.func @batched_attention(%q: tensor<2x4x8xf32>, %k: tensor<2x8x4xf32>) -> tensor<2x4x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4x4xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  // expected-remark @below {{GEMM stays in high precision: it is batched: lq.matmul multiplies 2-D matrices (a batched contraction is split into 2-D GEMMs only when it has lq.role)}}
  %s = linalg.batch_matmul ins(%q, %k : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%c : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  return %s : tensor<2x4x4xf32>
}

// -----

func.func @accumulates(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>, %c: tensor<8x4xf32>) -> tensor<8x4xf32> {
  // expected-remark @below {{GEMM stays in high precision: it accumulates into an init that is not zero-filled; only C = A B is quantized}}
  %r = linalg.matmul ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
  return %r : tensor<8x4xf32>
}

// -----

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>

func.func @kept_layer(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>)
    -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %ye = tensor.empty() : tensor<4x3xf32>
  %y0 = linalg.fill ins(%zero : f32) outs(%ye : tensor<4x3xf32>) -> tensor<4x3xf32>
  // expected-remark @below {{GEMM stays in high precision: it is layer 0, the first, which keep-first keeps}}
  %y = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%x, %w : tensor<4x8xf32>, tensor<3x8xf32>) outs(%y0 : tensor<4x3xf32>) -> tensor<4x3xf32>
  %dxe = tensor.empty() : tensor<4x8xf32>
  %dx0 = linalg.fill ins(%zero : f32) outs(%dxe : tensor<4x8xf32>) -> tensor<4x8xf32>
  // expected-remark @below {{GEMM stays in high precision: its gradient belongs to a layer kept by keep-first or keep-last}}
  %dx = linalg.matmul ins(%dy, %w : tensor<4x3xf32>, tensor<3x8xf32>) outs(%dx0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %dwe = tensor.empty() : tensor<3x8xf32>
  %dw0 = linalg.fill ins(%zero : f32) outs(%dwe : tensor<3x8xf32>) -> tensor<3x8xf32>
  // expected-remark @below {{GEMM stays in high precision: its gradient belongs to a layer kept by keep-first or keep-last}}
  %dw = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dy, %x : tensor<4x3xf32>, tensor<4x8xf32>) outs(%dw0 : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %y, %dx, %dw : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
}
