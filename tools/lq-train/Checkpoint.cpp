//===- Checkpoint.cpp - lq-train's state after an epoch -------------------===//

#include "Checkpoint.h"

#include "lq/Spec/Spec.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

using namespace lq;
using namespace lq::train;
using llvm::StringRef;

namespace {

constexpr char kMagic[8] = {'L', 'Q', 'T', 'R', 'C', 'K', 'P', 'T'};
/// Bumped whenever the layout of the file or of a section changes.
constexpr uint32_t kFormatVersion = 1;

/// Little-endian encoding, whatever the host.
class Writer {
public:
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void i64(int64_t v) { u64(uint64_t(v)); }
  void f32(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    u32(bits);
  }
  void f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    u64(bits);
  }
  void str(StringRef s) {
    u32(uint32_t(s.size()));
    bytes.append(s.data(), s.size());
  }
  void floats(const std::vector<float> &v) {
    u64(v.size());
    for (float f : v)
      f32(f);
  }
  void section(const char tag[4], const Writer &body) {
    bytes.append(tag, 4);
    u64(body.bytes.size());
    bytes += body.bytes;
  }
  std::string bytes;

private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      bytes.push_back(char((v >> (8 * i)) & 0xff));
  }
};

/// Reads what Writer wrote; reading past the end fails once and for all,
/// so a parse checks ok() at its end rather than after every field.
class Reader {
public:
  explicit Reader(StringRef data) : data(data) {}
  uint32_t u32() { return uint32_t(get(4)); }
  uint64_t u64() { return get(8); }
  int64_t i64() { return int64_t(u64()); }
  float f32() {
    uint32_t bits = u32();
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
  double f64() {
    uint64_t bits = u64();
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  StringRef bytes(uint64_t n) {
    if (failed || n > data.size() - pos) {
      failed = true;
      return {};
    }
    StringRef s = data.substr(pos, n);
    pos += n;
    return s;
  }
  std::string str() { return bytes(u32()).str(); }
  std::vector<float> floats() {
    uint64_t n = u64();
    if (failed || n > (data.size() - pos) / 4) {
      failed = true;
      return {};
    }
    std::vector<float> v(n);
    for (float &f : v)
      f = f32();
    return v;
  }
  bool atEnd() const { return pos == data.size(); }
  /// What is left to read.
  StringRef rest() const { return failed ? StringRef() : data.drop_front(pos); }
  /// Everything read was there and nothing is left over.
  bool ok() const { return !failed && atEnd(); }
  bool failedRead() const { return failed; }

private:
  uint64_t get(int n) {
    StringRef s = bytes(uint64_t(n));
    uint64_t v = 0;
    for (int i = 0; i < int(s.size()); ++i)
      v |= uint64_t(uint8_t(s[i])) << (8 * i);
    return v;
  }
  StringRef data;
  size_t pos = 0;
  bool failed = false;
};

std::string encodePayload(const Checkpoint &c) {
  Writer opts, data, results, times, net, gemm, payload;
  opts.u32(uint32_t(c.options.size()));
  for (const auto &[name, value] : c.options)
    opts.str(name), opts.str(value);
  data.i64(c.data.trainCount), data.i64(c.data.testCount);
  data.i64(c.data.rows), data.i64(c.data.cols), data.u64(c.data.digest);
  results.i64(c.consecutiveSkips);
  results.u32(uint32_t(c.results.size()));
  for (const ModeRecord &mode : c.results) {
    results.str(mode.name);
    results.u64(mode.paramsDigest);
    results.u32(uint32_t(mode.epochs.size()));
    for (const EpochResult &e : mode.epochs) {
      results.f64(e.loss), results.f64(e.trainAcc), results.f64(e.testAcc);
      results.i64(e.skipped);
      times.f64(e.seconds);
    }
  }
  net.u32(uint32_t(c.layers.size()));
  for (const LayerState &l : c.layers)
    net.floats(l.w), net.floats(l.b), net.floats(l.vw), net.floats(l.vb);
  gemm.u32(uint32_t(c.estimates.size()));
  for (const auto &[layer, estimate] : c.estimates)
    gemm.u32(uint32_t(layer)), gemm.f32(estimate);
  payload.section("OPTS", opts);
  payload.section("DATA", data);
  payload.section("RSLT", results);
  payload.section("TIME", times);
  payload.section("NET ", net);
  payload.section("GEMM", gemm);
  return payload.bytes;
}

/// The sections of a payload in file order; false when they do not tile it.
bool splitSections(StringRef payload,
                   std::vector<std::pair<std::string, StringRef>> &sections) {
  Reader r(payload);
  while (!r.atEnd() && !r.failedRead()) {
    std::string tag = r.bytes(4).str();
    StringRef body = r.bytes(r.u64());
    sections.emplace_back(tag, body);
  }
  return !r.failedRead();
}

void decodeResults(Reader &r, Reader &times, Checkpoint &c) {
  c.consecutiveSkips = r.i64();
  uint32_t modes = r.u32();
  for (uint32_t m = 0; m < modes && !r.failedRead(); ++m) {
    ModeRecord mode;
    mode.name = r.str();
    mode.paramsDigest = r.u64();
    uint32_t epochs = r.u32();
    for (uint32_t e = 0; e < epochs && !r.failedRead(); ++e) {
      EpochResult er;
      er.loss = r.f64(), er.trainAcc = r.f64(), er.testAcc = r.f64();
      er.skipped = r.i64();
      er.seconds = times.f64();
      mode.epochs.push_back(er);
    }
    c.results.push_back(std::move(mode));
  }
}

void decodeNet(Reader &net, Reader &gemm, Checkpoint &c) {
  uint32_t layers = net.u32();
  for (uint32_t l = 0; l < layers && !net.failedRead(); ++l) {
    LayerState s;
    s.w = net.floats(), s.b = net.floats();
    s.vw = net.floats(), s.vb = net.floats();
    c.layers.push_back(std::move(s));
  }
  uint32_t estimates = gemm.u32();
  for (uint32_t i = 0; i < estimates && !gemm.failedRead(); ++i) {
    int layer = int(gemm.u32());
    c.estimates[layer] = gemm.f32();
  }
}

Result<Checkpoint> decodePayload(StringRef payload) {
  using R = Result<Checkpoint>;
  std::vector<std::pair<std::string, StringRef>> sections;
  const char *expected[] = {"OPTS", "DATA", "RSLT", "TIME", "NET ", "GEMM"};
  if (!splitSections(payload, sections) || sections.size() != 6)
    return R::failure("malformed: its sections do not match format version " +
                      std::to_string(kFormatVersion));
  for (size_t i = 0; i < sections.size(); ++i)
    if (sections[i].first != expected[i])
      return R::failure("malformed: section '" + sections[i].first +
                        "' where '" + expected[i] + "' belongs");
  Reader opts(sections[0].second), data(sections[1].second),
      results(sections[2].second), times(sections[3].second),
      net(sections[4].second), gemm(sections[5].second);
  Checkpoint c;
  uint32_t options = opts.u32();
  for (uint32_t i = 0; i < options && !opts.failedRead(); ++i) {
    std::string name = opts.str();
    c.options.emplace_back(name, opts.str());
  }
  c.data.trainCount = data.i64(), c.data.testCount = data.i64();
  c.data.rows = data.i64(), c.data.cols = data.i64();
  c.data.digest = data.u64();
  decodeResults(results, times, c);
  decodeNet(net, gemm, c);
  Reader *all[] = {&opts, &data, &results, &times, &net, &gemm};
  for (size_t i = 0; i < 6; ++i)
    if (!all[i]->ok())
      return R::failure(std::string("malformed section '") + expected[i] + "'");
  return c;
}

/// Syncs the directory so that a rename in it survives a power loss.
std::error_code syncDirectory(const std::string &dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return std::error_code(errno, std::generic_category());
  std::error_code error;
  if (::fsync(fd) != 0)
    error = std::error_code(errno, std::generic_category());
  ::close(fd);
  return error;
}

/// Writes, syncs and closes `path`.
std::error_code writeSynced(const std::string &path, StringRef contents) {
  int fd = -1;
  if (std::error_code error = llvm::sys::fs::openFileForWrite(
          path, fd, llvm::sys::fs::CD_CreateAlways))
    return error;
  std::error_code error;
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/false);
    out << contents;
    out.flush();
    error = out.error();
    // raw_fd_ostream aborts on destruction with an error pending.
    out.clear_error();
  }
  if (!error && ::fsync(fd) != 0)
    error = std::error_code(errno, std::generic_category());
  if (std::error_code closed = llvm::sys::fs::closeFile(fd); !error)
    error = closed;
  return error;
}

} // namespace

