#include "amosprep/nifti_io.hpp"

#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkMultiThreaderBase.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <libdeflate.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <vector>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"

namespace amosprep {
namespace {

static_assert(std::endian::native == std::endian::little, "amos-prep assumes a little-endian host");

// NIfTI-1 datatype codes.
constexpr int kDtUint8 = 2, kDtInt16 = 4, kDtInt32 = 8, kDtFloat32 = 16, kDtFloat64 = 64, kDtInt8 = 256,
              kDtUint16 = 512, kDtUint32 = 768, kDtInt64 = 1024, kDtUint64 = 1280;
constexpr size_t kHeaderSize = 348;

void init_itk_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(1);
  });
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// ---- header decoding --------------------------------------------------------------------------------------------

/// The NIfTI-1 header fields amos-prep uses, decoded to host byte order.
struct RawHeader {
  bool swapped = false;
  std::array<int16_t, 8> dim{};
  int16_t intent_code = 0, datatype = 0, bitpix = 0;
  std::array<float, 8> pixdim{};
  float vox_offset = 0, scl_slope = 0, scl_inter = 0;
  uint8_t xyzt_units = 0;
  int16_t qform_code = 0, sform_code = 0;
  std::array<float, 3> quatern{}, qoffset{};
  std::array<std::array<float, 4>, 3> srow{};
  std::array<char, 4> magic{};
};

template <class T>
T load_field(const unsigned char* p, size_t offset, bool swap) {
  using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint8_t>>;
  U u;
  std::memcpy(&u, p + offset, sizeof u);
  if (swap) {
    if constexpr (sizeof(U) == 2) u = __builtin_bswap16(u);
    if constexpr (sizeof(U) == 4) u = __builtin_bswap32(u);
  }
  T t;
  std::memcpy(&t, &u, sizeof t);
  return t;
}

RawHeader decode_header(const unsigned char* p, const std::string& path, const std::string& case_id) {
  RawHeader h;
  int32_t sizeof_hdr;
  std::memcpy(&sizeof_hdr, p, 4);
  if (sizeof_hdr == 348) {
    h.swapped = false;
  } else if (static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(sizeof_hdr))) == 348) {
    h.swapped = true;
  } else {
    throw InputError(case_id, path, "not a NIfTI-1 file (sizeof_hdr is " + std::to_string(sizeof_hdr) + ")");
  }
  const bool s = h.swapped;
  for (int i = 0; i < 8; ++i) h.dim[i] = load_field<int16_t>(p, 40 + 2 * i, s);
  h.intent_code = load_field<int16_t>(p, 68, s);
  h.datatype = load_field<int16_t>(p, 70, s);
  h.bitpix = load_field<int16_t>(p, 72, s);
  for (int i = 0; i < 8; ++i) h.pixdim[i] = load_field<float>(p, 76 + 4 * i, s);
  h.vox_offset = load_field<float>(p, 108, s);
  h.scl_slope = load_field<float>(p, 112, s);
  h.scl_inter = load_field<float>(p, 116, s);
  h.xyzt_units = p[123];
  h.qform_code = load_field<int16_t>(p, 252, s);
  h.sform_code = load_field<int16_t>(p, 254, s);
  for (int i = 0; i < 3; ++i) h.quatern[i] = load_field<float>(p, 256 + 4 * i, s);
  for (int i = 0; i < 3; ++i) h.qoffset[i] = load_field<float>(p, 268 + 4 * i, s);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) h.srow[r][c] = load_field<float>(p, 280 + 16 * r + 4 * c, s);
  std::memcpy(h.magic.data(), p + 344, 4);
  if (h.dim[0] < 1 || h.dim[0] > 7)
    throw InputError(case_id, path, "corrupt NIfTI header: dim[0] = " + std::to_string(h.dim[0]));
  return h;
}

/// Reads the first 348 bytes of a .nii or .nii.gz (gzread passes plain files through unchanged).
std::array<unsigned char, kHeaderSize> read_header_bytes(const std::string& path, const std::string& case_id) {
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr)
    throw InputError(case_id, path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "gzopen failed"));
  std::array<unsigned char, kHeaderSize> buf{};
  const int got = gzread(f, buf.data(), static_cast<unsigned>(kHeaderSize));
  int zerr = Z_OK;
  const char* zmsg = gzerror(f, &zerr);
  const std::string reason = (got < 0 && zmsg) ? zmsg : "";
  gzclose(f);
  if (got < 0) throw InputError(case_id, path, "cannot read header: " + reason);
  if (static_cast<size_t>(got) < kHeaderSize)
    throw InputError(case_id, path, "file too short for a NIfTI-1 header (" + std::to_string(got) + " bytes)");
  return buf;
}

