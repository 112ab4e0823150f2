#include "amosprep/error.hpp"

namespace amosprep {

static std::string compose(const std::string& case_id, const std::string& file, const std::string& reason) {
  std::string msg;
  if (!case_id.empty()) msg += "case " + case_id + ": ";
  if (!file.empty()) msg += file + ": ";
  return msg + reason;
}

Error::Error(ExitCode code, std::string case_id, std::string file, std::string reason)
    : std::runtime_error(compose(case_id, file, reason)),
      code_(code),
      case_id_(std::move(case_id)),
      file_(std::move(file)),
      reason_(std::move(reason)) {}

}  // namespace amosprep
