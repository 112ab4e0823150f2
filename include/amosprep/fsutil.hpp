#pragma once
// Checked file-system helpers: atomic writes (temporary name, fsync, rename), directory creation, copying.
#include <cstdint>
#include <string>
#include <string_view>

#include "amosprep/error.hpp"

namespace amosprep {

/// Size and CRC-32 (zlib polynomial) of a file's bytes, as recorded in the resume manifest.
struct FileDigest {
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

/// CRC-32 of a byte string (libdeflate; the same value as zlib's crc32).
uint32_t crc32_of(std::string_view bytes);

/// Size and CRC-32 of a file, read in small pieces (no copy of the whole file in memory). Throws IoError.
FileDigest digest_of_file(const std::string& path);

/// Writes `bytes` to `path` atomically: `<path>.tmp.<pid>` is written, fsync'ed and renamed over `path`.
/// Throws IoError naming the file and the OS reason (e.g. "No space left on device"); never leaves a partial
/// file under `path`.
FileDigest write_file_atomic(const std::string& path, std::string_view bytes);

/// A file being written under a temporary name; commit() flushes, fsyncs and renames it to its final path.
/// If destroyed without commit(), the temporary file is removed.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  /// Appends the whole of file `from`, copied inside the kernel (copy_file_range) where the file systems allow, else
  /// through a buffer. digest() is unavailable afterwards. Throws IoError naming `from` when it cannot be read.
  void append_file(const std::string& from);
  uint64_t bytes_written() const { return written_; }
  /// Size and CRC-32 of everything passed to write() so far (the file is written strictly sequentially).
  FileDigest digest() const {
    if (appended_) throw InternalError("AtomicFile::digest after append_file: " + path_);
    return {written_, crc_};
  }
  /// `keep_cached` leaves the file's pages in the page cache for a reader that follows (by default they are
  /// dropped once on disk: outputs are not read back).
  void commit(bool keep_cached = false);
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  uint32_t crc_ = 0;
  bool appended_ = false;
};

/// Reads a whole file; throws IoError naming the file.
std::string read_file(const std::string& path);
/// mkdir -p; throws IoError.
void make_dirs(const std::string& path);
/// Byte copy via a temporary name (atomic), inside the kernel where possible; IoError names `from` when it cannot
/// be read and `to` when it cannot be written. `keep_cached`: as AtomicFile::commit.
void copy_file_atomic(const std::string& from, const std::string& to, bool keep_cached = false);
bool path_exists(const std::string& path);

}  // namespace amosprep
