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
//   dx   = col2im(dcols)                      back onto the input's layout
//   dWm  = dy^T cols                          weight gradient
//
// col2im adds each patch gradient back onto the input pixels it was read
// from. Written as a gather (each pixel sums the patch entries that read
// it) over dcols padded by KH-1 and KW-1 rows and columns of output
// positions, it is one linalg.generic with no scatter and no GEMM.
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
// col2im as a gather: dx[b, c, h, w] = sum over (kh, kw) of
// dcols6[b, h - kh, w - kw, c, kh, kw], read from dcols6 padded by 2.
#unpatch = affine_map<(b, c, h, w, kh, kw) -> (b, h - kh + 2, w - kw + 2, c, kh, kw)>
#pixel = affine_map<(b, c, h, w, kh, kw) -> (b, c, h, w)>

func.func @conv_step(%x: tensor<2x3x6x6xf32>, %w: tensor<4x3x3x3xf32>,
                     %dy: tensor<32x4xf32>, %seed: i64 {lq.seed})
    -> (tensor<32x4xf32>, tensor<2x3x6x6xf32>, tensor<4x3x3x3xf32>) {
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

  // col2im: dx[B, C, H, W], each pixel the sum of the patch entries that
  // read it.
  %dcols6 = tensor.expand_shape %dcols [[0, 1, 2], [3, 4, 5]] output_shape [2, 4, 4, 3, 3, 3]
      : tensor<32x27xf32> into tensor<2x4x4x3x3x3xf32>
  %dpad = tensor.pad %dcols6 low[0, 2, 2, 0, 0, 0] high[0, 2, 2, 0, 0, 0] {
  ^bb0(%i0: index, %i1: index, %i2: index, %i3: index, %i4: index, %i5: index):
    tensor.yield %zero : f32
  } : tensor<2x4x4x3x3x3xf32> to tensor<2x8x8x3x3x3xf32>
  %dx_empty = tensor.empty() : tensor<2x3x6x6xf32>
  %dx_init = linalg.fill ins(%zero : f32) outs(%dx_empty : tensor<2x3x6x6xf32>) -> tensor<2x3x6x6xf32>
  %dx = linalg.generic {indexing_maps = [#unpatch, #pixel],
      iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction"]}
      ins(%dpad : tensor<2x8x8x3x3x3xf32>) outs(%dx_init : tensor<2x3x6x6xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %acc, %v : f32
    linalg.yield %s : f32
  } -> tensor<2x3x6x6xf32>

  // Weight gradient: dWm = dy^T cols, reshaped to the filter.
  %dw_empty = tensor.empty() : tensor<4x27xf32>
  %dw_init = linalg.fill ins(%zero : f32) outs(%dw_empty : tensor<4x27xf32>) -> tensor<4x27xf32>
  %dwm = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dy, %cols : tensor<32x4xf32>, tensor<32x27xf32>)
      outs(%dw_init : tensor<4x27xf32>) -> tensor<4x27xf32>
  %dw = tensor.expand_shape %dwm [[0], [1, 2, 3]] output_shape [4, 3, 3, 3]
      : tensor<4x27xf32> into tensor<4x3x3x3xf32>
  return %y, %dx, %dw : tensor<32x4xf32>, tensor<2x3x6x6xf32>, tensor<4x3x3x3xf32>
}
