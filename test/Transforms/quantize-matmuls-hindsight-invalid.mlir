// With hindsight the pass adds results to the function: references other
// than func.call cannot follow.

// RUN: lq-opt %s --lq-quantize-matmuls=hindsight=true --verify-diagnostics

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>

// expected-note @below {{@layer is here}}
func.func @layer(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>,
                 %seed: i64 {lq.seed}, %est: f32 {lq.max_estimate = 0})
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

func.func @takes_ref() -> ((tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>, i64, f32) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)) {
  // expected-error @below {{refers to @layer, whose results lq-quantize-matmuls extends with each gradient's max |dy| (hindsight); only func.call references can be updated}}
  %f = func.constant @layer : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>, i64, f32) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)
  return %f : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>, i64, f32) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)
}
