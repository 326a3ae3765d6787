// Executes the reference GEMM on small integer operands whose results are
// worked out by hand: transposes, SMP accumulation, bias, ReLU and bf16.

// RUN: lq-opt %s --lq-lower-to-linalg --canonicalize \
// RUN: | mlir-opt --convert-elementwise-to-linalg \
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \
// RUN: | mlir-runner -e main -entry-point-result=void \
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \
// RUN: | FileCheck %s

module {
  func.func private @printMemrefF32(tensor<*xf32>)
  func.func private @printMemrefI32(tensor<*xi32>)

  func.func @print(%t: tensor<2x2xf32>) {
    %u = tensor.cast %t : tensor<2x2xf32> to tensor<*xf32>
    func.call @printMemrefF32(%u) : (tensor<*xf32>) -> ()
    return
  }

  // A = [[1, -2, 3], [-4, 5, -6]], B = [[7, -7], [0, 1], [-1, 2]] as sint4,
  // scales 0.5 and 0.25: A B = [[4, -3], [-22, 21]], times 0.125.
  func.func @plain() {
    %ap = arith.constant dense<[[-31, 3], [92, 10]]> : tensor<2x2xi8>
    %bp = arith.constant dense<[[-105], [16], [47]]> : tensor<3x1xi8>
    %a = lq.unpack %ap : tensor<2x2xi8> -> !lq.qtensor<2x3x!lq.sint4>
    %b = lq.unpack %bp : tensor<3x1xi8> -> !lq.qtensor<3x2x!lq.sint4>
    %sa = arith.constant 0.5 : f32
    %sb = arith.constant 0.25 : f32
    %c = lq.matmul (%a) scale %sa, %b scale %sb : (!lq.qtensor<2x3x!lq.sint4>), !lq.qtensor<3x2x!lq.sint4> -> tensor<2x2xf32>
    func.call @print(%c) : (tensor<2x2xf32>) -> ()
    return
  }
  // CHECK: {{\[}}{{\[}}0.5, -0.375],
  // CHECK-NEXT: [-2.75, 2.625]]

  // The same product from A^T and B^T stored transposed.
  func.func @transposed() {
    %ap = arith.constant dense<[[-63], [94], [-93]]> : tensor<3x1xi8>
    %bp = arith.constant dense<[[7, 15], [25, 2]]> : tensor<2x2xi8>
    %a = lq.unpack %ap : tensor<3x1xi8> -> !lq.qtensor<3x2x!lq.sint4>
    %b = lq.unpack %bp : tensor<2x2xi8> -> !lq.qtensor<2x3x!lq.sint4>
    %sa = arith.constant 0.5 : f32
    %sb = arith.constant 0.25 : f32
    %c = lq.matmul (%a) scale %sa, %b scale %sb {transpose_lhs, transpose_rhs} : (!lq.qtensor<3x2x!lq.sint4>), !lq.qtensor<2x3x!lq.sint4> -> tensor<2x2xf32>
    func.call @print(%c) : (tensor<2x2xf32>) -> ()
    return
  }
  // CHECK: {{\[}}{{\[}}0.5, -0.375],
  // CHECK-NEXT: [-2.75, 2.625]]

  // Bias [1, -3] then ReLU: [[1.5, -3.375], [-1.75, -0.375]] -> [[1.5, 0], [0, 0]];
  // bf16 1.5 is 0x3FC0 = 16320.
  func.func @epilogue() {
    %ap = arith.constant dense<[[-31, 3], [92, 10]]> : tensor<2x2xi8>
    %bp = arith.constant dense<[[-105], [16], [47]]> : tensor<3x1xi8>
    %a = lq.unpack %ap : tensor<2x2xi8> -> !lq.qtensor<2x3x!lq.sint4>
    %b = lq.unpack %bp : tensor<3x1xi8> -> !lq.qtensor<3x2x!lq.sint4>
    %sa = arith.constant 0.5 : f32
    %sb = arith.constant 0.25 : f32
    %bias = arith.constant dense<[1.0, -3.0]> : tensor<2xf32>
    %c = lq.matmul (%a) scale %sa, %b scale %sb bias %bias {relu} : (!lq.qtensor<2x3x!lq.sint4>), !lq.qtensor<3x2x!lq.sint4>, tensor<2xf32> -> tensor<2x2xbf16>
    %bits = arith.bitcast %c : tensor<2x2xbf16> to tensor<2x2xi16>
    %wide = arith.extui %bits : tensor<2x2xi16> to tensor<2x2xi32>
    %u = tensor.cast %wide : tensor<2x2xi32> to tensor<*xi32>
    func.call @printMemrefI32(%u) : (tensor<*xi32>) -> ()
    return
  }
  // CHECK: {{\[}}{{\[}}16320, 0],
  // CHECK-NEXT: [0, 0]]

  // Two LUQ samples (alpha = 1) of the left operand, values [[1, -2], [4, 0]]
  // and [[2, -1], [8, -64]], times uint4 [[1, 2], [3, 15]]: the i32 sums
  // [[-5, -28], [4, 8]] + [[-1, -11], [-184, -944]] are averaged.
  func.func @smp() {
    %a0p = arith.constant dense<[[-95], [3]]> : tensor<2x1xi8>
    %a1p = arith.constant dense<[[-110], [-12]]> : tensor<2x1xi8>
    %bp = arith.constant dense<[[33], [-13]]> : tensor<2x1xi8>
    %a0 = lq.unpack %a0p : tensor<2x1xi8> -> !lq.qtensor<2x2x!lq.log4>
    %a1 = lq.unpack %a1p : tensor<2x1xi8> -> !lq.qtensor<2x2x!lq.log4>
    %b = lq.unpack %bp : tensor<2x1xi8> -> !lq.qtensor<2x2x!lq.uint4>
    %one = arith.constant 1.0 : f32
    %c = lq.matmul (%a0, %a1) scale %one, %b scale %one : (!lq.qtensor<2x2x!lq.log4>, !lq.qtensor<2x2x!lq.log4>), !lq.qtensor<2x2x!lq.uint4> -> tensor<2x2xf32>
    func.call @print(%c) : (tensor<2x2xf32>) -> ()
    return
  }
  // CHECK: {{\[}}{{\[}}-3, -19.5],
  // CHECK-NEXT: [-90, -468]]

  func.func @main() {
    func.call @plain() : () -> ()
    func.call @transposed() : () -> ()
    func.call @epilogue() : () -> ()
    func.call @smp() : () -> ()
    return
  }
}
