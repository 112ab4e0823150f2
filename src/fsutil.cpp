#include "amosprep/fsutil.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include <libdeflate.h>

#include "amosprep/error.hpp"

namespace amosprep {

static std::string os_reason(int err) { return std::strerror(err); }

// Test hook: AMOSPREP_FAULT_ENOSPC_AFTER_BYTES=N makes writes fail with ENOSPC once this process has written N
// bytes through AtomicFile (the fault suite uses it where no small file system can be mounted).
static int64_t enospc_fault_limit() {
  static const int64_t limit = [] {
    const char* v = std::getenv("AMOSPREP_FAULT_ENOSPC_AFTER_BYTES");
    return v ? std::atoll(v) : int64_t{-1};
  }();
  return limit;
}

static ssize_t write_with_fault_injection(int fd, const char* p, size_t n) {
  const int64_t limit = enospc_fault_limit();
  static int64_t written = 0;
  if (limit >= 0 && written + static_cast<int64_t>(n) > limit) {
    errno = ENOSPC;
    return -1;
  }
  const ssize_t w = ::write(fd, p, n);
  if (w > 0) written += w;
  return w;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(path_, "cannot create: " + os_reason(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

uint32_t crc32_of(std::string_view bytes) { return libdeflate_crc32(0, bytes.data(), bytes.size()); }

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  crc_ = libdeflate_crc32(crc_, p, n);
  while (n > 0) {
    ssize_t w = write_with_fault_injection(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw IoError(path_, "write failed: " + os_reason(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
}

void AtomicFile::append_file(const std::string& from) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw IoError(from, "cannot open: " + os_reason(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{in};
  appended_ = true;
  // In the kernel first (no copy through user space, no buffer to fault in); the fault-injection hook needs write().
  bool kernel_copy = enospc_fault_limit() < 0;
  while (kernel_copy) {
    const ssize_t c = ::copy_file_range(in, nullptr, fd_, nullptr, size_t{1} << 30, 0);
    if (c > 0) {
      written_ += static_cast<uint64_t>(c);
      continue;
    }
    if (c == 0) return;
    if (errno == EINTR) continue;
    if (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL) {
      if (::lseek(in, 0, SEEK_CUR) == 0) {  // nothing copied yet: fall back to read/write
        kernel_copy = false;
        break;
      }
    }
    if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG) throw IoError(path_, "write failed: " + os_reason(errno));
    throw IoError(from, "copy failed: " + os_reason(errno));
  }
  std::vector<char> buf(size_t{1} << 20);
  for (;;) {
    const ssize_t r = ::read(in, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw IoError(from, "read failed: " + os_reason(errno));
    }
    if (r == 0) return;
    write(buf.data(), static_cast<size_t>(r));
  }
}

void AtomicFile::commit(bool keep_cached) {
  if (::fsync(fd_) != 0) throw IoError(path_, "fsync failed: " + os_reason(errno));
  // The bytes are on disk: let the kernel drop them from the page cache now (a no-op for correctness). Outputs are
  // written once and not read back, and their cached pages would otherwise crowd out the inputs and other jobs'
  // memory; on VMs with lazily backed memory, freed pages are also much cheaper to reuse than fresh ones.
  if (!keep_cached) (void)::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw IoError(path_, "close failed: " + os_reason(errno));
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_.c_str());
    throw IoError(path_, "rename failed: " + os_reason(err));
  }
}

FileDigest write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
  return f.digest();
}

namespace {

// Reads a file front to back in pieces of `buf_size` bytes, calling take(data, n) for each; `size_hint(bytes)`
// learns the file size first. Throws IoError naming the file.
template <class SizeHint, class Take>
void read_in_pieces(const std::string& path, size_t buf_size, SizeHint&& size_hint, Take&& take) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, "cannot open: " + os_reason(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) size_hint(static_cast<size_t>(st.st_size));
  std::vector<char> buf(buf_size);
  for (;;) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw IoError(path, "read failed: " + os_reason(err));
    }
    if (r == 0) break;
    take(buf.data(), static_cast<size_t>(r));
  }
  ::close(fd);
}

}  // namespace

FileDigest digest_of_file(const std::string& path) {
  FileDigest d;
  read_in_pieces(path, size_t{1} << 18, [](size_t) {}, [&](const char* p, size_t n) {
    d.crc32 = libdeflate_crc32(d.crc32, p, n);
    d.size += n;
  });
  return d;
}

std::string read_file(const std::string& path) {
  std::string out;
  read_in_pieces(path, size_t{1} << 16, [&](size_t bytes) { out.reserve(bytes); },
                 [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw IoError(path, "cannot create directory: " + ec.message());
}

void copy_file_atomic(const std::string& from, const std::string& to, bool keep_cached) {
  AtomicFile f(to);
  f.append_file(from);
  f.commit(keep_cached);
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

}  // namespace amosprep
