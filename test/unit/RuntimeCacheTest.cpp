//===- RuntimeCacheTest.cpp - Compile cache in memory and on disk ---------===//
//
// Every test that touches a disk cache makes its own temporary directory and
// removes it. Multi-process tests run lq-cache-probe (CacheProbe.cpp) with
// LQ_CACHE_DIR and HOME pointing into that directory.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Cache.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

using namespace llvm;
using namespace lq::runtime;

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

class TempDir {
public:
  TempDir() {
    if (std::error_code error =
            sys::fs::createUniqueDirectory("lq-cache-test", path))
      ADD_FAILURE() << "cannot create a temporary directory: "
                    << error.message();
  }
  ~TempDir() { sys::fs::remove_directories(path); }
  std::string sub(StringRef name) const {
    SmallString<256> result(path);
    sys::path::append(result, name);
    return std::string(result);
  }
  SmallString<256> path;
};

// Collects a cache's warnings; the cache serialises calls to its handler.
struct Warnings {
  CacheWarningHandler handler() {
    return [this](StringRef message) { lines.push_back(message.str()); };
  }
  std::vector<std::string> lines;
};

CacheConfig diskConfig(StringRef directory, Warnings &warnings) {
  CacheConfig config;
  config.directory = directory.str();
  config.warningHandler = warnings.handler();
  return config;
}

CacheConfig memoryConfig(Warnings &warnings) {
  CacheConfig config;
  config.warningHandler = warnings.handler();
  return config;
}

std::string keyFor(StringRef name) { return makeCacheKey({{"name", name}}); }

// A blob with NUL, high and newline bytes, like an object file.
std::string binaryBlob(size_t size, uint8_t seed) {
  std::string blob(size, '\0');
  for (size_t i = 0; i < size; ++i)
    blob[i] = char(uint8_t(i * 131 + seed));
  return blob;
}

// A compile callback that counts its calls.
auto compileTo(std::string blob, std::string metadata,
               std::atomic<int> &calls) {
  return [=, &calls]() -> lq::Result<CompileResult> {
    ++calls;
    return CompileResult{blob, metadata};
  };
}

CacheEntry mustGet(CompileCache &cache, StringRef key,
                   CompileCache::CompileFn compile) {
  lq::Result<CacheEntry> entry = cache.getOrCompile(key, compile);
  if (!entry) {
    ADD_FAILURE() << "getOrCompile failed: " << entry.error();
    return CacheEntry{std::make_shared<const std::string>(), "",
                      CacheSource::Compiled};
  }
  return std::move(*entry);
}

std::string entryStem(StringRef root, StringRef key) {
  SmallString<256> path(root);
  sys::path::append(path, "v1", key.take_front(2), key);
  return std::string(path);
}

std::string readFile(const std::string &path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(
      path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!buffer) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  return (*buffer)->getBuffer().str();
}

void writeFile(const std::string &path, StringRef contents) {
  std::error_code error;
  raw_fd_ostream out(path, error);
  ASSERT_FALSE(error) << path << ": " << error.message();
  out << contents;
}

