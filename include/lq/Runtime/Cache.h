//===- Cache.h - Compile cache in memory and on disk ------------*- C++ -*-===//
//
// The runtimes compile kernels to a binary blob (an object file) plus a
// little metadata. CompileCache returns that pair for a key: from memory when
// this process built or loaded it before, from the disk cache when another
// process did, and otherwise by running the caller's compile callback and
// storing its result in both places. docs/runtime.md, "Compile cache",
// describes the key, the disk layout and the environment variables.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_CACHE_H
#define LQ_RUNTIME_CACHE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "lq/Spec/Result.h"

#include "llvm/Support/Error.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace lq::runtime {

// The SHA-256 (64 lowercase hex digits) of an ordered list of (name, value)
// fields. Every name and value is length-prefixed, so two different lists
// never share an encoding: order, boundaries and names all count. The key
// must cover everything that influences the compiled output, and one key
// must always compile to the same bytes.
std::string makeCacheKey(
    llvm::ArrayRef<std::pair<llvm::StringRef, llvm::StringRef>> fields);

// $LQ_CACHE_DIR if set and non-empty, else $XDG_CACHE_HOME/lq if that is an
// absolute path, else <home>/.cache/lq; none when no home is known.
std::optional<std::string> defaultCacheDirectory();

// Receives one warning, without the "lq: warning: " prefix or a newline.
using CacheWarningHandler = std::function<void(llvm::StringRef message)>;

struct CacheConfig {
  // Root of the disk cache; none keeps compiled code in memory only.
  std::optional<std::string> directory;
  // Empty: print "lq: warning: <message>" on stderr.
  CacheWarningHandler warningHandler;

  // defaultCacheDirectory(), or none when LQ_CACHE_DISABLE is set to
  // anything but "" or "0".
  static CacheConfig fromEnvironment();
};

// What a compile callback produces. The metadata must be UTF-8 text (the
// disk manifest is JSON).
struct CompileResult {
  std::string blob;
  std::string metadata;
};

enum class CacheSource { Memory, Disk, Compiled };

struct CacheEntry {
  // Shared by every caller that gets this key; never modified.
  std::shared_ptr<const std::string> blob;
  std::string metadata;
  CacheSource source = CacheSource::Compiled;
};

struct CacheStats {
  uint64_t memoryHits = 0;
  uint64_t diskHits = 0;
  // Lookups that ran the compile callback, failed compiles included.
  uint64_t misses = 0;
  // Disk entries rejected by verification (and then rewritten).
  uint64_t corruptEntries = 0;
  uint64_t diskWrites = 0;
};

// Thread-safe. A disk directory that cannot be created or written turns the
// disk cache off for this instance with one warning; corrupt entries cost
// one warning each and are recompiled.
class CompileCache {
public:
  using CompileFn = llvm::function_ref<Result<CompileResult>()>;

  // The process-wide cache, configured from the environment on first use.
  static CompileCache &global();

  explicit CompileCache(CacheConfig config = CacheConfig::fromEnvironment());
  CompileCache(const CompileCache &) = delete;
  CompileCache &operator=(const CompileCache &) = delete;

  // `key` must come from makeCacheKey. Concurrent calls for the same missing
  // key run one compile; the others wait for it and share its blob (if it
  // fails, each waiter runs its own callback). A failed compile returns its
  // error and caches nothing. `compile` runs without any lock held and may
  // look up other keys, but not its own (it would wait for itself).
  Result<CacheEntry> getOrCompile(llvm::StringRef key, CompileFn compile);

  CacheStats stats() const;

  // Drops every finished entry from memory; the disk cache is untouched.
  void clearMemory();

  // The disk cache root while the disk cache is in use.
  std::optional<std::string> diskDirectory() const;

private:
  // A key in memory: in flight until `blob` is set.
  struct Slot {
    std::shared_ptr<const std::string> blob;
    std::string metadata;
  };
  struct Counters {
    std::atomic<uint64_t> memoryHits{0};
    std::atomic<uint64_t> diskHits{0};
    std::atomic<uint64_t> misses{0};
    std::atomic<uint64_t> corruptEntries{0};
    std::atomic<uint64_t> diskWrites{0};
  };

  Result<Slot> loadOrCompile(llvm::StringRef key, CompileFn compile,
                             CacheSource &source);
  Result<Slot> compileAndStore(llvm::StringRef key, CompileFn compile);
  void disableDisk(llvm::StringRef reason);
  void warn(llvm::StringRef message);

  const CacheConfig config;
  std::atomic<bool> diskEnabled{false};

  mutable std::mutex mutex;
  std::condition_variable slotFinished;
  llvm::StringMap<Slot> slots;

  std::mutex warningMutex;
  Counters counters;
};

} // namespace lq::runtime

#endif // LQ_RUNTIME_CACHE_H
