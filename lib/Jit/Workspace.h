//===- Workspace.h - scratch memory reused across launches ------*- C++ -*-===//
//
// A host launch needs scratch memory: the operands' codes, the GEMM's
// panels, partial statistics. Allocating it on every launch (and touching
// fresh pages) costs more than a small GEMM, so launches borrow a
// workspace from a pool and give it back: it only grows, and it is never
// zero-filled (every byte a launch reads, the launch wrote first).
// Concurrent launches borrow different workspaces.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_JIT_WORKSPACE_H
#define LQ_JIT_WORKSPACE_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace lq::runtime {

/// Sections of one workspace, each aligned to a cache line.
class WorkspaceLayout {
public:
  static constexpr size_t kAlign = 64;
  /// The offset of a new section of `bytes`.
  size_t add(size_t bytes) {
    size_t offset = total;
    total += (bytes + kAlign - 1) / kAlign * kAlign;
    return offset;
  }
  size_t size() const { return total; }

private:
  size_t total = 0;
};

class Workspace {
public:
  /// At least `bytes` of memory aligned to WorkspaceLayout::kAlign, with
  /// unspecified contents; null when it cannot be allocated.
  uint8_t *reserve(size_t bytes);

private:
  std::unique_ptr<uint8_t[]> memory;
  uint8_t *aligned = nullptr;
  size_t capacity = 0;
};

class WorkspacePool {
public:
  /// A workspace that only its holder uses, back in the pool when the
  /// lease ends.
  class Lease {
  public:
    Lease(WorkspacePool &pool, std::unique_ptr<Workspace> workspace)
        : pool(pool), workspace(std::move(workspace)) {}
    ~Lease() { pool.giveBack(std::move(workspace)); }
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;
    Workspace *operator->() const { return workspace.get(); }

  private:
    WorkspacePool &pool;
    std::unique_ptr<Workspace> workspace;
  };

  Lease take();

private:
  void giveBack(std::unique_ptr<Workspace> workspace);

  std::mutex mutex;
  /// Workspaces not lent now: as many as launches ever ran at once.
  std::vector<std::unique_ptr<Workspace>> idle;
};

} // namespace lq::runtime

#endif // LQ_JIT_WORKSPACE_H
