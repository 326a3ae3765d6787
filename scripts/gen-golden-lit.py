#!/usr/bin/env python3
"""Writes test/Conversion/lower-to-linalg-golden.mlir from the golden vectors.

The lit test runs the reference lowering of lq ops on every golden case of
test/golden/numerics_v1.json and checks codes, scales, flags and GEMM bits.
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
d = json.load(open(os.path.join(ROOT, 'test/golden/numerics_v1.json')))

def hexlist(bits):
    return ", ".join("0x%08X" % int(b, 16) for b in bits)

def s32(u):
    u &= 0xffffffff
    return u - (1 << 32) if u >= 1 << 31 else u

def pack(codes, cols):
    out = []
    for r in range(len(codes) // cols):
        row = codes[r*cols:(r+1)*cols]
        if len(row) % 2: row = row + [0]
        out += [(row[2*j] & 0xF) | ((row[2*j+1] & 0xF) << 4) for j in range(len(row)//2)]
    return out

funcs, calls, checks = [], [], []
PRINT = '''    %{n}i = arith.extui %{n} : tensor<{shape}xi8> to tensor<{shape}xi32>
    %{n}u = tensor.cast %{n}i : tensor<{shape}xi32> to tensor<*xi32>
    func.call @printMemrefI32(%{n}u) : (tensor<*xi32>) -> ()'''
for k, c in enumerate(d['luq']):
    n = len(c['x_bits'])
    nb = (n + 1) // 2
    name = f"luq_{k}"
    hs = c['hindsight_max'] is not None
    rng = (f"    %m = arith.constant {c['hindsight_max']:.1f} : f32\n" if hs else
           f"    %m, %bad = lq.max_abs %x : tensor<1x{n}xf32>\n")
    funcs.append(f'''  // {c['name']}
  func.func @{name}() {{
    %x = arith.constant dense<[[{hexlist(c['x_bits'])}]]> : tensor<1x{n}xf32>
    %seed = arith.constant {c['seed']} : i64
{rng}    %q, %alpha, %nf, %ov = lq.quantize %x range %m seed %seed {{stream = {c['stream']}, sample = {c['sample']}{', hindsight' if hs else ''}}} : tensor<1x{n}xf32> -> !lq.qtensor<1x{n}x!lq.log4>
    %p = lq.pack %q : !lq.qtensor<1x{n}x!lq.log4> -> tensor<1x{nb}xi8>
{PRINT.format(n='p', shape=f'1x{nb}')}
    %ab = arith.bitcast %alpha : f32 to i32
    %nfi = arith.extui %nf : i1 to i32
    %st = tensor.from_elements %ab, %nfi, %ov : tensor<3xi32>
    %stu = tensor.cast %st : tensor<3xi32> to tensor<*xi32>
    func.call @printMemrefI32(%stu) : (tensor<*xi32>) -> ()
    return
  }}''')
    calls.append(name)
    checks.append(f"// {c['name']}\n// CHECK: {{{{\\[\\[}}}}{', '.join(map(str, pack(c['codes'], n)))}{{{{\\]\\]}}}}\n"
                  f"// CHECK: {{{{\\[}}}}{s32(int(c['alpha_bits'],16))}, {1 if c['nonfinite'] else 0}, {c['overflow_count']}{{{{\\]}}}}")

for k, c in enumerate(d['sawb']):
    n = len(c['x_bits'])
    nb = (n + 1) // 2
    unsigned = min(c['codes']) >= 0 and 'unsigned' in c['name']
    fmt = 'uint4' if unsigned else 'sint4'
    name = f"sawb_{k}"
    funcs.append(f'''  // {c['name']}
  func.func @{name}() {{
    %x = arith.constant dense<[[{hexlist(c['x_bits'])}]]> : tensor<1x{n}xf32>
    %clip = lq.sawb_clip %x : tensor<1x{n}xf32>
    %q, %step, %nf, %ov = lq.quantize %x range %clip : tensor<1x{n}xf32> -> !lq.qtensor<1x{n}x!lq.{fmt}>
    %p = lq.pack %q : !lq.qtensor<1x{n}x!lq.{fmt}> -> tensor<1x{nb}xi8>
{PRINT.format(n='p', shape=f'1x{nb}')}
    %cb = arith.bitcast %clip : f32 to i32
    %sb = arith.bitcast %step : f32 to i32
    %st = tensor.from_elements %cb, %sb : tensor<2xi32>
    %stu = tensor.cast %st : tensor<2xi32> to tensor<*xi32>
    func.call @printMemrefI32(%stu) : (tensor<*xi32>) -> ()
    return
  }}''')
    calls.append(name)
    checks.append(f"// {c['name']}\n// CHECK: {{{{\\[\\[}}}}{', '.join(map(str, pack(c['codes'], n)))}{{{{\\]\\]}}}}\n"
                  f"// CHECK: {{{{\\[}}}}{s32(int(c['clip_bits'],16))}, {s32(int(c['step_bits'],16))}{{{{\\]}}}}")

g = d['gemm'][0]
M, K, N = 3, 5, 4
a_packed = pack(g['a_codes'], K)
b_packed = pack([v & 0xF for v in g['b_int']], N)
def rows(vals, cols):
    return "[" + ", ".join("[" + ", ".join(str(s32(v) if v < 128 else v - 256) for v in vals[r*cols:(r+1)*cols]) + "]" for r in range(len(vals)//cols)) + "]"
funcs.append(f'''  // {g['name']}
  func.func @gemm_0() {{
    %ap = arith.constant dense<{rows(a_packed, 3)}> : tensor<3x3xi8>
    %bp = arith.constant dense<{rows(b_packed, 2)}> : tensor<5x2xi8>
    %a = lq.unpack %ap : tensor<3x3xi8> -> !lq.qtensor<3x5x!lq.log4>
    %b = lq.unpack %bp : tensor<5x2xi8> -> !lq.qtensor<5x4x!lq.sint4>
    %sab = arith.constant {s32(int(g['a_scale_bits'],16))} : i32
    %sbb = arith.constant {s32(int(g['b_scale_bits'],16))} : i32
    %sa = arith.bitcast %sab : i32 to f32
    %sb = arith.bitcast %sbb : i32 to f32
    %c = lq.matmul (%a) scale %sa, %b scale %sb {{role = #lq.role<backward_data>}} : (!lq.qtensor<3x5x!lq.log4>), !lq.qtensor<5x4x!lq.sint4> -> tensor<3x4xf32>
    %ci = arith.bitcast %c : tensor<3x4xf32> to tensor<3x4xi32>
    %cu = tensor.cast %ci : tensor<3x4xi32> to tensor<*xi32>
    func.call @printMemrefI32(%cu) : (tensor<*xi32>) -> ()
    return
  }}''')
calls.append('gemm_0')
cb = [s32(int(x, 16)) for x in g['c_bits']]
LB, RB = "{{\\[}}", "{{\\]}}"
lines = []
for r in range(M):
    vals = ", ".join(map(str, cb[r*N:(r+1)*N]))
    lead = "// CHECK: " + LB + LB if r == 0 else "// CHECK-NEXT: " + LB
    lines.append(lead + vals + RB)
checks.append("// " + g['name'] + "\n" + "\n".join(lines))

out = []
out.append('''// Executes the reference lowering on the golden vectors of the numerics
// (test/golden/numerics_v1.json, from an independent implementation) and
// checks codes, scales, flags and GEMM output bit for bit. Generated by
// scripts/gen-golden-lit.py; do not edit by hand.

// RUN: lq-opt %s --lq-lower-to-linalg --canonicalize \\
// RUN: | mlir-opt --convert-elementwise-to-linalg \\
// RUN:     --one-shot-bufferize="bufferize-function-boundaries" \\
// RUN:     --convert-linalg-to-loops --test-lower-to-llvm \\
// RUN: | mlir-runner -e main -entry-point-result=void \\
// RUN:     -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils \\
// RUN: | FileCheck %s
''')
out.append("module {")
out.append("  func.func private @printMemrefI32(tensor<*xi32>)")
out.append("\n".join(funcs))
main = ["  func.func @main() {"]
for name in calls:
    main.append(f"    func.call @{name}() : () -> ()")
main.append("    return\n  }")
out.append("\n".join(main))
out.append("}\n")
out.append("\n".join(checks))
open(os.path.join(ROOT, 'test/Conversion/lower-to-linalg-golden.mlir'), 'w').write("\n".join(x for x in out if x is not None) + "\n")
