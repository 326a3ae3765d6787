// The MLP block of a transformer layer, y = x + W2 relu(W1 x + b1) + b2 on
// activations [batch, sequence, features], and its backward pass, written
// as torch-mlir's linalg-on-tensors backend writes them: 3-D activations
// collapsed to 2-D for each GEMM and expanded back, weights transposed by
// linalg.transpose, bias adds and ReLU as linalg.generic, and every reshape
// repeated where each use asks for it. Nothing is annotated:
// lq-quantize-matmuls finds all six GEMMs, infers their roles, and folds
// the bias adds and the ReLU into the forward GEMMs' epilogues.
//
//   lq-opt examples/transformer_mlp_linalg.mlir --lq-quantize-matmuls
//
// Shapes: batch 2, sequence 3, model width 8, hidden width 16.

#id3 = affine_map<(b, s, f) -> (b, s, f)>
#col3 = affine_map<(b, s, f) -> (f)>
#bsf_f = affine_map<(b, s, f) -> (f)>

func.func @mlp_block(%x: tensor<2x3x8xf32>, %w1: tensor<16x8xf32>, %b1: tensor<16xf32>,
                     %w2: tensor<8x16xf32>, %b2: tensor<8xf32>, %dy: tensor<2x3x8xf32>,
                     %seed: i64 {lq.seed})
    -> (tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>,
        tensor<8x16xf32>, tensor<8xf32>) {
  %zero = arith.constant 0.0 : f32

  // h = relu(x W1^T + b1)
  %x2 = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %w1t_e = tensor.empty() : tensor<8x16xf32>
  %w1t = linalg.transpose ins(%w1 : tensor<16x8xf32>) outs(%w1t_e : tensor<8x16xf32>) permutation = [1, 0]
  %h2_e = tensor.empty() : tensor<6x16xf32>
  %h2_0 = linalg.fill ins(%zero : f32) outs(%h2_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %h2 = linalg.matmul ins(%x2, %w1t : tensor<6x8xf32>, tensor<8x16xf32>) outs(%h2_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %h = tensor.expand_shape %h2 [[0, 1], [2]] output_shape [2, 3, 16] : tensor<6x16xf32> into tensor<2x3x16xf32>
  %h_e = tensor.empty() : tensor<2x3x16xf32>
  %hb = linalg.generic {indexing_maps = [#id3, #col3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%h, %b1 : tensor<2x3x16xf32>, tensor<16xf32>) outs(%h_e : tensor<2x3x16xf32>) {
  ^bb0(%v: f32, %bias: f32, %out: f32):
    %s = arith.addf %v, %bias : f32
    linalg.yield %s : f32
  } -> tensor<2x3x16xf32>
  %a = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%hb : tensor<2x3x16xf32>) outs(%h_e : tensor<2x3x16xf32>) {
  ^bb0(%v: f32, %out: f32):
    %r = arith.maximumf %v, %zero : f32
    linalg.yield %r : f32
  } -> tensor<2x3x16xf32>

  // y = x + (h W2^T + b2)
  %a2 = tensor.collapse_shape %a [[0, 1], [2]] : tensor<2x3x16xf32> into tensor<6x16xf32>
  %w2t_e = tensor.empty() : tensor<16x8xf32>
  %w2t = linalg.transpose ins(%w2 : tensor<8x16xf32>) outs(%w2t_e : tensor<16x8xf32>) permutation = [1, 0]
  %o2_e = tensor.empty() : tensor<6x8xf32>
  %o2_0 = linalg.fill ins(%zero : f32) outs(%o2_e : tensor<6x8xf32>) -> tensor<6x8xf32>
  %o2 = linalg.matmul ins(%a2, %w2t : tensor<6x16xf32>, tensor<16x8xf32>) outs(%o2_0 : tensor<6x8xf32>) -> tensor<6x8xf32>
  %o = tensor.expand_shape %o2 [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  %y_e = tensor.empty() : tensor<2x3x8xf32>
  %ob = linalg.generic {indexing_maps = [#id3, #col3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%o, %b2 : tensor<2x3x8xf32>, tensor<8xf32>) outs(%y_e : tensor<2x3x8xf32>) {
  ^bb0(%v: f32, %bias: f32, %out: f32):
    %s = arith.addf %v, %bias : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  %y = linalg.generic {indexing_maps = [#id3, #id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x, %ob : tensor<2x3x8xf32>, tensor<2x3x8xf32>) outs(%y_e : tensor<2x3x8xf32>) {
  ^bb0(%l: f32, %r: f32, %out: f32):
    %s = arith.addf %l, %r : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>

  // Second linear layer: da = dy W2, dW2 = dy^T a, db2 = sum dy.
  %dy2 = tensor.collapse_shape %dy [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %da2_e = tensor.empty() : tensor<6x16xf32>
  %da2_0 = linalg.fill ins(%zero : f32) outs(%da2_e : tensor<6x16xf32>) -> tensor<6x16xf32>
  %da2 = linalg.matmul ins(%dy2, %w2 : tensor<6x8xf32>, tensor<8x16xf32>) outs(%da2_0 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %dy2b = tensor.collapse_shape %dy [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %dy2t_e = tensor.empty() : tensor<8x6xf32>
  %dy2t = linalg.transpose ins(%dy2b : tensor<6x8xf32>) outs(%dy2t_e : tensor<8x6xf32>) permutation = [1, 0]
  %a2b = tensor.collapse_shape %a [[0, 1], [2]] : tensor<2x3x16xf32> into tensor<6x16xf32>
  %dw2_e = tensor.empty() : tensor<8x16xf32>
  %dw2_0 = linalg.fill ins(%zero : f32) outs(%dw2_e : tensor<8x16xf32>) -> tensor<8x16xf32>
  %dw2 = linalg.matmul ins(%dy2t, %a2b : tensor<8x6xf32>, tensor<6x16xf32>) outs(%dw2_0 : tensor<8x16xf32>) -> tensor<8x16xf32>
  %db2_e = tensor.empty() : tensor<8xf32>
  %db2_0 = linalg.fill ins(%zero : f32) outs(%db2_e : tensor<8xf32>) -> tensor<8xf32>
  %db2 = linalg.generic {indexing_maps = [#id3, #bsf_f], iterator_types = ["reduction", "reduction", "parallel"]}
      ins(%dy : tensor<2x3x8xf32>) outs(%db2_0 : tensor<8xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %v, %acc : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>

  // ReLU backward: dh = da where a > 0.
  %da = tensor.expand_shape %da2 [[0, 1], [2]] output_shape [2, 3, 16] : tensor<6x16xf32> into tensor<2x3x16xf32>
  %dh = linalg.generic {indexing_maps = [#id3, #id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%da, %a : tensor<2x3x16xf32>, tensor<2x3x16xf32>) outs(%h_e : tensor<2x3x16xf32>) {
  ^bb0(%g: f32, %act: f32, %out: f32):
    %pos = arith.cmpf ogt, %act, %zero : f32
    %r = arith.select %pos, %g, %zero : f32
    linalg.yield %r : f32
  } -> tensor<2x3x16xf32>

  // First linear layer: dx = dh W1 (+ dy through the residual), dW1 = dh^T x.
  %dh2 = tensor.collapse_shape %dh [[0, 1], [2]] : tensor<2x3x16xf32> into tensor<6x16xf32>
  %dx2_e = tensor.empty() : tensor<6x8xf32>
  %dx2_0 = linalg.fill ins(%zero : f32) outs(%dx2_e : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dx2 = linalg.matmul ins(%dh2, %w1 : tensor<6x16xf32>, tensor<16x8xf32>) outs(%dx2_0 : tensor<6x8xf32>) -> tensor<6x8xf32>
  %dxm = tensor.expand_shape %dx2 [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  %dx = linalg.generic {indexing_maps = [#id3, #id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%dxm, %dy : tensor<2x3x8xf32>, tensor<2x3x8xf32>) outs(%y_e : tensor<2x3x8xf32>) {
  ^bb0(%l: f32, %r: f32, %out: f32):
    %s = arith.addf %l, %r : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  %dh2b = tensor.collapse_shape %dh [[0, 1], [2]] : tensor<2x3x16xf32> into tensor<6x16xf32>
  %dh2t_e = tensor.empty() : tensor<16x6xf32>
  %dh2t = linalg.transpose ins(%dh2b : tensor<6x16xf32>) outs(%dh2t_e : tensor<16x6xf32>) permutation = [1, 0]
  %x2b = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %dw1_e = tensor.empty() : tensor<16x8xf32>
  %dw1_0 = linalg.fill ins(%zero : f32) outs(%dw1_e : tensor<16x8xf32>) -> tensor<16x8xf32>
  %dw1 = linalg.matmul ins(%dh2t, %x2b : tensor<16x6xf32>, tensor<6x8xf32>) outs(%dw1_0 : tensor<16x8xf32>) -> tensor<16x8xf32>
  %db1_e = tensor.empty() : tensor<16xf32>
  %db1_0 = linalg.fill ins(%zero : f32) outs(%db1_e : tensor<16xf32>) -> tensor<16xf32>
  %db1 = linalg.generic {indexing_maps = [#id3, #bsf_f], iterator_types = ["reduction", "reduction", "parallel"]}
      ins(%dh : tensor<2x3x16xf32>) outs(%db1_0 : tensor<16xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %v, %acc : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>

  return %y, %dx, %dw1, %db1, %dw2, %db2
      : tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>,
        tensor<8x16xf32>, tensor<8xf32>
}
