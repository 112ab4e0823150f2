#pragma once
// Dataset integrity checks: everything that would make a run fail (or silently go wrong) hours later is found up
// front, and every problem of every case is reported at once. See docs/exit-codes.md for the message format.
#include <cstdint>
#include <string>
#include <vector>

namespace amosprep {

/// One finding. `severity` is "error" (the data cannot be processed correctly) or "warning" (processing works,
/// but the data is probably not what the user meant). `case_id` and `file` are empty for dataset-level findings.
struct Problem {
  std::string severity;
  std::string case_id, file, reason;
};

/// All findings of one check, in a deterministic order (dataset-level first, then cases in dataset.json order).
struct VerifyReport {
  std::vector<Problem> problems;
  int errors() const;
  int warnings() const;
  /// One line per problem, errors first, then warnings, then a summary line, e.g.
  /// "amos-prep: error: case amos_0001: /d/labelsTr/amos_0001.nii.gz: unexpected label values: 42" and
  /// "amos-prep: verify: 1 error, 0 warnings (3 training cases, 1 test case)". Every line ends in '\n'.
  std::string text() const;
  /// kExitBadInput (3) when there is at least one error, kExitOk (0) otherwise.
  int exit_code() const;

  int training_cases = 0;  ///< training cases listed (after removing duplicates)
  int test_cases = 0;      ///< test cases listed (after removing duplicates)
};

/// Checks an AMOS22 folder: `task1_dataset.json` (`task2_dataset.json` for task 217), `imagesTr/<id>.nii.gz`,
/// `labelsTr/<id>.nii.gz`, `imagesTs/<id>.nii.gz`. Never throws for data problems: collects them all.
/// Cases are checked in parallel (OpenMP).
VerifyReport verify_amos_dir(const std::string& amos_dir, int task_id = 216);

/// The same checks on an nnU-Net v1 raw task folder (`dataset.json`, `imagesTr/<id>_%04d.nii.gz` per modality,
/// `labelsTr/<id>.nii.gz`, `imagesTs/<id>_%04d.nii.gz`).
VerifyReport verify_raw_task(const std::string& task_dir);

/// Result of streaming a whole gzip file through zlib (exposed for tests).
struct GzipCheck {
  bool ok = false;
  std::string reason;              ///< why not ok ("" when ok)
  uint64_t uncompressed_bytes = 0; ///< total over all members (as far as decoding got)
  int members = 0;                 ///< complete members decoded
  bool trailing_garbage = false;   ///< non-gzip bytes after the last member (gzip ignores them, with a warning)
};

/// Inflates every member of a gzip file without keeping the data; each member's CRC32 and ISIZE are checked.
/// Never throws.
GzipCheck check_gzip_file(const std::string& path);

}  // namespace amosprep