// Regular files below `root`, relative to it, sorted.
std::vector<std::string> filesBelow(StringRef root) {
  std::vector<std::string> files;
  std::error_code error;
  for (sys::fs::recursive_directory_iterator it(root, error), end;
       it != end && !error; it.increment(error))
    if (it->type() == sys::fs::file_type::regular_file)
      files.push_back(it->path().substr(root.size() + 1));
  EXPECT_FALSE(error) << error.message();
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> entryFiles(StringRef key) {
  std::string shard = ("v1/" + key.take_front(2) + "/").str();
  return {shard + key.str() + ".bin", shard + key.str() + ".json"};
}

// Sets environment variables for one test and restores them afterwards.
class ScopedEnv {
public:
  explicit ScopedEnv(std::vector<std::string> names) {
    for (std::string &name : names) {
      const char *value = std::getenv(name.c_str());
      saved.push_back(
          {name, value ? std::optional<std::string>(value) : std::nullopt});
    }
  }
  ~ScopedEnv() {
    for (auto &[name, value] : saved)
      value ? set(name, *value) : unset(name);
  }
  void set(const std::string &name, const std::string &value) {
    ::setenv(name.c_str(), value.c_str(), /*overwrite=*/1);
  }
  void unset(const std::string &name) { ::unsetenv(name.c_str()); }

private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
};

struct ProbeResult {
  int exitCode = -1;
  std::string out;
  std::string err;
};

// The current environment with the cache variables and HOME replaced, so
// that a probe never sees the real home or cache directory.
class ProbeEnvironment {
public:
  ProbeEnvironment(const TempDir &temp, StringRef cacheDirectory) {
    for (char **entry = environ; *entry; ++entry) {
      StringRef variable(*entry);
      if (!variable.starts_with("LQ_CACHE_") &&
          !variable.starts_with("XDG_CACHE_HOME=") &&
          !variable.starts_with("HOME="))
        storage.push_back(variable.str());
    }
    storage.push_back("LQ_CACHE_DIR=" + cacheDirectory.str());
    storage.push_back("HOME=" + temp.sub("home"));
    for (const std::string &variable : storage)
      refs.push_back(variable);
  }
  ArrayRef<StringRef> get() const { return refs; }

private:
  std::vector<std::string> storage;
  std::vector<StringRef> refs;
};

class Probe {
public:
  Probe(const TempDir &temp, StringRef cacheDirectory, std::string name,
        std::vector<std::string> args)
      : environment(temp, cacheDirectory), outPath(temp.sub(name + ".out")),
        errPath(temp.sub(name + ".err")) {
    argStorage.push_back(LQ_CACHE_PROBE);
    argStorage.insert(argStorage.end(), args.begin(), args.end());
    std::vector<StringRef> argRefs(argStorage.begin(), argStorage.end());
    std::string error;
    process = sys::ExecuteNoWait(
        LQ_CACHE_PROBE, argRefs, environment.get(),
        {std::nullopt, StringRef(outPath), StringRef(errPath)}, 0, &error);
    EXPECT_TRUE(error.empty()) << error;
  }
  /// SIGKILL, as a crash or an out-of-memory killer would.
  void kill() { ::kill(process.Pid, SIGKILL); }
  ProbeResult wait(bool killed = false) {
    ProbeResult result;
    std::string error;
    sys::ProcessInfo finished =
        sys::Wait(process, /*SecondsToWait=*/60, &error);
    if (!killed)
      EXPECT_TRUE(error.empty()) << error;
    result.exitCode = finished.ReturnCode;
    result.out = readFile(outPath);
    result.err = readFile(errPath);
    return result;
  }

private:
  ProbeEnvironment environment;
  std::string outPath, errPath;
  std::vector<std::string> argStorage;
  sys::ProcessInfo process;
};

ProbeResult runProbe(const TempDir &temp, StringRef cacheDirectory,
                     std::string name, std::vector<std::string> args) {
  return Probe(temp, cacheDirectory, std::move(name), std::move(args)).wait();
}

//===----------------------------------------------------------------------===//
// Keys
//===----------------------------------------------------------------------===//

// The encoding docs/runtime.md documents: SHA-256 over length-prefixed
// (u64 little-endian) strings, a tag first, then each name and value.
TEST(RuntimeCacheKey, MatchesDocumentedEncoding) {
  auto lengthPrefixed = [](StringRef bytes) {
    std::string encoded(8, '\0');
    support::endian::write64le(encoded.data(), bytes.size());
    return encoded + bytes.str();
  };
  std::string encoding = lengthPrefixed("lq-compile-cache-key-v1") +
                         lengthPrefixed("ir") + lengthPrefixed("func.func") +
                         lengthPrefixed("triple") +
                         lengthPrefixed("x86_64-unknown-linux-gnu");
  std::string expected =
      toHex(SHA256::hash(arrayRefFromStringRef(encoding)), /*LowerCase=*/true);
  std::string key = makeCacheKey(
      {{"ir", "func.func"}, {"triple", "x86_64-unknown-linux-gnu"}});
  EXPECT_EQ(key, expected);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(key, makeCacheKey({{"ir", "func.func"},
                               {"triple", "x86_64-unknown-linux-gnu"}}));
}

TEST(RuntimeCacheKey, OrderBoundariesAndNamesMatter) {
  using Fields = std::vector<std::pair<StringRef, StringRef>>;
  std::vector<Fields> distinct = {
      {},
      {{"", ""}},
      {{"", ""}, {"", ""}},
      {{"a", "bc"}},
      {{"ab", "c"}},
      {{"abc", ""}},
      {{"", "abc"}},
      {{"a", "b"}, {"c", "d"}},
      {{"c", "d"}, {"a", "b"}},
      {{"a", "b"}, {"c", ""}},
      {{"a", "bc"}, {"", "d"}},
      {{"ir", "x"}, {"options", "y"}},
      {{"ir", "y"}, {"options", "x"}},
      {{"x", "ir"}, {"y", "options"}},
  };
  std::set<std::string> keys;
  for (const Fields &fields : distinct)
    keys.insert(makeCacheKey(fields));
  EXPECT_EQ(keys.size(), distinct.size());
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

TEST(RuntimeCacheMemory, HitAfterMissSharesTheBlob) {
  Warnings warnings;
  CompileCache cache(memoryConfig(warnings));
  EXPECT_EQ(cache.diskDirectory(), std::nullopt);
  std::atomic<int> calls{0};
  std::string key = keyFor("gemm");

  CacheEntry first = mustGet(cache, key, compileTo("object", "meta", calls));
  CacheEntry second = mustGet(cache, key, compileTo("other", "other", calls));
  EXPECT_EQ(first.source, CacheSource::Compiled);
  EXPECT_EQ(second.source, CacheSource::Memory);
  EXPECT_EQ(*second.blob, "object");
  EXPECT_EQ(second.metadata, "meta");
  EXPECT_EQ(first.blob.get(), second.blob.get());
  EXPECT_EQ(calls, 1);

  CacheEntry other =
      mustGet(cache, keyFor("gemm2"), compileTo("object2", "", calls));
  EXPECT_EQ(other.source, CacheSource::Compiled);
  EXPECT_EQ(*other.blob, "object2");

  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.memoryHits, 1u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.diskHits, 0u);
  EXPECT_EQ(stats.diskWrites, 0u);
  EXPECT_EQ(stats.corruptEntries, 0u);

  // Callers keep their blobs; the next lookup compiles again.
  cache.clearMemory();
  EXPECT_EQ(*first.blob, "object");
  CacheEntry recompiled =
      mustGet(cache, key, compileTo("object", "meta", calls));
  EXPECT_EQ(recompiled.source, CacheSource::Compiled);
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(warnings.lines.empty());
}

TEST(RuntimeCacheMemory, RejectsForeignKeysAndBinaryMetadata) {
  Warnings warnings;
  CompileCache cache(memoryConfig(warnings));
  std::atomic<int> calls{0};
  for (std::string bad :
       {std::string("gemm"), keyFor("a").substr(1),
        "../" + keyFor("a").substr(3), StringRef(keyFor("a")).upper()}) {
    lq::Result<CacheEntry> entry =
        cache.getOrCompile(bad, compileTo("x", "", calls));
    ASSERT_FALSE(entry) << bad;
    EXPECT_NE(entry.error().find("not a key"), std::string::npos);
  }
  EXPECT_EQ(calls, 0);

  lq::Result<CacheEntry> entry = cache.getOrCompile(
      keyFor("a"), compileTo("x", std::string("\xff\xfe", 2), calls));
  ASSERT_FALSE(entry);
  EXPECT_NE(entry.error().find("not UTF-8"), std::string::npos);
}

TEST(RuntimeCacheMemory, FailedCompilePropagatesAndCachesNothing) {
  TempDir temp;
  Warnings warnings;
  CompileCache cache(diskConfig(temp.sub("cache"), warnings));
  std::string key = keyFor("broken");
  lq::Result<CacheEntry> failed =
      cache.getOrCompile(key, []() -> lq::Result<CompileResult> {
        return lq::Error{std::string("codegen failed: no target")};
      });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), "codegen failed: no target");
  EXPECT_TRUE(filesBelow(temp.sub("cache")).empty());

  std::atomic<int> calls{0};
  CacheEntry entry = mustGet(cache, key, compileTo("fixed", "", calls));
  EXPECT_EQ(entry.source, CacheSource::Compiled);
  EXPECT_EQ(*entry.blob, "fixed");
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.diskWrites, 1u);
  EXPECT_TRUE(warnings.lines.empty());
}

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