/// niftilib replaces non-finite scale fields by 0 (FIXED_FLOAT).
double finite_or_zero(float v) { return std::isfinite(v) ? static_cast<double>(v) : 0.0; }

using Mat34 = std::array<std::array<double, 4>, 3>;

/// The qform affine (RAS, voxel -> mm) from the quaternion fields, as the NIfTI-1 standard defines it.
Mat34 qform_affine(const RawHeader& h) {
  const double b = h.quatern[0], c = h.quatern[1], d = h.quatern[2];
  double a = 1.0 - (b * b + c * c + d * d);
  a = a < 1e-7 ? 0.0 : std::sqrt(a);
  const double qfac = h.pixdim[0] < 0 ? -1.0 : 1.0;
  const double dx = h.pixdim[1] > 0 ? h.pixdim[1] : 1.0;
  const double dy = h.pixdim[2] > 0 ? h.pixdim[2] : 1.0;
  const double dz = (h.pixdim[3] > 0 ? h.pixdim[3] : 1.0) * qfac;
  const double r[3][3] = {{a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
                          {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
                          {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b}};
  Mat34 m{};
  for (int i = 0; i < 3; ++i) {
    m[i][0] = r[i][0] * dx;
    m[i][1] = r[i][1] * dy;
    m[i][2] = r[i][2] * dz;
    m[i][3] = h.qoffset[i];
  }
  return m;
}

// ---- voxel decoding ---------------------------------------------------------------------------------------------

/// Bytes of one voxel for the supported scalar datatypes, 0 otherwise.
int scalar_size(int datatype) {
  switch (datatype) {
    case kDtUint8: case kDtInt8: return 1;
    case kDtInt16: case kDtUint16: return 2;
    case kDtInt32: case kDtUint32: case kDtFloat32: return 4;
    case kDtInt64: case kDtUint64: case kDtFloat64: return 8;
    default: return 0;
  }
}

bool is_integer_type(int datatype) { return datatype != kDtFloat32 && datatype != kDtFloat64; }

itk::IOComponentEnum itk_component_of(int datatype) {
  using C = itk::IOComponentEnum;
  switch (datatype) {
    case kDtUint8: return C::UCHAR;
    case kDtInt8: return C::CHAR;
    case kDtInt16: return C::SHORT;
    case kDtUint16: return C::USHORT;
    case kDtInt32: return C::INT;
    case kDtUint32: return C::UINT;
    case kDtInt64: return C::LONG;
    case kDtUint64: return C::ULONG;
    case kDtFloat32: return C::FLOAT;
    case kDtFloat64: return C::DOUBLE;
    default: return C::UNKNOWNCOMPONENTTYPE;
  }
}

template <class T>
T load_voxel(const unsigned char* p, bool swap) {
  if constexpr (sizeof(T) == 1) {
    T t;
    std::memcpy(&t, p, 1);
    return t;
  } else {
    using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
    U u;
    std::memcpy(&u, p, sizeof u);
    if (swap) {
      if constexpr (sizeof(U) == 2) u = __builtin_bswap16(u);
      if constexpr (sizeof(U) == 4) u = __builtin_bswap32(u);
      if constexpr (sizeof(U) == 8) u = __builtin_bswap64(u);
    }
    T t;
    std::memcpy(&t, &u, sizeof t);
    return t;
  }
}

/// raw -> float32 like SimpleITK + astype(float32); with `rescale`, like ITK's NiftiImageIO for integer files:
/// cast to float, then float(double * slope + inter).
template <class T>
void convert_voxels(const unsigned char* src, size_t n, bool swap, bool rescale, double slope, double inter,
                    float* out) {
  if (!swap && !rescale) {
    for (size_t i = 0; i < n; ++i) {
      T t;
      std::memcpy(&t, src + i * sizeof(T), sizeof(T));
      out[i] = static_cast<float>(t);
    }
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const T t = load_voxel<T>(src + i * sizeof(T), swap);
    if (rescale) {
      double v = static_cast<double>(static_cast<float>(t)) * slope;
      v += inter;
      out[i] = static_cast<float>(v);
    } else {
      out[i] = static_cast<float>(t);
    }
  }
}

void convert_any(int datatype, const unsigned char* src, size_t n, bool swap, bool rescale, double slope,
                 double inter, float* out) {
  switch (datatype) {
    case kDtUint8: return convert_voxels<uint8_t>(src, n, swap, rescale, slope, inter, out);
    case kDtInt8: return convert_voxels<int8_t>(src, n, swap, rescale, slope, inter, out);
    case kDtInt16: return convert_voxels<int16_t>(src, n, swap, rescale, slope, inter, out);
    case kDtUint16: return convert_voxels<uint16_t>(src, n, swap, rescale, slope, inter, out);
    case kDtInt32: return convert_voxels<int32_t>(src, n, swap, rescale, slope, inter, out);
    case kDtUint32: return convert_voxels<uint32_t>(src, n, swap, rescale, slope, inter, out);
    case kDtInt64: return convert_voxels<int64_t>(src, n, swap, rescale, slope, inter, out);
    case kDtUint64: return convert_voxels<uint64_t>(src, n, swap, rescale, slope, inter, out);
    case kDtFloat32: return convert_voxels<float>(src, n, swap, rescale, slope, inter, out);
    case kDtFloat64: return convert_voxels<double>(src, n, swap, rescale, slope, inter, out);
    default: AMOSPREP_VERIFY(false, "unsupported datatype in convert_any");
  }
}

/// A decoded byte buffer (uninitialised allocation: the decompressor fills it).
struct ByteBuffer {
  std::unique_ptr<unsigned char[]> data;
  size_t size = 0;
};

/// Decompresses a gzip file (single or multi-member) and returns a buffer whose first `needed` bytes are valid.
/// Throws InputError when the data is corrupt (including CRC mismatches) or shorter than `needed`.
ByteBuffer gunzip_prefix(std::string_view gz, size_t needed, const std::string& path, const std::string& case_id) {
  ByteBuffer out;
  // Fast path: libdeflate on the whole buffer, sized from the gzip trailer (ISIZE = size mod 2^32).
  if (gz.size() >= 18) {
    uint32_t isize;
    std::memcpy(&isize, gz.data() + gz.size() - 4, 4);
    if (static_cast<size_t>(isize) >= needed && needed > 0) {
      out.data.reset(new unsigned char[isize]);
      out.size = isize;
      libdeflate_decompressor* d = libdeflate_alloc_decompressor();
      if (d == nullptr) throw IoError(path, "out of memory (libdeflate)", case_id);
      size_t actual = 0;
      const libdeflate_result r = libdeflate_gzip_decompress(d, gz.data(), gz.size(), out.data.get(), isize, &actual);
      libdeflate_free_decompressor(d);
      if (r == LIBDEFLATE_SUCCESS && actual >= needed) return out;
    }
  }
  // General path: zlib streaming through every member (so each member's CRC is checked); bytes past `needed`
  // are decoded into a scratch buffer and dropped. Trailing non-gzip bytes are ignored, as gzip does.
  out.data.reset(new unsigned char[needed > 0 ? needed : 1]);
  out.size = needed;
  std::vector<unsigned char> scratch(1 << 16);
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw IoError(path, "inflateInit2 failed", case_id);
  size_t in_pos = 0, produced = 0;
  std::string error;
  for (;;) {
    const size_t in_chunk = std::min<size_t>(gz.size() - in_pos, 1u << 30);
    const bool into_out = produced < needed;
    const size_t out_chunk = into_out ? std::min<size_t>(needed - produced, 1u << 30) : scratch.size();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data() + in_pos));
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = into_out ? out.data.get() + produced : scratch.data();
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += in_chunk - zs.avail_in;
    if (into_out) produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      const bool another_member = gz.size() - in_pos >= 2 && static_cast<unsigned char>(gz[in_pos]) == 0x1f &&
                                  static_cast<unsigned char>(gz[in_pos + 1]) == 0x8b;
      if (!another_member) break;
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_BUF_ERROR || (rc == Z_OK && in_pos >= gz.size())) {
      error = "truncated: gzip stream ends early";
      break;
    }
    if (rc != Z_OK) {
      error = std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "inflate error " + std::to_string(rc));
      break;
    }
  }
  inflateEnd(&zs);
  if (error.empty() && produced < needed)
    error = "truncated: " + std::to_string(produced) + " bytes of image data, the header needs " + std::to_string(needed);
  if (!error.empty()) throw InputError(case_id, path, error);
  return out;
}

