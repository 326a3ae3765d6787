// Executes the reference lowering on the edge cases of the numerics:
// non-finite inputs and ranges, tiny ranges, and saturation above an
// estimated max.

// RUN: lq-opt %s --lq-lower-to-linalg --canonicalize \
// RUN: | mlir-opt --convert-elementwise-to-linalg \
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \
// RUN: | mlir-runner -e main -entry-point-result=void \
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \
// RUN: | FileCheck %s

module {
  func.func private @printMemrefI32(tensor<*xi32>)

  func.func @print(%a: i32, %b: i32, %c: i32, %d: i32) {
    %t = tensor.from_elements %a, %b, %c, %d : tensor<4xi32>
    %u = tensor.cast %t : tensor<4xi32> to tensor<*xi32>
    func.call @printMemrefI32(%u) : (tensor<*xi32>) -> ()
    return
  }

  // Prints [packed codes of 4 elements as one i32, scale bits, nonfinite,
  // overflow].
  func.func @luq(%x: tensor<1x4xf32>, %m: f32) {
    %seed = arith.constant 7 : i64
    %q, %a, %nf, %ov = lq.quantize %x range %m seed %seed {hindsight}
        : tensor<1x4xf32> -> !lq.qtensor<1x4x!lq.log4>
    %p = lq.pack %q : !lq.qtensor<1x4x!lq.log4> -> tensor<1x2xi8>
    %w = arith.extui %p : tensor<1x2xi8> to tensor<1x2xi32>
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %lo = tensor.extract %w[%c0, %c0] : tensor<1x2xi32>
    %hi = tensor.extract %w[%c0, %c1] : tensor<1x2xi32>
    %c8 = arith.constant 8 : i32
    %his = arith.shli %hi, %c8 : i32
    %codes = arith.ori %lo, %his : i32
    %ab = arith.bitcast %a : f32 to i32
    %nfi = arith.extui %nf : i1 to i32
    func.call @print(%codes, %ab, %nfi, %ov) : (i32, i32, i32, i32) -> ()
    return
  }

  func.func @main() {
    // max |x| skips the NaN: [3.0 bits, nonfinite, -, -].
    %xn = arith.constant dense<[[0x7FC00000, -3.0, 2.0, 0xFF800000]]> : tensor<1x4xf32>
    %m, %bad = lq.max_abs %xn : tensor<1x4xf32>
    %mb = arith.bitcast %m : f32 to i32
    %badi = arith.extui %bad : i1 to i32
    // A non-finite tensor has a NaN SAWB clip.
    %clip = lq.sawb_clip %xn : tensor<1x4xf32>
    %cb = arith.bitcast %clip : f32 to i32
    %z = arith.constant 0 : i32
    func.call @print(%mb, %badi, %cb, %z) : (i32, i32, i32, i32) -> ()
    // CHECK: [1077936128,  1,  2143289344,  0]

    %x = arith.constant dense<[[1.0, -2.0, 4.0, -0.5]]> : tensor<1x4xf32>
    // Estimate 2.0 below the true max 4.0: 4.0 saturates and is counted;
    // alpha = 2/64. Codes: 1.0 -> r=32 -> e=6; -2.0 -> r=64 -> e=7 (0xF);
    // 4.0 -> r=128 -> e=7; -0.5 -> r=16 -> e=5 (0xD); bytes 0xF6, 0xD7.
    %two = arith.constant 2.0 : f32
    func.call @luq(%x, %two) : (tensor<1x4xf32>, f32) -> ()
    // CHECK: [55286,  1023410176,  0,  1]

    // A NaN estimate: zero codes, scale 0, flagged.
    %nan = arith.constant 0x7FC00000 : f32
    func.call @luq(%x, %nan) : (tensor<1x4xf32>, f32) -> ()
    // CHECK: [0,  0,  1,  0]

    // A tiny estimate (below 2^-120): zero codes, scale 0, not flagged.
    %tiny = arith.constant 1.0e-38 : f32
    func.call @luq(%x, %tiny) : (tensor<1x4xf32>, f32) -> ()
    // CHECK: [0,  0,  0,  0]
    return
  }
}