TEST(RuntimeCacheThreads, ConcurrentLookupsCompileOnce) {
  TempDir temp;
  Warnings warnings;
  CompileCache cache(diskConfig(temp.sub("cache"), warnings));
  constexpr int kThreads = 8;
  std::string key = keyFor("shared");
  std::atomic<int> calls{0}, started{0};
  std::vector<std::shared_ptr<const std::string>> blobs(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      ++started;
      while (started < kThreads)
        std::this_thread::yield();
      blobs[i] = mustGet(cache, key, [&]() -> lq::Result<CompileResult> {
                   ++calls;
                   // Long enough for every other thread to arrive meanwhile.
                   std::this_thread::sleep_for(std::chrono::milliseconds(100));
                   return CompileResult{"kernel", "meta"};
                 }).blob;
    });
  for (std::thread &thread : threads)
    thread.join();

  EXPECT_EQ(calls, 1);
  for (const auto &blob : blobs) {
    ASSERT_TRUE(blob);
    EXPECT_EQ(blob.get(), blobs[0].get());
    EXPECT_EQ(*blob, "kernel");
  }
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.memoryHits, uint64_t(kThreads - 1));
  EXPECT_EQ(stats.diskHits, 0u);
  EXPECT_EQ(stats.diskWrites, 1u);
}

// A compile of one key must not block lookups of others: the compile of "a"
// finishes only after a lookup of "b" on this thread has.
TEST(RuntimeCacheThreads, CompileRunsWithoutTheLock) {
  Warnings warnings;
  CompileCache cache(memoryConfig(warnings));
  std::promise<void> inCompile, otherLookupDone;
  std::future<void> otherDone = otherLookupDone.get_future();
  std::thread slow([&] {
    CacheEntry entry =
        mustGet(cache, keyFor("a"), [&]() -> lq::Result<CompileResult> {
          inCompile.set_value();
          if (otherDone.wait_for(std::chrono::seconds(5)) !=
              std::future_status::ready)
            return lq::Error{std::string("the lookup of b did not finish")};
          return CompileResult{"a", ""};
        });
    EXPECT_EQ(*entry.blob, "a");
  });
  inCompile.get_future().wait();
  std::atomic<int> calls{0};
  CacheEntry b = mustGet(cache, keyFor("b"), compileTo("b", "", calls));
  otherLookupDone.set_value();
  slow.join();
  EXPECT_EQ(*b.blob, "b");
}

