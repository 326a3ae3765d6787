//===- lq-opt.cpp - the lq optimizer driver --------------------------------===//
//
// mlir-opt with the lq dialect, the upstream dialects lq programs use, and
// lq's passes.
//
//===----------------------------------------------------------------------===//

#include "lq/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  lq::registerAllPasses();
  mlir::DialectRegistry registry;
  lq::registerAllDialects(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "lq optimizer driver\n", registry));
}
