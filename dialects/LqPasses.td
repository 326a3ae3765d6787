//===- LqPasses.td - lq passes ------------------------------*- tablegen -*-===//

#ifndef LQ_PASSES_TD
#define LQ_PASSES_TD

include "mlir/Pass/PassBase.td"

def LqExpandLinear : Pass<"lq-expand-linear"> {
  let summary = "Expand lq.linear and lq.linear_grad into quantizers and GEMMs";
  let description = [{
    Rewrites each training-level op into scale computation, quantize and
    `lq.matmul` ops:

    * `lq.linear`: SAWB clips of x and W, signed/unsigned int4 quantization,
      and the forward GEMM `Q(x) Q(W)^T + b` (`role = forward`).
    * `lq.linear_grad`: the LUQ scale of dy (`lq.max_abs`, or the
      in-hindsight estimate), one LUQ quantization of dy per SMP sample, the
      SAWB quantizations of W and x, and the backward-data and
      weight-gradient GEMMs. Both GEMMs consume the same LUQ codes, so they
      see the same random sample of dy.

    Layers without an explicit `stream` get the smallest stream ids not
    used explicitly in the same function. Two layers with the same explicit
    stream and the same seed value are an error: their gradients would share
    random numbers.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def LqQuantizeMatmuls : Pass<"lq-quantize-matmuls", "::mlir::ModuleOp"> {
  let summary = "Replace the training GEMMs of a linalg graph with lq ops";
  let description = [{
    Finds the GEMMs of a training step written in `linalg` on tensors
    and replaces each forward, backward-data and weight-gradient GEMM with
    quantizers and an `lq.matmul`. It reads the forms frontends
    (torch-mlir, IREE's input pipelines, StableHLO-to-linalg) emit:
    `linalg.matmul` with or without transposing `indexing_maps`, two-input
    `linalg.generic` contractions, operands read through
    `linalg.transpose`, `linalg.broadcast` or a permuting / broadcasting
    `linalg.generic` copy (folded into the operand layout),
    `linalg.batch_matmul` with a weight broadcast over the batch, a sum
    over the batch of a batched contraction (`linalg.reduce` or a
    reduction `linalg.generic`), and contractions on 3-D activations
    `[batch, sequence, features]` (computed as 2-D GEMMs on
    `tensor.collapse_shape`d operands, expanded back). Equal reshapes and
    views of one tensor are merged first. Operands are f32, bf16 or f16,
    results f32 or bf16; the init must be zero-filled.

    * forward `y = x W`: `lq.sawb_clip` and SAWB `lq.quantize` of both
      operands (`x` unsigned int4 when it is a ReLU, `max(v, 0)`, else
      signed), `lq.matmul {role = forward}`; a following bias add
      (a vector broadcast along rows, also after an expansion of the
      rows) and ReLU fold into its epilogue;
    * backward `dx = dy W`, `dW = dy^T x`: `lq.max_abs` and one LUQ
      `lq.quantize` of `dy` per SMP sample, shared by both GEMMs of the
      layer, on a Philox stream of its own, with SAWB quantizations of `W`
      and `x`; `lq.matmul {role = backward_data}` and
      `{role = weight_grad, transpose_lhs}` (a weight gradient written as
      `x^T dy` is computed as `dy^T x` and transposed).

    A GEMM's role is its `lq.role` attribute (`"forward"`,
    `"backward_data"`, `"weight_grad"` or `#lq.role<...>`). Unmarked GEMMs
    are classified from the graph when it is unambiguous: a tensor `dy`
    that is the left operand of exactly one GEMM contracting its columns
    (`dx = dy W`) and is contracted over its rows by exactly one other
    (`dW = dy^T x`) is a gradient; the forward GEMM is the only other GEMM
    whose right operand is that `W`, and its result has the shape of
    `dy`. Other GEMMs keep their precision, exactly as written, with a
    remark saying why (with `strict`, an unclassified GEMM is an error).

    A batched contraction (`linalg.batch_matmul` or a `linalg.generic`
    with one batch dimension) that has an `lq.role` and a static batch size
    is split into one such GEMM per batch element, on rank-reducing
    `tensor.extract_slice`s of its operands, with the results inserted into
    its result by `tensor.insert_slice`; each gradient slice is quantized
    once for its `dx` and `dW` GEMMs, on a stream of its own. A dynamic
    batch size is an error.

    Layers are the forward GEMMs in program order; a backward pair belongs
    to the layer whose weight (`dx = dy W`) or input (`dW = dy^T x`) it
    reads. The LUQ seed is the `i64` argument marked `lq.seed`, appended
    (and marked) when the function has none. With `hindsight`, each
    layer's LUQ scale is the `f32` argument marked `lq.max_estimate =
    <stream>` (appended when missing), and this step's `max |dy|` is
    appended to the results, marked `lq.grad_max = <stream>`; calls of the
    function get the new results. An argument cannot be appended to a
    function that the module refers to (a call could not pass it): that
    is an error at the reference.
  }];
  let options = [
    Option<"hindsight", "hindsight", "bool", /*default=*/"false",
           "Scale gradients with an in-hindsight max estimate (an argument) "
           "instead of this step's max |dy|">,
    Option<"keepFirst", "keep-first", "bool", /*default=*/"false",
           "Leave the GEMMs of the first layer in high precision">,
    Option<"keepLast", "keep-last", "bool", /*default=*/"false",
           "Leave the GEMMs of the last layer in high precision">,
    Option<"smp", "smp", "unsigned", /*default=*/"1",
           "LUQ samples of each gradient (SMP), a power of two up to 64">,
    Option<"strict", "strict", "bool", /*default=*/"false",
           "Report GEMMs whose role is neither given nor inferred">
  ];
  let dependentDialects = [
    "::lq::LqDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def LqLowerToLinalg : Pass<"lq-lower-to-linalg", "::mlir::ModuleOp"> {
  let summary = "Reference lowering of lq ops to linalg, tensor and arith";
  let description = [{
    Lowers every lq op to `linalg.generic` / `linalg.fill` / `tensor` and
    `arith` ops on tensors that compute exactly the numerics of
    `docs/numerics.md`: Philox4x32-10 in 32-bit integer arithmetic, LUQ with
    the exponent read from the f32 bits, SAWB with round-half-even, and the
    GEMM accumulated in i32. Quantized tensors become `tensor<MxNxi8>` of
    codes (one code per byte). `lq.linear` and `lq.linear_grad` are
    expanded first, as `lq-expand-linear` does.

    The result runs through upstream bufferization and LLVM lowering
    unchanged; it is the executable definition that CPU and GPU kernels are
    tested against.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def LqCpuKernels : Pass<"lq-cpu-kernels", "::mlir::ModuleOp"> {
  let summary = "Generate the x86-64 kernel stages of every lq.matmul";
  let description = [{
    For each `lq.matmul` whose operands come from `lq.quantize` (float
    operands, quantized inside the kernel) or `lq.unpack` (packed 4-bit
    operands), adds the CPU kernel stage functions that the runtime
    launches, named `lq_gemm<N>_<stage>`, and records the prefix on the
    matmul as `lq.cpu_kernel`:

    * `maxabs_*` / `moments_*`: scale statistics of a float operand;
    * `quant_*`: quantization to 4-bit codes, 8 lanes at a time (LUQ with
      the Philox stream, or SAWB), each element once;
    * `pack_a` / `pack_b`: 8-bit integer values in 32-bit panel words for
      the micro-kernel, four K steps per word, one operand offset into the
      unsigned byte range with its exact correction in the panel;
    * `gemm`: the 8-bit dot-product micro-kernel (6x16 tiles, 6x64 with
      `avx512-vnni`; exact int32 accumulators, SMP samples summed in
      registers) and the f32 epilogue.

    `dot-product` names the micro-kernel's instruction, which the target
    CPU must have: `avx2-vpmaddubsw` (AVX2, the default), `avx-vnni` or
    `avx512-vnni` (`vpdpbusd`). The runtime and `lq-compile` choose it from
    the target CPU's features.

    The functions work on memrefs with `scf`, `vector`, `arith`, `math` and
    LLVM x86 intrinsics; `lq-cpu-kernels-to-llvm` lowers them.
  }];
  let options = [
    Option<"dotProduct", "dot-product", "std::string",
           /*default=*/"\"avx2-vpmaddubsw\"",
           "The micro-kernel's 8-bit dot product: avx2-vpmaddubsw, avx-vnni "
           "or avx512-vnni">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def LqGpuKernels : Pass<"lq-gpu-kernels", "::mlir::ModuleOp"> {
  let summary = "Generate the CUDA kernels of every lq.matmul";
  let description = [{
    For each `lq.matmul` whose operands come from `lq.quantize` or
    `lq.unpack`, adds a `gpu.module @lq_gemm<N>` with the kernels the
    runtime launches (see `lq/Spec/GpuAbi.h`) and records its name on
    the matmul as `lq.gpu_kernel`:

    * `lq_stats_*`: max |x| (one atomic per block) and, for SAWB operands,
      per-block f64 moments in a fixed order;
    * `lq_quant_*`: quantization to packed 4-bit storage (LUQ with the
      Philox stream, or SAWB), four elements per thread;
    * `lq_gemm_<tile>_<copy>`: the fused GEMM: operand tiles copied with
      `cp.async` (or plain loads for unaligned layouts), quantized or
      widened into int8 tiles in shared memory, multiplied on the tensor
      cores (`mma.sync` s8 on sm_80, `wgmma` s8 on sm_90a) into exact
      int32 sums, SMP samples in the same accumulators, and the epilogue
      (scale, bias, ReLU, f32/bf16);
    * `lq_fill_epilogue` (in-hindsight mode): the result of all-zero codes.

    The kernels are in the `gpu`, `nvvm`, `llvm`, `arith`, `math` and `scf`
    dialects; `lq-lower-to-gpu` takes them to PTX.
  }];
  let options = [
    Option<"chip", "chip", "std::string", /*default=*/"\"sm_80\"",
           "Target GPU: sm_80 (mma.sync) or sm_90a (wgmma)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::NVVM::NVVMDialect", "::mlir::scf::SCFDialect"
  ];
}

def LqGpuKernelParams : Pass<"lq-gpu-kernel-params", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Pass the tensor maps of lowered GPU kernels by value";
  let description = [{
    Runs after `convert-gpu-to-nvvm`. Every argument that a kernel's
    `lq.tensor_map_args` attribute lists (a dense i32 array of argument
    indices, set by `lq-gpu-kernels` on the `gpu.func`) becomes a
    `CUtensorMap` passed by value, CUDA's `__grid_constant__` parameter:
    `llvm.byval = !llvm.array<128 x i8>`, `llvm.align = 64` and
    `nvvm.grid_constant`, so that PTX declares it `.param .align 64 .b8
    [128]` and the kernel reads it in the parameter space. The attribute is
    removed. (The GPU-to-NVVM conversion drops `llvm.byval`, and NVVM
    accepts grid constants on `llvm.func` kernels only, so the generator
    marks the arguments and this pass applies the attributes.)

    A listed index past the arguments, an argument that is not a generic
    `!llvm.ptr`, or a function that is not a kernel is an error.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::NVVM::NVVMDialect"
  ];
}

def LqCpuKernelsToLLVM : Pass<"lq-cpu-kernels-to-llvm", "::mlir::ModuleOp"> {
  let summary = "Lower generated CPU kernel stages to the LLVM dialect";
  let description = [{
    The lowering the host JIT applies to kernel modules: SCF to control
    flow, vector/math/arith/memref/func/index to the LLVM dialect, with C
    interfaces (`_mlir_ciface_*`) for the stage functions.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // LQ_PASSES_TD
