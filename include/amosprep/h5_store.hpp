#pragma once
// The parallel HDF5 store amos-prep.h5 (layout in docs/hdf5-layout.md). All creation is collective: every rank
// calls create_* with identical arguments in the same order. Unfiltered ("chunked") datasets are then written by
// their owner alone; filtered ("deflate") datasets only through write_collective, where non-owners join with an
// empty selection (independent writes to filtered datasets fail, and owner-only collective writes corrupt files
// silently: platform-notes §3).
#include <cstdint>
#include <string>
#include <vector>

#include "amosprep/volume.hpp"

namespace amosprep {

enum class H5Layout { chunked, deflate };

/// Chunk extent along an axis of `n` voxels: at least `at_least` (clamped to n), so that a patch of up to
/// 2 * at_least voxels touches at most 3 chunks, and splitting the axis into nearly equal chunks so that the
/// zero-padded edge chunk (HDF5 stores whole chunks) adds fewer voxels than there are chunks.
int64_t chunk_extent(int64_t n, int64_t at_least);

class H5Store {
 public:
  /// Collective. Creates (truncates) `path` with the MPI-IO driver on MPI_COMM_WORLD.
  H5Store(const std::string& path, H5Layout layout);
  ~H5Store();
  H5Store(const H5Store&) = delete;
  H5Store& operator=(const H5Store&) = delete;

  /// Collective: a group (intermediate groups are created too).
  void create_group(const std::string& path);
  /// Collective: string attribute on a group or dataset (same value on every rank).
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<double>& value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<int64_t>& value);

  /// Collective: float32 dataset of `shape`, chunked with `chunk` (filtered in the deflate layout).
  void create_f32(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk);
  /// Collective: int8 dataset (segmentations), chunked like create_f32.
  void create_i8(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk);
  /// Collective: small unfiltered contiguous datasets (int64 rows, raw bytes).
  void create_i64(const std::string& path, const std::vector<int64_t>& shape);
  void create_u8(const std::string& path, int64_t size);

  /// Independent write of a whole unfiltered dataset by its owner (chunked layout, and every i64/u8 dataset).
  void write_independent(const std::string& path, const void* data);
  /// Independent write of rows [first, first + count) along axis 0 (count -1: to the end) of a chunked dataset;
  /// the range must start on a chunk boundary and end on one or at the end. `data` holds just those rows.
  void write_independent_rows(const std::string& path, int64_t first, int64_t count, const void* data);
  /// Independent write of a whole chunked int8 dataset from float32 values (cast per element, like numpy's
  /// astype(int8) of the label values), without an int8 copy of the volume.
  void write_independent_f32_as_i8(const std::string& path, const float* data);
  /// write_independent_rows of float32 values (f32_to_i8: into an int8 dataset, like write_independent_f32_as_i8)
  /// with the rows given as planes of the last two axes: one pointer per (axis 0, axis 1) index pair of the
  /// written rows, in C order, e.g. one per z slice of a (z, y, x) dataset, or per z of one channel of a
  /// (c, z, y, x) one. Planes may repeat.
  void write_independent_planes(const std::string& path, int64_t first, int64_t count,
                                const std::vector<const float*>& planes, bool f32_to_i8);
  /// The same from int8 planes into an int8 dataset.
  void write_independent_planes(const std::string& path, int64_t first, int64_t count,
                                const std::vector<const int8_t*>& planes);
  /// Independent write of planes [first, first + count) along axis 1 of row `row` of a chunked 4-D dataset, e.g.
  /// z slices of one channel of a (c, z, y, x) one; `first` on a chunk boundary, `first + count` on one or at the
  /// end. `planes` holds the count planes one after the other.
  void write_independent_plane_range(const std::string& path, int64_t row, int64_t first, int64_t count,
                                     const float* planes);
  /// Collective write: every rank calls it for the same dataset; only the owner passes data (others nullptr).
  void write_collective(const std::string& path, const void* data_or_null);

  /// Starts writeback of what this process wrote and drops the pages already written back from the page cache
  /// (local, not collective; affects performance only). Call after each case's volumes.
  void release_written_pages();

  /// Collective close (flushes metadata).
  void close();
  H5Layout layout() const { return layout_; }

 private:
  void write_chunks(const std::string& path, int64_t first, int64_t count, const void* data,
                    const std::vector<const void*>* planes, bool f32_to_i8, int64_t first1 = 0, int64_t count1 = -1,
                    size_t planes_elem = sizeof(float));
  long long file_ = -1;  // hid_t
  int page_fd_ = -1;     // read-only descriptor of the same file, for release_written_pages
  H5Layout layout_;
  std::string path_;
};

/// Reads back a dataset as raw bytes plus its shape with the serial driver (tests, resume).
std::vector<char> h5_read_raw(const std::string& file, const std::string& dataset, std::vector<int64_t>* shape);

}  // namespace amosprep