// When the compile a caller waits for fails, the caller compiles itself.
TEST(RuntimeCacheThreads, WaiterCompilesAfterAFailedCompile) {
  Warnings warnings;
  CompileCache cache(memoryConfig(warnings));
  std::string key = keyFor("flaky");
  std::promise<void> inCompile;
  std::thread failing([&] {
    lq::Result<CacheEntry> entry =
        cache.getOrCompile(key, [&]() -> lq::Result<CompileResult> {
          inCompile.set_value();
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          return lq::Error{std::string("first compile failed")};
        });
    ASSERT_FALSE(entry);
    EXPECT_EQ(entry.error(), "first compile failed");
  });
  inCompile.get_future().wait();
  std::atomic<int> calls{0};
  CacheEntry entry = mustGet(cache, key, compileTo("second", "", calls));
  failing.join();
  EXPECT_EQ(entry.source, CacheSource::Compiled);
  EXPECT_EQ(*entry.blob, "second");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(mustGet(cache, key, compileTo("third", "", calls)).source,
            CacheSource::Memory);
  EXPECT_EQ(cache.stats().misses, 2u);
}

//===----------------------------------------------------------------------===//
// Disk
//===----------------------------------------------------------------------===//

TEST(RuntimeCacheDisk, EntryRoundTripsThroughTheDocumentedLayout) {
  TempDir temp;
  std::string root = temp.sub("cache");
  std::string key = keyFor("roundtrip");
  std::string blob = binaryBlob(100000, 7);
  std::string metadata =
      R"({"kernels": ["lq_gemm_fwd"], "note": "tab\t \\ \"q\"
newline, ünïcødé"})";
  Warnings warnings;
  std::atomic<int> calls{0};
  {
    CompileCache writer(diskConfig(root, warnings));
    EXPECT_EQ(writer.diskDirectory(), root);
    EXPECT_EQ(mustGet(writer, key, compileTo(blob, metadata, calls)).source,
              CacheSource::Compiled);
    EXPECT_EQ(writer.stats().diskWrites, 1u);
  }
  EXPECT_EQ(filesBelow(root), entryFiles(key));
  std::string stem = entryStem(root, key);
  EXPECT_EQ(readFile(stem + ".bin"), blob);
  Expected<json::Value> manifest = json::parse(readFile(stem + ".json"));
  ASSERT_TRUE(bool(manifest)) << toString(manifest.takeError());
  const json::Object *object = manifest->getAsObject();
  ASSERT_TRUE(object);
  EXPECT_EQ(object->getString("format"), StringRef("lq-compile-cache-v1"));
  EXPECT_EQ(object->getString("key"), StringRef(key));
  EXPECT_EQ(object->getInteger("payload_size"), int64_t(blob.size()));
  EXPECT_EQ(object->getString("payload_sha256"),
            StringRef(toHex(SHA256::hash(arrayRefFromStringRef(blob)),
                            /*LowerCase=*/true)));
  EXPECT_EQ(object->getString("metadata"), StringRef(metadata));

  CompileCache reader(diskConfig(root, warnings));
  CacheEntry loaded = mustGet(reader, key, compileTo("wrong", "", calls));
  EXPECT_EQ(loaded.source, CacheSource::Disk);
  EXPECT_EQ(*loaded.blob, blob);
  EXPECT_EQ(loaded.metadata, metadata);
  EXPECT_EQ(mustGet(reader, key, compileTo("wrong", "", calls)).source,
            CacheSource::Memory);
  EXPECT_EQ(calls, 1);
  CacheStats stats = reader.stats();
  EXPECT_EQ(stats.diskHits, 1u);
  EXPECT_EQ(stats.memoryHits, 1u);
  EXPECT_EQ(stats.misses, 0u);
  EXPECT_EQ(stats.diskWrites, 0u);
  EXPECT_TRUE(warnings.lines.empty());
}

// The second process loads what the first wrote, without compiling (the
// probe would print "compiled" otherwise).
TEST(RuntimeCacheDisk, PersistsAcrossProcesses) {
  TempDir temp;
  std::string root = temp.sub("cache");
  ProbeResult first = runProbe(temp, root, "first", {"gemm", "object-1"});
  EXPECT_EQ(first.exitCode, 0) << first.err;
  EXPECT_EQ(first.out, "compiled\n");
  ProbeResult second =
      runProbe(temp, root, "second", {"gemm", "object-1", "gemm", "object-1"});
  EXPECT_EQ(second.exitCode, 0) << second.err;
  EXPECT_EQ(second.out, "disk\nmemory\n");
  EXPECT_EQ(first.err + second.err, "");
  EXPECT_EQ(filesBelow(root), entryFiles(keyFor("gemm")));
  EXPECT_FALSE(sys::fs::exists(temp.sub("home")));
}

