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

TEST(FsUtil, CopyFileAtomicCopiesEveryByteAndNamesAMissingSource) {
  fs::path dir = fs::temp_directory_path() / ("amosprep_fsutil3_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string big(3 * (size_t{1} << 20) + 12345, '\0');  // more than one buffer of the read/write fallback
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::string from = (dir / "from.bin").string(), to = (dir / "to.bin").string();
  write_file_atomic(from, big);
  write_file_atomic(to, "previous contents");
  copy_file_atomic(from, to);
  EXPECT_TRUE(read_file(to) == big);
  copy_file_atomic(from, (dir / "copy2.bin").string());
  EXPECT_EQ(fs::file_size(dir / "copy2.bin"), big.size());
  try {
    copy_file_atomic((dir / "missing.bin").string(), to);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(e.file(), (dir / "missing.bin").string());
  }
  EXPECT_TRUE(read_file(to) == big);  // a failed copy leaves the target as it was
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++entries; }
  EXPECT_EQ(entries, 3);  // no temporary left behind
  AtomicFile f((dir / "c.bin").string());
  f.append_file(from);
  EXPECT_EQ(f.bytes_written(), big.size());
  EXPECT_THROW((void)f.digest(), InternalError);
  fs::remove_all(dir);
}
