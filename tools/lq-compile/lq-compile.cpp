//===- lq-compile.cpp - ahead-of-time kernels of an lq or linalg program ---===//
//
// Compiles every GEMM of a program so that a C or C++ program can ship the
// kernels with no LLVM at run time:
//
//   lq-compile step.mlir -o out [--chip=sm_80,sm_90a] [--cpu=NAME|host]
//              [--no-host] [--no-cubin]
//
// writes, for GEMM i (in program order):
//   lq_gemm<i>.host.o          host CPU stages (ELF object for --cpu:
//                              x86-64-v3 by default, so that it runs on
//                              every AVX2 machine; --cpu=host for this
//                              machine's CPU and features)
//   lq_gemm<i>.<chip>.ptx      GPU kernels, and .cubin assembled from it
//   lq_gemm<i>.<chip>.info     the GPU module info a launcher reads
//   lq_kernels.h               C declarations of the host stages, kernel
//                              names of the GPU modules
//   manifest.json              kernels, argument layouts, targets, numerics
//                              and ABI versions
//
// A linalg training step is first taken to lq ops by lq-quantize-matmuls;
// lq.linear layers are expanded.
//
//===----------------------------------------------------------------------===//

#include "lq/Dialect/InputLimits.h"
#include "lq/InitAll.h"
#include "lq/Jit/Aot.h"
#include "lq/Jit/GpuCompiler.h"
#include "lq/Runtime/GpuLauncher.h"
#include "lq/Runtime/PtxCompiler.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"

#include <optional>

using namespace lq;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory kCategory("lq-compile options");

cl::opt<std::string> input(cl::Positional, cl::desc("<lq or linalg program>"),
                           cl::Required,
    cl::cat(kCategory));
cl::opt<std::string> outDir("o", cl::desc("Output directory"),
                            cl::value_desc("dir"), cl::Required,
    cl::cat(kCategory));
cl::list<std::string> chips("chip", cl::desc("GPU targets: sm_80, sm_90a"),
                            cl::CommaSeparated,
    cl::cat(kCategory));
cl::opt<bool> noHost("no-host", cl::desc("Skip the host CPU objects"),
    cl::cat(kCategory));
cl::opt<std::string> cpuName(
    "cpu",
    cl::desc("CPU of the host objects: an LLVM CPU name (x86-64-v3, znver3, "
             "...) or 'host' for this machine's"),
    cl::value_desc("name"), cl::init(kPortableCpu), cl::cat(kCategory));
cl::opt<bool> noCubin("no-cubin",
                      cl::desc("Write PTX only (no assembler needed)"),
    cl::cat(kCategory));

/// The numerics contract the kernels implement (docs/numerics.md).
constexpr const char *kNumericsVersion = "numerics-v1";

int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "lq-compile") << message << "\n";
  return 1;
}

std::string inDir(const std::string &name) {
  llvm::SmallString<256> path(outDir);
  llvm::sys::path::append(path, name);
  return std::string(path);
}

llvm::Error writeFile(const std::string &name, std::string_view contents) {
  return llvm::writeToOutput(inDir(name), [&](llvm::raw_ostream &os) {
    os << contents;
    return llvm::Error::success();
  });
}

/// The program with its linalg GEMMs taken to lq ops, as text, or a
/// message with the diagnostics.
Result<std::string> quantizeGraph(llvm::StringRef source) {
  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  mlir::MLIRContext ctx(registry);
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    if (auto loc = mlir::dyn_cast<mlir::FileLineColLoc>(d.getLocation()))
      diagnostics += input + ":" + std::to_string(loc.getLine()) + ":" +
                     std::to_string(loc.getColumn()) + ": ";
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  llvm::SourceMgr sources;
  sources.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(source, input),
                             llvm::SMLoc());
  if (mlir::failed(checkInputText(sources, &ctx)))
    return Result<std::string>::failure(diagnostics);
  auto module = mlir::parseSourceFile<mlir::ModuleOp>(sources, &ctx);
  if (!module)
    return Result<std::string>::failure(diagnostics);
  mlir::PassManager pm(&ctx);
  pm.addPass(createLqQuantizeMatmuls());
  if (mlir::failed(pm.run(*module)))
    return Result<std::string>::failure(diagnostics);
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return text;
}

std::string cType(const std::string &param) {
  if (llvm::StringRef(param).starts_with("memref<"))
    return "lq_memref1d *";
  if (param == "i64")
    return "int64_t";
  if (param == "i32")
    return "int32_t";
  if (param == "f32")
    return "float";
  return "/* " + param + " */ void *";
}

/// The C type of a GPU kernel parameter of `kind`.
const char *cType(cuda::ParamKind kind) {
  switch (kind) {
  case cuda::ParamKind::Ptr:
    return "uint64_t"; // CUdeviceptr
  case cuda::ParamKind::I64:
    return "int64_t";
  case cuda::ParamKind::I32:
    return "int32_t";
  case cuda::ParamKind::F32:
    return "float";
  case cuda::ParamKind::TensorMap:
    return "lq_tensor_map";
  }
  return "void *";
}