// Six processes all miss, compile at the same moment (held at a barrier
// inside their compiles) and write the same entry.
TEST(RuntimeCacheDisk, RacingProcessesLeaveOneValidEntry) {
  TempDir temp;
  std::string root = temp.sub("cache");
  std::string barrier = temp.sub("barrier");
  ASSERT_FALSE(sys::fs::create_directory(barrier));
  constexpr int kProcesses = 6;
  std::string blob = "object-" + std::string(5000, 'x');
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < kProcesses; ++i)
    probes.push_back(std::make_unique<Probe>(
        temp, root, "racer" + std::to_string(i),
        std::vector<std::string>{"--barrier", barrier, std::to_string(i),
                                 "gemm", blob}));

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (filesBelow(barrier).size() < kProcesses &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(filesBelow(barrier).size(), size_t(kProcesses));
  writeFile(temp.sub("barrier/go"), "");

  for (std::unique_ptr<Probe> &probe : probes) {
    ProbeResult result = probe->wait();
    EXPECT_EQ(result.exitCode, 0) << result.err;
    EXPECT_EQ(result.out, "compiled\n");
    EXPECT_EQ(result.err, "");
  }
  EXPECT_EQ(filesBelow(root), entryFiles(keyFor("gemm")));

  Warnings warnings;
  CompileCache reader(diskConfig(root, warnings));
  std::atomic<int> calls{0};
  CacheEntry entry = mustGet(reader, keyFor("gemm"), compileTo("", "", calls));
  EXPECT_EQ(entry.source, CacheSource::Disk);
  EXPECT_EQ(*entry.blob, blob);
  EXPECT_EQ(entry.metadata, "meta:" + blob);
  EXPECT_TRUE(warnings.lines.empty());
}

//===----------------------------------------------------------------------===//
// Corruption
//===----------------------------------------------------------------------===//

struct Damage {
  const char *name;
  // Damages the entry at <stem>.bin / <stem>.json.
  void (*apply)(const std::string &stem);
};

const Damage kDamages[] = {
    {"FlippedPayloadByte",
     [](const std::string &stem) {
       std::string payload = readFile(stem + ".bin");
       payload[payload.size() / 2] ^= 0x01;
       writeFile(stem + ".bin", payload);
     }},
    {"TruncatedPayload",
     [](const std::string &stem) {
       std::string payload = readFile(stem + ".bin");
       writeFile(stem + ".bin",
                 StringRef(payload).take_front(payload.size() / 2));
     }},
    {"MissingPayload",
     [](const std::string &stem) {
       ASSERT_FALSE(sys::fs::remove(stem + ".bin"));
     }},
    {"MissingManifest",
     [](const std::string &stem) {
       ASSERT_FALSE(sys::fs::remove(stem + ".json"));
     }},
    {"GarbageManifest",
     [](const std::string &stem) {
       writeFile(stem + ".json", "{\"format\": \"lq-compile-cache-v1\", \"ke");
     }},
    {"EditedMetadata",
     [](const std::string &stem) {
       Expected<json::Value> manifest = json::parse(readFile(stem + ".json"));
       ASSERT_TRUE(bool(manifest)) << toString(manifest.takeError());
       (*manifest->getAsObject())["metadata"] = "meta:edited";
       writeFile(stem + ".json", formatv("{0}", *manifest).str());
     }},
};

void PrintTo(const Damage &damage, std::ostream *out) { *out << damage.name; }

class RuntimeCacheCorruption : public ::testing::TestWithParam<Damage> {};

// A damaged entry is a miss with one warning; the recompiled entry replaces
// it and is valid for the next process.
TEST_P(RuntimeCacheCorruption, IsRecompiledAndRewritten) {
  TempDir temp;
  std::string root = temp.sub("cache");
  std::string key = keyFor("victim");
  std::string blob = binaryBlob(4096, 3);
  std::atomic<int> calls{0};
  Warnings warnings;
  {
    CompileCache writer(diskConfig(root, warnings));
    mustGet(writer, key, compileTo(blob, "meta", calls));
  }
  GetParam().apply(entryStem(root, key));

  CompileCache recovering(diskConfig(root, warnings));
  CacheEntry recompiled =
      mustGet(recovering, key, compileTo(blob, "meta", calls));
  EXPECT_EQ(recompiled.source, CacheSource::Compiled);
  EXPECT_EQ(*recompiled.blob, blob);
  ASSERT_EQ(warnings.lines.size(), 1u);
  EXPECT_NE(warnings.lines[0].find(entryStem(root, key)), std::string::npos)
      << warnings.lines[0];
  CacheStats stats = recovering.stats();
  EXPECT_EQ(stats.corruptEntries, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.diskWrites, 1u);
  EXPECT_EQ(recovering.diskDirectory(), root);

  CompileCache reader(diskConfig(root, warnings));
  CacheEntry loaded = mustGet(reader, key, compileTo("wrong", "", calls));
  EXPECT_EQ(loaded.source, CacheSource::Disk);
  EXPECT_EQ(*loaded.blob, blob);
  EXPECT_EQ(loaded.metadata, "meta");
  EXPECT_EQ(warnings.lines.size(), 1u);
  EXPECT_EQ(filesBelow(root), entryFiles(key));
}

INSTANTIATE_TEST_SUITE_P(Damages, RuntimeCacheCorruption,
                         ::testing::ValuesIn(kDamages),
                         [](const ::testing::TestParamInfo<Damage> &info) {
                           return std::string(info.param.name);
                         });

//===----------------------------------------------------------------------===//
// Unusable directories
//===----------------------------------------------------------------------===//

