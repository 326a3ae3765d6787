// A linalg layer through lq-quantize-matmuls computes exactly what the same
// layer written as lq.linear / lq.linear_grad computes (same seed, stream 0),
// bit for bit, through the reference lowering.

// RUN: lq-opt %s --lq-quantize-matmuls --lq-lower-to-linalg --canonicalize \
// RUN: | mlir-opt --convert-elementwise-to-linalg \
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \
// RUN: | mlir-runner -e main -entry-point-result=void \
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \
// RUN: | FileCheck %s

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(i, j) -> (i, j)>
#all = affine_map<(i, j) -> ()>

module {
  func.func private @printMemrefF32(tensor<*xf32>)

  func.func @graph(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>, %seed: i64 {lq.seed})
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

  func.func @layer(%x: tensor<4x8xf32>, %w: tensor<3x8xf32>, %dy: tensor<4x3xf32>, %seed: i64)
      -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>) {
    %y = lq.linear %x, %w : tensor<4x8xf32>, tensor<3x8xf32> -> tensor<4x3xf32>
    %dx, %dw, %m, %bad, %ovf = lq.linear_grad %x, %w, %dy seed %seed {stream = 0}
        : tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32> -> tensor<4x8xf32>, tensor<3x8xf32>
    return %y, %dx, %dw : tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>
  }

  // max |a - b| and sum |a|, printed as [max, sum].
  func.func @compare(%a: tensor<?x?xf32>, %b: tensor<?x?xf32>) {
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<2xf32>
    %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2xf32>) -> tensor<2xf32>
    %m0 = tensor.extract_slice %init[0] [1] [1] : tensor<2xf32> to tensor<f32>
    %r:2 = linalg.generic {indexing_maps = [#id, #id, #all, #all], iterator_types = ["reduction", "reduction"]}
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

  func.func @main() {
    %x = arith.constant dense<[[0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 0.1, -0.3],
                               [1.2, 0.4, -2.2, 0.9, 0.05, -1.1, 0.7, 0.35],
                               [-0.6, 1.8, 0.3, -0.45, 1.05, 0.2, -1.6, 0.8],
                               [0.15, -0.25, 1.4, 0.6, -0.9, 0.55, 0.95, -1.3]]> : tensor<4x8xf32>
    %w = arith.constant dense<[[0.02, -0.05, 0.11, 0.07, -0.09, 0.03, 0.01, -0.04],
                               [-0.06, 0.08, -0.02, 0.12, 0.05, -0.1, 0.04, 0.09],
                               [0.1, 0.01, -0.07, -0.03, 0.06, 0.02, -0.11, 0.05]]> : tensor<3x8xf32>
    %dy = arith.constant dense<[[0.003, -0.0007, 0.0021], [-0.0013, 0.0048, 0.0002],
                                [0.0009, 0.0016, -0.0035], [-0.0041, 0.0005, 0.0011]]> : tensor<4x3xf32>
    %seed = arith.constant 20240607 : i64
    %gy, %gdx, %gdw = func.call @graph(%x, %w, %dy, %seed)
        : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>, i64) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)
    %ly, %ldx, %ldw = func.call @layer(%x, %w, %dy, %seed)
        : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<4x3xf32>, i64) -> (tensor<4x3xf32>, tensor<4x8xf32>, tensor<3x8xf32>)
    %a0 = tensor.cast %gy : tensor<4x3xf32> to tensor<?x?xf32>
    %b0 = tensor.cast %ly : tensor<4x3xf32> to tensor<?x?xf32>
    func.call @compare(%a0, %b0) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
    %a1 = tensor.cast %gdx : tensor<4x8xf32> to tensor<?x?xf32>
    %b1 = tensor.cast %ldx : tensor<4x8xf32> to tensor<?x?xf32>
    func.call @compare(%a1, %b1) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
    %a2 = tensor.cast %gdw : tensor<3x8xf32> to tensor<?x?xf32>
    %b2 = tensor.cast %ldw : tensor<3x8xf32> to tensor<?x?xf32>
    func.call @compare(%a2, %b2) : (tensor<?x?xf32>, tensor<?x?xf32>) -> ()
    return
  }
}

// Each line: no difference, and a non-zero result.
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
// CHECK: [0, {{[0-9.e+-]*[1-9][0-9.e+-]*}}]