/// A read-only, pre-faulted private mapping of a whole file (cheaper than read() into fresh pages).
class MappedFile {
 public:
  MappedFile(const std::string& path, const std::string& case_id) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(case_id, path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(case_id, path, std::string("cannot stat: ") + std::strerror(err));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw InputError(case_id, path, std::string("cannot map: ") + std::strerror(err));
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view bytes() const { return {data_ != nullptr ? data_ : "", size_}; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// ---- geometry -------------------------------------------------------------------------------------------------

using ImageF = itk::Image<float, 3>;

Geometry geometry_of(const ImageF* img) {
  Geometry g;
  const auto size = img->GetLargestPossibleRegion().GetSize();
  const auto& sp = img->GetSpacing();
  const auto& org = img->GetOrigin();
  const auto& dir = img->GetDirection();
  for (int i = 0; i < 3; ++i) {
    g.shape[2 - i] = static_cast<int64_t>(size[i]);
    g.itk_spacing[i] = sp[i];
    g.spacing[2 - i] = sp[i];
    g.itk_origin[i] = org[i];
    for (int j = 0; j < 3; ++j) g.itk_direction[3 * i + j] = dir(i, j);
  }
  return g;
}

std::string itk_reason(const itk::ExceptionObject& e) {
  std::string d = e.GetDescription();
  while (!d.empty() && (d.back() == '\n' || d.back() == ' ')) d.pop_back();
  return "ITK cannot read it: " + d;
}

/// Opens the file with ITK's reader and returns it with its output information (geometry) up to date.
itk::ImageFileReader<ImageF>::Pointer open_with_itk(const std::string& path, const std::string& case_id,
                                                     itk::NiftiImageIO::Pointer& io) {
  init_itk_once();
  {
    errno = 0;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) throw InputError(case_id, path, std::string("cannot open: ") + std::strerror(errno));
    std::fclose(f);
  }
  io = itk::NiftiImageIO::New();
  auto reader = itk::ImageFileReader<ImageF>::New();
  reader->SetImageIO(io);
  reader->SetFileName(path);
  try {
    reader->UpdateOutputInformation();
  } catch (const itk::ExceptionObject& e) {
    throw InputError(case_id, path, itk_reason(e));
  }
  const unsigned nd = io->GetNumberOfDimensions();
  if (nd != 3) {
    std::string dims;
    for (unsigned i = 0; i < nd; ++i) dims += (i ? "x" : "") + std::to_string(io->GetDimensions(i));
    throw InputError(case_id, path, "expected a 3-D image, got " + std::to_string(nd) + "-D (" + dims + ")");
  }
  if (io->GetNumberOfComponents() != 1 || io->GetPixelType() != itk::IOPixelEnum::SCALAR)
    throw InputError(case_id, path, "expected scalar voxels, got " +
                                        itk::ImageIOBase::GetPixelTypeAsString(io->GetPixelType()) + " with " +
                                        std::to_string(io->GetNumberOfComponents()) + " components");
  return reader;
}

Image read_pixels_with_itk(itk::ImageFileReader<ImageF>* reader, const std::string& path,
                           const std::string& case_id) {
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    throw InputError(case_id, path, itk_reason(e));
  }
  ImageF* img = reader->GetOutput();
  Image out;
  out.geom = geometry_of(img);
  out.voxels = Array3<float>(out.geom.shape);
  std::memcpy(out.voxels.data(), img->GetBufferPointer(), out.voxels.size() * sizeof(float));
  return out;
}

}  // namespace

