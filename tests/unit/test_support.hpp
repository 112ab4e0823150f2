// Plumbing shared by the unit tests: a scratch directory per test, running a command or /usr/bin/python3 and
// capturing its output, and the location of the shared reference material.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <string>

namespace amosprep::test {

/// A fresh directory under the system temp dir, named after the process id, the running gtest test and a
/// counter (so several in one test do not collide); created empty on construction, removed with its content
/// on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test_name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no_test";
    for (char& c : test_name)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
    path_ = std::filesystem::temp_directory_path() / ("amosprep_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                                      test_name + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// The path of `name` inside the directory.
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// Runs `cmd` through /bin/sh (popen), appends its standard output to *output and returns its exit status
/// (-1 when it could not be started or did not exit normally). Add " 2>&1" to `cmd` to capture stderr too.
inline int run_command(const std::string& cmd, std::string* output) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Runs `/usr/bin/python3 'script' args 2>&1` with run_command; 77 when /usr/bin/python3 is missing.
inline int run_python(const std::string& script, const std::string& args, std::string* output) {
  if (::access("/usr/bin/python3", X_OK) != 0) return 77;
  return run_command("/usr/bin/python3 '" + script + "' " + args + " 2>&1", output);
}

/// Runs tests/python/check_formats.py with run_python; 77 = python or numpy missing.
inline int run_format_checker(const std::string& args, std::string* output) {
  return run_python(std::string(AMOSPREP_SOURCE_DIR) + "/tests/python/check_formats.py", args, output);
}

/// The shared reference material (docs, fixtures) next to the source tree; may be absent.
inline std::string shared_dir() { return std::string(AMOSPREP_SOURCE_DIR) + "/../shared"; }

}  // namespace amosprep::test
