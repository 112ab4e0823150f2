#include <gtest/gtest.h>

#include <filesystem>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

TEST(FsUtil, AtomicWriteLeavesNoTemporaryAndReadsBack) {
  fs::path dir = fs::temp_directory_path() / ("amosprep_fsutil_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "a.bin").string();
  write_file_atomic(path, std::string("abc\0def", 7));
  EXPECT_EQ(read_file(path), std::string("abc\0def", 7));
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1);
  fs::remove_all(dir);
}

TEST(FsUtil, UncommittedAtomicFileIsRemovedAndTargetUntouched) {
  fs::path dir = fs::temp_directory_path() / ("amosprep_fsutil2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "b.bin").string();
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write("new-but-abandoned", 17);
  }
  EXPECT_EQ(read_file(path), "old");
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1);
  fs::remove_all(dir);
}

TEST(FsUtil, UnwritableDirectoryGivesIoErrorNamingTheFile) {
  try {
    write_file_atomic("/nonexistent-dir-amosprep/x.bin", "x");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(e.code(), kExitIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir-amosprep/x.bin"), std::string::npos);
  }
}