// ---- reading --------------------------------------------------------------------------------------------------

Image read_nifti_with_itk(const std::string& path, const std::string& case_id) {
  itk::NiftiImageIO::Pointer io;
  auto reader = open_with_itk(path, case_id, io);
  return read_pixels_with_itk(reader.GetPointer(), path, case_id);
}

namespace {

// How read_nifti decodes a file's voxels itself (ok) or leaves them to ITK.
struct FastRead {
  bool ok = false;
  RawHeader h;
  int bpv = 0;
  bool rescale = false;
  double slope = 1.0, inter = 0.0;
};

// Decode the voxels ourselves when the file is a plain single-file NIfTI-1 whose scaling we reproduce exactly;
// everything else goes through ITK.
FastRead probe_fast_read(const std::string& path, const std::string& case_id, itk::NiftiImageIO* io,
                         const Geometry& geom) {
  FastRead f;
  f.h = decode_header(read_header_bytes(path, case_id).data(), path, case_id);
  const RawHeader& h = f.h;
  f.bpv = scalar_size(h.datatype);
  const bool single_file = std::memcmp(h.magic.data(), "n+1", 4) == 0;
  bool fast = f.bpv > 0 && h.bitpix == 8 * f.bpv && single_file && h.vox_offset >= 352.0f &&
              h.vox_offset == std::floor(h.vox_offset) && (ends_with(path, ".nii") || ends_with(path, ".nii.gz"));
  if (fast) {
    const int64_t nx = h.dim[1], ny = h.dim[2], nz = h.dim[0] >= 3 ? h.dim[3] : 1;
    fast = nx == geom.shape[2] && ny == geom.shape[1] && nz == geom.shape[0];
    for (int i = 4; i <= h.dim[0]; ++i) fast = fast && h.dim[i] == 1;
  }
  if (fast) {
    f.slope = finite_or_zero(h.scl_slope);
    if (f.slope == 0.0) f.slope = 1.0;
    f.inter = finite_or_zero(h.scl_inter);
    const auto reported = io->GetComponentType();
    if (is_integer_type(h.datatype)) {
      // ITK reports FLOAT for integer files it rescales, the on-disk type otherwise.
      if (reported == itk::IOComponentEnum::FLOAT) f.rescale = true;
      else if (reported != itk_component_of(h.datatype)) fast = false;
    } else {
      // Floating-point files are rescaled in their own type by ITK; we only take those that need no rescaling.
      fast = reported == itk_component_of(h.datatype) && f.slope == 1.0 && f.inter == 0.0;
    }
  }
  f.ok = fast;
  return f;
}

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b;
}

