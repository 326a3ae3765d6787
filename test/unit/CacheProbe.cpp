//===- CacheProbe.cpp - One process of the compile cache tests ------------===//
//
// lq-cache-probe [--barrier DIR ID] NAME BLOB [NAME BLOB ...]
//
// For each pair, looks up makeCacheKey({{"name", NAME}}) in
// CompileCache::global() (so configured from the environment), compiling to
// BLOB with metadata "meta:" BLOB, and prints where the entry came from
// ("memory", "disk" or "compiled") on a line of stdout. With --barrier, each
// compile creates DIR/ready.ID and then waits for DIR/go, so that a test can
// hold several processes inside their compiles at once. Exits 0 when every
// lookup returned BLOB and its metadata.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Cache.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <thread>

using namespace llvm;
using namespace lq::runtime;

namespace {

struct Barrier {
  std::string directory;
  std::string id;
};

Error meetAtBarrier(const Barrier &barrier) {
  SmallString<256> ready(barrier.directory), go(barrier.directory);
  sys::path::append(ready, "ready." + barrier.id);
  sys::path::append(go, "go");
  std::error_code error;
  raw_fd_ostream readyFile(ready, error);
  if (error)
    return createFileError(ready, error);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!sys::fs::exists(go)) {
    if (std::chrono::steady_clock::now() > deadline)
      return createStringError("timed out waiting for " + go);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Error::success();
}

StringRef sourceName(CacheSource source) {
  switch (source) {
  case CacheSource::Memory:
    return "memory";
  case CacheSource::Disk:
    return "disk";
  case CacheSource::Compiled:
    return "compiled";
  }
  return "unknown";
}

} // namespace

int main(int argc, char **argv) {
  SmallVector<StringRef> args(argv + 1, argv + argc);
  std::optional<Barrier> barrier;
  if (args.size() >= 3 && args[0] == "--barrier") {
    barrier = Barrier{args[1].str(), args[2].str()};
    args.erase(args.begin(), args.begin() + 3);
  }
  if (args.empty() || args.size() % 2 != 0) {
    errs() << "usage: lq-cache-probe [--barrier DIR ID] NAME BLOB "
              "[NAME BLOB ...]\n";
    return 2;
  }
  for (size_t i = 0; i < args.size(); i += 2) {
    StringRef name = args[i], blob = args[i + 1];
    std::string metadata = ("meta:" + blob).str();
    lq::Result<CacheEntry> entry = CompileCache::global().getOrCompile(
        makeCacheKey({{"name", name}}), [&]() -> lq::Result<CompileResult> {
          if (barrier)
            if (Error error = meetAtBarrier(*barrier))
              return lq::Error{toString(std::move(error))};
          return CompileResult{blob.str(), metadata};
        });
    if (!entry) {
      errs() << "lq-cache-probe: " << entry.error() << '\n';
      return 1;
    }
    if (*entry->blob != blob || entry->metadata != metadata) {
      errs() << "lq-cache-probe: wrong blob or metadata for " << name << '\n';
      return 1;
    }
    outs() << sourceName(entry->source) << '\n';
  }
  return 0;
}