// Runs lookups of two keys, twice each, against `root`, which the cache
// cannot use: one warning, everything cached in memory.
void expectMemoryOnlyWithOneWarning(StringRef root) {
  Warnings warnings;
  CompileCache cache(diskConfig(root, warnings));
  std::atomic<int> calls{0};
  for (int round = 0; round < 2; ++round)
    for (StringRef name : {"a", "b"}) {
      CacheEntry entry =
          mustGet(cache, keyFor(name), compileTo(name.str(), "", calls));
      EXPECT_EQ(*entry.blob, name);
      EXPECT_EQ(entry.source,
                round == 0 ? CacheSource::Compiled : CacheSource::Memory);
    }
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cache.diskDirectory(), std::nullopt);
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.diskWrites, 0u);
  EXPECT_EQ(stats.memoryHits, 2u);
  ASSERT_EQ(warnings.lines.size(), 1u);
  EXPECT_NE(warnings.lines[0].find("memory only"), std::string::npos)
      << warnings.lines[0];
}

TEST(RuntimeCacheUnusable, DirectoryBelowARegularFile) {
  TempDir temp;
  std::string file = temp.sub("file");
  writeFile(file, "keep me");
  expectMemoryOnlyWithOneWarning(file + "/cache");
  EXPECT_EQ(readFile(file), "keep me");
  EXPECT_EQ(filesBelow(temp.path), std::vector<std::string>{"file"});
}

TEST(RuntimeCacheUnusable, DirectoryIsARegularFile) {
  TempDir temp;
  std::string file = temp.sub("cache");
  writeFile(file, "keep me");
  expectMemoryOnlyWithOneWarning(file);
  EXPECT_EQ(readFile(file), "keep me");
  EXPECT_EQ(filesBelow(temp.path), std::vector<std::string>{"cache"});
}

// Root ignores permission bits, so this needs an ordinary user.
TEST(RuntimeCacheUnusable, ReadOnlyDirectory) {
  TempDir temp;
  std::string root = temp.sub("cache");
  ASSERT_FALSE(sys::fs::create_directories(root + "/v1"));
  ASSERT_EQ(::chmod((root + "/v1").c_str(), 0555), 0);
  // Permission bits do not stop root: as root, the scenario runs in a child
  // process that has dropped to an unprivileged user.
  auto scenario = [&] {
    if (::geteuid() == 0) {
      ::chmod(temp.path.c_str(), 0755);
      if (::setgid(65534) != 0 || ::setuid(65534) != 0)
        std::_Exit(2);
    }
    expectMemoryOnlyWithOneWarning(root);
    std::_Exit(::testing::Test::HasFailure() ? 1 : 0);
  };
  EXPECT_EXIT(scenario(), ::testing::ExitedWithCode(0), "");
  ::chmod((root + "/v1").c_str(), 0755);
  EXPECT_TRUE(filesBelow(root).empty());
}

// The global cache of a fresh process, with the default warning sink.
TEST(RuntimeCacheUnusable, ProcessWarnsOnceOnStderr) {
  TempDir temp;
  std::string file = temp.sub("file");
  writeFile(file, "keep me");
  ProbeResult result =
      runProbe(temp, file + "/cache", "probe", {"a", "x", "b", "y", "a", "x"});
  EXPECT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out, "compiled\ncompiled\nmemory\n");
  EXPECT_TRUE(StringRef(result.err).starts_with("lq: warning: compile cache "))
      << result.err;
  EXPECT_EQ(StringRef(result.err).count('\n'), 1u) << result.err;
  EXPECT_TRUE(StringRef(result.err).ends_with("\n"));
  EXPECT_EQ(readFile(file), "keep me");
}

//===----------------------------------------------------------------------===//
// Environment
//===----------------------------------------------------------------------===//

const std::vector<std::string> kCacheVariables = {
    "LQ_CACHE_DIR", "LQ_CACHE_DISABLE", "XDG_CACHE_HOME", "HOME"};

TEST(RuntimeCacheEnvironment, DefaultDirectoryPrecedence) {
  ScopedEnv env(kCacheVariables);
  env.set("HOME", "/home/tester");
  env.set("XDG_CACHE_HOME", "/xdg");
  env.set("LQ_CACHE_DIR", "/explicit/cache");
  EXPECT_EQ(defaultCacheDirectory(), "/explicit/cache");

  env.set("LQ_CACHE_DIR", "");
  EXPECT_EQ(defaultCacheDirectory(), "/xdg/lq");
  env.unset("LQ_CACHE_DIR");
  EXPECT_EQ(defaultCacheDirectory(), "/xdg/lq");

  // The XDG specification says to ignore a relative XDG_CACHE_HOME.
  env.set("XDG_CACHE_HOME", "relative");
  EXPECT_EQ(defaultCacheDirectory(), "/home/tester/.cache/lq");
  env.set("XDG_CACHE_HOME", "");
  EXPECT_EQ(defaultCacheDirectory(), "/home/tester/.cache/lq");
  env.unset("XDG_CACHE_HOME");
  EXPECT_EQ(defaultCacheDirectory(), "/home/tester/.cache/lq");

  // A relative LQ_CACHE_DIR is anchored at the working directory.
  env.set("LQ_CACHE_DIR", "rel/cache");
  SmallString<256> expected;
  ASSERT_FALSE(sys::fs::current_path(expected));
  sys::path::append(expected, "rel", "cache");
  EXPECT_EQ(defaultCacheDirectory(), std::string(expected));
}

