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
// lq-cache-probe --stress THREADS ROUNDS MS BYTES [--fsize N] [--unprivileged]
//                NAME [NAME ...]
//
// THREADS threads each look up every NAME ROUNDS times in an order of their
// own; a compile takes MS milliseconds and gives a BYTES-byte blob made from
// the name. Prints "ok <lookups>" when every lookup returned its name's blob
// and metadata. --fsize limits the size of files the process may write
// (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes fail with EFBIG as on a full
// disk); --unprivileged drops root to nobody first, so that permission bits
// apply to it.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Cache.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

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

/// The blob a stress compile of `name` gives: deterministic, so that any
/// process may have written the entry another one reads.
std::string stressBlob(StringRef name, size_t bytes) {
  std::string blob;
  blob.reserve(bytes);
  for (size_t i = 0; blob.size() < bytes; ++i)
    blob += (name + "#" + Twine(i) + ";").str();
  blob.resize(bytes);
  return blob;
}

int stress(ArrayRef<StringRef> args) {
  auto number = [](StringRef text) {
    unsigned long long value = 0;
    if (text.getAsInteger(10, value)) {
      errs() << "lq-cache-probe: '" << text << "' is not a number\n";
      std::_Exit(2);
    }
    return value;
  };
  if (args.size() < 5) {
    errs() << "usage: lq-cache-probe --stress THREADS ROUNDS MS BYTES "
              "[--fsize N] [--unprivileged] NAME...\n";
    return 2;
  }
  unsigned threads = number(args[0]), rounds = number(args[1]);
  unsigned compileMs = number(args[2]);
  size_t bytes = number(args[3]);
  args = args.drop_front(4);
  while (!args.empty() && args[0].starts_with("--")) {
    if (args[0] == "--fsize" && args.size() > 1) {
      rlimit limit{rlim_t(number(args[1])), rlim_t(number(args[1]))};
      std::signal(SIGXFSZ, SIG_IGN);
      if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
        errs() << "lq-cache-probe: setrlimit failed\n";
        return 2;
      }
      args = args.drop_front(2);
    } else if (args[0] == "--unprivileged") {
      if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
        errs() << "lq-cache-probe: cannot drop privileges\n";
        return 2;
      }
      args = args.drop_front();
    } else {
      errs() << "lq-cache-probe: unknown option " << args[0] << "\n";
      return 2;
    }
  }
  std::vector<std::string> names(args.begin(), args.end());
  std::atomic<uint64_t> lookups{0}, wrong{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937 rng(t * 7919u + unsigned(getpid()));
      std::vector<std::string> order = names;
      for (unsigned round = 0; round < rounds; ++round) {
        std::shuffle(order.begin(), order.end(), rng);
        for (const std::string &name : order) {
          lq::Result<CacheEntry> entry = CompileCache::global().getOrCompile(
              makeCacheKey({{"name", name}}),
              [&]() -> lq::Result<CompileResult> {
                std::this_thread::sleep_for(
                    std::chrono::milliseconds(compileMs));
                return CompileResult{stressBlob(name, bytes), "meta:" + name};
              });
          ++lookups;
          if (!entry || *entry->blob != stressBlob(name, bytes) ||
              entry->metadata != "meta:" + name) {
            ++wrong;
            errs() << "lq-cache-probe: wrong result for " << name
                   << (entry ? "" : ": " + entry.error()) << "\n";
          }
        }
      }
    });
  for (std::thread &worker : workers)
    worker.join();
  if (wrong)
    return 1;
  outs() << "ok " << lookups.load() << "\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  SmallVector<StringRef> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--stress")
    return stress(ArrayRef<StringRef>(args).drop_front());
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