std::string DatasetIdentity::describe() const {
  char digestHex[17];
  std::snprintf(digestHex, sizeof digestHex, "%016llx",
                (unsigned long long)digest);
  return std::to_string(trainCount) + " training and " +
         std::to_string(testCount) + " test images of " + std::to_string(rows) +
         "x" + std::to_string(cols) + ", digest " + digestHex;
}

std::string lq::train::checkpointPath(const std::string &dir) {
  llvm::SmallString<256> path(dir);
  llvm::sys::path::append(path, "lq-train.ckpt");
  return std::string(path);
}

Status lq::train::writeCheckpoint(const std::string &dir,
                                  const Checkpoint &checkpoint) {
  std::string path = checkpointPath(dir);
  if (std::error_code error = llvm::sys::fs::create_directories(dir))
    return Status::failure(
        dir + ": cannot create the checkpoint directory: " + error.message());
  std::string payload = encodePayload(checkpoint);
  Writer file;
  file.bytes.append(kMagic, 8);
  file.u32(kFormatVersion);
  file.str(lqVersion());
  file.u64(payload.size());
  file.u64(llvm::xxh3_64bits(payload));
  file.bytes += payload;
  // One fixed temporary name: a crash mid-write leaves one stale file that
  // the next checkpoint overwrites, never a growing litter.
  std::string temp = path + ".tmp";
  std::error_code error = writeSynced(temp, file.bytes);
  if (!error)
    error = llvm::sys::fs::rename(temp, path);
  if (!error)
    error = syncDirectory(dir);
  if (error) {
    llvm::sys::fs::remove(temp);
    return Status::failure(path +
                           ": cannot write the checkpoint: " + error.message());
  }
  return Done{};
}