/// The parameter structs of the GPU kernels, written from the ABI's
/// signature table: an AOT launcher fills one and passes each field's
/// address to cuLaunchKernel, in order.
std::string gpuParamStructs() {
  std::string h =
      "\n/* GPU kernel parameters in order (lq/Spec/GpuAbi.h): fill one and "
      "pass the\n * address of each field to cuLaunchKernel. Pointers are "
      "CUdeviceptr values;\n * tensor maps are CUtensorMaps by value. */\n"
      "#ifdef __cplusplus\n#define LQ_ALIGN64 alignas(64)\n#else\n"
      "#define LQ_ALIGN64 _Alignas(64)\n#endif\n"
      "typedef struct {\n  LQ_ALIGN64 unsigned char bytes[128];\n} "
      "lq_tensor_map;\n";
  std::pair<cuda::KernelKind, const char *> kinds[] = {
      {cuda::KernelKind::Stats, "lq_gpu_stats_params"},
      {cuda::KernelKind::Quant, "lq_gpu_quant_params"},
      {cuda::KernelKind::Gemm, "lq_gpu_gemm_params"},
      {cuda::KernelKind::GemmTma, "lq_gpu_gemm_tma_params"},
      {cuda::KernelKind::GemmWs, "lq_gpu_gemm_ws_params"},
      {cuda::KernelKind::Fill, "lq_gpu_fill_params"}};
  for (auto [kind, name] : kinds) {
    h += "typedef struct {\n";
    for (const cuda::ParamInfo &p : cuda::signature(kind))
      h += std::string("  ") + cType(p.kind) + " " + p.name + ";\n";
    h += std::string("} ") + name + ";\n";
  }
  return h;
}

struct GemmOutputs {
  std::string name;
  GemmSpec spec;
  std::optional<HostObject> host;
  std::vector<std::pair<std::string, GpuModuleImage>> gpu;
};

std::string header(const std::vector<GemmOutputs> &gemms) {
  std::string h =
      "/* Generated by lq-compile: the kernels of one program.\n"
      " * Host stages: C interfaces of the stage functions (see lq's\n"
      " * docs/runtime.md, \"Host kernels\"); link lq_gemm<i>.host.o.\n"
      " * GPU modules: PTX/cubin files whose kernels and parameters follow\n"
      " * lq/Spec/GpuAbi.h. manifest.json lists everything. */\n"
      "#ifndef LQ_KERNELS_H\n#define LQ_KERNELS_H\n\n#include <stdint.h>\n\n"
      "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
      "/* A 1-D memref as the stages take it: pass the same pointer twice, "
      "offset 0, the\n * element count and stride 1. */\n"
      "typedef struct {\n  void *allocated;\n  void *aligned;\n"
      "  int64_t offset;\n  int64_t size;\n  int64_t stride;\n} lq_memref1d;\n\n"
      "#define LQ_NUMERICS_VERSION \"" +
      std::string(kNumericsVersion) + "\"\n#define LQ_GPU_ABI_VERSION " +
      std::to_string(cuda::kAbiVersion) + "\n";
  for (const GemmOutputs &g : gemms)
    if (g.host) {
      // The CPU the host objects need (and every CPU with its features).
      h += "#define LQ_HOST_CPU \"" + g.host->cpu + "\"\n";
      break;
    }
  h += gpuParamStructs();
  for (const GemmOutputs &g : gemms) {
    h += "\n/* " + g.name + ": " + g.spec.describe() + " */\n";
    if (g.host)
      for (const HostStage &stage : g.host->stages) {
        h += "void " + stage.symbol + "(";
        for (size_t i = 0; i < stage.params.size(); ++i)
          h += (i ? ", " : "") + cType(stage.params[i]);
        h += ");\n";
      }
    for (const auto &[chip, image] : g.gpu)
      h += "#define " + llvm::StringRef(g.name).upper() + "_" +
           llvm::StringRef(chip).upper() + "_PTX \"" + g.name + "." + chip +
           ".ptx\"\n";
  }
  h += "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* LQ_KERNELS_H */\n";
  return h;
}

