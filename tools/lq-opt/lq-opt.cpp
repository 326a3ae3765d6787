//===- lq-opt.cpp - the lq optimizer driver --------------------------------===//
//
// mlir-opt with the lq dialect, the upstream dialects lq programs use, and
// lq's passes. Pathological input is a located error, never a crash: the
// input's nesting is bounded before parsing and the work runs on a large
// stack (lq/Dialect/InputLimits.h).
//
//===----------------------------------------------------------------------===//

#include "lq/Dialect/InputLimits.h"
#include "lq/InitAll.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  lq::registerAllPasses();
  mlir::DialectRegistry registry;
  lq::registerAllDialects(registry);
  auto [inputFilename, outputFilename] = mlir::registerAndParseCLIOptions(
      argc, argv, "lq optimizer driver\n", registry);
  mlir::MlirOptMainConfig config =
      mlir::MlirOptMainConfig::createFromCLOptions();
  // Listing dialects or passes reads no input.
  if (config.shouldShowDialects() || config.shouldListPasses())
    return mlir::asMainReturnCode(mlir::MlirOptMain(
        argc, argv, inputFilename, outputFilename, registry));

  std::string message;
  std::unique_ptr<llvm::MemoryBuffer> input =
      mlir::openInputFile(inputFilename, &message);
  if (!input) {
    llvm::errs() << message << "\n";
    return 1;
  }
  {
    // The nesting check has its own context: MlirOptMain makes the one it
    // runs in from the configuration.
    mlir::MLIRContext context;
    llvm::SourceMgr sources;
    sources.AddNewSourceBuffer(
        llvm::MemoryBuffer::getMemBuffer(input->getMemBufferRef()),
        llvm::SMLoc());
    mlir::SourceMgrDiagnosticHandler handler(sources, &context);
    if (mlir::failed(lq::checkInputText(sources, &context)))
      return 1;
  }
  std::unique_ptr<llvm::ToolOutputFile> output =
      mlir::openOutputFile(outputFilename, &message);
  if (!output) {
    llvm::errs() << message << "\n";
    return 1;
  }
  mlir::LogicalResult result = mlir::failure();
  lq::runOnLargeStack([&] {
    result = mlir::MlirOptMain(output->os(), std::move(input), registry,
                               config);
  });
  if (mlir::failed(result))
    return 1;
  output->keep();
  return 0;
}