TEST(RuntimeCacheEnvironment, DisableKeepsTheMemoryCache) {
  TempDir temp;
  ScopedEnv env(kCacheVariables);
  std::string root = temp.sub("cache");
  env.set("LQ_CACHE_DIR", root);
  env.set("LQ_CACHE_DISABLE", "0");
  EXPECT_EQ(CacheConfig::fromEnvironment().directory, root);
  env.set("LQ_CACHE_DISABLE", "1");
  CacheConfig config = CacheConfig::fromEnvironment();
  EXPECT_EQ(config.directory, std::nullopt);

  Warnings warnings;
  config.warningHandler = warnings.handler();
  CompileCache cache(std::move(config));
  EXPECT_EQ(cache.diskDirectory(), std::nullopt);
  std::atomic<int> calls{0};
  EXPECT_EQ(mustGet(cache, keyFor("a"), compileTo("a", "", calls)).source,
            CacheSource::Compiled);
  EXPECT_EQ(mustGet(cache, keyFor("a"), compileTo("a", "", calls)).source,
            CacheSource::Memory);
  EXPECT_FALSE(sys::fs::exists(root));
  EXPECT_TRUE(warnings.lines.empty());
}

} // namespace

//===----------------------------------------------------------------------===//
// Under fire
//===----------------------------------------------------------------------===//

namespace {

/// The blob lq-cache-probe --stress compiles for `name` (its stressBlob).
std::string stressBlob(StringRef name, size_t bytes) {
  std::string blob;
  for (size_t i = 0; blob.size() < bytes; ++i)
    blob += (name + "#" + Twine(i) + ";").str();
  blob.resize(bytes);
  return blob;
}

std::vector<std::string> stressArgs(unsigned threads, unsigned rounds,
                                    unsigned compileMs, size_t bytes,
                                    std::vector<std::string> options,
                                    const std::vector<std::string> &names) {
  std::vector<std::string> args = {"--stress", std::to_string(threads),
                                   std::to_string(rounds),
                                   std::to_string(compileMs),
                                   std::to_string(bytes)};
  args.insert(args.end(), options.begin(), options.end());
  args.insert(args.end(), names.begin(), names.end());
  return args;
}

/// Warnings a process may print while others write or die around it: a
/// payload whose manifest is not renamed yet, or never will be (its writer
/// was killed between the two renames), is an incomplete entry, recompiled.
bool onlyIncompleteEntryWarnings(StringRef err) {
  SmallVector<StringRef> lines;
  err.split(lines, '\n', -1, /*KeepEmpty=*/false);
  for (StringRef line : lines)
    if (!line.starts_with("lq: warning: compile cache entry") ||
        !line.contains("is invalid (manifest missing); recompiling it"))
      return false;
  return true;
}

/// Every file below the root is an entry's payload or manifest, or a
/// temporary file a killed writer left. Every entry (a manifest: the last
/// file written) loads, verified, in a fresh cache with its name's blob and
/// no warning; a payload without a manifest (its writer killed between the
/// renames) is recompiled with the documented warning.
void expectEveryEntryVerifies(StringRef root,
                              const std::vector<std::string> &names,
                              size_t bytes) {
  std::set<std::string> manifests, payloads;
  for (const std::string &file : filesBelow(root)) {
    StringRef f(file);
    if (f.ends_with(".tmp"))
      continue;
    ASSERT_TRUE(f.ends_with(".bin") || f.ends_with(".json")) << file;
    (f.ends_with(".json") ? manifests : payloads)
        .insert(sys::path::stem(f).str());
  }
  for (const std::string &key : manifests)
    EXPECT_TRUE(payloads.count(key)) << key << " has a manifest only";
  std::atomic<int> calls{0};
  std::set<std::string> seen;
  for (const std::string &name : names) {
    std::string key = keyFor(name);
    seen.insert(key);
    Warnings warnings;
    CompileCache reader(diskConfig(root, warnings));
    CacheEntry entry = mustGet(reader, key,
                               compileTo(stressBlob(name, bytes),
                                         "meta:" + name, calls));
    EXPECT_EQ(*entry.blob, stressBlob(name, bytes)) << name;
    EXPECT_EQ(entry.metadata, "meta:" + name) << name;
    if (manifests.count(key)) {
      EXPECT_EQ(entry.source, CacheSource::Disk) << name;
      EXPECT_TRUE(warnings.lines.empty()) << name << ": " << warnings.lines[0];
    } else if (payloads.count(key)) {
      ASSERT_EQ(warnings.lines.size(), 1u) << name;
      EXPECT_NE(warnings.lines[0].find("(manifest missing)"), std::string::npos)
          << warnings.lines[0];
    } else {
      EXPECT_TRUE(warnings.lines.empty()) << name << ": " << warnings.lines[0];
    }
  }
  for (const std::string &key : manifests)
    EXPECT_TRUE(seen.count(key)) << "an entry of an unknown key: " << key;
}

// Several processes of several threads each compile overlapping names into
// one directory while some are killed mid-compile; the survivors get the
// right blobs without a warning, every entry on disk verifies, and a second
// wave finds them all.
TEST(RuntimeCacheStress, KilledWritersLeaveOnlyValidEntries) {
  TempDir temp;
  std::string root = temp.sub("cache");
  std::vector<std::string> names;
  for (int i = 0; i < 16; ++i)
    names.push_back("kernel" + std::to_string(i));
  constexpr size_t kBytes = 300000;
  constexpr int kProcesses = 6;
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < kProcesses; ++i) {
    // Each process compiles an overlapping half of the names.
    std::vector<std::string> mine(names.begin() + (i % 3) * 4,
                                  names.begin() + (i % 3) * 4 + 8);
    probes.push_back(std::make_unique<Probe>(
        temp, root, "stress" + std::to_string(i),
        stressArgs(4, 2, 30, kBytes, {}, mine)));
  }
  // Every process is inside its first compiles (30 ms each) after a few
  // milliseconds; kill every third one then, and again later.
  std::this_thread::sleep_for(std::chrono::milliseconds(45));
  probes[0]->kill();
  probes[3]->kill();
  for (int i = 0; i < kProcesses; ++i) {
    ProbeResult result = probes[i]->wait(/*killed=*/i % 3 == 0);
    if (i % 3 == 0) {
      EXPECT_NE(result.exitCode, 0) << "process " << i << " was not killed";
      continue;
    }
    EXPECT_EQ(result.exitCode, 0) << "process " << i << ": " << result.err;
    EXPECT_EQ(result.out, "ok 64\n") << "process " << i;
    EXPECT_TRUE(onlyIncompleteEntryWarnings(result.err))
        << "process " << i << ": " << result.err;
  }
  expectEveryEntryVerifies(root, names, kBytes);

