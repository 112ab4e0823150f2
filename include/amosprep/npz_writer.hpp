#pragma once
// .npz files that numpy.load reads unchanged: a ZIP archive of .npy members, written like np.savez(_compressed).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "amosprep/fsutil.hpp"
#include "amosprep/pyobj.hpp"

namespace amosprep {

/// How .npz members are stored.
enum class NpzCompression {
  none,    ///< ZIP "stored" (method 0): fastest, largest.
  fast,    ///< deflate by deflate_runs (run-aware, ~4x libdeflate level 1 here, similar size), streamed to the
           ///< file piece by piece (sizes in a ZIP64 data descriptor).
  nnunet   ///< deflate, zlib level 6 as np.savez_compressed: byte-identical to numpy with the same zlib.
};
/// "none" | "fast" | "nnunet"; anything else throws UsageError.
NpzCompression npz_compression_from_name(const std::string& name);
const char* npz_compression_name(NpzCompression c);

/// Tuning and test hooks of NpzWriter; the defaults are what production uses.
struct NpzWriteOptions {
  /// `nnunet`: members whose .npy size (header + data) is below this are deflated into memory in one piece and
  /// written with their sizes in the local header (like numpy). Larger ones are deflated by zlib in a stream
  /// straight to the file, followed by a ZIP64 data descriptor. Ignored by `none` and `fast` (always streamed).
  uint64_t whole_buffer_limit = uint64_t(2) << 30;
  /// Write ZIP64 extra fields in the central directory and the ZIP64 end records even when no value needs
  /// them (tests the > 4 GiB layout on small files). numpy itself only forces the local ZIP64 extra field.
  bool zip64_everywhere = false;
};

/// Writes an .npz with any number of members to `<path>.tmp.<pid>`; close() finishes the archive and renames it
/// to `path` (fsync'ed). Destroyed without close(), it leaves nothing behind. All failures throw IoError naming
/// `path`.
class NpzWriter {
 public:
  NpzWriter(const std::string& path, NpzCompression compression, NpzWriteOptions options = {});
  ~NpzWriter();
  NpzWriter(const NpzWriter&) = delete;
  NpzWriter& operator=(const NpzWriter&) = delete;

  /// Adds member `<name>.npy`: NPY 1.0, C order, `shape` slowest axis first (empty shape = 0-d array).
  /// `data` holds prod(shape) contiguous little-endian elements of `dtype`; it is not copied.
  void add(const std::string& name, py::DType dtype, const void* data, const std::vector<int64_t>& shape);
  /// Same, with the array's bytes given as consecutive pieces (e.g. the image channels and the segmentation in
  /// separate buffers); their sizes must add up to prod(shape) elements.
  void add(const std::string& name, py::DType dtype, std::span<const std::span<const unsigned char>> pieces,
           const std::vector<int64_t>& shape);
  /// The same member in steps, for arrays whose parts are not all in memory at once: begin_member, then
  /// add_piece for each consecutive piece of the array's bytes, then end_member. When releases_pieces() (every
  /// compression but `none`), a piece is compressed inside add_piece and may be freed right after; with `none` the
  /// caller keeps every piece alive until end_member.
  void begin_member(const std::string& name, py::DType dtype, const std::vector<int64_t>& shape);
  void add_piece(std::span<const unsigned char> bytes);
  /// Adds the previous piece of this member once more (e.g. a repeated slice). Its bytes must still be valid and
  /// unchanged; with `fast` compression its compressed form is copied instead of compressing it again.
  void add_piece_again();
  void end_member();
  bool releases_pieces() const;
  /// Finishes the archive; returns the size and CRC-32 of the whole file.
  FileDigest close();

 private:
  struct Member;
  struct OpenMember;
  void write_central_directory();
  void write_compressed_segments();
  void fail();
  std::string path_;
  NpzCompression compression_;
  NpzWriteOptions options_;
  std::unique_ptr<AtomicFile> file_;
  std::vector<Member> members_;
  std::unique_ptr<OpenMember> open_;
  bool closed_ = false;
  FileDigest digest_;
};

/// Writes a one-member .npz (member "<key>.npy", float32) atomically; see NpzWriter. Returns the file's digest.
FileDigest write_npz(const std::string& path, const std::string& key, const float* data, const std::vector<int64_t>& shape,
               NpzCompression c);
/// write_npz with the float32 array given as consecutive pieces (see NpzWriter::add).
FileDigest write_npz(const std::string& path, const std::string& key, std::span<const std::span<const float>> pieces,
                     const std::vector<int64_t>& shape, NpzCompression c);

/// The NPY 1.0 header numpy 1.24 writes for a C-order array (magic, length, dict, padding to 64 bytes, '\n').
std::string npy_header(py::DType dtype, const std::vector<int64_t>& shape);

/// Reads member `key` ("<key>.npy" or exactly `key`) of an .npz written by numpy or by us (stored or deflate,
/// ZIP64 or not), checking its CRC. Throws IoError naming the file on any problem.
py::NdArray read_npz_array(const std::string& path, const std::string& key);
/// As read_npz_array for a '<f4' member, decoded straight into the returned vector (no second copy).
std::vector<float> read_npz_f32(const std::string& path, const std::string& key, std::vector<int64_t>* shape_out);
/// Member names of an .npz in archive order (e.g. {"data.npy"}).
std::vector<std::string> npz_member_names(const std::string& path);

}  // namespace amosprep
