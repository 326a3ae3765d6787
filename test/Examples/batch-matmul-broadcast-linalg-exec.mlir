// The batch_matmul layer of examples/batch_matmul_broadcast_linalg.mlir
// (weight broadcast over the batch, dW summed over it), quantized by
// lq-quantize-matmuls with no annotations, computes exactly what
// lq.linear / lq.linear_grad compute on the [batch * rows] activations
// with the transposed weight, bit for bit, through the reference lowering.
// The weights are multiples of 1/64, so that SAWB's moments of W and W^T,
// summed in another order, are exact and equal.

// RUN: cat %lq_src_root/examples/batch_matmul_broadcast_linalg.mlir %s \
// RUN: | lq-opt --lq-quantize-matmuls --lq-lower-to-linalg --canonicalize \
// RUN: | mlir-opt --convert-elementwise-to-linalg \
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \
// RUN: | mlir-runner -e main -entry-point-result=void \
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \
// RUN: | FileCheck %s

#cmp_id = affine_map<(i, j) -> (i, j)>
#cmp_all = affine_map<(i, j) -> ()>

func.func private @printMemrefF32(tensor<*xf32>)

// max |a - b| and sum |a|, printed as [max, sum].
func.func @compare(%a: tensor<?x?xf32>, %b: tensor<?x?xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2xf32>) -> tensor<2xf32>
  %m0 = tensor.extract_slice %init[0] [1] [1] : tensor<2xf32> to tensor<f32>
  %r:2 = linalg.generic {indexing_maps = [#cmp_id, #cmp_id, #cmp_all, #cmp_all], iterator_types = ["reduction", "reduction"]}
      ins(%a, %b : tensor<?x?xf32>, tensor<?x?xf32>) outs(%m0, %m0 : tensor<f32>, tensor<f32>) {
  ^bb0(%va: f32, %vb: f32, %mx: f32, %sum: f32):
    %d = arith.subf %va, %vb : f32
    %ad = math.absf %d : f32
    %nmx = arith.maximumf %mx, %ad : f32
    %aa = math.absf %va : f32
    %nsum = arith.addf %sum, %aa : f32
    linalg.yield %nmx, %nsum : f32, f32
  } -> (tensor<f32>, tensor<f32>)
  %mx = tensor.extract %r#0[] : tensor<f32>
  %sum = tensor.extract %r#1[] : tensor<f32>
  %out = tensor.from_elements %mx, %sum : tensor<2xf32>
  %u = tensor.cast %out : tensor<2xf32> to tensor<*xf32>
  func.call @printMemrefF32(%u) : (tensor<*xf32>) -> ()
  return
}

func.func @bmm_layer_lq(%x: tensor<2x3x8xf32>, %w: tensor<8x4xf32>, %dy: tensor<2x3x4xf32>, %seed: i64)
    -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>) {
  %x2 = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %dy2 = tensor.collapse_shape %dy [[0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
  %wte = tensor.empty() : tensor<4x8xf32>
  %wt = linalg.transpose ins(%w : tensor<8x4xf32>) outs(%wte : tensor<4x8xf32>) permutation = [1, 0]
  %y2 = lq.linear %x2, %wt : tensor<6x8xf32>, tensor<4x8xf32> -> tensor<6x4xf32>
  %dx2, %dwt, %m, %bad, %ovf = lq.linear_grad %x2, %wt, %dy2 seed %seed {stream = 0}
      : tensor<6x8xf32>, tensor<4x8xf32>, tensor<6x4xf32> -> tensor<6x8xf32>, tensor<4x8xf32>
  %dwe = tensor.empty() : tensor<8x4xf32>
  %dw = linalg.transpose ins(%dwt : tensor<4x8xf32>) outs(%dwe : tensor<8x4xf32>) permutation = [1, 0]
  %y = tensor.expand_shape %y2 [[0, 1], [2]] output_shape [2, 3, 4] : tensor<6x4xf32> into tensor<2x3x4xf32>
  %dx = tensor.expand_shape %dx2 [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  return %y, %dx, %dw : tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>
}

func.func @main() {
  %x = arith.constant dense<[[[-0.7487, -1.454, 0.6992, 0.1531, -0.9316, -0.07572, 1.304, -1.181], [0.9568, -0.2035, -0.015, 1.004, -0.3207, 0.02006, 0.5632, 1.447], [-0.4719, 0.9969, 0.6202, 0.4079, -0.2859, -0.4573, -1.337, -1.111]], [[-1.288, 0.7227, -0.7332, -1.01, -1.247, 1.024, 1.112, 0.5116], [-0.6542, -0.7734, -0.6208, -0.1216, -1.027, -0.1625, -0.7103, 1.385], [1.418, 0.1412, -0.7667, 1.397, -0.5714, -0.4302, -1.497, -0.3551]]]> : tensor<2x3x8xf32>
  %w = arith.constant dense<[[0.09375, -0.109375, 0.125, 0.265625], [-0.1875, -0.140625, 0.125, -0.375], [-0.296875, -0.125, -0.296875, -0.234375], [0.015625, 0.203125, -0.34375, 0.015625], [-0.359375, -0.078125, -0.078125, 0.25], [-0.15625, -0.296875, 0.203125, 0.140625], [0.375, -0.234375, 0.28125, 0.328125], [0.21875, 0.0, 0.375, -0.0625]]> : tensor<8x4xf32>
  %dy = arith.constant dense<[[[0.001765, -4.647e-05, -0.001727, 0.0009497], [-0.002842, 0.002599, 0.00172, 0.0001038], [-0.000566, 0.001608, 4.433e-05, 0.003279]], [[0.002023, 0.0005478, 0.002503, -0.003871], [0.001492, 0.002384, 0.001689, 0.003649], [0.001143, -0.003319, -0.003665, 0.001097]]]> : tensor<2x3x4xf32>
  %seed = arith.constant 20261203 : i64
  %g:3 = func.call @bmm_layer(%x, %w, %dy, %seed)
      : (tensor<2x3x8xf32>, tensor<8x4xf32>, tensor<2x3x4xf32>, i64) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>)
  %l:3 = func.call @bmm_layer_lq(%x, %w, %dy, %seed)
      : (tensor<2x3x8xf32>, tensor<8x4xf32>, tensor<2x3x4xf32>, i64) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>)
  %ca0 = tensor.collapse_shape %g#0 [[0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
  %cb0 = tensor.collapse_shape %l#0 [[0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
  %da0 = tensor.cast %ca0 : tensor<6x4xf32> to tensor<?x?xf32>
  %db0 = tensor.cast %cb0 : tensor<6x4xf32> to tensor<?x?xf32>
  func.call @compare(%da0, %db0) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  %ca1 = tensor.collapse_shape %g#1 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %cb1 = tensor.collapse_shape %l#1 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %da1 = tensor.cast %ca1 : tensor<6x8xf32> to tensor<?x?xf32>
  %db1 = tensor.cast %cb1 : tensor<6x8xf32> to tensor<?x?xf32>
  func.call @compare(%da1, %db1) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  %da2 = tensor.cast %g#2 : tensor<8x4xf32> to tensor<?x?xf32>
  %db2 = tensor.cast %l#2 : tensor<8x4xf32> to tensor<?x?xf32>
  func.call @compare(%da2, %db2) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  return
}

// Each line: no difference, and a non-zero result.
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
