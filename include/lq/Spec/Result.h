//===- Result.h - lq's one way to return a value or an error ----*- C++ -*-===//
//
// Every layer of lq above the numerics core returns Result<T> (a value or an
// error message) or Result<void> (success or an error); nothing throws or
// aborts on bad input. An Error converts into any Result, so an error is
// passed on in one line:
//
//   Result<int> parse(...);
//   Result<Plan> plan(...) {
//     Result<int> n = parse(...);
//     if (!n)
//       return n.takeError();
//     LQ_TRY(check(*n));            // Result<void> check(int)
//     return Plan{*n};
//   }
//
// MLIR diagnostics (compiler passes) and numerics::Status (the numerics
// core) stay in their layers; code that calls them converts at the edge.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_SPEC_RESULT_H
#define LQ_SPEC_RESULT_H

#include <optional>
#include <string>
#include <utility>

namespace lq {

/// An error message on its way into a Result.
struct Error {
  std::string message;
};

/// The value of a successful Result<void>.
struct Done {};

/// A value or an error message.
template <typename T> class Result {
public:
  Result(T value) : value(std::move(value)) {}
  Result(Error error) : message(std::move(error.message)) {}
  static Result failure(std::string message) {
    return Result(Error{std::move(message)});
  }
  bool ok() const { return value.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string &error() const { return message; }
  /// The error, to return from a function of another Result type.
  Error takeError() const { return Error{message}; }
  T &operator*() { return *value; }
  const T &operator*() const { return *value; }
  T *operator->() { return &*value; }
  const T *operator->() const { return &*value; }

private:
  std::optional<T> value;
  std::string message;
};

/// Success or an error message.
template <> class Result<void> {
public:
  Result() = default;
  Result(Done) {}
  Result(Error error) : failed(true), message(std::move(error.message)) {}
  static Result failure(std::string message) {
    return Result(Error{std::move(message)});
  }
  bool ok() const { return !failed; }
  explicit operator bool() const { return ok(); }
  const std::string &error() const { return message; }
  Error takeError() const { return Error{message}; }

private:
  bool failed = false;
  std::string message;
};

using Status = Result<void>;

} // namespace lq

/// Returns the error of `expr` (a Result) from the enclosing function.
#define LQ_TRY(expr)                                                           \
  do {                                                                         \
    if (auto lqTryResult_ = (expr); !lqTryResult_)                             \
      return lqTryResult_.takeError();                                         \
  } while (false)

#endif // LQ_SPEC_RESULT_H