// Inflates a whole single-member gzip file of known size `needed` into `dst`; false when that is not possible.
bool gunzip_exact(std::string_view bytes, size_t needed, unsigned char* dst, const std::string& path,
                  const std::string& case_id) {
  uint32_t isize = 0;
  if (bytes.size() >= 18) std::memcpy(&isize, bytes.data() + bytes.size() - 4, 4);
  if (isize != needed) return false;
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  if (d == nullptr) throw IoError(path, "out of memory (libdeflate)", case_id);
  size_t actual = 0;
  const libdeflate_result r = libdeflate_gzip_decompress(d, bytes.data(), bytes.size(), dst, needed, &actual);
  libdeflate_free_decompressor(d);
  return r == LIBDEFLATE_SUCCESS && actual == needed;
}

template <class T>
constexpr int datatype_of() {
  if constexpr (std::is_same_v<T, int16_t>) return kDtInt16;
  else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) return kDtUint8;
  else static_assert(sizeof(T) == 0, "unsupported exact-read type");
}

}  // namespace

Image read_nifti(const std::string& path, const std::string& case_id) {
  itk::NiftiImageIO::Pointer io;
  auto reader = open_with_itk(path, case_id, io);
  const Geometry geom = geometry_of(reader->GetOutput());
  const FastRead f = probe_fast_read(path, case_id, io.GetPointer(), geom);
  if (!f.ok) return read_pixels_with_itk(reader.GetPointer(), path, case_id);
  const RawHeader& h = f.h;
  const int bpv = f.bpv;

  const size_t nvox = static_cast<size_t>(voxel_count(geom.shape));
  const size_t offset = static_cast<size_t>(h.vox_offset);
  const size_t needed = offset + nvox * static_cast<size_t>(bpv);
  Image out;
  out.geom = geom;
  out.voxels = Array3<float>(geom.shape);
  const MappedFile file(path, case_id);
  const std::string_view bytes = file.bytes();
  const unsigned char* src = nullptr;
  ByteBuffer inflated;
  if (is_gzip(bytes)) {
    // For 1- and 2-byte voxels the whole decompressed file fits in the back of the float output: inflate it
    // there and widen front to back (element i's float never reaches element i+1's bytes). Saves a buffer.
    const size_t capacity = nvox * sizeof(float);
    if (bpv <= 2 && needed <= capacity) {
      auto* base = reinterpret_cast<unsigned char*>(out.voxels.data()) + (capacity - needed);
      if (gunzip_exact(bytes, needed, base, path, case_id)) src = base + offset;
    }
    if (src == nullptr) {
      inflated = gunzip_prefix(bytes, needed, path, case_id);
      src = inflated.data.get() + offset;
    }
  } else {
    if (bytes.size() < needed)
      throw InputError(case_id, path, "truncated: " + std::to_string(bytes.size()) + " bytes, the header needs " +
                                          std::to_string(needed));
    src = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
  }
  convert_any(h.datatype, src, nvox, h.swapped, f.rescale, f.slope, f.inter, out.voxels.data());
  return out;
}

