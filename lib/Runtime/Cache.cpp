//===- Cache.cpp - Compile cache in memory and on disk --------------------===//
//
// Disk layout (docs/runtime.md): <root>/v1/<first 2 key digits>/<key>.bin
// holds the blob, <key>.json its manifest (size and SHA-256 of the blob, the
// metadata and its SHA-256). Both are written to a unique temporary file
// beside their final name and renamed into place, the manifest last, so a
// reader sees either no entry, a complete one, or one that fails
// verification; never a partial file under the final name.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Cache.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

namespace lq::runtime {
namespace {

constexpr StringLiteral kLayoutVersion = "v1";
constexpr StringLiteral kManifestFormat = "lq-compile-cache-v1";
constexpr size_t kKeyDigits = 64;

//===----------------------------------------------------------------------===//
// Keys
//===----------------------------------------------------------------------===//

void hashLengthPrefixed(SHA256 &hash, StringRef bytes) {
  uint8_t length[8];
  support::endian::write64le(length, bytes.size());
  hash.update(length);
  hash.update(bytes);
}

bool isCacheKey(StringRef key) {
  return key.size() == kKeyDigits && all_of(key, [](char c) {
           return isDigit(c) || (c >= 'a' && c <= 'f');
         });
}

std::string sha256Hex(StringRef bytes) {
  return toHex(SHA256::hash(arrayRefFromStringRef(bytes)), /*LowerCase=*/true);
}

//===----------------------------------------------------------------------===//
// Environment
//===----------------------------------------------------------------------===//

std::optional<std::string> nonEmptyEnv(StringRef name) {
  std::optional<std::string> value = sys::Process::GetEnv(name);
  if (value && value->empty())
    return std::nullopt;
  return value;
}

bool isSetToDisable(const std::optional<std::string> &value) {
  return value && !value->empty() && *value != "0";
}

//===----------------------------------------------------------------------===//
// Disk entries
//===----------------------------------------------------------------------===//

// The entry's path without extension: <root>/v1/<2 digits>/<key>.
std::string entryStem(StringRef root, StringRef key) {
  SmallString<256> path(root);
  sys::path::append(path, kLayoutVersion, key.take_front(2), key);
  return std::string(path);
}

llvm::Error prepareDirectory(StringRef root) {
  SmallString<256> layout(root);
  sys::path::append(layout, kLayoutVersion);
  if (std::error_code error = sys::fs::create_directories(layout))
    return createFileError(layout, error);
  // create_directories accepts an existing path of any kind, and one this
  // process cannot write to (read-only mount, another user's directory).
  if (!sys::fs::is_directory(layout))
    return createFileError(layout,
                           std::make_error_code(std::errc::not_a_directory));
  if (std::error_code error =
          sys::fs::access(layout, sys::fs::AccessMode::Write))
    return createFileError(layout, error);
  return llvm::Error::success();
}

ErrorOr<std::unique_ptr<MemoryBuffer>> readWhole(const Twine &path) {
  // Volatile: read, not mmap, so that a file truncated under us is a short
  // read (caught by the size check), not a SIGBUS.
  return MemoryBuffer::getFile(path, /*IsText=*/false,
                               /*RequiresNullTerminator=*/false,
                               /*IsVolatile=*/true);
}

llvm::Error writeAtomically(StringRef path, StringRef contents) {
  SmallString<256> tempPath;
  int fd = -1;
  if (std::error_code error =
          sys::fs::createUniqueFile(path + ".%%%%%%%%.tmp", fd, tempPath))
    return createFileError(path + ".*.tmp", error);
  raw_fd_ostream out(fd, /*shouldClose=*/true);
  out << contents;
  out.close();
  std::error_code error = out.error();
  // raw_fd_ostream aborts the process on destruction with an error pending.
  out.clear_error();
  if (!error)
    error = sys::fs::rename(tempPath, path);
  if (error) {
    sys::fs::remove(tempPath);
    return createFileError(path, error);
  }
  return llvm::Error::success();
}

std::string manifestText(StringRef key, StringRef blob, StringRef metadata) {
  json::Object manifest{
      {"format", kManifestFormat},
      {"key", key.str()},
      {"payload_size", int64_t(blob.size())},
      {"payload_sha256", sha256Hex(blob)},
      {"metadata", metadata.str()},
      {"metadata_sha256", sha256Hex(metadata)},
  };
  return formatv("{0:2}\n", json::Value(std::move(manifest))).str();
}

llvm::Error storeEntry(StringRef root, StringRef key, StringRef blob,
                 StringRef metadata) {
  std::string stem = entryStem(root, key);
  StringRef shard = sys::path::parent_path(stem);
  if (std::error_code error = sys::fs::create_directories(shard))
    return createFileError(shard, error);
  if (llvm::Error error = writeAtomically(stem + ".bin", blob))
    return error;
  // Last: its presence completes the entry, and its hashes let a reader
  // reject a payload that another writer replaced or that got damaged.
  return writeAtomically(stem + ".json", manifestText(key, blob, metadata));
}

struct Manifest {
  uint64_t payloadSize = 0;
  std::string payloadSha256;
  std::string metadata;
};

Expected<Manifest> parseManifest(StringRef text, StringRef key) {
  Expected<json::Value> value = json::parse(text);
  if (!value)
    return createStringError("manifest is not JSON: " +
                             toString(value.takeError()));
  const json::Object *object = value->getAsObject();
  if (!object || object->getString("format") != kManifestFormat)
    return createStringError("manifest has an unknown format");
  if (object->getString("key") != key)
    return createStringError("manifest belongs to another key");
  std::optional<int64_t> size = object->getInteger("payload_size");
  std::optional<StringRef> payloadSha256 = object->getString("payload_sha256");
  std::optional<StringRef> metadata = object->getString("metadata");
  std::optional<StringRef> metadataSha256 =
      object->getString("metadata_sha256");
  if (!size || *size < 0 || !payloadSha256 || !metadata || !metadataSha256)
    return createStringError("manifest lacks a field");
  if (sha256Hex(*metadata) != *metadataSha256)
    return createStringError("metadata does not match its SHA-256");
  return Manifest{uint64_t(*size), payloadSha256->str(), metadata->str()};
}

struct DiskLookup {
  enum Status { Missing, Hit, Invalid } status = Missing;
  CompileResult value;
  // Why an Invalid entry was rejected.
  std::string problem;
};

DiskLookup invalidEntry(std::string problem) {
  return {DiskLookup::Invalid, {}, std::move(problem)};
}

DiskLookup loadEntry(StringRef root, StringRef key) {
  std::string stem = entryStem(root, key);
  std::string payloadPath = stem + ".bin";
  ErrorOr<std::unique_ptr<MemoryBuffer>> manifestFile =
      readWhole(stem + ".json");
  if (!manifestFile) {
    bool absent =
        manifestFile.getError() == std::errc::no_such_file_or_directory;
    if (absent && !sys::fs::exists(payloadPath))
      return {};
    return invalidEntry(absent ? "manifest missing"
                               : "manifest unreadable: " +
                                     manifestFile.getError().message());
  }
  Expected<Manifest> manifest =
      parseManifest((*manifestFile)->getBuffer(), key);
  if (!manifest)
    return invalidEntry(toString(manifest.takeError()));
  ErrorOr<std::unique_ptr<MemoryBuffer>> payload = readWhole(payloadPath);
  if (!payload)
    return invalidEntry("payload unreadable: " + payload.getError().message());
  StringRef blob = (*payload)->getBuffer();
  if (blob.size() != manifest->payloadSize)
    return invalidEntry(formatv("payload has {0} bytes, the manifest says {1}",
                                blob.size(), manifest->payloadSize));
  if (sha256Hex(blob) != manifest->payloadSha256)
    return invalidEntry("payload does not match its SHA-256");
  return {DiskLookup::Hit, {blob.str(), std::move(manifest->metadata)}, {}};
}

} // namespace

//===----------------------------------------------------------------------===//
// Public helpers
//===----------------------------------------------------------------------===//

std::string makeCacheKey(ArrayRef<std::pair<StringRef, StringRef>> fields) {
  SHA256 hash;
  // A tag first, so that no other hashed encoding of the project can produce
  // a key.
  hashLengthPrefixed(hash, "lq-compile-cache-key-v1");
  for (const auto &[name, value] : fields) {
    hashLengthPrefixed(hash, name);
    hashLengthPrefixed(hash, value);
  }
  return toHex(hash.final(), /*LowerCase=*/true);
}

std::optional<std::string> defaultCacheDirectory() {
  SmallString<256> path;
  if (std::optional<std::string> explicitDir = nonEmptyEnv("LQ_CACHE_DIR")) {
    path = *explicitDir;
    // Anchored now, so that a later chdir does not move the cache.
    sys::fs::make_absolute(path);
    return std::string(path);
  }
  // The XDG base directory specification says to ignore relative values.
  std::optional<std::string> xdg = nonEmptyEnv("XDG_CACHE_HOME");
  if (xdg && sys::path::is_absolute(*xdg)) {
    path = *xdg;
    sys::path::append(path, "lq");
    return std::string(path);
  }
  if (!sys::path::home_directory(path) || !sys::path::is_absolute(path))
    return std::nullopt;
  sys::path::append(path, ".cache", "lq");
  return std::string(path);
}

CacheConfig CacheConfig::fromEnvironment() {
  CacheConfig config;
  if (!isSetToDisable(sys::Process::GetEnv("LQ_CACHE_DISABLE")))
    config.directory = defaultCacheDirectory();
  return config;
}

//===----------------------------------------------------------------------===//
// CompileCache
//===----------------------------------------------------------------------===//

CompileCache &CompileCache::global() {
  // Never destroyed: static destructors of other libraries may still look up
  // kernels while the process exits.
  static CompileCache *cache = new CompileCache(CacheConfig::fromEnvironment());
  return *cache;
}

CompileCache::CompileCache(CacheConfig cacheConfig)
    : config(std::move(cacheConfig)),
      diskEnabled(config.directory.has_value()) {
  if (!diskEnabled)
    return;
  if (llvm::Error error = prepareDirectory(*config.directory))
    disableDisk(toString(std::move(error)));
}

Result<CacheEntry> CompileCache::getOrCompile(StringRef key,
                                              CompileFn compile) {
  if (!isCacheKey(key))
    return lq::Error{("compile cache: '" + key +
                      "' is not a key made by makeCacheKey")
                         .str()};
  std::unique_lock<std::mutex> lock(mutex);
  for (auto slot = slots.find(key); slot != slots.end();
       slot = slots.find(key)) {
    if (slot->second.blob) {
      ++counters.memoryHits;
      return CacheEntry{slot->second.blob, slot->second.metadata,
                        CacheSource::Memory};
    }
    slotFinished.wait(lock);
  }
  // An empty slot marks the key in flight: later callers wait for this one.
  slots.try_emplace(key);
  lock.unlock();

  CacheSource source = CacheSource::Compiled;
  Result<Slot> filled = loadOrCompile(key, compile, source);

  lock.lock();
  if (!filled) {
    slots.erase(key);
    slotFinished.notify_all();
    return filled.takeError();
  }
  Slot &slot = slots[key];
  slot = std::move(*filled);
  slotFinished.notify_all();
  return CacheEntry{slot.blob, slot.metadata, source};
}

Result<CompileCache::Slot> CompileCache::loadOrCompile(StringRef key,
                                                       CompileFn compile,
                                                       CacheSource &source) {
  if (diskEnabled) {
    DiskLookup lookup = loadEntry(*config.directory, key);
    if (lookup.status == DiskLookup::Hit) {
      ++counters.diskHits;
      source = CacheSource::Disk;
      return Slot{
          std::make_shared<const std::string>(std::move(lookup.value.blob)),
          std::move(lookup.value.metadata)};
    }
    if (lookup.status == DiskLookup::Invalid) {
      ++counters.corruptEntries;
      warn(formatv("compile cache entry '{0}' is invalid ({1}); recompiling it",
                   entryStem(*config.directory, key), lookup.problem)
               .str());
    }
  }
  source = CacheSource::Compiled;
  return compileAndStore(key, compile);
}

Result<CompileCache::Slot> CompileCache::compileAndStore(StringRef key,
                                                         CompileFn compile) {
  ++counters.misses;
  Result<CompileResult> compiled = compile();
  if (!compiled)
    return compiled.takeError();
  if (!json::isUTF8(compiled->metadata))
    return lq::Error{("compile cache: the metadata for key " + key +
                      " is not UTF-8 text")
                         .str()};
  auto blob = std::make_shared<const std::string>(std::move(compiled->blob));
  if (diskEnabled) {
    if (llvm::Error error =
            storeEntry(*config.directory, key, *blob, compiled->metadata))
      disableDisk(toString(std::move(error)));
    else
      ++counters.diskWrites;
  }
  return Slot{std::move(blob), std::move(compiled->metadata)};
}

void CompileCache::disableDisk(StringRef reason) {
  // Only the first failure warns; the disk cache stays off afterwards.
  if (diskEnabled.exchange(false))
    warn(formatv("compile cache directory '{0}' is unusable ({1}); caching "
                 "compiled code in memory only",
                 *config.directory, reason)
             .str());
}

void CompileCache::warn(StringRef message) {
  std::lock_guard<std::mutex> lock(warningMutex);
  if (config.warningHandler)
    config.warningHandler(message);
  else
    errs() << "lq: warning: " << message << '\n';
}

CacheStats CompileCache::stats() const {
  CacheStats stats;
  stats.memoryHits = counters.memoryHits;
  stats.diskHits = counters.diskHits;
  stats.misses = counters.misses;
  stats.corruptEntries = counters.corruptEntries;
  stats.diskWrites = counters.diskWrites;
  return stats;
}

void CompileCache::clearMemory() {
  std::lock_guard<std::mutex> lock(mutex);
  // In-flight slots stay: their owners fill them when they finish.
  for (auto slot = slots.begin(); slot != slots.end();) {
    auto current = slot++;
    if (current->second.blob)
      slots.erase(current);
  }
}

std::optional<std::string> CompileCache::diskDirectory() const {
  if (!diskEnabled)
    return std::nullopt;
  return config.directory;
}

} // namespace lq::runtime
