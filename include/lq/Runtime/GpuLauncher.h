//===- GpuLauncher.h - launch generated GPU GEMM modules --------*- C++ -*-===//
//
// A GpuLauncher holds one generated GPU module (the kernels of GpuAbi.h for
// one GemmSpec) loaded into a CUDA context, and launches it with the
// semantics of the host runtime's Kernel::launch and Runtime::quantize:
// the same argument checks and errors, the same scales, ranges and flags in
// LaunchStatus, and outputs bit-identical to the numerics core.
//
//   lq::cuda::CudaDriver *cuda = *lq::cuda::CudaDriver::get();
//   cuda->usePrimaryContext(0);
//   auto launcher = lq::cuda::GpuLauncher::load(cubin, info);
//   lq::LaunchArgs args;  // TensorRefs with Device::CUDA device pointers
//   auto status = (*launcher)->launch(args, stream);
//
// A launch runs the statistics kernels of the float operands, reads their
// few bytes back (the only synchronization, besides the statistics of
// in-hindsight mode after the GEMM), derives each quantizer on the host,
// then runs the fused GEMM. Tensors, bias and outputs are device memory of
// the current context; host memory is rejected.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_GPULAUNCHER_H
#define LQ_RUNTIME_GPULAUNCHER_H

#include "lq/Runtime/CudaDriver.h"
#include "lq/Spec/GpuAbi.h"
#include "lq/Runtime/Runtime.h"

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lq::runtime {
struct GemmProblem;
struct OperandQuantizer;
} // namespace lq::runtime

namespace lq::cuda {

enum class Operand { Lhs, Rhs };

/// The kernels a launcher of `info` resolves when it loads: the GEMM in
/// every tile and both copy variants (and on sm_90a the TMA one), the
/// statistics of the float operands that have a pre-pass, the epilogue
/// fill of in-hindsight mode; for a quantize module its statistics and
/// quantizer.
std::vector<std::string> requiredKernels(const GpuModuleInfo &info);

/// The architecture to assemble a module's PTX for on `device`: "sm_90a"
/// for sm_90a code, which runs on compute capability 9.0 only; the
/// device's own ("sm_90", "sm_86", ...) for sm_80 code, which runs on every
/// device from 8.0 up. An error when the device cannot run the module.
Result<std::string> deviceArch(const GpuModuleInfo &info,
                               const DeviceInfo &device);

/// Where a launch quantizes its float operands. The codes are the same in
/// every placement (the random numbers follow each element's index as
/// stored), so the choice is cost only.
enum class Placement {
  /// The cost model decides (docs/gpu.md).
  Auto,
  /// On load, inside the fused GEMM (and for a float LUQ left operand with
  /// many column tiles, once to packed codes: `packedLhs`).
  Fused,
  /// Once per operand to int8 codes, then lq_gemm_ws_* (sm_90a modules of
  /// two float operands, where the launch allows it; else Fused).
  Int8,
};

/// Which GEMM kernel a launch uses.
struct GemmChoice {
  GemmTile tile;
  /// Every base pointer and row pitch is a multiple of 16 bytes: the `vec`
  /// copy variant (or `tma`), else `any`.
  bool vec = false;
  /// A float LUQ left operand is quantized once by lq_quant_lhs into
  /// packed codes that the `_vec_pa` (or `_tma_pa`) GEMM reads, instead of
  /// once per column tile inside the GEMM (chosen from three column tiles
  /// up, when B and C allow the `vec` copies).
  bool packedLhs = false;
  /// The `_tma` variant of an sm_90a module: its operand tiles are loaded
  /// by the tensor memory accelerator through tensor maps the launch
  /// encodes (`vec` layouts with K > 0).
  bool tma = false;
  /// The int8 placement: lq_quant8_lhs/rhs into the scratch, then
  /// lq_gemm_ws_<wsTile> (`tile` and the flags above are unused).
  bool int8 = false;
  WsTile wsTile;
  std::string kernel;
};

/// What a launch runs.
struct LaunchPlan {
  GemmChoice choice;
  /// The statistics pre-pass of the left / right operand runs.
  bool stats[2] = {false, false};
  /// Every kernel of the launch in launch order: statistics, the
  /// quantize-once quantizer, the GEMM.
  std::vector<std::string> kernels;
};

/// The plan of a launch of `args` on `device` for the module `info`
/// describes (the generator's module: with the quantize-once GEMMs where
/// its left operand is a float LUQ one): which kernels a first launch
/// compiles. Needs no GPU.
Result<LaunchPlan> planGemmLaunch(const GpuModuleInfo &info,
                                  const LaunchArgs &args,
                                  const DeviceInfo &device,
                                  Placement placement = Placement::Auto);

/// The cuTensorMapEncodeTiled arguments of a map over the int8 codes that
/// lq_gemm_ws_* reads (GpuAbi.h): `rows` rows of `k` codes at `pitch`
/// bytes, boxes of kWsBK codes (one 128-byte swizzle row) x `boxRows`,
/// 128-byte swizzle, as the kernel's wgmma descriptors expect.
struct Int8MapShape {
  uint64_t dims[2] = {0, 0};
  uint64_t pitch = 0;
  uint32_t box[2] = {0, 0};
  CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE;
};
Int8MapShape int8MapShape(int64_t rows, int64_t k, int64_t pitch,
                          int boxRows);

/// Supplies code for kernels of a module on demand: images (PTX text, or
/// cubins assembled for deviceArch()) that together hold every named
/// kernel. Called with the kernels a launch needs and has not loaded yet,
/// so a launch pays for the two or three kernels it runs, not for the
/// module's dozen variants.
using KernelImages = std::function<Result<std::vector<std::string>>(
    const std::vector<std::string> &kernels)>;

class GpuLauncher {
public:
  /// Loads `image` (PTX text, or a cubin assembled for deviceArch()), the
  /// whole module, into the current context. The module stays loaded while
  /// the launcher lives; the context must outlive it.
  static Result<std::unique_ptr<GpuLauncher>> load(std::string_view image,
                                                   GpuModuleInfo info);
  /// A launcher that loads each kernel of the module on its first use, from
  /// `images`, into the current context (which must outlive it).
  static Result<std::unique_ptr<GpuLauncher>> load(GpuModuleInfo info,
                                                   KernelImages images);
  ~GpuLauncher();
  GpuLauncher(const GpuLauncher &) = delete;
  GpuLauncher &operator=(const GpuLauncher &) = delete;