template <class T>
std::optional<Array3<T>> read_nifti_exact(const std::string& path, const std::string& case_id, Geometry& geom) {
  itk::NiftiImageIO::Pointer io;
  auto reader = open_with_itk(path, case_id, io);
  geom = geometry_of(reader->GetOutput());
  const FastRead f = probe_fast_read(path, case_id, io.GetPointer(), geom);
  if (!f.ok || f.rescale || f.h.swapped || f.h.datatype != datatype_of<T>()) return std::nullopt;

  const size_t nvox = static_cast<size_t>(voxel_count(geom.shape));
  const size_t offset = static_cast<size_t>(f.h.vox_offset);
  const size_t needed = offset + nvox * sizeof(T);
  Array3<T> out;
  out.shape = geom.shape;
  const MappedFile file(path, case_id);
  const std::string_view bytes = file.bytes();
  if (is_gzip(bytes)) {
    // Inflate the whole file (header included) into the array's own storage, then move the voxels to the front.
    const size_t pad = (offset + sizeof(T) - 1) / sizeof(T);
    out.v.resize(nvox + pad);
    auto* base = reinterpret_cast<unsigned char*>(out.v.data());
    if (gunzip_exact(bytes, needed, base, path, case_id)) {
      std::memmove(base, base + offset, nvox * sizeof(T));
    } else {
      const ByteBuffer inflated = gunzip_prefix(bytes, needed, path, case_id);
      std::memcpy(base, inflated.data.get() + offset, nvox * sizeof(T));
    }
    out.v.resize(nvox);
  } else {
    if (bytes.size() < needed)
      throw InputError(case_id, path, "truncated: " + std::to_string(bytes.size()) + " bytes, the header needs " +
                                          std::to_string(needed));
    out.v.resize(nvox);
    std::memcpy(out.v.data(), bytes.data() + offset, nvox * sizeof(T));
  }
  return out;
}

template std::optional<Array3<int16_t>> read_nifti_exact<int16_t>(const std::string&, const std::string&, Geometry&);
template std::optional<Array3<uint8_t>> read_nifti_exact<uint8_t>(const std::string&, const std::string&, Geometry&);
template std::optional<Array3<int8_t>> read_nifti_exact<int8_t>(const std::string&, const std::string&, Geometry&);

// ---- header info ----------------------------------------------------------------------------------------------

NiftiHeaderInfo read_nifti_header(const std::string& path) {
  const RawHeader h = decode_header(read_header_bytes(path, "").data(), path, "");
  NiftiHeaderInfo info;
  info.ndim = h.dim[0];
  for (int i = 0; i < 7; ++i) info.dim[i] = h.dim[i + 1];
  for (int i = 0; i < 8; ++i) info.pixdim[i] = h.pixdim[i];
  info.datatype = h.datatype;
  info.scl_slope = h.scl_slope;
  info.scl_inter = h.scl_inter;
  info.qform_code = h.qform_code;
  info.sform_code = h.sform_code;
  if (h.qform_code > 0 && h.sform_code > 0) {
    const Mat34 q = qform_affine(h);
    double worst = 0;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) worst = std::max(worst, std::fabs(q[r][c] - static_cast<double>(h.srow[r][c])));
    info.qform_sform_disagree = !(worst <= 1e-3);
  }
  return info;
}

// ---- writing --------------------------------------------------------------------------------------------------

