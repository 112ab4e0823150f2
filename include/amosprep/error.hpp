#pragma once
// Error types with fields (case, file, reason) and the documented process exit codes.
#include <stdexcept>
#include <string>

namespace amosprep {

/// Process exit codes (documented in docs/exit-codes.md; scripts depend on them).
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 2,        ///< bad command line
  kExitBadInput = 3,     ///< dataset / input file problem (integrity, shapes, labels, ...)
  kExitIo = 4,           ///< cannot read or write (ENOSPC, permissions, ...)
  kExitInternal = 5,     ///< a bug: should not happen, please report
  kExitInterrupted = 75  ///< stopped by a signal; rerun the same command to resume (EX_TEMPFAIL)
};

/// Base of all amos-prep errors. `what()` is a complete one-line message.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, std::string case_id, std::string file, std::string reason);
  ExitCode code() const { return code_; }
  const std::string& case_id() const { return case_id_; }
  const std::string& file() const { return file_; }
  const std::string& reason() const { return reason_; }

 private:
  ExitCode code_;
  std::string case_id_, file_, reason_;
};

/// Wrong command-line usage.
struct UsageError : Error {
  explicit UsageError(const std::string& reason) : Error(kExitUsage, "", "", reason) {}
};
/// Input data that cannot be processed (names the case and the file).
struct InputError : Error {
  InputError(const std::string& case_id, const std::string& file, const std::string& reason)
      : Error(kExitBadInput, case_id, file, reason) {}
};
/// Reading or writing failed at the OS / library level.
struct IoError : Error {
  IoError(const std::string& file, const std::string& reason, const std::string& case_id = "")
      : Error(kExitIo, case_id, file, reason) {}
};
/// Broken invariant inside amos-prep.
struct InternalError : Error {
  explicit InternalError(const std::string& reason) : Error(kExitInternal, "", "", reason) {}
};
/// A stop was requested (signal); the run is resumable.
struct Interrupted : Error {
  explicit Interrupted(const std::string& reason) : Error(kExitInterrupted, "", "", reason) {}
};

/// Throws InternalError with `what` and the source location when `cond` is false (kept in release builds).
#define AMOSPREP_VERIFY(cond, what)                                                            \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw ::amosprep::InternalError(std::string(what) + " (" __FILE__ ":" +                  \
                                      std::to_string(__LINE__) + ")");                         \
  } while (0)

}  // namespace amosprep
