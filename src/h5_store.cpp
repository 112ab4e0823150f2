#include "amosprep/h5_store.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include "amosprep/distributed.hpp"
#include "amosprep/error.hpp"

namespace amosprep {

namespace {

herr_t collect_error(unsigned n, const H5E_error2_t* e, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (n < 3 && e->desc) *s += std::string(n ? "; " : "") + e->desc;
  return 0;
}

std::string h5_error_text() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "unknown HDF5 error" : s;
}

/// Every HDF5 call goes through this: negative ids / statuses become IoError with the HDF5 error stack.
template <class T>
T checked(T rc, const std::string& file, const std::string& what) {
  if (rc < 0) throw IoError(file, "HDF5 " + what + " failed: " + h5_error_text());
  return rc;
}

class Handle {
 public:
  Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  herr_t (*closer_)(hid_t);
};

std::vector<hsize_t> dims_of(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

}  // namespace

H5Store::H5Store(const std::string& path, H5Layout layout) : layout_(layout), path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Handle fapl(checked(H5Pcreate(H5P_FILE_ACCESS), path_, "H5Pcreate"), H5Pclose);
  if (mpi_active()) {
    checked(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL), path_, "set_fapl_mpio");
    checked(H5Pset_all_coll_metadata_ops(fapl, true), path_, "set_all_coll_metadata_ops");
    checked(H5Pset_coll_metadata_write(fapl, true), path_, "set_coll_metadata_write");
  }
  file_ = checked(H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), path_, "create file");
}

H5Store::~H5Store() {
  if (page_fd_ >= 0) ::close(page_fd_);
  if (file_ >= 0) H5Fclose(static_cast<hid_t>(file_));
}

void H5Store::release_written_pages() {
  if (page_fd_ < 0) page_fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (page_fd_ < 0) return;
  (void)::sync_file_range(page_fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
  (void)::posix_fadvise(page_fd_, 0, 0, POSIX_FADV_DONTNEED);
}

void H5Store::close() {
  if (page_fd_ >= 0) {
    ::close(page_fd_);
    page_fd_ = -1;
  }
  if (file_ >= 0) {
    hid_t f = static_cast<hid_t>(file_);
    file_ = -1;
    checked(H5Fclose(f), path_, "close file");
  }
}

void H5Store::create_group(const std::string& path) {
  Handle lcpl(checked(H5Pcreate(H5P_LINK_CREATE), path_, "H5Pcreate"), H5Pclose);
  checked(H5Pset_create_intermediate_group(lcpl, 1), path_, "set_create_intermediate_group");
  Handle g(checked(H5Gcreate2(static_cast<hid_t>(file_), path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT), path_,
                   "create group " + path),
           H5Gclose);
}

void H5Store::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  Handle type(checked(H5Tcopy(H5T_C_S1), path_, "H5Tcopy"), H5Tclose);
  checked(H5Tset_size(type, value.empty() ? 1 : value.size()), path_, "H5Tset_size");
  checked(H5Tset_cset(type, H5T_CSET_UTF8), path_, "H5Tset_cset");
  Handle space(checked(H5Screate(H5S_SCALAR), path_, "H5Screate"), H5Sclose);
  Handle attr(checked(H5Acreate_by_name(static_cast<hid_t>(file_), object.c_str(), name.c_str(), type, space,
                                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      path_, "create attribute " + object + "@" + name),
              H5Aclose);
  const std::string v = value.empty() ? std::string(1, '\0') : value;
  checked(H5Awrite(attr, type, v.data()), path_, "write attribute " + name);
}

template <class T>
static void numeric_attr(hid_t file, const std::string& fname, const std::string& object, const std::string& name,
                         const std::vector<T>& value, hid_t mem_type, hid_t file_type) {
  hsize_t n = value.size();
  Handle space(checked(H5Screate_simple(1, &n, nullptr), fname, "H5Screate_simple"), H5Sclose);
  Handle attr(checked(H5Acreate_by_name(file, object.c_str(), name.c_str(), file_type, space, H5P_DEFAULT,
                                        H5P_DEFAULT, H5P_DEFAULT),
                      fname, "create attribute " + object + "@" + name),
              H5Aclose);
  checked(H5Awrite(attr, mem_type, value.data()), fname, "write attribute " + name);
}

void H5Store::set_attr(const std::string& object, const std::string& name, const std::vector<double>& value) {
  numeric_attr(static_cast<hid_t>(file_), path_, object, name, value, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE);
}

void H5Store::set_attr(const std::string& object, const std::string& name, const std::vector<int64_t>& value) {
  numeric_attr(static_cast<hid_t>(file_), path_, object, name, value, H5T_NATIVE_INT64, H5T_STD_I64LE);
}

int64_t chunk_extent(int64_t n, int64_t at_least) {
  if (n <= 0) return 1;
  const int64_t most = n / std::clamp<int64_t>(at_least, 1, n);  // the most chunks of at least at_least voxels
  const int64_t shortest = (n + most - 1) / most;
  int64_t best = shortest, best_waste = most * shortest - n;
  // Fewer, longer chunks (at most 1/8 longer) when they pad less.
  for (int64_t k = most - 1; k >= 1; --k) {
    const int64_t extent = (n + k - 1) / k;
    if (extent * 8 > shortest * 9) break;
    if (k * extent - n < best_waste) {
      best = extent;
      best_waste = k * extent - n;
    }
  }
  return best;
}

static void create_dataset(hid_t file, const std::string& fname, const std::string& path, hid_t type,
                           const std::vector<int64_t>& shape, const std::vector<int64_t>* chunk, bool filtered) {
  auto dims = dims_of(shape);
  Handle space(checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), fname, "H5Screate_simple"),
               H5Sclose);
  Handle dcpl(checked(H5Pcreate(H5P_DATASET_CREATE), fname, "H5Pcreate"), H5Pclose);
  bool empty = false;
  for (auto d : dims) empty = empty || d == 0;
  if (chunk && !empty) {
    auto c = dims_of(*chunk);
    checked(H5Pset_chunk(dcpl, static_cast<int>(c.size()), c.data()), fname, "set_chunk");
    if (filtered) {
      checked(H5Pset_shuffle(dcpl), fname, "set_shuffle");
      checked(H5Pset_deflate(dcpl, 1), fname, "set_deflate");
    }
  }
  // Early allocation: owners may then write unfiltered datasets independently.
  checked(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), fname, "set_alloc_time");
  checked(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), fname, "set_fill_time");
  Handle lcpl(checked(H5Pcreate(H5P_LINK_CREATE), fname, "H5Pcreate"), H5Pclose);
  checked(H5Pset_create_intermediate_group(lcpl, 1), fname, "set_create_intermediate_group");
  Handle d(checked(H5Dcreate2(file, path.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT), fname, "create dataset " + path),
           H5Dclose);
}