  const GpuModuleInfo &info() const { return moduleInfo; }
  const DeviceInfo &device() const { return deviceInfo; }

  /// C = Q(A) Q(B) * s (+ bias) (ReLU) on `stream`, as Kernel::launch. The
  /// output is complete when the stream reaches the launch's end; the call
  /// itself waits only for the statistics it reads. `overflow` is counted
  /// in in-hindsight mode (without it no element can exceed the max).
  /// Safe from several threads and streams: launches (and quantizations)
  /// of one launcher are serialized on the host and, as they share a
  /// scratch buffer, on the device: one starts its device work after the
  /// previous one's ends, whatever their streams.
  Result<LaunchStatus> launch(const LaunchArgs &args, CUstream stream);

  /// Quantizes `args.input` to packed codes with the module's quantizer of
  /// `side` (lq_quant_lhs / lq_quant_rhs), as Runtime::quantize: the format
  /// and input dtype must be that operand's. `overflow` is counted with a
  /// max estimate (in-hindsight).
  Result<QuantizeStatus> quantize(const QuantizeArgs &args, CUstream stream,
                                  Operand side = Operand::Lhs);

  /// The GEMM kernel a launch of `args` would run (for reports).
  Result<GemmChoice> chooseGemm(const LaunchArgs &args) const;

  /// Where later launches quantize (Auto unless set): tests and
  /// benchmarks run each placement on the same operands.
  void setPlacement(Placement p) { placement = p; }

  /// The module has the `_vec_pa` GEMM of every tile, on sm_90a with its
  /// `_tma_pa` variant (the quantize-once placement of a float LUQ left
  /// operand).
  bool hasPackedLhsVariant() const { return packedLhsVariant; }

private:
  GpuLauncher() = default;

  /// The part of both loads that does not depend on where code comes from.
  static Result<std::unique_ptr<GpuLauncher>> create(GpuModuleInfo info);
  GemmChoice pick(const runtime::GemmProblem &problem,
                  const LaunchArgs &args) const;

