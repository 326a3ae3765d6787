// The transformer MLP block of examples/transformer_mlp_linalg.mlir, as
// torch-mlir writes it and quantized by lq-quantize-matmuls with no
// annotations, computes exactly what the same block written with
// lq.linear / lq.linear_grad computes (layer 1's gradient on stream 0,
// layer 2's on stream 1, the ReLU output unsigned), bit for bit, through
// the reference lowering: y, dx, dW1 and dW2.

// RUN: cat %lq_src_root/examples/transformer_mlp_linalg.mlir %s \
// RUN: | lq-opt --lq-quantize-matmuls --lq-lower-to-linalg --canonicalize \
// RUN: | mlir-opt --convert-elementwise-to-linalg \
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \
// RUN: | mlir-runner -e main -entry-point-result=void \
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \
// RUN: | FileCheck %s

#cmp_id = affine_map<(i, j) -> (i, j)>
#cmp_all = affine_map<(i, j) -> ()>
#ref_id = affine_map<(i, j) -> (i, j)>

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

func.func @mlp_block_lq(%x: tensor<2x3x8xf32>, %w1: tensor<16x8xf32>, %b1: tensor<16xf32>,
                        %w2: tensor<8x16xf32>, %b2: tensor<8xf32>, %dy: tensor<2x3x8xf32>, %seed: i64)
    -> (tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<8x16xf32>) {
  %zero = arith.constant 0.0 : f32
  %x2 = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %h = lq.linear %x2, %w1 bias %b1 : tensor<6x8xf32>, tensor<16x8xf32>, tensor<16xf32> -> tensor<6x16xf32>
  %he = tensor.empty() : tensor<6x16xf32>
  %a = linalg.generic {indexing_maps = [#ref_id, #ref_id], iterator_types = ["parallel", "parallel"]}
      ins(%h : tensor<6x16xf32>) outs(%he : tensor<6x16xf32>) {
  ^bb0(%v: f32, %o: f32):
    %r = arith.maximumf %v, %zero : f32
    linalg.yield %r : f32
  } -> tensor<6x16xf32>
  %o2 = lq.linear %a, %w2 bias %b2 {unsigned_input} : tensor<6x16xf32>, tensor<8x16xf32>, tensor<8xf32> -> tensor<6x8xf32>
  %xo = tensor.collapse_shape %x [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %ye = tensor.empty() : tensor<6x8xf32>
  %y2 = linalg.generic {indexing_maps = [#ref_id, #ref_id, #ref_id], iterator_types = ["parallel", "parallel"]}
      ins(%xo, %o2 : tensor<6x8xf32>, tensor<6x8xf32>) outs(%ye : tensor<6x8xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %s = arith.addf %l, %r : f32
    linalg.yield %s : f32
  } -> tensor<6x8xf32>
  %dy2 = tensor.collapse_shape %dy [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %da, %dw2, %m2, %bad2, %ovf2 = lq.linear_grad %a, %w2, %dy2 seed %seed {stream = 1, unsigned_input}
      : tensor<6x16xf32>, tensor<8x16xf32>, tensor<6x8xf32> -> tensor<6x16xf32>, tensor<8x16xf32>
  %dh = linalg.generic {indexing_maps = [#ref_id, #ref_id, #ref_id], iterator_types = ["parallel", "parallel"]}
      ins(%da, %a : tensor<6x16xf32>, tensor<6x16xf32>) outs(%he : tensor<6x16xf32>) {
  ^bb0(%g: f32, %act: f32, %o: f32):
    %pos = arith.cmpf ogt, %act, %zero : f32
    %r = arith.select %pos, %g, %zero : f32
    linalg.yield %r : f32
  } -> tensor<6x16xf32>
  %dx2, %dw1, %m1, %bad1, %ovf1 = lq.linear_grad %x2, %w1, %dh seed %seed {stream = 0}
      : tensor<6x8xf32>, tensor<16x8xf32>, tensor<6x16xf32> -> tensor<6x8xf32>, tensor<16x8xf32>
  %dxs = linalg.generic {indexing_maps = [#ref_id, #ref_id, #ref_id], iterator_types = ["parallel", "parallel"]}
      ins(%dx2, %dy2 : tensor<6x8xf32>, tensor<6x8xf32>) outs(%ye : tensor<6x8xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %s = arith.addf %l, %r : f32
    linalg.yield %s : f32
  } -> tensor<6x8xf32>
  %y = tensor.expand_shape %y2 [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  %dx = tensor.expand_shape %dxs [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  return %y, %dx, %dw1, %dw2 : tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<8x16xf32>
}

func.func @main() {
  %x = arith.constant dense<[[[-0.5285, -1.047, 0.4528, -1.283, 0.1076, -0.4029, -1.326, 0.02231], [-1.388, -0.1991, -1.29, -1.228, -0.2264, 0.9806, -1.129, -0.8303], [0.3823, 1.343, 0.2313, -0.31, 1.429, -1.36, 1.075, -0.6312]], [[-1.067, -1.147, -0.5746, 0.9484, -0.9578, 0.2448, 0.4167, -0.3828], [0.1432, -1.312, -1.321, -0.8821, 0.5412, -0.2172, -0.5576, 0.2567], [-0.1404, -0.6007, 0.8831, 0.597, -0.7677, 0.2233, 0.07559, 1.125]]]> : tensor<2x3x8xf32>
  %w1 = arith.constant dense<[[0.1377, -0.1272, 0.2881, -0.2292, -0.04913, 0.1543, -0.2088, -0.006622], [-0.2765, 0.1009, 0.1587, 0.04382, 0.2253, -0.1118, 0.1172, 0.05662], [0.04794, -0.02628, 0.204, 0.2668, -0.01554, 0.09849, -0.2636, 0.1209], [0.08828, 0.2959, 0.1932, -0.1292, -0.06853, 0.1012, -0.2865, -0.02298], [-0.1992, -0.2297, -0.2646, 0.1609, -0.2224, -0.1514, -0.06543, 0.2229], [-0.2517, -0.03049, 0.02966, 0.23, 0.1916, 0.2184, -0.1329, -0.05082], [-0.08474, 0.2305, 0.2746, -0.2094, -0.1943, -0.1608, -0.16, -0.009022], [0.05347, -0.1424, -0.2975, -0.04863, -0.07845, 0.0398, 0.2719, 0.1143], [0.009295, 0.07056, 0.1057, -0.2676, 0.2397, 0.168, 0.2247, 0.1787], [-0.06457, -0.06061, -0.2379, 0.08057, -0.2627, -0.2596, -0.1747, -0.2026], [-0.09597, -0.2685, -0.2999, -0.2092, -0.2391, -0.08183, -0.2847, 0.2246], [0.06844, -0.2109, -0.1486, -0.09157, -0.0815, -0.2263, 0.2094, 0.2959], [-0.02041, -0.009699, -0.2485, -0.2387, -0.09442, -0.1411, 0.1973, -0.2031], [-0.2861, 0.2706, 0.01695, -0.212, 0.0259, -0.2838, 0.01687, 0.2871], [0.218, 0.1177, -0.1433, -0.07998, -0.1998, 0.1632, 0.01956, 0.1674], [-0.1022, -0.1662, 0.1869, 0.291, 0.2116, 0.1836, 0.191, 0.1439]]> : tensor<16x8xf32>
  %b1 = arith.constant dense<[-0.02733, 0.001764, -0.01444, -0.0471, -0.04721, -0.02206, -0.02408, 0.01925, 0.04565, -0.005277, 0.0437, 0.0488, 0.0455, -0.01354, -0.02795, -0.02732]> : tensor<16xf32>
  %w2 = arith.constant dense<[[-0.1213, -0.1183, 0.04963, 0.1601, 0.1362, -0.008211, 0.06119, 0.1199, -0.1661, 0.06423, 0.1639, 0.1129, 0.1001, -0.008787, -0.1286, 0.1157], [-0.06699, 0.1203, 0.1887, -0.04166, -0.03945, 0.1787, 0.08992, -0.132, -0.1492, -0.1395, 0.1619, 0.1226, -0.1415, 0.1306, 0.1921, 0.06291], [-0.05984, 0.01946, -0.1476, -0.1943, 0.1884, 0.05987, 0.01063, 0.1734, -0.02648, 0.1487, 0.1305, -0.1156, -0.09927, -0.08281, -0.1038, 0.03457], [-0.09625, -0.03239, -0.1476, 0.164, -0.05849, -0.01674, 0.03334, 0.1617, -0.03175, 0.1671, 0.0006596, 0.01273, 0.009403, -0.1925, -0.02395, -0.1268], [-0.1984, 0.1197, -0.1311, -0.0106, 0.09008, 0.02259, -0.06961, 0.007339, 0.02218, 0.1137, -0.1576, 0.02412, -0.1006, -0.08923, 0.1089, 0.003086], [0.02469, 0.104, 0.165, -0.0227, 0.04501, 0.002221, 0.004865, 0.07709, -0.01906, 0.01331, -0.008785, 0.1766, 0.07969, 0.1506, 0.1769, -0.09616], [0.02381, 0.1773, 0.136, -0.1451, -0.1514, -0.02315, -0.171, -0.1037, -0.1708, 0.06779, 0.1136, 0.1588, -0.1382, 0.08645, 0.0641, -0.1428], [0.1531, 0.187, -0.1122, 0.181, -0.0407, -0.005096, 0.1959, 0.133, -0.1354, -0.02739, 0.006242, -0.06435, -0.1217, -0.07259, 0.08886, -0.1922]]> : tensor<8x16xf32>
  %b2 = arith.constant dense<[0.005405, -0.005954, -0.04819, -0.01685, 0.01239, 0.001226, -0.04357, 0.04851]> : tensor<8xf32>
  %dy = arith.constant dense<[[[0.002307, 0.003774, -0.003162, -0.001875, -0.003683, 0.002232, -0.001836, -0.002964], [-0.000622, 0.003291, 0.002552, -0.001931, -0.002805, 0.003353, 0.0005648, 0.001603], [-0.003284, -0.00354, 0.001506, -0.0005975, -0.003421, 0.003507, 0.001076, 0.002413]], [[-0.00333, 0.00285, -0.003467, 0.002902, -0.0003698, -0.001287, 0.0004245, 0.003413], [-0.001857, -0.002966, 0.0002153, -0.002093, -0.003124, -0.002708, -0.003597, -0.002386], [-0.001504, -0.00156, 0.002076, -0.00168, 7.088e-07, -0.002577, -0.001224, -0.003855]]]> : tensor<2x3x8xf32>
  %seed = arith.constant 20261203 : i64
  %g:6 = func.call @mlp_block(%x, %w1, %b1, %w2, %b2, %dy, %seed)
      : (tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<2x3x8xf32>, i64)
      -> (tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<8x16xf32>, tensor<8xf32>)
  %l:4 = func.call @mlp_block_lq(%x, %w1, %b1, %w2, %b2, %dy, %seed)
      : (tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<2x3x8xf32>, i64)
      -> (tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<16x8xf32>, tensor<8x16xf32>)
  %ca0 = tensor.collapse_shape %g#0 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %cb0 = tensor.collapse_shape %l#0 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %da0 = tensor.cast %ca0 : tensor<6x8xf32> to tensor<?x?xf32>
  %db0 = tensor.cast %cb0 : tensor<6x8xf32> to tensor<?x?xf32>
  func.call @compare(%da0, %db0) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  %ca1 = tensor.collapse_shape %g#1 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %cb1 = tensor.collapse_shape %l#1 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %da1 = tensor.cast %ca1 : tensor<6x8xf32> to tensor<?x?xf32>
  %db1 = tensor.cast %cb1 : tensor<6x8xf32> to tensor<?x?xf32>
  func.call @compare(%da1, %db1) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  %da2 = tensor.cast %g#2 : tensor<16x8xf32> to tensor<?x?xf32>
  %db2 = tensor.cast %l#2 : tensor<16x8xf32> to tensor<?x?xf32>
  func.call @compare(%da2, %db2) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  %da3 = tensor.cast %g#4 : tensor<8x16xf32> to tensor<?x?xf32>
  %db3 = tensor.cast %l#3 : tensor<8x16xf32> to tensor<?x?xf32>
  func.call @compare(%da3, %db3) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
  return
}

// Each line: no difference, and a non-zero result.
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
