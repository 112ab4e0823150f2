#include "amosprep/npz_writer.hpp"

#include <fcntl.h>
#include <libdeflate.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>

#include "amosprep/deflate_runs.hpp"
#include "amosprep/error.hpp"

namespace amosprep {

NpzCompression npz_compression_from_name(const std::string& name) {
  if (name == "none") return NpzCompression::none;
  if (name == "fast") return NpzCompression::fast;
  if (name == "nnunet") return NpzCompression::nnunet;
  throw UsageError("unknown npz compression '" + name + "' (expected none, fast or nnunet)");
}

const char* npz_compression_name(NpzCompression c) {
  switch (c) {
    case NpzCompression::none: return "none";
    case NpzCompression::fast: return "fast";
    case NpzCompression::nnunet: return "nnunet";
  }
  return "?";
}

namespace {

// Python's zipfile (which numpy uses) switches a value to its ZIP64 form above 2 GiB - 1, not 4 GiB - 1.
constexpr uint64_t kZip64Limit = (uint64_t(1) << 31) - 1;
constexpr uint8_t kVersionDefault = 20;  // deflate
constexpr uint8_t kVersionZip64 = 45;
constexpr uint8_t kCreateSystemUnix = 3;
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // 1980-01-01, numpy's fixed timestamp
constexpr uint16_t kDosTimeMidnight = 0;
constexpr uint32_t kExternalAttrRw = 0600u << 16;  // what zipfile sets for members opened with mode 'w'
constexpr uint16_t kFlagDataDescriptor = 0x08;
constexpr uint16_t kMethodStored = 0;
constexpr uint16_t kMethodDeflate = 8;
constexpr uint32_t kSigLocal = 0x04034b50, kSigCentral = 0x02014b50, kSigEnd = 0x06054b50;
constexpr uint32_t kSigEnd64 = 0x06064b50, kSigEnd64Locator = 0x07064b50, kSigDescriptor = 0x08074b50;
constexpr uint64_t kZlibMaxPiece = uint64_t(1) << 30;  // zlib's avail_in/avail_out are 32-bit

void put8(std::string& s, uint8_t v) { s.push_back(static_cast<char>(v)); }
void put16(std::string& s, uint16_t v) {
  for (int i = 0; i < 2; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t clamp32(uint64_t v, bool zip64) { return zip64 ? 0xffffffffu : static_cast<uint32_t>(v); }

uint64_t element_count(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw InternalError("npz: negative dimension in shape");
    n *= static_cast<uint64_t>(s);
  }
  return n;
}

std::string shape_repr(const std::vector<int64_t>& shape) {
  std::string r = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(shape[i]);
  }
  if (shape.size() == 1) r += ",";
  return r + ")";
}

uint32_t crc32_of(uint32_t crc, const void* p, uint64_t n) {
  if (n == 0) return crc;  // libdeflate_crc32 returns 0 for a null buffer, whatever crc is
  return libdeflate_crc32(crc, p, static_cast<size_t>(n));
}

struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

// Raw-deflate (window -15) zlib stream; level 6 + memLevel 8 is exactly zipfile's zlib.compressobj(-1, 8, -15).
class ZlibDeflater {
 public:
  ZlibDeflater(const std::string& path, int level) : path_(path), out_(1 << 20) {
    if (deflateInit2(&zs_, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw IoError(path_, "zlib deflateInit2 failed");
  }
  ~ZlibDeflater() { deflateEnd(&zs_); }
  ZlibDeflater(const ZlibDeflater&) = delete;
  ZlibDeflater& operator=(const ZlibDeflater&) = delete;

  /// Compresses `n` bytes; `sink(ptr, len)` receives output as it is produced. `last` finishes the stream.
  template <class Sink>
  void feed(const unsigned char* p, uint64_t n, bool last, Sink&& sink) {
    do {
      const uint64_t piece = std::min(n, kZlibMaxPiece);
      zs_.next_in = const_cast<unsigned char*>(p);
      zs_.avail_in = static_cast<uInt>(piece);
      p += piece;
      n -= piece;
      const int flush = (last && n == 0) ? Z_FINISH : Z_NO_FLUSH;
      int r;
      do {
        zs_.next_out = out_.data();
        zs_.avail_out = static_cast<uInt>(out_.size());
        r = deflate(&zs_, flush);
        if (r == Z_STREAM_ERROR) throw IoError(path_, "zlib deflate failed");
        sink(out_.data(), out_.size() - zs_.avail_out);
      } while (zs_.avail_out == 0);
      if (flush == Z_FINISH && r != Z_STREAM_END) throw IoError(path_, "zlib deflate did not finish");
    } while (n > 0);
  }

 private:
  std::string path_;
  z_stream zs_{};
  std::vector<unsigned char> out_;
};

}  // namespace

std::string npy_header(py::DType dtype, const std::vector<int64_t>& shape) {
  // numpy 1.24 format._write_array_header: sorted keys, then room for the first axis to grow to 21 digits,
  // then spaces so that magic + length + dict + '\n' is a multiple of 64 (a full 64 when already aligned).
  std::string dict = std::string("{'descr': '") + py::dtype_descr(dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_repr(shape) + ", }";
  if (!shape.empty()) {
    const size_t digits = std::to_string(shape[0]).size();
    if (digits < 21) dict.append(21 - digits, ' ');
  }
  const size_t hlen = dict.size() + 1;
  const size_t pad = 64 - ((10 + hlen) % 64);
  if (hlen + pad > 0xffff) throw InternalError("npy header too long for format 1.0");
  std::string h("\x93NUMPY\x01\x00", 8);
  put16(h, static_cast<uint16_t>(hlen + pad));
  h += dict;
  h.append(pad, ' ');
  h += '\n';
  return h;
}

struct NpzWriter::Member {
  std::string name;
  uint16_t method = kMethodStored;
  uint16_t flags = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

namespace {

// Local file header as zipfile.ZipInfo.FileHeader(zip64=True) writes it: ZIP64 extra always present.
std::string local_header(const std::string& name, uint16_t method, uint16_t flags, uint32_t crc, uint64_t csize,
                         uint64_t usize) {
  const bool big = usize > kZip64Limit || csize > kZip64Limit;
  const bool streamed = flags & kFlagDataDescriptor;
  std::string h;
  put32(h, kSigLocal);
  put8(h, big || streamed ? kVersionZip64 : kVersionDefault);
  put8(h, 0);
  put16(h, flags);
  put16(h, method);
  put16(h, kDosTimeMidnight);
  put16(h, kDosDate1980);
  put32(h, crc);
  put32(h, clamp32(csize, big));
  put32(h, clamp32(usize, big));
  put16(h, static_cast<uint16_t>(name.size()));
  put16(h, 20);
  h += name;
  put16(h, 0x0001);
  put16(h, 16);
  put64(h, usize);
  put64(h, csize);
  return h;
}

}  // namespace

NpzWriter::NpzWriter(const std::string& path, NpzCompression compression, NpzWriteOptions options)
    : path_(path), compression_(compression), options_(options), file_(std::make_unique<AtomicFile>(path)) {}

NpzWriter::~NpzWriter() = default;  // an open member or an unclosed file leaves nothing behind

void NpzWriter::add(const std::string& name, py::DType dtype, const void* data, const std::vector<int64_t>& shape) {
  const uint64_t nbytes = element_count(shape) * py::dtype_size(dtype);
  if (nbytes > 0 && data == nullptr) throw InternalError("NpzWriter::add: null data");
  const std::span<const unsigned char> one(static_cast<const unsigned char*>(data), nbytes);
  add(name, dtype, std::span<const std::span<const unsigned char>>(&one, 1), shape);
}

// The member being written by begin_member / add_piece / end_member.
struct NpzWriter::OpenMember {
  Member m;
  std::string npy_header;
  uint64_t expected = 0, fed = 0;
  std::span<const unsigned char> last_piece;  // for add_piece_again
  uint32_t last_piece_crc = 0;
  std::span<const DeflateBuffer> last_segments;  // fast: the last piece compressed (valid until the next piece)
  // none: the caller's pieces, written at end_member (the local header needs the CRC first)
  std::vector<std::span<const unsigned char>> held;
  // fast: deflate_runs output, kept until end_member
  std::unique_lock<std::mutex> compressor_lock;
  // nnunet (in memory) and the streamed large-member path: zlib
  std::unique_ptr<ZlibDeflater> z;
  std::unique_ptr<unsigned char[]> zout;  // uninitialised: only the pages actually written get touched
  uint64_t zsize = 0, zbound = 0;
  bool streamed = false;
};

namespace {
std::mutex compressor_mutex;
DeflateRuns& shared_compressor() {  // its buffers are reused from one npz to the next
  static DeflateRuns compressor;
  return compressor;
}
}  // namespace

void NpzWriter::add(const std::string& name, py::DType dtype, std::span<const std::span<const unsigned char>> pieces,
                    const std::vector<int64_t>& shape) {
  begin_member(name, dtype, shape);
  for (const auto& piece : pieces) add_piece(piece);
  end_member();
}

bool NpzWriter::releases_pieces() const { return compression_ != NpzCompression::none; }

void NpzWriter::begin_member(const std::string& name, py::DType dtype, const std::vector<int64_t>& shape) {
  if (closed_) throw InternalError("NpzWriter::add after close");
  if (open_) throw InternalError("NpzWriter: begin_member while a member is open");
  if (!file_) throw IoError(path_, "an earlier write to this file failed");
  try {
    auto o = std::make_unique<OpenMember>();
    o->npy_header = npy_header(dtype, shape);
    o->expected = element_count(shape) * py::dtype_size(dtype);
    Member& m = o->m;
    m.name = name + ".npy";
    m.offset = file_->bytes_written();
    m.usize = o->npy_header.size() + o->expected;
    m.crc = crc32_of(0, o->npy_header.data(), o->npy_header.size());
    const auto* hdr = reinterpret_cast<const unsigned char*>(o->npy_header.data());
    if (compression_ == NpzCompression::none) {
      m.method = kMethodStored;
      m.csize = m.usize;
    } else if (compression_ == NpzCompression::fast) {
      // Streamed: each piece's compressed segments go to the file at once (nothing accumulates in memory); a
      // stored (non-final) deflate block carries the .npy header; sizes and CRC follow in a data descriptor.
      m.method = kMethodDeflate;
      m.flags = kFlagDataDescriptor;
      o->compressor_lock = std::unique_lock<std::mutex>(compressor_mutex);
      const std::string lh = local_header(m.name, m.method, m.flags, 0, 0, 0);
      file_->write(lh.data(), lh.size());
      const auto len = static_cast<uint16_t>(o->npy_header.size());
      std::string prefix = {'\0', static_cast<char>(len & 0xff), static_cast<char>(len >> 8),
                            static_cast<char>(~len & 0xff), static_cast<char>((~len >> 8) & 0xff)};
      prefix += o->npy_header;
      file_->write(prefix.data(), prefix.size());
      m.csize = prefix.size();
    } else if (m.usize < options_.whole_buffer_limit) {
      m.method = kMethodDeflate;
      o->zbound = deflateBound(nullptr, m.usize) + 64;
      o->zout.reset(new unsigned char[o->zbound]);
      o->z = std::make_unique<ZlibDeflater>(path_, 6);
      o->z->feed(hdr, o->npy_header.size(), false, [&](const unsigned char* p, size_t n) {
        if (o->zsize + n > o->zbound) throw InternalError("zlib output exceeds deflateBound");
        std::memcpy(o->zout.get() + o->zsize, p, n);
        o->zsize += n;
      });
    } else {
      // Very large member: zlib streams straight to the file; sizes follow in a ZIP64 data descriptor.
      m.method = kMethodDeflate;
      m.flags = kFlagDataDescriptor;
      o->streamed = true;
      const std::string lh = local_header(m.name, m.method, m.flags, 0, 0, 0);
      file_->write(lh.data(), lh.size());
      o->z = std::make_unique<ZlibDeflater>(path_, 6);
      o->z->feed(hdr, o->npy_header.size(), false, [&](const unsigned char* p, size_t n) {
        file_->write(p, n);
        o->m.csize += n;
      });
    }
    open_ = std::move(o);
  } catch (const std::bad_alloc&) {
    fail();
    throw IoError(path_, "out of memory while writing member '" + name + ".npy'");
  } catch (...) {
    fail();
    throw;
  }
}

void NpzWriter::add_piece(std::span<const unsigned char> piece) {
  if (!open_) throw InternalError("NpzWriter::add_piece without begin_member");
  OpenMember& o = *open_;
  if (!piece.empty() && piece.data() == nullptr) throw InternalError("NpzWriter::add: null data");
  if (o.fed + piece.size() > o.expected) throw InternalError("NpzWriter::add: pieces do not add up to the array size");
  try {
    o.fed += piece.size();
    o.last_piece = piece;
    o.last_piece_crc = crc32_of(0, piece.data(), piece.size());
    o.m.crc = static_cast<uint32_t>(crc32_combine(o.m.crc, o.last_piece_crc, static_cast<z_off_t>(piece.size())));
    if (compression_ == NpzCompression::none) {
      o.held.push_back(piece);
    } else if (o.compressor_lock.owns_lock()) {
      o.last_segments = shared_compressor().compress_piece(piece);
      write_compressed_segments();
    } else if (o.streamed) {
      o.z->feed(piece.data(), piece.size(), false, [&](const unsigned char* p, size_t n) {
        file_->write(p, n);
        o.m.csize += n;
      });
    } else {
      o.z->feed(piece.data(), piece.size(), false, [&](const unsigned char* p, size_t n) {
        if (o.zsize + n > o.zbound) throw InternalError("zlib output exceeds deflateBound");
        std::memcpy(o.zout.get() + o.zsize, p, n);
        o.zsize += n;
      });
    }
  } catch (const std::bad_alloc&) {
    fail();
    throw IoError(path_, "out of memory while writing an npz member");
  } catch (...) {
    fail();
    throw;
  }
}

void NpzWriter::write_compressed_segments() {
  for (const DeflateBuffer& part : open_->last_segments) {
    file_->write(part.data.get(), part.size);
    open_->m.csize += part.size;
  }
}

void NpzWriter::add_piece_again() {
  if (!open_) throw InternalError("NpzWriter::add_piece_again without begin_member");
  OpenMember& o = *open_;
  if (!o.compressor_lock.owns_lock()) {
    add_piece(o.last_piece);
    return;
  }
  const size_t n = o.last_piece.size();
  if (o.fed + n > o.expected) throw InternalError("NpzWriter::add: pieces do not add up to the array size");
  o.fed += n;
  o.m.crc = static_cast<uint32_t>(crc32_combine(o.m.crc, o.last_piece_crc, static_cast<z_off_t>(n)));
  try {
    write_compressed_segments();  // the same bytes again: segments never reach back before their piece
  } catch (...) {
    fail();
    throw;
  }
}

void NpzWriter::end_member() {
  if (!open_) throw InternalError("NpzWriter::end_member without begin_member");
  std::unique_ptr<OpenMember> o = std::move(open_);
  Member& m = o->m;
  try {
    if (o->fed != o->expected) throw InternalError("NpzWriter::add: pieces do not add up to the array size");
    if (compression_ == NpzCompression::none) {
      const std::string lh = local_header(m.name, m.method, m.flags, m.crc, m.csize, m.usize);
      file_->write(lh.data(), lh.size());
      file_->write(o->npy_header.data(), o->npy_header.size());
      for (const auto& piece : o->held) file_->write(piece.data(), piece.size());
    } else if (o->compressor_lock.owns_lock() || o->streamed) {
      if (o->streamed) {
        o->z->feed(nullptr, 0, true, [&](const unsigned char* p, size_t n) {
          file_->write(p, n);
          m.csize += n;
        });
      } else {
        file_->write(kDeflateFinalEmptyBlock, sizeof kDeflateFinalEmptyBlock);
        m.csize += sizeof kDeflateFinalEmptyBlock;
      }
      std::string dd;
      put32(dd, kSigDescriptor);
      put32(dd, m.crc);
      put64(dd, m.csize);
      put64(dd, m.usize);
      file_->write(dd.data(), dd.size());
    } else {
      o->z->feed(nullptr, 0, true, [&](const unsigned char* p, size_t n) {
        if (o->zsize + n > o->zbound) throw InternalError("zlib output exceeds deflateBound");
        std::memcpy(o->zout.get() + o->zsize, p, n);
        o->zsize += n;
      });
      m.csize = o->zsize;
      const std::string lh = local_header(m.name, m.method, m.flags, m.crc, m.csize, m.usize);
      file_->write(lh.data(), lh.size());
      file_->write(o->zout.get(), o->zsize);
    }
    members_.push_back(std::move(m));
  } catch (const std::bad_alloc&) {
    fail();
    throw IoError(path_, "out of memory while writing member '" + m.name + "'");
  } catch (...) {
    fail();
    throw;
  }
}

void NpzWriter::fail() {
  open_.reset();
  file_.reset();  // removes the temporary file
}

void NpzWriter::write_central_directory() {
  // zipfile.ZipFile._write_end_record, including its ZIP64 rules.
  const uint64_t cd_offset = file_->bytes_written();
  std::string cd;
  for (const Member& m : members_) {
    const bool sizes64 = options_.zip64_everywhere || m.usize > kZip64Limit || m.csize > kZip64Limit;
    const bool offset64 = options_.zip64_everywhere || m.offset > kZip64Limit;
    std::string extra;
    if (sizes64 || offset64) {
      std::string fields;
      if (sizes64) {
        put64(fields, m.usize);
        put64(fields, m.csize);
      }
      if (offset64) put64(fields, m.offset);
      put16(extra, 0x0001);
      put16(extra, static_cast<uint16_t>(fields.size()));
      extra += fields;
    }
    const uint8_t version = extra.empty() ? kVersionDefault : kVersionZip64;
    put32(cd, kSigCentral);
    put8(cd, version);
    put8(cd, kCreateSystemUnix);
    put8(cd, version);
    put8(cd, 0);
    put16(cd, m.flags);
    put16(cd, m.method);
    put16(cd, kDosTimeMidnight);
    put16(cd, kDosDate1980);
    put32(cd, m.crc);
    put32(cd, clamp32(m.csize, sizes64));
    put32(cd, clamp32(m.usize, sizes64));
    put16(cd, static_cast<uint16_t>(m.name.size()));
    put16(cd, static_cast<uint16_t>(extra.size()));
    put16(cd, 0);  // comment
    put16(cd, 0);  // disk
    put16(cd, 0);  // internal attributes
    put32(cd, kExternalAttrRw);
    put32(cd, clamp32(m.offset, offset64));
    cd += m.name;
    cd += extra;
  }
  const uint64_t count = members_.size();
  const uint64_t cd_size = cd.size();
  const uint64_t end64_offset = cd_offset + cd_size;
  const bool end64 = options_.zip64_everywhere || count > 0xffff || cd_offset > kZip64Limit || cd_size > kZip64Limit;
  std::string tail;
  if (end64) {
    put32(tail, kSigEnd64);
    put64(tail, 44);
    put16(tail, kVersionZip64);
    put16(tail, kVersionZip64);
    put32(tail, 0);
    put32(tail, 0);
    put64(tail, count);
    put64(tail, count);
    put64(tail, cd_size);
    put64(tail, cd_offset);
    put32(tail, kSigEnd64Locator);
    put32(tail, 0);
    put64(tail, end64_offset);
    put32(tail, 1);
  }
  put32(tail, kSigEnd);
  put16(tail, 0);
  put16(tail, 0);
  put16(tail, static_cast<uint16_t>(std::min<uint64_t>(count, 0xffff)));
  put16(tail, static_cast<uint16_t>(std::min<uint64_t>(count, 0xffff)));
  put32(tail, static_cast<uint32_t>(std::min<uint64_t>(cd_size, 0xffffffff)));
  put32(tail, static_cast<uint32_t>(std::min<uint64_t>(cd_offset, 0xffffffff)));
  put16(tail, 0);
  file_->write(cd.data(), cd.size());
  file_->write(tail.data(), tail.size());
}

FileDigest NpzWriter::close() {
  if (closed_) return digest_;
  if (open_) throw InternalError("NpzWriter::close with a member still open");
  if (!file_) throw IoError(path_, "an earlier write to this file failed");
  try {
    write_central_directory();
    file_->commit();
    digest_ = file_->digest();
    closed_ = true;
  } catch (...) {
    file_.reset();
    throw;
  }
  file_.reset();
  return digest_;
}

FileDigest write_npz(const std::string& path, const std::string& key, const float* data,
                     const std::vector<int64_t>& shape, NpzCompression c) {
  NpzWriter w(path, c);
  w.add(key, py::DType::f4, data, shape);
  return w.close();
}

FileDigest write_npz(const std::string& path, const std::string& key, std::span<const std::span<const float>> pieces,
                     const std::vector<int64_t>& shape, NpzCompression c) {
  std::vector<std::span<const unsigned char>> bytes;
  for (const auto& piece : pieces)
    bytes.emplace_back(reinterpret_cast<const unsigned char*>(piece.data()), piece.size_bytes());
  NpzWriter w(path, c);
  w.add(key, py::DType::f4, bytes, shape);
  return w.close();
}

// ---- reading --------------------------------------------------------------------------------------------------

namespace {

uint16_t get16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t get64(const unsigned char* p) { return get32(p) | (static_cast<uint64_t>(get32(p + 4)) << 32); }

class ReadFd {
 public:
  explicit ReadFd(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw IoError(path, std::string("cannot stat: ") + std::strerror(err));
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~ReadFd() { ::close(fd_); }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  void read_at(uint64_t offset, void* dst, uint64_t n) const {
    if (offset > size_ || n > size_ - offset) throw IoError(path_, "not a valid .npz: truncated zip archive");
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      const size_t piece = static_cast<size_t>(std::min<uint64_t>(n, uint64_t(1) << 30));
      const ssize_t r = ::pread(fd_, p, piece, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw IoError(path_, std::string("read failed: ") + std::strerror(errno));
      }
      if (r == 0) throw IoError(path_, "unexpected end of file");
      p += r;
      offset += static_cast<uint64_t>(r);
      n -= static_cast<uint64_t>(r);
    }
  }
  std::string read_string(uint64_t offset, uint64_t n) const {
    std::string s(n, '\0');
    read_at(offset, s.data(), n);
    return s;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct ZipEntry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

std::vector<ZipEntry> read_central_directory(const ReadFd& f) {
  auto bad = [&](const std::string& why) { return IoError(f.path(), "not a valid .npz: " + why); };
  const uint64_t tail_len = std::min<uint64_t>(f.size(), 22 + 0xffff);
  if (tail_len < 22) throw bad("file too short for a zip archive");
  const std::string tail = f.read_string(f.size() - tail_len, tail_len);
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tail_len) - 22; i >= 0; --i)
    if (get32(t + i) == kSigEnd && static_cast<uint64_t>(i) + 22 + get16(t + i + 20) == tail_len) {
      eocd = i;
      break;
    }
  if (eocd < 0) throw bad("no end-of-central-directory record");
  uint64_t count = get16(t + eocd + 10), cd_size = get32(t + eocd + 12), cd_offset = get32(t + eocd + 16);
  const uint64_t eocd_abs = f.size() - tail_len + static_cast<uint64_t>(eocd);
  if (eocd_abs >= 20) {
    unsigned char loc[20];
    f.read_at(eocd_abs - 20, loc, 20);
    if (get32(loc) == kSigEnd64Locator) {
      unsigned char e64[56];
      f.read_at(get64(loc + 8), e64, 56);
      if (get32(e64) != kSigEnd64) throw bad("bad ZIP64 end record");
      count = get64(e64 + 32);
      cd_size = get64(e64 + 40);
      cd_offset = get64(e64 + 48);
    }
  }
  const std::string cd = f.read_string(cd_offset, cd_size);
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  std::vector<ZipEntry> entries;
  uint64_t pos = 0;
  for (uint64_t k = 0; k < count; ++k) {
    if (pos + 46 > cd_size || get32(c + pos) != kSigCentral) throw bad("bad central directory");
    ZipEntry e;
    e.method = get16(c + pos + 10);
    e.crc = get32(c + pos + 16);
    e.csize = get32(c + pos + 20);
    e.usize = get32(c + pos + 24);
    const uint16_t name_len = get16(c + pos + 28), extra_len = get16(c + pos + 30), comment_len = get16(c + pos + 32);
    e.offset = get32(c + pos + 42);
    if (pos + 46 + name_len + extra_len + comment_len > cd_size) throw bad("bad central directory");
    e.name.assign(cd.data() + pos + 46, name_len);
    const unsigned char* x = c + pos + 46 + name_len;
    for (uint32_t xp = 0; xp + 4 <= extra_len;) {
      const uint16_t id = get16(x + xp), len = get16(x + xp + 2);
      if (xp + 4 + len > extra_len) throw bad("bad extra field");
      if (id == 0x0001) {
        const unsigned char* z = x + xp + 4;
        uint32_t zp = 0;
        auto next64 = [&]() {
          if (zp + 8 > len) throw bad("short ZIP64 extra field");
          const uint64_t v = get64(z + zp);
          zp += 8;
          return v;
        };
        if (e.usize == 0xffffffffu) e.usize = next64();
        if (e.csize == 0xffffffffu) e.csize = next64();
        if (e.offset == 0xffffffffu) e.offset = next64();
      }
      xp += 4u + len;
    }
    entries.push_back(std::move(e));
    pos += 46u + name_len + extra_len + comment_len;
  }
  return entries;
}

// Reads the uncompressed bytes of one member sequentially, checking size and CRC-32 at the end.
class MemberReader {
 public:
  MemberReader(const ReadFd& f, const ZipEntry& e) : f_(f), e_(e) {
    unsigned char lh[30];
    f_.read_at(e.offset, lh, 30);
    if (get32(lh) != kSigLocal) throw IoError(f_.path(), "not a valid .npz: bad local header of " + e.name);
    pos_ = e.offset + 30 + get16(lh + 26) + get16(lh + 28);
    end_ = pos_ + e.csize;
    if (e.method == kMethodDeflate) {
      if (inflateInit2(&zs_, -15) != Z_OK) throw IoError(f_.path(), "zlib inflateInit2 failed");
      inflating_ = true;
      in_.resize(4 << 20);
    } else if (e.method != kMethodStored) {
      throw IoError(f_.path(), "unsupported zip compression method " + std::to_string(e.method) + " for " + e.name);
    }
  }
  ~MemberReader() {
    if (inflating_) inflateEnd(&zs_);
  }
  MemberReader(const MemberReader&) = delete;
  MemberReader& operator=(const MemberReader&) = delete;

  void read(void* dst, uint64_t n) {
    if (n > e_.usize - produced_) throw corrupt("member shorter than its .npy header says");
    auto* out = static_cast<unsigned char*>(dst);
    if (!inflating_) {
      f_.read_at(pos_ + produced_, out, n);
    } else {
      uint64_t left = n;
      unsigned char* o = out;
      while (left > 0) {
        if (zs_.avail_in == 0) refill();
        zs_.next_out = o;
        zs_.avail_out = static_cast<uInt>(std::min(left, kZlibMaxPiece));
        const uInt before = zs_.avail_out;
        const int r = inflate(&zs_, Z_NO_FLUSH);
        const uInt got = before - zs_.avail_out;
        o += got;
        left -= got;
        if (r == Z_STREAM_END) {
          if (left > 0) throw corrupt("deflate stream ends early");
          ended_ = true;
        } else if (r != Z_OK && !(r == Z_BUF_ERROR && got > 0)) {
          throw corrupt(std::string("inflate failed: ") + (zs_.msg ? zs_.msg : std::to_string(r)));
        }
      }
    }
    crc_ = crc32_of(crc_, out, n);
    produced_ += n;
  }

  void finish() {
    if (produced_ != e_.usize) throw corrupt("member longer than its .npy header says");
    if (inflating_ && !ended_) {
      unsigned char extra;
      for (;;) {
        if (zs_.avail_in == 0) refill();
        zs_.next_out = &extra;
        zs_.avail_out = 1;
        const int r = inflate(&zs_, Z_NO_FLUSH);
        if (zs_.avail_out == 0) throw corrupt("more data than the declared size");
        if (r == Z_STREAM_END) break;
        if (r != Z_OK) throw corrupt("deflate stream does not end");
      }
    }
    if (crc_ != e_.crc) throw corrupt("CRC-32 mismatch");
  }

 private:
  IoError corrupt(const std::string& why) const { return IoError(f_.path(), "corrupt member " + e_.name + ": " + why); }
  void refill() {
    const uint64_t n = std::min<uint64_t>(in_.size(), end_ - in_pos());
    if (n == 0) throw corrupt("compressed data truncated");
    f_.read_at(in_pos(), in_.data(), n);
    consumed_ += n;
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<uInt>(n);
  }
  uint64_t in_pos() const { return pos_ + consumed_; }

  const ReadFd& f_;
  const ZipEntry& e_;
  uint64_t pos_ = 0, end_ = 0, consumed_ = 0, produced_ = 0;
  uint32_t crc_ = 0;
  z_stream zs_{};
  bool inflating_ = false, ended_ = false;
  std::vector<unsigned char> in_;
};

struct NpyHeader {
  py::DType dtype = py::DType::f8;
  std::vector<int64_t> shape;
  uint64_t data_bytes = 0;
};

py::DType dtype_from_descr(const std::string& d, const std::string& path) {
  for (py::DType t : {py::DType::f4, py::DType::f8, py::DType::i8, py::DType::i4, py::DType::i2, py::DType::u1,
                      py::DType::b1})
    if (d == py::dtype_descr(t)) return t;
  if (d == "<u1") return py::DType::u1;
  throw IoError(path, "unsupported .npy dtype '" + d + "'");
}

NpyHeader read_npy_header(MemberReader& r, const std::string& path) {
  unsigned char pre[8];
  r.read(pre, 8);
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) throw IoError(path, "member is not a .npy array");
  uint64_t len;
  if (pre[6] == 1) {
    unsigned char l[2];
    r.read(l, 2);
    len = get16(l);
  } else if (pre[6] == 2 || pre[6] == 3) {
    unsigned char l[4];
    r.read(l, 4);
    len = get32(l);
  } else {
    throw IoError(path, "unsupported .npy format version " + std::to_string(pre[6]));
  }
  std::string dict(len, '\0');
  r.read(dict.data(), len);
  auto value_after = [&](const std::string& key) {
    const size_t k = dict.find("'" + key + "'");
    if (k == std::string::npos) throw IoError(path, "bad .npy header: no '" + key + "'");
    size_t p = dict.find(':', k);
    if (p == std::string::npos) throw IoError(path, "bad .npy header");
    ++p;
    while (p < dict.size() && dict[p] == ' ') ++p;
    return p;
  };
  NpyHeader h;
  size_t p = value_after("descr");
  if (p >= dict.size() || (dict[p] != '\'' && dict[p] != '"')) throw IoError(path, "bad .npy header: descr");
  const size_t q = dict.find(dict[p], p + 1);
  if (q == std::string::npos) throw IoError(path, "bad .npy header: descr");
  h.dtype = dtype_from_descr(dict.substr(p + 1, q - p - 1), path);
  p = value_after("fortran_order");
  if (dict.compare(p, 5, "False") != 0) throw IoError(path, "Fortran-order .npy arrays are not supported");
  p = value_after("shape");
  if (p >= dict.size() || dict[p] != '(') throw IoError(path, "bad .npy header: shape");
  ++p;
  for (;;) {
    while (p < dict.size() && (dict[p] == ' ' || dict[p] == ',')) ++p;
    if (p >= dict.size()) throw IoError(path, "bad .npy header: shape");
    if (dict[p] == ')') break;
    size_t used = 0;
    int64_t v;
    try {
      v = std::stoll(dict.substr(p), &used);
    } catch (const std::exception&) {
      throw IoError(path, "bad .npy header: shape");
    }
    if (v < 0) throw IoError(path, "bad .npy header: negative dimension");
    h.shape.push_back(v);
    p += used;
    while (p < dict.size() && dict[p] == 'L') ++p;
  }
  h.data_bytes = element_count(h.shape) * py::dtype_size(h.dtype);
  return h;
}

const ZipEntry& find_member(const std::vector<ZipEntry>& entries, const std::string& key, const std::string& path) {
  for (const auto& e : entries)
    if (e.name == key + ".npy") return e;
  for (const auto& e : entries)
    if (e.name == key) return e;
  throw IoError(path, "no member '" + key + "' in .npz");
}

}  // namespace

py::NdArray read_npz_array(const std::string& path, const std::string& key) {
  ReadFd f(path);
  const auto entries = read_central_directory(f);
  MemberReader r(f, find_member(entries, key, path));
  const NpyHeader h = read_npy_header(r, path);
  py::NdArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes.resize(h.data_bytes);
  r.read(a.bytes.data(), h.data_bytes);
  r.finish();
  return a;
}

std::vector<float> read_npz_f32(const std::string& path, const std::string& key, std::vector<int64_t>* shape_out) {
  ReadFd f(path);
  const auto entries = read_central_directory(f);
  MemberReader r(f, find_member(entries, key, path));
  const NpyHeader h = read_npy_header(r, path);
  if (h.dtype != py::DType::f4)
    throw IoError(path, "member '" + key + "' has dtype " + py::dtype_descr(h.dtype) + ", expected <f4");
  std::vector<float> out(h.data_bytes / sizeof(float));
  r.read(out.data(), h.data_bytes);
  r.finish();
  if (shape_out) *shape_out = h.shape;
  return out;
}

std::vector<std::string> npz_member_names(const std::string& path) {
  ReadFd f(path);
  std::vector<std::string> names;
  for (const auto& e : read_central_directory(f)) names.push_back(e.name);
  return names;
}

}  // namespace amosprep