void H5Store::create_f32(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk) {
  create_dataset(static_cast<hid_t>(file_), path_, path, H5T_IEEE_F32LE, shape, &chunk, layout_ == H5Layout::deflate);
}

void H5Store::create_i8(const std::string& path, const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk) {
  create_dataset(static_cast<hid_t>(file_), path_, path, H5T_STD_I8LE, shape, &chunk, layout_ == H5Layout::deflate);
}

void H5Store::create_i64(const std::string& path, const std::vector<int64_t>& shape) {
  create_dataset(static_cast<hid_t>(file_), path_, path, H5T_STD_I64LE, shape, nullptr, false);
}

void H5Store::create_u8(const std::string& path, int64_t size) {
  create_dataset(static_cast<hid_t>(file_), path_, path, H5T_STD_U8LE, {size}, nullptr, false);
}

static hid_t memory_type_of(hid_t dset) {
  Handle ftype(H5Dget_type(dset), H5Tclose);
  return H5Tget_native_type(ftype, H5T_DIR_ASCEND);
}

void H5Store::write_independent(const std::string& path, const void* data) { write_independent_rows(path, 0, -1, data); }

void H5Store::write_independent_f32_as_i8(const std::string& path, const float* data) {
  write_chunks(path, 0, -1, data, nullptr, true);
}

void H5Store::write_independent_rows(const std::string& path, int64_t first, int64_t count, const void* data) {
  write_chunks(path, first, count, data, nullptr, false);
}

void H5Store::write_independent_planes(const std::string& path, int64_t first, int64_t count,
                                       const std::vector<const float*>& planes, bool f32_to_i8) {
  const std::vector<const void*> p(planes.begin(), planes.end());
  write_chunks(path, first, count, nullptr, &p, f32_to_i8, 0, -1, sizeof(float));
}

void H5Store::write_independent_planes(const std::string& path, int64_t first, int64_t count,
                                       const std::vector<const int8_t*>& planes) {
  const std::vector<const void*> p(planes.begin(), planes.end());
  write_chunks(path, first, count, nullptr, &p, false, 0, -1, sizeof(int8_t));
}