Result<Checkpoint> lq::train::readCheckpoint(const std::string &dir) {
  using R = Result<Checkpoint>;
  std::string path = checkpointPath(dir);
  // Read, not mapped: a file truncated under us is a short read.
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false,
                                            /*IsVolatile=*/true);
  if (!buffer)
    return R::failure(path + ": " + buffer.getError().message());
  Reader file((*buffer)->getBuffer());
  if (file.bytes(8) != StringRef(kMagic, 8))
    return R::failure(path + ": not an lq-train checkpoint");
  uint32_t format = file.u32();
  if (file.failedRead())
    return R::failure(path + ": truncated: its header is incomplete");
  if (format != kFormatVersion)
    return R::failure(path + ": checkpoint format version " +
                      std::to_string(format) + ", this lq-train reads " +
                      std::to_string(kFormatVersion));
  std::string version = file.str();
  if (!file.failedRead() && version != lqVersion())
    return R::failure(path + ": written by lq " + version + ", this is lq " +
                      lqVersion());
  uint64_t size = file.u64(), checksum = file.u64();
  if (file.failedRead())
    return R::failure(path + ": truncated: its header is incomplete");
  StringRef payload = file.rest();
  if (payload.size() != size)
    return R::failure(
        path + ": truncated or corrupt: " + std::to_string(payload.size()) +
        " bytes of payload where the header promises " + std::to_string(size));
  if (llvm::xxh3_64bits(payload) != checksum)
    return R::failure(path + ": corrupt: the payload does not match its "
                             "checksum");
  Result<Checkpoint> checkpoint = decodePayload(payload);
  if (!checkpoint)
    return R::failure(path + ": " + checkpoint.error());
  return checkpoint;
}
