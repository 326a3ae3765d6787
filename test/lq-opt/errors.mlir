// Malformed input gives a located diagnostic and a non-zero exit, never a
// crash (`not` fails on a crash).
// RUN: not lq-opt %s --split-input-file 2>&1 | FileCheck %s
// RUN: not lq-opt %s --lq-no-such-pass 2>&1 | FileCheck %s --check-prefix=PASS
// RUN: not lq-opt %t.missing.mlir 2>&1 | FileCheck %s --check-prefix=FILE

// PASS: Unknown command line argument '--lq-no-such-pass'
// FILE: cannot open input file

// CHECK: errors.mlir:[[@LINE+1]]:{{[0-9]+}}: error: custom op 'lq.matmull' is unknown
%0 = lq.matmull

// -----

// CHECK: errors.mlir:[[@LINE+1]]:{{[0-9]+}}: error: expected non-function type
func.func @f(%q: !lq.qtensor<4x>) { return }

// -----

// CHECK: errors.mlir:[[@LINE+1]]:{{[0-9]+}}: error: unknown attribute `nosuch` in dialect `lq`
func.func @g() attributes {r = #lq.nosuch<1>} { return }

// -----

func.func @h(%x: tensor<4x8xf32>) {
  // CHECK: errors.mlir:[[@LINE+1]]:{{[0-9]+}}: error: custom op 'lq.quantize' expected 'range'
  %q = lq.quantize %x : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return
}

// -----

// CHECK: errors.mlir:[[@LINE+1]]:{{[0-9]+}}: error: expected ::lq::GemmRole to be one of: forward, backward_data, weight_grad
func.func @i(%a: !lq.qtensor<4x8x!lq.sint4>) attributes {role = #lq.role<sideways>} { return }