namespace {

template <class T>
void store_field(unsigned char* p, size_t offset, T v) {
  std::memcpy(p + offset, &v, sizeof v);
}

/// NIfTI quaternion (b, c, d) and qfac of a 3x3 rotation/reflection matrix with orthonormal columns.
void rotation_to_quaternion(const double r_in[3][3], double& qb, double& qc, double& qd, double& qfac) {
  double r[3][3];
  std::memcpy(r, r_in, sizeof r);
  const double det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) -
                     r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0]) +
                     r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
  qfac = 1.0;
  if (det < 0) {  // an improper matrix: flip the third column and record it in qfac
    qfac = -1.0;
    for (int i = 0; i < 3; ++i) r[i][2] = -r[i][2];
  }
  double a = r[0][0] + r[1][1] + r[2][2] + 1.0, b, c, d;
  if (a > 0.5) {
    a = 0.5 * std::sqrt(a);
    b = 0.25 * (r[2][1] - r[1][2]) / a;
    c = 0.25 * (r[0][2] - r[2][0]) / a;
    d = 0.25 * (r[1][0] - r[0][1]) / a;
  } else {
    const double xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
    const double yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
    const double zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
    if (xd > 1.0) {
      b = 0.5 * std::sqrt(xd);
      c = 0.25 * (r[0][1] + r[1][0]) / b;
      d = 0.25 * (r[0][2] + r[2][0]) / b;
      a = 0.25 * (r[2][1] - r[1][2]) / b;
    } else if (yd > 1.0) {
      c = 0.5 * std::sqrt(yd);
      b = 0.25 * (r[0][1] + r[1][0]) / c;
      d = 0.25 * (r[1][2] + r[2][1]) / c;
      a = 0.25 * (r[0][2] - r[2][0]) / c;
    } else {
      d = 0.5 * std::sqrt(zd);
      b = 0.25 * (r[0][2] + r[2][0]) / d;
      c = 0.25 * (r[1][2] + r[2][1]) / d;
      a = 0.25 * (r[1][0] - r[0][1]) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  qb = b;
  qc = c;
  qd = d;
}

std::string make_header(const Shape3& shape, const Geometry& geom, int datatype, int bitpix) {
  std::string hdr(352, '\0');  // 348-byte header + 4-byte extension flag (no extensions)
  auto* p = reinterpret_cast<unsigned char*>(hdr.data());
  store_field<int32_t>(p, 0, 348);
  const int64_t dims[3] = {shape[2], shape[1], shape[0]};
  for (int i = 0; i < 3; ++i)
    if (dims[i] < 1 || dims[i] > std::numeric_limits<int16_t>::max())
      throw InternalError("write_nifti: dimension " + std::to_string(dims[i]) + " does not fit NIfTI-1");
  const int16_t dim[8] = {3, static_cast<int16_t>(dims[0]), static_cast<int16_t>(dims[1]),
                          static_cast<int16_t>(dims[2]), 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) store_field<int16_t>(p, 40 + 2 * i, dim[i]);
  store_field<int16_t>(p, 70, static_cast<int16_t>(datatype));
  store_field<int16_t>(p, 72, static_cast<int16_t>(bitpix));

  // RAS affine from ITK's LPS geometry: A = F * D * diag(spacing), offset F * origin, F = diag(-1, -1, 1).
  const double flip[3] = {-1.0, -1.0, 1.0};
  double rot[3][3];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) rot[r][c] = flip[r] * geom.itk_direction[3 * r + c];
  double qb, qc, qd, qfac;
  rotation_to_quaternion(rot, qb, qc, qd, qfac);

  const float pixdim[8] = {static_cast<float>(qfac), static_cast<float>(geom.itk_spacing[0]),
                           static_cast<float>(geom.itk_spacing[1]), static_cast<float>(geom.itk_spacing[2]),
                           1.0f, 1.0f, 1.0f, 1.0f};
  for (int i = 0; i < 8; ++i) store_field<float>(p, 76 + 4 * i, pixdim[i]);
  store_field<float>(p, 108, 352.0f);  // vox_offset
  store_field<float>(p, 112, 1.0f);    // scl_slope
  store_field<float>(p, 116, 0.0f);    // scl_inter
  p[123] = 2 | 8;                      // xyzt_units: mm, s
  store_field<int16_t>(p, 252, 1);     // qform_code: scanner
  store_field<int16_t>(p, 254, 1);     // sform_code: scanner
  store_field<float>(p, 256, static_cast<float>(qb));
  store_field<float>(p, 260, static_cast<float>(qc));
  store_field<float>(p, 264, static_cast<float>(qd));
  for (int r = 0; r < 3; ++r) {
    const double off = flip[r] * geom.itk_origin[r];
    store_field<float>(p, 268 + 4 * r, static_cast<float>(off));
    for (int c = 0; c < 3; ++c)
      store_field<float>(p, 280 + 16 * r + 4 * c, static_cast<float>(rot[r][c] * geom.itk_spacing[c]));
    store_field<float>(p, 280 + 16 * r + 12, static_cast<float>(off));
  }
  std::memcpy(p + 344, "n+1\0", 4);
  return hdr;
}