void H5Store::write_independent_plane_range(const std::string& path, int64_t row, int64_t first, int64_t count,
                                           const float* planes) {
  write_chunks(path, row, 1, planes, nullptr, false, first, count);
}

void H5Store::write_chunks(const std::string& path, int64_t first, int64_t count, const void* data,
                           const std::vector<const void*>* planes, bool f32_to_i8, int64_t first1, int64_t count1,
                           size_t planes_elem) {
  Handle d(checked(H5Dopen2(static_cast<hid_t>(file_), path.c_str(), H5P_DEFAULT), path_, "open dataset " + path),
           H5Dclose);
  Handle space(checked(H5Dget_space(d), path_, "get_space"), H5Sclose);
  if (H5Sget_simple_extent_npoints(space) == 0) return;
  Handle mtype(checked(memory_type_of(d), path_, "native type"), H5Tclose);
  Handle dxpl(checked(H5Pcreate(H5P_DATASET_XFER), path_, "H5Pcreate"), H5Pclose);
  if (mpi_active()) checked(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT), path_, "set_dxpl_mpio");
  Handle dcpl(checked(H5Dget_create_plist(d), path_, "get_create_plist"), H5Pclose);
  const int rank = H5Sget_simple_extent_ndims(space);
  if (H5Pget_layout(dcpl) != H5D_CHUNKED || rank < 1 || rank > 4) {
    if (first != 0 || count != -1 || f32_to_i8 || planes)
      throw InternalError("row-range, plane-wise or converting write of an unchunked dataset " + path);
    checked(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, dxpl, data), path_, "write " + path);
    return;
  }
  // Whole chunks through the direct chunk write: one pwrite per chunk of the (early allocated, unfiltered) file.
  // Handing HDF5 the strided array, or even a hyperslab per chunk, makes MPI-IO scatter row by row (edge chunks
  // alone cost ~1 M pwrites for the realistic set). Edge chunks are padded with zeros, as HDF5 stores them.
  std::vector<hsize_t> dims(static_cast<size_t>(rank)), chunk(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Pget_chunk(dcpl, rank, chunk.data());
  const size_t elem = H5Tget_size(mtype);
  if (f32_to_i8 && elem != 1) throw InternalError("float32-to-int8 write into a dataset of another type: " + path);
  const size_t src_elem = f32_to_i8 ? sizeof(float) : elem;
  // Treat the array as 4-D (pad leading axes with 1).
  hsize_t D[4] = {1, 1, 1, 1}, C[4] = {1, 1, 1, 1};
  for (int a = 0; a < rank; ++a) {
    D[4 - rank + a] = dims[static_cast<size_t>(a)];
    C[4 - rank + a] = chunk[static_cast<size_t>(a)];
  }
  // Rows [first, first + count) of the leading axis (the whole dataset by default), on chunk boundaries.
  const hsize_t row0 = static_cast<hsize_t>(first), rows = count < 0 ? dims[0] - row0 : static_cast<hsize_t>(count);
  const hsize_t lead = static_cast<hsize_t>(4 - rank);  // the dataset's axis 0 as an index into D / C
  if (row0 % chunk[0] != 0 || row0 + rows > dims[0] || ((row0 + rows) % chunk[0] != 0 && row0 + rows != dims[0]))
    throw InternalError("row range of " + path + " not on chunk boundaries");
  const size_t chunk_bytes = static_cast<size_t>(C[0] * C[1] * C[2] * C[3]) * elem;
  std::vector<char> staging(chunk_bytes);
  hsize_t begin[4] = {0, 0, 0, 0}, end[4] = {D[0], D[1], D[2], D[3]};
  begin[lead] = row0;
  end[lead] = row0 + rows;
  if (first1 != 0 || count1 >= 0) {  // a range along the next axis too (whole chunks, or up to the end)
    if (lead + 1 > 3) throw InternalError("plane range of " + path + ": no axis after the rows");
    const hsize_t f1 = static_cast<hsize_t>(first1), n1 = count1 < 0 ? D[lead + 1] - f1 : static_cast<hsize_t>(count1);
    if (f1 % C[lead + 1] != 0 || f1 + n1 > D[lead + 1] || ((f1 + n1) % C[lead + 1] != 0 && f1 + n1 != D[lead + 1]))
      throw InternalError("plane range of " + path + " not on chunk boundaries");
    begin[lead + 1] = f1;
    end[lead + 1] = f1 + n1;
  }
  // The source as planes of D[2] x D[3] elements, one per (axis 0, axis 1) index pair of the written rows.
  const hsize_t n_planes = (end[0] - begin[0]) * (end[1] - begin[1]);
  const hsize_t row_len = end[3] - begin[3], plane_bytes = (end[2] - begin[2]) * row_len * src_elem;
  std::vector<const char*> plane(n_planes);
  if (planes) {
    if (planes->size() != n_planes) throw InternalError("plane-wise write of " + path + ": wrong number of planes");
    if (!f32_to_i8 && elem != planes_elem) throw InternalError("planes written into a dataset of another type: " + path);
    for (hsize_t p = 0; p < n_planes; ++p) plane[p] = static_cast<const char*>((*planes)[p]);
  } else {
    for (hsize_t p = 0; p < n_planes; ++p) plane[p] = static_cast<const char*>(data) + p * plane_bytes;
  }
  for (hsize_t c0 = begin[0]; c0 < end[0]; c0 += C[0])
    for (hsize_t c1 = begin[1]; c1 < end[1]; c1 += C[1])
      for (hsize_t c2 = begin[2]; c2 < end[2]; c2 += C[2])
        for (hsize_t c3 = begin[3]; c3 < end[3]; c3 += C[3]) {
          const hsize_t n[4] = {std::min(C[0], D[0] - c0), std::min(C[1], D[1] - c1), std::min(C[2], D[2] - c2),
                                std::min(C[3], D[3] - c3)};
          const bool edge = n[0] != C[0] || n[1] != C[1] || n[2] != C[2] || n[3] != C[3];
          if (edge) std::memset(staging.data(), 0, chunk_bytes);
          for (hsize_t i0 = 0; i0 < n[0]; ++i0)
            for (hsize_t i1 = 0; i1 < n[1]; ++i1)
              for (hsize_t i2 = 0; i2 < n[2]; ++i2) {
                const char* row = plane[(c0 + i0 - begin[0]) * (end[1] - begin[1]) + (c1 + i1 - begin[1])] +
                                  ((c2 + i2 - begin[2]) * row_len + (c3 - begin[3])) * src_elem;
                char* out = staging.data() + ((i0 * C[1] + i1) * C[2] + i2) * C[3] * elem;
                if (f32_to_i8) {
                  const float* f = reinterpret_cast<const float*>(row);
                  for (hsize_t k = 0; k < n[3]; ++k) out[k] = static_cast<char>(static_cast<int8_t>(f[k]));
                } else {
                  std::memcpy(out, row, n[3] * elem);
                }
              }
          const hsize_t start4[4] = {c0, c1, c2, c3};
          checked(H5Dwrite_chunk(d, dxpl, 0, start4 + (4 - rank), chunk_bytes, staging.data()), path_,
                  "write chunk of " + path);
        }
}