std::string manifest(const std::vector<GemmOutputs> &gemms,
                     const std::string &assembler) {
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::json::OStream json(os, 2);
  json.object([&] {
    json.attribute("numerics", kNumericsVersion);
    json.attribute("gpu_abi", cuda::kAbiVersion);
    json.attribute("source", input);
    json.attributeArray("gemms", [&] {
      for (const GemmOutputs &g : gemms)
        json.object([&] {
          json.attribute("name", g.name);
          json.attribute("spec", g.spec.describe());
          if (g.host)
            json.attributeObject("host", [&] {
              json.attribute("object", g.name + ".host.o");
              json.attribute("triple", g.host->triple);
              json.attribute("cpu", g.host->cpu);
              json.attribute("features", g.host->features);
              json.attributeArray("functions", [&] {
                for (const HostStage &stage : g.host->stages)
                  json.object([&] {
                    json.attribute("symbol", stage.symbol);
                    json.attributeArray("params", [&] {
                      for (const std::string &p : stage.params)
                        json.value(p);
                    });
                  });
              });
            });
          json.attributeArray("gpu", [&] {
            for (const auto &[chip, image] : g.gpu)
              json.object([&] {
                json.attribute("chip", chip);
                json.attribute("ptx", g.name + "." + chip + ".ptx");
                if (!noCubin) {
                  json.attribute("cubin", g.name + "." + chip + ".cubin");
                  json.attribute("assembler", assembler);
                }
                json.attribute("info", g.name + "." + chip + ".info");
                json.attributeArray("kernels", [&] {
                  for (const std::string &k : cuda::requiredKernels(image.info))
                    json.value(k);
                });
                json.attributeArray("tiles", [&] {
                  for (const cuda::GemmTile &t : image.info.tiles)
                    json.object([&] {
                      json.attribute("bm", t.bm);
                      json.attribute("bn", t.bn);
                      json.attribute("bk", t.bk);
                      json.attribute("stages", t.stages);
                      json.attribute("threads", t.threads);
                      json.attribute("shared_bytes", t.smemBytes);
                    });
                });
              });
          });
        });
    });
  });
  return text;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // Only the tool\'s own options in --help, not LLVM\'s internal ones.
  cl::HideUnrelatedOptions(kCategory);
  cl::ParseCommandLineOptions(argc, argv,
                              "lq-compile: ahead-of-time lq kernels\n");
  auto file = llvm::MemoryBuffer::getFileOrSTDIN(input);
  if (!file)
    return fail(input + ": " + file.getError().message());
  // MLIR's parser and passes recurse per nesting level: a large stack.
  std::optional<Result<std::string>> graph;
  runOnLargeStack([&] { graph.emplace(quantizeGraph((*file)->getBuffer())); });
  Result<std::string> program = std::move(*graph);
  if (!program)
    return fail(program.error());
  Result<std::vector<GemmSpec>> specs = GemmSpec::allFromProgram(*program);
  if (!specs)
    return fail(input + ": " + specs.error());
  if (specs->empty())
    return fail(input + ": no GEMM to compile (no lq.matmul, lq.linear or "
                        "linalg GEMM with a training role)");
  std::vector<std::pair<std::string, Target>> targets;
  for (const std::string &chip : chips) {
    std::optional<Target> target = parseTarget(chip);
    if (!target || !isCudaTarget(*target))
      return fail("unknown chip '" + chip + "': expected " +
                  cudaTargetNames());
    targets.push_back({chip, *target});
  }
  std::string assembler;
  if (!targets.empty() && !noCubin) {
    Result<std::string> identity = cuda::ptxCompilerIdentity();
    if (!identity)
      return fail(identity.error() + " (use --no-cubin for PTX only)");
    assembler = *identity;
  }
  if (std::error_code ec = llvm::sys::fs::create_directories(outDir))
    return fail("cannot create " + outDir + ": " + ec.message());

  std::vector<GemmOutputs> gemms;
  for (size_t i = 0; i < specs->size(); ++i) {
    GemmOutputs g;
    g.name = "lq_gemm" + std::to_string(i);
    g.spec = (*specs)[i];
    if (!noHost) {
      Result<HostObject> host = compileHostObject(g.spec, g.name, cpuName);
      if (!host)
        return fail(g.name + ": " + host.error());
      if (llvm::Error e = writeFile(g.name + ".host.o", host->object))
        return fail(llvm::toString(std::move(e)));
      g.host = std::move(*host);
    }
    for (const auto &[chip, target] : targets) {
      GemmSpec spec = g.spec;
      spec.target = target;
      Result<GpuModuleImage> image = compileGpuGemm(spec);
      if (!image)
        return fail(g.name + " (" + chip + "): " + image.error());
      std::string base = g.name + "." + chip;
      if (llvm::Error e = writeFile(base + ".ptx", image->ptx))
        return fail(llvm::toString(std::move(e)));
      if (llvm::Error e =
              writeFile(base + ".info", cuda::writeModuleInfo(image->info)))
        return fail(llvm::toString(std::move(e)));
      if (!noCubin) {
        Result<std::string> cubin = cuda::compilePtx(image->ptx, chip);
        if (!cubin)
          return fail(base + ": " + cubin.error());
        if (llvm::Error e = writeFile(base + ".cubin", *cubin))
          return fail(llvm::toString(std::move(e)));
      }
      g.gpu.push_back({chip, std::move(*image)});
    }
    gemms.push_back(std::move(g));
  }
  if (llvm::Error e = writeFile("lq_kernels.h", header(gemms)))
    return fail(llvm::toString(std::move(e)));
  if (llvm::Error e = writeFile("manifest.json", manifest(gemms, assembler)))
    return fail(llvm::toString(std::move(e)));
  for (const GemmOutputs &g : gemms)
    llvm::outs() << g.name << ": " << g.spec.describe() << "\n";
  return 0;
}