  // The pieces of a launch, in the order they run.
  struct GemmScratch;
  Result<LaunchPlan> planLaunch(const runtime::GemmProblem &p,
                                const LaunchArgs &args) const;
  Status checkGemmMemory(const runtime::GemmProblem &p,
                         const LaunchArgs &args) const;
  Status checkQuantizeArgs(const QuantizeArgs &args, Operand side) const;
  /// lq_stats_<side> of `t` into the scratch at `out`.
  Status launchStats(bool lhs, const TensorRef &t, CUdeviceptr out,
                     CUstream stream);
  /// Copies the first `bytes` of the scratch to its host mirror and waits.
  Status readBack(size_t bytes, CUstream stream, const std::string &what);
  /// The statistics pre-passes of the plan and each float operand's
  /// quantizer from them (or from the in-hindsight estimate).
  Result<std::array<runtime::OperandQuantizer, 2>>
  operandQuantizers(const LaunchPlan &plan, const LaunchArgs &args,
                    const GemmScratch &layout, CUstream stream);
  GemmParams gemmParams(const runtime::GemmProblem &p, const LaunchArgs &args,
                        const std::array<runtime::OperandQuantizer, 2> &q,
                        const LaunchStatus &status, CUdeviceptr counters) const;
  Status encodeTensorMaps(const LaunchPlan &plan, const LaunchArgs &args,
                          const GemmScratch &layout, GemmParams &params);
  /// lq_quant_<side>, or `kernel` (lq_quant8_<side>, same parameters).
  Status launchQuant(bool lhs, QuantParams &params, CUstream stream,
                     const std::string &kernel = "");
  /// The quantize-once placement: A's samples to packed codes in the
  /// scratch, which `params` then names as A.
  Status quantizeOnce(const LaunchArgs &args, const GemmScratch &layout,
                      GemmParams &params, CUstream stream);
  Status launchGemm(const GemmChoice &choice, const runtime::GemmProblem &p,
                    GemmParams &params, CUstream stream);
  /// The int8 placement: both operands to int8 codes
  /// in the scratch (A's every sample), then lq_gemm_ws_*.
  Status quantizeInt8(const LaunchArgs &args, const runtime::GemmProblem &p,
                      const GemmScratch &layout, const GemmParams &params,
                      CUstream stream);
  Status launchGemmWs(const GemmChoice &choice, const runtime::GemmProblem &p,
                      const GemmScratch &layout, const GemmParams &params,
                      CUstream stream);
  /// In-hindsight mode: the statistics the GEMM counted, and the epilogue
  /// fill when they found a non-finite element.
  Status finishHindsight(const GemmChoice &choice,
                         const runtime::GemmProblem &p,
                         const GemmParams &params, LaunchStatus &status,
                         CUstream stream);
  Status finishQuantizeHindsight(bool lhs, QuantParams &params,
                                 QuantizeStatus &status, CUstream stream);
  /// Resolves `names` that are not resolved yet, loading their code from
  /// `kernelImages` in one request where the launcher loads lazily.
  Status ensureKernels(const std::vector<std::string> &names);
  /// A resolved kernel; loads it first where the launcher loads lazily.
  Result<CUfunction> function(const std::string &name);
  /// Finds `name` in the loaded modules and prepares it for launches (the
  /// dynamic shared memory of a GEMM tile above the default).
  Result<CUfunction> resolve(const std::string &name);
  /// Device scratch of at least `bytes`, and its host mirror of the first
  /// `mirrored` bytes (what launches read back).
  Status ensureScratch(size_t bytes, size_t mirrored);
  Status checkContext() const;
  Status checkPointer(const char *name, const void *data, size_t bytes) const;
  Status checkTensorMemory(const char *name, const TensorRef &t) const;

  CudaDriver *driver = nullptr;
  GpuModuleInfo moduleInfo;
  DeviceInfo deviceInfo;
  CUcontext context = nullptr;
  /// Where kernels come from: empty for a launcher of a whole module.
  KernelImages kernelImages;
  /// Tiles sorted by area, small first.
  std::vector<GemmTile> tiles;
  /// The tile of every GEMM kernel name of the module.
  std::map<std::string, GemmTile> gemmTiles;
  bool packedLhsVariant = false;
  /// The module has the int8 placement and the device its shared memory.
  bool int8Variant = false;
  Placement placement = Placement::Auto;

  /// Guards everything below: resolved kernels, the scratch buffer and its
  /// host mirror, and with them a whole launch.
  std::mutex mutex;
  /// Loaded modules: one for a whole module, else one per image loaded.
  std::vector<CUmodule> modules;
  std::map<std::string, CUfunction> functions;
  DeviceBuffer scratch;
  std::vector<unsigned char> hostScratch;
  /// Recorded on each launch's stream after its last use of the scratch;
  /// the next launch's stream waits for it before touching the scratch.
  /// Without it a launch on another stream could rewrite the packed codes,
  /// tensor maps or counters that a GEMM still in flight reads.
  CUevent scratchDone = nullptr;
};

} // namespace lq::cuda

#endif // LQ_RUNTIME_GPULAUNCHER_H
