// A 3x3 convolution layer (2x3x6x6 input, 4 filters, stride 1, no padding)
// as im2col + GEMM in linalg, forward and backward, the way framework
// lowerings expand convolutions for GEMM hardware. The GEMMs carry no
// annotation: lq-quantize-matmuls infers their roles from the gradient that
// feeds both backward GEMMs.
//
//   cols [B*OH*OW, C*KH*KW] = im2col(x)       (a linalg.generic gather)
//   Wm   [OC, C*KH*KW]      = reshape(W)
//   y    = cols Wm^T                          forward
//   dcols = dy Wm                             backward data (im2col layout)
//   dWm  = dy^T cols                          weight gradient
//
// dcols is returned in the im2col layout; folding it back onto the input
// (col2im) is a scatter-add that involves no GEMM.
//
//   lq-opt examples/conv_im2col_linalg.mlir --lq-quantize-matmuls

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
// im2col as a gather: cols6[b, oh, ow, c, kh, kw] = x[b, c, oh + kh, ow + kw].
#patch = affine_map<(b, oh, ow, c, kh, kw) -> (b, c, oh + kh, ow + kw)>
#cols = affine_map<(b, oh, ow, c, kh, kw) -> (b, oh, ow, c, kh, kw)>

func.func @conv_step(%x: tensor<2x3x6x6xf32>, %w: tensor<4x3x3x3xf32>,
                     %dy: tensor<32x4xf32>, %seed: i64 {lq.seed})
    -> (tensor<32x4xf32>, tensor<32x27xf32>, tensor<4x3x3x3xf32>) {
  %zero = arith.constant 0.0 : f32
  %cols6_init = tensor.empty() : tensor<2x4x4x3x3x3xf32>
  %cols6 = linalg.generic {indexing_maps = [#patch, #cols],
      iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel"]}
      ins(%x : tensor<2x3x6x6xf32>) outs(%cols6_init : tensor<2x4x4x3x3x3xf32>) {
  ^bb0(%v: f32, %out: f32):
    linalg.yield %v : f32
  } -> tensor<2x4x4x3x3x3xf32>
  %cols = tensor.collapse_shape %cols6 [[0, 1, 2], [3, 4, 5]]
      : tensor<2x4x4x3x3x3xf32> into tensor<32x27xf32>
  %wm = tensor.collapse_shape %w [[0], [1, 2, 3]] : tensor<4x3x3x3xf32> into tensor<4x27xf32>

  // Forward: y[B*OH*OW, OC] = cols Wm^T.
  %y_empty = tensor.empty() : tensor<32x4xf32>
  %y_init = linalg.fill ins(%zero : f32) outs(%y_empty : tensor<32x4xf32>) -> tensor<32x4xf32>
  %y = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%cols, %wm : tensor<32x27xf32>, tensor<4x27xf32>)
      outs(%y_init : tensor<32x4xf32>) -> tensor<32x4xf32>

  // Backward data, in the im2col layout: dcols = dy Wm.
  %dc_empty = tensor.empty() : tensor<32x27xf32>
  %dc_init = linalg.fill ins(%zero : f32) outs(%dc_empty : tensor<32x27xf32>) -> tensor<32x27xf32>
  %dcols = linalg.matmul ins(%dy, %wm : tensor<32x4xf32>, tensor<4x27xf32>)
      outs(%dc_init : tensor<32x27xf32>) -> tensor<32x27xf32>

  // Weight gradient: dWm = dy^T cols, reshaped to the filter.
  %dw_empty = tensor.empty() : tensor<4x27xf32>
  %dw_init = linalg.fill ins(%zero : f32) outs(%dw_empty : tensor<4x27xf32>) -> tensor<4x27xf32>
  %dwm = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dy, %cols : tensor<32x4xf32>, tensor<32x27xf32>)
      outs(%dw_init : tensor<4x27xf32>) -> tensor<4x27xf32>
  %dw = tensor.expand_shape %dwm [[0], [1, 2, 3]] output_shape [4, 3, 3, 3]
      : tensor<4x27xf32> into tensor<4x3x3x3xf32>
  return %y, %dcols, %dw : tensor<32x4xf32>, tensor<32x27xf32>, tensor<4x3x3x3xf32>
}
