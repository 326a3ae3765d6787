"""Pathological input and random misuse of the Python API: an lq.Error (or
a correct result), never a crash. A crash would take the pytest process
down, so every case below that returns at all has passed that part."""

import os

import pytest

import lq

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                       "mlp_train_step.mlir")


def _deep_regions(n):
    return ("func.func @f() {" + " scf.execute_region {" * n + " scf.yield"
            + " } scf.yield" * (n - 1) + " } return }")


def _big_k_program():
    d = 2**63 - 1
    q = f"!lq.qtensor<4x{d}x!lq.log4>"
    w = f"!lq.qtensor<{d}x4x!lq.sint4>"
    return (f"func.func @f(%a: {q}, %b: {w}, %s: f32) -> tensor<4x4xf32> {{ "
            f"%y = lq.matmul (%a) scale %s, %b scale %s : ({q}), {w} "
            f"-> tensor<4x4xf32> return %y : tensor<4x4xf32> }}")


def _truncated():
    with open(EXAMPLE) as f:
        return f.read()[:700]


@pytest.mark.parametrize("program, message", [
    # MLIR's parser recurses per level: bounded before parsing.
    (_deep_regions(5000), r"program:1:\d+: nesting deeper than 1000"),
    ("func.func @f() { %0 = arith.constant dense<" + "[" * 100000 + "1"
     + "]" * 100000 + "> : tensor<1xi32> return }",
     r"program:1:\d+: nesting deeper than 1000"),
    ("func.func @f(%x: tensor<99999999999999999999x4xf32>) { return }",
     r"program:1:\d+: invalid dimension"),
    (_big_k_program(), r"program:1:\d+: 'lq.matmul' op K = 9223372036854775807"),
    ("module {\n  func.return\n}", r"program:2:3: 'func.return' op expects"),
    (_truncated(), r"program:\d+:\d+: expected"),
    (bytes(range(256)).decode("latin-1") * 4, r"program:1:\d+: "),
    ("func.func @f() {\0\1 return }", r"program:1:\d+: unexpected character"),
    ("", r"exactly one lq.matmul"),
], ids=["deep-regions", "deep-attribute", "huge-dimension", "huge-k",
        "wrong-place", "truncated", "binary", "nul", "empty"])
def test_pathological_programs_are_errors(program, message):
    with pytest.raises(lq.Error, match=message):
        lq.compile_program(program)


def test_nesting_within_the_bound_is_parsed_on_a_large_stack():
    # 900 nested regions parse, verify and run lq-expand-linear; the program
    # has no GEMM, which is the error.
    with pytest.raises(lq.Error, match="exactly one lq.matmul"):
        lq.compile_program(_deep_regions(900))