  ProbeResult again =
      runProbe(temp, root, "second-wave", stressArgs(4, 1, 0, kBytes, {}, names));
  EXPECT_EQ(again.exitCode, 0) << again.err;
  EXPECT_EQ(again.out, "ok 64\n");
  EXPECT_TRUE(onlyIncompleteEntryWarnings(again.err)) << again.err;
  // The second wave rewrote any incomplete entry: all of them verify now.
  expectEveryEntryVerifies(root, names, kBytes);
  for (const std::string &name : names) {
    std::string stem = entryStem(root, keyFor(name));
    EXPECT_TRUE(sys::fs::exists(stem + ".json")) << name;
  }
}

// A cache directory that fills up: writes fail (RLIMIT_FSIZE makes them
// fail with EFBIG, as ENOSPC would on a full disk) and the process warns
// once, keeps compiled code in memory and returns the right blobs.
TEST(RuntimeCacheStress, FullDiskWarnsOnceAndKeepsWorking) {
  TempDir temp;
  std::string root = temp.sub("cache");
  std::vector<std::string> names = {"a", "b", "c", "d", "e", "f"};
  ProbeResult result =
      runProbe(temp, root, "full",
               stressArgs(3, 3, 1, 200000, {"--fsize", "65536"}, names));
  EXPECT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out, "ok 54\n");
  EXPECT_NE(result.err.find("lq: warning: compile cache directory"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("caching compiled code in memory only"),
            std::string::npos)
      << result.err;
  EXPECT_EQ(StringRef(result.err).count("lq: warning:"), 1u) << result.err;
  // Nothing half-written is left under a final name.
  expectEveryEntryVerifies(root, names, 200000);
}

// The directory turns read-only while a process compiles into it: a
// warning, memory-only caching from then on, the right blobs throughout.
TEST(RuntimeCacheStress, DirectoryTurningReadOnlyMidRun) {
  TempDir temp;
  std::string root = temp.sub("cache");
  // The probe runs as nobody (root ignores permission bits): the
  // directories must be its to write first.
  ASSERT_EQ(::chmod(temp.path.c_str(), 0777), 0);
  ASSERT_FALSE(sys::fs::create_directories(root));
  ASSERT_EQ(::chmod(root.c_str(), 0777), 0);
  std::vector<std::string> names;
  for (int i = 0; i < 24; ++i)
    names.push_back("ro" + std::to_string(i));
  Probe probe(temp, root, "readonly",
              stressArgs(2, 2, 20, 50000, {"--unprivileged"}, names));
  // Once some entries exist, take write permission away from every
  // directory of the cache.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (filesBelow(root).size() < 4 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::error_code error;
  std::vector<std::string> directories = {root};
  for (sys::fs::recursive_directory_iterator it(root, error), end;
       it != end && !error; it.increment(error))
    if (it->type() == sys::fs::file_type::directory_file)
      directories.push_back(it->path());
  // Shards not made yet must not be creatable either: the root and v1 are
  // read-only too.
  for (const std::string &directory : directories)
    ::chmod(directory.c_str(), 0555);
  ProbeResult result = probe.wait();
  for (const std::string &directory : directories)
    ::chmod(directory.c_str(), 0755);
  EXPECT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out, "ok 96\n");
  EXPECT_NE(result.err.find("caching compiled code in memory only"),
            std::string::npos)
      << result.err;
  EXPECT_EQ(StringRef(result.err).count("lq: warning:"), 1u) << result.err;
  std::vector<std::string> written;
  for (const std::string &file : filesBelow(root))
    if (StringRef(file).ends_with(".json"))
      written.push_back(file);
  EXPECT_GE(written.size(), 2u);
  EXPECT_LT(written.size(), names.size());
  expectEveryEntryVerifies(root, names, 50000);
}

} // namespace