void H5Store::write_collective(const std::string& path, const void* data) {
  Handle d(checked(H5Dopen2(static_cast<hid_t>(file_), path.c_str(), H5P_DEFAULT), path_, "open dataset " + path),
           H5Dclose);
  Handle fspace(checked(H5Dget_space(d), path_, "get_space"), H5Sclose);
  Handle mspace(checked(H5Scopy(fspace), path_, "H5Scopy"), H5Sclose);
  if (!data) {
    checked(H5Sselect_none(fspace), path_, "select_none");
    checked(H5Sselect_none(mspace), path_, "select_none");
  }
  Handle mtype(checked(memory_type_of(d), path_, "native type"), H5Tclose);
  Handle dxpl(checked(H5Pcreate(H5P_DATASET_XFER), path_, "H5Pcreate"), H5Pclose);
  if (mpi_active()) checked(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), path_, "set_dxpl_mpio");
  static const char dummy = 0;
  checked(H5Dwrite(d, mtype, mspace, fspace, dxpl, data ? data : &dummy), path_, "collective write " + path);
}

std::vector<char> h5_read_raw(const std::string& file, const std::string& dataset, std::vector<int64_t>* shape) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Handle f(checked(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), file, "open"), H5Fclose);
  Handle d(checked(H5Dopen2(f, dataset.c_str(), H5P_DEFAULT), file, "open dataset " + dataset), H5Dclose);
  Handle space(checked(H5Dget_space(d), file, "get_space"), H5Sclose);
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  if (shape) shape->assign(dims.begin(), dims.end());
  Handle mtype(checked(memory_type_of(d), file, "native type"), H5Tclose);
  size_t n = 1;
  for (auto x : dims) n *= x;
  std::vector<char> out(n * H5Tget_size(mtype));
  if (n) checked(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), file, "read " + dataset);
  return out;
}

}  // namespace amosprep