template <class T>
void encode_voxels(const Array3<float>& v, unsigned char* dst, const std::string& path) {
  const size_t n = v.size();
  const float* src = v.data();
  if constexpr (std::is_integral_v<T>) {
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    for (size_t i = 0; i < n; ++i) {
      const double x = src[i];
      if (!(x >= lo && x <= hi) || x != std::nearbyint(x))
        throw InternalError("write_nifti: value " + std::to_string(x) + " at index " + std::to_string(i) +
                            " is not representable in the requested integer type (" + path + ")");
      const T t = static_cast<T>(x);
      std::memcpy(dst + i * sizeof(T), &t, sizeof(T));
    }
  } else {
    std::memcpy(dst, src, n * sizeof(float));
  }
}

}  // namespace

namespace {

/// Compresses (".gz" paths) and writes header + voxel bytes atomically.
void write_encoded(const std::string& path, const unsigned char* raw, size_t total, int gzip_level) {
  AtomicFile file(path);
  if (ends_with(path, ".gz")) {
    libdeflate_compressor* c = libdeflate_alloc_compressor(gzip_level);
    if (c == nullptr)
      throw IoError(path, "libdeflate_alloc_compressor failed (level " + std::to_string(gzip_level) + ")");
    const size_t bound = libdeflate_gzip_compress_bound(c, total);
    std::unique_ptr<unsigned char[]> gz(new unsigned char[bound]);
    const size_t n = libdeflate_gzip_compress(c, raw, total, gz.get(), bound);
    libdeflate_free_compressor(c);
    if (n == 0) throw IoError(path, "gzip compression failed");
    file.write(gz.get(), n);
  } else {
    file.write(raw, total);
  }
  file.commit();
}

template <class T>
void write_typed(const std::string& path, const Array3<T>& voxels, const Geometry& geom, int datatype,
                 int gzip_level) {
  if (geom.shape != voxels.shape) throw InternalError("write_nifti: geometry shape differs from voxel shape");
  const std::string hdr = make_header(voxels.shape, geom, datatype, 8 * static_cast<int>(sizeof(T)));
  const size_t total = hdr.size() + voxels.size() * sizeof(T);
  std::unique_ptr<unsigned char[]> raw(new unsigned char[total]);
  std::memcpy(raw.get(), hdr.data(), hdr.size());
  std::memcpy(raw.get() + hdr.size(), voxels.data(), voxels.size() * sizeof(T));
  write_encoded(path, raw.get(), total, gzip_level);
}

}  // namespace

void write_nifti(const std::string& path, const Array3<float>& voxels, const Geometry& geom, NiftiPixel pixel,
                 int gzip_level) {
  if (geom.shape != voxels.shape) throw InternalError("write_nifti: geometry shape differs from voxel shape");
  int datatype = 0, bpv = 0;
  switch (pixel) {
    case NiftiPixel::int16: datatype = kDtInt16; bpv = 2; break;
    case NiftiPixel::uint8: datatype = kDtUint8; bpv = 1; break;
    case NiftiPixel::uint16: datatype = kDtUint16; bpv = 2; break;
    case NiftiPixel::int32: datatype = kDtInt32; bpv = 4; break;
    case NiftiPixel::float32: datatype = kDtFloat32; bpv = 4; break;
  }
  const std::string hdr = make_header(voxels.shape, geom, datatype, 8 * bpv);
  const size_t total = hdr.size() + voxels.size() * static_cast<size_t>(bpv);
  std::unique_ptr<unsigned char[]> raw(new unsigned char[total]);
  std::memcpy(raw.get(), hdr.data(), hdr.size());
  unsigned char* dst = raw.get() + hdr.size();
  switch (pixel) {
    case NiftiPixel::int16: encode_voxels<int16_t>(voxels, dst, path); break;
    case NiftiPixel::uint8: encode_voxels<uint8_t>(voxels, dst, path); break;
    case NiftiPixel::uint16: encode_voxels<uint16_t>(voxels, dst, path); break;
    case NiftiPixel::int32: encode_voxels<int32_t>(voxels, dst, path); break;
    case NiftiPixel::float32: encode_voxels<float>(voxels, dst, path); break;
  }
  write_encoded(path, raw.get(), total, gzip_level);
}

void write_nifti(const std::string& path, const Array3<int16_t>& voxels, const Geometry& geom, int gzip_level) {
  write_typed(path, voxels, geom, kDtInt16, gzip_level);
}

void write_nifti(const std::string& path, const Array3<uint8_t>& voxels, const Geometry& geom, int gzip_level) {
  write_typed(path, voxels, geom, kDtUint8, gzip_level);
}

}  // namespace amosprep
