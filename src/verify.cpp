#include "amosprep/verify.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <set>
#include <tuple>

#include "amosprep/error.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

// ---- report ---------------------------------------------------------------------------------------------------

int VerifyReport::errors() const {
  return static_cast<int>(std::count_if(problems.begin(), problems.end(),
                                        [](const Problem& p) { return p.severity == "error"; }));
}

int VerifyReport::warnings() const { return static_cast<int>(problems.size()) - errors(); }

int VerifyReport::exit_code() const { return errors() > 0 ? kExitBadInput : kExitOk; }

namespace {

std::string plural(int n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

std::string problem_line(const Problem& p) {
  std::string line = "amos-prep: " + p.severity + ": ";
  if (!p.case_id.empty()) line += "case " + p.case_id + ": ";
  if (!p.file.empty()) line += p.file + ": ";
  return line + p.reason + "\n";
}

}  // namespace

std::string VerifyReport::text() const {
  std::string out;
  for (const char* severity : {"error", "warning"})
    for (const Problem& p : problems)
      if (p.severity == severity) out += problem_line(p);
  out += "amos-prep: verify: " + plural(errors(), "error") + ", " + plural(warnings(), "warning") + " (" +
         plural(training_cases, "training case") + ", " + plural(test_cases, "test case") + ")\n";
  return out;
}

// ---- gzip -----------------------------------------------------------------------------------------------------

GzipCheck check_gzip_file(const std::string& path) {
  GzipCheck r;
  errno = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    r.reason = std::string("cannot open: ") + std::strerror(errno);
    return r;
  }
  constexpr size_t kIn = 1 << 20, kOut = 1 << 20;
  std::unique_ptr<unsigned char[]> in(new unsigned char[kIn]), out(new unsigned char[kOut]);
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    r.reason = "zlib inflateInit2 failed";
    return r;
  }
  uint64_t compressed_read = 0;
  bool eof = false, in_member = true, member_has_input = false;
  auto refill = [&]() {
    const size_t n = std::fread(in.get(), 1, kIn, f.get());
    if (n < kIn) eof = true;
    compressed_read += n;
    zs.next_in = in.get();
    zs.avail_in = static_cast<uInt>(n);
    return n;
  };
  while (true) {
    if (zs.avail_in == 0) {
      if (eof || refill() == 0) {
        if (std::ferror(f.get())) r.reason = std::string("read error: ") + std::strerror(errno);
        else if (in_member && r.members == 0 && compressed_read == 0) r.reason = "empty file (0 bytes)";
        else if (in_member && member_has_input)
          r.reason = "truncated gzip data: the stream ends after " + std::to_string(compressed_read) +
                     " compressed bytes (" + std::to_string(r.uncompressed_bytes) + " bytes decoded)";
        else r.ok = true;  // ended cleanly after the last member
        break;
      }
    }
    if (!in_member) {  // bytes follow a complete member: either another member or trailing garbage
      if (zs.next_in[0] != 0x1f) {
        r.trailing_garbage = true;
        r.ok = true;
        break;
      }
      inflateReset(&zs);
      in_member = true;
      member_has_input = false;
    }
    zs.next_out = out.get();
    zs.avail_out = static_cast<uInt>(kOut);
    const uInt avail_before = zs.avail_in;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    member_has_input = member_has_input || zs.avail_in != avail_before;
    r.uncompressed_bytes += kOut - zs.avail_out;
    if (rc == Z_STREAM_END) {
      ++r.members;
      in_member = false;
      continue;
    }
    if (rc == Z_OK || rc == Z_BUF_ERROR) continue;  // Z_BUF_ERROR: needs more input
    const std::string msg = zs.msg ? zs.msg : ("zlib error " + std::to_string(rc));
    if (r.members > 0 && msg == "incorrect header check") {
      r.trailing_garbage = true;
      r.ok = true;
    } else if (msg == "incorrect data check") {
      r.reason = "corrupt gzip data: CRC32 mismatch (incorrect data check)";
    } else if (msg == "incorrect length check") {
      r.reason = "corrupt gzip data: ISIZE mismatch (incorrect length check)";
    } else if (r.members == 0 && msg == "incorrect header check") {
      r.reason = "not gzip data (no gzip header)";
    } else {
      r.reason = "corrupt gzip data: " + msg;
    }
    break;
  }
  inflateEnd(&zs);
  return r;
}

namespace {

// ---- small helpers ----------------------------------------------------------------------------------------------

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string last_component(const std::string& s) {
  const size_t p = s.rfind('/');
  return p == std::string::npos ? s : s.substr(p + 1);
}

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

/// Shortest round-trip decimal of a float32 (what Python prints for float(np.float32(v)), give or take).
std::string fmt(double v) {
  char buf[64];
  for (int prec = 6; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string shape_str(const Shape3& s) {
  return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]);
}

std::string vec3_str(const std::array<double, 3>& v) {
  std::string s(1, '(');
  for (int i = 0; i < 3; ++i) s.append(i ? ", " : "").append(fmt(v[i]));
  return s.append(")");
}

/// numpy.isclose(a, b) with the given tolerances.
bool close(double a, double b, double rtol, double atol) { return std::fabs(a - b) <= atol + rtol * std::fabs(b); }

// Tolerances for image/label geometry (documented in docs/exit-codes.md).
constexpr double kSpacingRtol = 1e-5, kSpacingAtol = 1e-8;  // numpy.isclose defaults, as nnU-Net compares
constexpr double kOriginRtol = 1e-5, kOriginAtol = 1e-3;    // mm: float32 header rounding, not misplacement
constexpr double kDirectionAtol = 1e-5;                      // direction cosines

/// ITK's reader is not thread-safe (NiftiImageIO::ReadImageInformation keeps a function-local static string),
/// so voxel reading is serialised; the expensive full gzip check runs in parallel.
std::mutex& itk_read_mutex() {
  static std::mutex m;
  return m;
}

/// At most this many decoded volumes are held at once (a 512x512x1000 CT is 1 GB as float32), whatever the
/// thread count: reading is serialised anyway, the slots only let the voxel statistics overlap the next read.
constexpr std::ptrdiff_t kVolumeSlots = 3;
std::counting_semaphore<kVolumeSlots>& volume_slots() {
  static std::counting_semaphore<kVolumeSlots> slots(kVolumeSlots);
  return slots;
}

/// Holds one volume slot for its lifetime.
struct VolumeSlot {
  VolumeSlot() { volume_slots().acquire(); }
  ~VolumeSlot() { volume_slots().release(); }
  VolumeSlot(const VolumeSlot&) = delete;
  VolumeSlot& operator=(const VolumeSlot&) = delete;
};

class Sink {
 public:
  explicit Sink(std::vector<Problem>& out) : out_(out) {}
  void error(const std::string& case_id, const std::string& file, const std::string& reason) {
    out_.push_back({"error", case_id, file, reason});
  }
  void warning(const std::string& case_id, const std::string& file, const std::string& reason) {
    out_.push_back({"warning", case_id, file, reason});
  }

 private:
  std::vector<Problem>& out_;
};

/// What the dataset json says, in the form the case checks need.
struct CaseSpec {
  std::string id;
  std::vector<std::string> images;  // one per channel
  std::string label;                // empty for test cases
  bool training = true;
};

struct DatasetSpec {
  std::vector<CaseSpec> cases;
  bool labels_known = false;
  std::set<int64_t> label_values;
  std::string label_values_text;  // e.g. "0..15"
  // Folders to scan for unlisted files, and the files each may hold.
  std::vector<std::tuple<std::string, std::set<std::string>, bool>> folders;  // folder, files, list known
  std::set<std::string> missing_folders;
  bool training_listed = false, test_listed = false;  // the "training" / "test" lists could be read
  std::string json_name;  // for messages: "task1_dataset.json" / "dataset.json"
  int channels = 1;
  bool raw_layout = false;
};

// ---- per-file checks ----------------------------------------------------------------------------------------------

enum class Role { image, label };

struct FileFacts {
  bool readable = false;  // geometry valid
  Geometry geom;
};

int bytes_per_voxel(int datatype) {
  switch (datatype) {
    case 2: case 256: return 1;                 // uint8, int8
    case 4: case 512: return 2;                 // int16, uint16
    case 8: case 768: case 16: return 4;        // int32, uint32, float32
    case 64: case 1024: case 1280: return 8;    // float64, int64, uint64
    default: return 0;
  }
}

bool starts_like_nifti1(const std::string& path) {
  unsigned char b[4] = {0, 0, 0, 0};
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f || std::fread(b, 1, 4, f.get()) != 4) return false;
  const uint32_t le = b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24;
  const uint32_t be = b[3] | b[2] << 8 | b[1] << 16 | static_cast<uint32_t>(b[0]) << 24;
  return le == 348 || be == 348;
}

/// Distinct values of a label map (with counts), bounded.
struct ValueCounts {
  static constexpr size_t kMaxDistinct = 256;
  static constexpr size_t npos = static_cast<size_t>(-1);
  std::vector<std::pair<float, int64_t>> values;
  bool overflow = false;
  /// Counts one more `v`; returns its index (npos once the table is full).
  size_t add(float v) {
    for (size_t i = 0; i < values.size(); ++i)
      if (values[i].first == v) {
        ++values[i].second;
        return i;
      }
    if (values.size() < kMaxDistinct) {
      values.push_back({v, 1});
      return values.size() - 1;
    }
    overflow = true;
    return npos;
  }
};

std::string list_values(const std::vector<std::pair<float, int64_t>>& vals, size_t max_items = 10) {
  std::string s;
  for (size_t i = 0; i < vals.size() && i < max_items; ++i)
    s += (i ? ", " : "") + fmt(vals[i].first) + " (" + std::to_string(vals[i].second) + " voxel" +
         (vals[i].second == 1 ? "" : "s") + ")";
  if (vals.size() > max_items) s += ", ... (" + std::to_string(vals.size()) + " values)";
  return s;
}

void check_image_voxels(const Image& img, const std::string& id, const std::string& path, Sink& sink) {
  int64_t nan = 0, inf = 0;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (const float v : img.voxels.v) {
    if (std::isnan(v)) ++nan;
    else if (std::isinf(v)) ++inf;
    else { lo = std::min(lo, v); hi = std::max(hi, v); }
  }
  if (nan) sink.error(id, path, std::to_string(nan) + " NaN voxel(s) in the image");
  if (inf) sink.error(id, path, std::to_string(inf) + " infinite voxel(s) in the image");
  if (lo == hi) sink.warning(id, path, "constant image: every finite voxel is " + fmt(lo));
}

void check_label_voxels(const Image& img, const std::string& id, const std::string& path, const DatasetSpec& ds,
                        Sink& sink) {
  int64_t nan = 0, inf = 0;
  ValueCounts counts;
  size_t last = ValueCounts::npos;  // label maps are long runs of one value: try the previous value first
  for (const float v : img.voxels.v) {
    if (std::isnan(v)) { ++nan; continue; }
    if (std::isinf(v)) { ++inf; continue; }
    if (last != ValueCounts::npos && counts.values[last].first == v) {
      ++counts.values[last].second;
      continue;
    }
    last = counts.add(v);
  }
  if (nan) sink.error(id, path, std::to_string(nan) + " NaN voxel(s) in the label map");
  if (inf) sink.error(id, path, std::to_string(inf) + " infinite voxel(s) in the label map");
  std::vector<std::pair<float, int64_t>> non_integer, unexpected;
  bool any_foreground = false;
  for (const auto& [v, n] : counts.values) {
    if (v != 0) any_foreground = true;
    if (std::floor(v) != v) non_integer.push_back({v, n});
    else if (ds.labels_known && !ds.label_values.count(static_cast<int64_t>(v))) unexpected.push_back({v, n});
  }
  auto by_value = [](const auto& a, const auto& b) { return a.first < b.first; };
  std::sort(non_integer.begin(), non_integer.end(), by_value);
  std::sort(unexpected.begin(), unexpected.end(), by_value);
  if (!non_integer.empty() || counts.overflow)
    sink.error(id, path, "non-integer label values: " +
                             (non_integer.empty() ? std::string("more than 256 distinct values") : list_values(non_integer)) +
                             "; labels must be integers");
  if (!unexpected.empty())
    sink.error(id, path, "unexpected label values " + list_values(unexpected) + "; " + ds.json_name +
                             " \"labels\" declares " + ds.label_values_text);
  if (!any_foreground && nan == 0 && inf == 0)
    sink.warning(id, path, "empty label map: every voxel is 0 (nnU-Net runs, but the case adds no foreground)");
}

/// Checks one NIfTI file completely (existence, gzip stream, header, voxels). Returns its geometry when readable.
FileFacts check_file(const std::string& path, const std::string& id, Role role, const DatasetSpec& ds, Sink& sink) {
  FileFacts facts;
  const char* what = role == Role::image ? "image" : "label";
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) sink.error(id, path, std::string(what) + " file is missing");
    else sink.error(id, path, std::string("cannot access: ") + std::strerror(errno));
    return facts;
  }
  if (S_ISDIR(st.st_mode)) {
    sink.error(id, path, "is a directory, not a NIfTI file");
    return facts;
  }
  if (!S_ISREG(st.st_mode)) {
    sink.error(id, path, "not a regular file");
    return facts;
  }
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      sink.error(id, path, std::string("cannot read: ") + std::strerror(errno));
      return facts;
    }
    ::close(fd);
  }
  if (st.st_size == 0) {
    sink.error(id, path, "empty file (0 bytes)");
    return facts;
  }

  // The whole gzip stream: CRC32 and ISIZE of every member. Readers that stop after the voxels they need never
  // look at the trailer, so this is the only place a flipped bit is guaranteed to show up.
  uint64_t payload_bytes = static_cast<uint64_t>(st.st_size);
  if (ends_with(path, ".gz")) {
    const GzipCheck gz = check_gzip_file(path);
    if (!gz.ok && gz.reason == "not gzip data (no gzip header)" && starts_like_nifti1(path)) {
      sink.warning(id, path, "not gzip-compressed although named .gz (ITK reads it; gzip tools and nibabel do not)");
    } else if (!gz.ok) {
      sink.error(id, path, gz.reason);
      return facts;
    } else {
      payload_bytes = gz.uncompressed_bytes;
      if (gz.trailing_garbage)
        sink.warning(id, path, "trailing bytes after the gzip data (ignored by readers)");
    }
  }

  NiftiHeaderInfo h;
  try {
    h = read_nifti_header(path);
  } catch (const Error& e) {
    sink.error(id, path, e.reason());
    return facts;
  } catch (const std::exception& e) {
    sink.error(id, path, std::string("cannot read the NIfTI header: ") + e.what());
    return facts;
  }
  // Dimensions. ITK drops trailing dimensions of size 1, so a 4-D file with t == 1 is a 3-D image.
  int real_ndim = h.ndim;
  while (real_ndim > 3 && h.dim[real_ndim - 1] == 1) --real_ndim;
  std::string dims;
  for (int i = 0; i < h.ndim; ++i) dims += (i ? "x" : "") + std::to_string(h.dim[i]);
  if (h.ndim < 3) {
    sink.error(id, path, std::to_string(h.ndim) + "-D image (" + dims + "): a 3-D volume is required");
    return facts;
  }
  if (real_ndim > 3) {
    sink.error(id, path, std::to_string(real_ndim) + "-D image (" + dims +
                             "): a 3-D volume is required (one file per modality, no time series)");
    return facts;
  }
  for (int i = 0; i < 3; ++i)
    if (h.dim[i] < 1) {
      sink.error(id, path, "invalid dimension dim[" + std::to_string(i + 1) + "] = " + std::to_string(h.dim[i]));
      return facts;
    }
  bool header_ok = true;
  for (int i = 1; i <= 3; ++i)
    if (!(h.pixdim[i] > 0) || !std::isfinite(h.pixdim[i])) {
      sink.error(id, path, "pixdim[" + std::to_string(i) + "] = " + fmt(h.pixdim[i]) +
                               ": the voxel spacing must be a positive number");
      header_ok = false;
    }
  for (int i = 0; i < 3; ++i)
    if (h.dim[i] == 1) {
      sink.error(id, path, "single-slice volume (" + dims + "): only 1 voxel along axis " + std::to_string(i + 1) +
                               "; a 3-D volume needs at least 2 voxels per axis");
      break;
    }
  if (h.qform_sform_disagree && header_ok)  // the qform is built from pixdim: a bad pixdim alone makes them differ
    sink.warning(id, path, "qform (code " + std::to_string(h.qform_code) + ") and sform (code " +
                               std::to_string(h.sform_code) +
                               ") disagree: ITK (which nnU-Net uses; ITK 5.2 takes the sform when sform_code is 1) and nibabel may "
                               "place this image differently");
  // Intensity scaling, as ITK's NiftiImageIO applies it: a zero (or non-finite) scl_slope means 1, the intercept
  // is still added. nibabel ignores the intercept when the slope is 0.
  const bool slope_finite = std::isfinite(h.scl_slope), inter_finite = std::isfinite(h.scl_inter);
  const double slope = slope_finite ? h.scl_slope : 0.0, inter = inter_finite ? h.scl_inter : 0.0;
  if (slope != 0.0 && slope != 1.0)
    sink.warning(id, path, "scl_slope = " + fmt(slope) + " (scl_inter = " + fmt(inter) +
                               "): voxels are rescaled to float32 on reading" +
                               (role == Role::label ? ", label values change" : ""));
  else if (slope == 0.0 && inter != 0.0)
    sink.warning(id, path, "scl_slope = " + (slope_finite ? std::string("0") : fmt(h.scl_slope)) +
                               " with scl_inter = " + fmt(inter) +
                               ": ITK (as nnU-Net uses it) takes slope 1 and adds the intercept, nibabel ignores both");
  if (!inter_finite && slope != 0.0)
    sink.warning(id, path, "scl_inter = " + fmt(h.scl_inter) + " is not finite (ITK uses 0, nibabel refuses)");

  // Truncated voxel data: at least header + voxels must be there (the header may add extensions on top).
  const int bpv = bytes_per_voxel(h.datatype);
  if (bpv > 0) {
    const uint64_t needed = 348 + static_cast<uint64_t>(h.dim[0]) * h.dim[1] * h.dim[2] * bpv;
    if (payload_bytes < needed) {
      sink.error(id, path, "truncated: the header describes " + dims + " voxels of " + std::to_string(bpv) +
                               " byte(s) each, at least " + std::to_string(needed) + " bytes, but the " +
                               (ends_with(path, ".gz") ? "decompressed " : "") + "file holds " +
                               std::to_string(payload_bytes));
      return facts;
    }
  }

  VolumeSlot slot;
  Image img;
  try {
    std::lock_guard<std::mutex> lock(itk_read_mutex());
    img = read_nifti(path, id);
  } catch (const Error& e) {
    sink.error(id, path, e.reason());
    return facts;
  } catch (const std::exception& e) {
    sink.error(id, path, std::string("cannot read: ") + e.what());
    return facts;
  }
  if (role == Role::image) check_image_voxels(img, id, path, sink);
  else check_label_voxels(img, id, path, ds, sink);
  facts.readable = header_ok;
  facts.geom = img.geom;
  return facts;
}

/// Image/label (or channel/channel) geometry, as nnU-Net's verify_same_geometry compares it.
void compare_geometry(const Geometry& ref, const std::string& ref_path, const Geometry& g, const std::string& path,
                      const std::string& id, Sink& sink) {
  if (g.shape != ref.shape) {
    sink.error(id, path, "shape (z,y,x) " + shape_str(g.shape) + " differs from " + shape_str(ref.shape) + " of " +
                             ref_path);
    return;
  }
  bool same = true;
  for (int i = 0; i < 3; ++i) same = same && close(g.spacing[i], ref.spacing[i], kSpacingRtol, kSpacingAtol);
  if (!same)
    sink.error(id, path, "spacing (z,y,x) " + vec3_str(g.spacing) + " differs from " + vec3_str(ref.spacing) +
                             " of " + ref_path);
  same = true;
  for (int i = 0; i < 3; ++i) same = same && close(g.itk_origin[i], ref.itk_origin[i], kOriginRtol, kOriginAtol);
  if (!same)
    sink.error(id, path, "origin (ITK x,y,z) " + vec3_str(g.itk_origin) + " differs from " +
                             vec3_str(ref.itk_origin) + " of " + ref_path + ": the voxel grids are not aligned");
  double worst = 0;
  for (int i = 0; i < 9; ++i) worst = std::max(worst, std::fabs(g.itk_direction[i] - ref.itk_direction[i]));
  if (!(worst <= kDirectionAtol))
    sink.error(id, path, "direction differs from " + ref_path + " (largest cosine difference " + fmt(worst) +
                             "): the voxel grids are not aligned");
}

/// Axis codes (nibabel's aff2axcodes, RAS letters) of an ITK (LPS) direction matrix.
std::string axcodes(const Geometry& g) {
  std::string codes;
  for (int col = 0; col < 3; ++col) {
    int best = 0;
    double best_abs = -1, value = 0;
    for (int row = 0; row < 3; ++row) {
      const double ras = (row < 2 ? -1.0 : 1.0) * g.itk_direction[3 * row + col];
      if (std::fabs(ras) > best_abs) { best_abs = std::fabs(ras); best = row; value = ras; }
    }
    codes += value >= 0 ? "RAS"[best] : "LPI"[best];
  }
  return codes;
}

struct CaseResult {
  std::vector<Problem> problems;
  std::optional<Geometry> image_geom;
};

CaseResult check_case(const CaseSpec& c, const DatasetSpec& ds) {
  CaseResult res;
  Sink sink(res.problems);
  auto in_missing_folder = [&](const std::string& p) {
    return ds.missing_folders.count(p.substr(0, p.rfind('/'))) > 0;
  };
  std::vector<FileFacts> images;
  for (const std::string& p : c.images)
    images.push_back(in_missing_folder(p) ? FileFacts{} : check_file(p, c.id, Role::image, ds, sink));
  for (size_t k = 1; k < images.size(); ++k)
    if (images[0].readable && images[k].readable)
      compare_geometry(images[0].geom, c.images[0], images[k].geom, c.images[k], c.id, sink);
  if (!c.label.empty() && !in_missing_folder(c.label)) {
    const FileFacts label = check_file(c.label, c.id, Role::label, ds, sink);
    if (label.readable && !images.empty() && images[0].readable)
      compare_geometry(images[0].geom, c.images[0], label.geom, c.label, c.id, sink);
  }
  if (!images.empty() && images[0].readable) res.image_geom = images[0].geom;
  return res;
}

// ---- dataset json -------------------------------------------------------------------------------------------------

std::optional<ojson> load_json(const std::string& path, Sink& sink) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    sink.error("", path, errno == ENOENT ? "dataset description is missing" : std::string("cannot access: ") +
                                                                                   std::strerror(errno));
    return std::nullopt;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    sink.error("", path, std::string("cannot read: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  if (std::ferror(f.get())) {
    sink.error("", path, std::string("read error: ") + std::strerror(errno));
    return std::nullopt;
  }
  try {
    ojson j = ojson::parse(text);
    if (!j.is_object()) {
      sink.error("", path, "invalid dataset description: the top level is not a JSON object");
      return std::nullopt;
    }
    return j;
  } catch (const nlohmann::json::exception& e) {
    std::string msg = e.what();
    if (msg.rfind("[json.exception.", 0) == 0 && msg.find("] ") != std::string::npos)
      msg = msg.substr(msg.find("] ") + 2);
    sink.error("", path, "invalid JSON: " + msg);
    return std::nullopt;
  }
}

bool parse_int(const std::string& s, int64_t& v) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  const auto r = std::from_chars(b, e, v);
  return r.ec == std::errc() && r.ptr == e && b != e;
}

/// "labels": integer keys, 0 present, consecutive after sorting (nnU-Net requires 0, 1, 2, ...).
void read_labels(const ojson& j, const std::string& json_path, DatasetSpec& ds, Sink& sink) {
  if (!j.contains("labels")) {
    sink.error("", json_path, "no \"labels\" key: label values cannot be checked");
    return;
  }
  const ojson& labels = j.at("labels");
  if (!labels.is_object() || labels.empty()) {
    sink.error("", json_path, "\"labels\" must be a non-empty object {\"0\": \"background\", ...}");
    return;
  }
  bool ok = true;
  for (const auto& [key, name] : labels.items()) {
    int64_t v;
    if (!parse_int(key, v)) {
      sink.error("", json_path, "\"labels\" key \"" + key + "\" is not an integer");
      ok = false;
      continue;
    }
    if (!ds.label_values.insert(v).second) {
      sink.error("", json_path, "\"labels\" key \"" + key + "\" repeats value " + std::to_string(v));
      ok = false;
    }
    if (!name.is_string()) sink.warning("", json_path, "\"labels\" entry \"" + key + "\" is not a string");
  }
  if (ds.label_values.empty()) return;
  const int64_t lo = *ds.label_values.begin(), hi = *ds.label_values.rbegin();
  ds.label_values_text = lo == hi ? std::to_string(lo) : std::to_string(lo) + ".." + std::to_string(hi);
  if (lo != 0) {
    sink.error("", json_path, "\"labels\" must start at 0 (background); the smallest is " + std::to_string(lo));
    ok = false;
  } else if (hi - lo + 1 != static_cast<int64_t>(ds.label_values.size())) {
    std::string missing;
    int shown = 0;
    for (int64_t v = lo; v <= hi && shown < 10; ++v)
      if (!ds.label_values.count(v)) { missing += (shown++ ? ", " : "") + std::to_string(v); }
    sink.error("", json_path, "\"labels\" must be consecutive (0, 1, 2, ...) as nnU-Net requires; missing: " + missing);
    ok = false;
  }
  (void)ok;
  ds.labels_known = true;  // the declared values are still the reference for the voxel check
}

/// Builds the case list from "training"/"test". `image_files(id)` gives the files for one case.
template <class ImagePaths, class LabelPath>
void read_cases(const ojson& j, const std::string& json_path, bool training, ImagePaths image_files,
                LabelPath label_file, DatasetSpec& ds, Sink& sink, std::set<std::string>& seen) {
  const char* key = training ? "training" : "test";
  if (!j.contains(key)) {
    sink.error("", json_path, std::string("no \"") + key + "\" key" +
                                  (training ? "" : " (write \"test\": [] when there are no test cases)"));
    return;
  }
  const ojson& list = j.at(key);
  if (!list.is_array()) {
    sink.error("", json_path, std::string("\"") + key + "\" must be a list");
    return;
  }
  (training ? ds.training_listed : ds.test_listed) = true;
  for (size_t i = 0; i < list.size(); ++i) {
    const ojson& e = list[i];
    const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    std::string image;
    if (training) {
      if (!e.is_object() || !e.contains("image") || !e.at("image").is_string()) {
        sink.error("", json_path, where + " has no \"image\" path");
        continue;
      }
      image = e.at("image").get<std::string>();
    } else {
      if (!e.is_string()) {
        sink.error("", json_path, where + " is not a path string (nnU-Net's conversion expects \"./imagesTs/<id>.nii.gz\")");
        continue;
      }
      image = e.get<std::string>();
    }
    const std::string base = last_component(image);
    if (!ends_with(base, ".nii.gz") || base.size() <= 7) {
      sink.error("", json_path, where + " \"" + image + "\" does not name a <case>.nii.gz file");
      continue;
    }
    CaseSpec c;
    c.id = base.substr(0, base.size() - 7);
    c.training = training;
    if (!seen.insert(c.id).second) {
      sink.error(c.id, json_path, std::string("duplicate case id in \"") + key + "\" (" + where + ")");
      continue;
    }
    c.images = image_files(c.id);
    if (training) {
      std::string listed;
      if (e.contains("label") && e.at("label").is_string()) listed = e.at("label").get<std::string>();
      c.label = label_file(c.id, listed, json_path, sink);
    }
    ds.cases.push_back(std::move(c));
  }
}

/// Unlisted entries in a case folder.
void find_strays(const DatasetSpec& ds, Sink& sink, std::vector<Problem>& errors_out) {
  for (const auto& [folder, expected, listed] : ds.folders) {
    if (ds.missing_folders.count(folder) || !listed) continue;  // without a case list, nothing is a stray
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
      names.push_back(it->path().filename().string());
    if (ec) {
      sink.error("", folder, "cannot list the folder: " + ec.message());
      continue;
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      if (expected.count(name)) continue;
      const std::string path = join(folder, name);
      // In a raw task, `<id>_0001.nii.gz` next to a listed `<id>` is an extra channel, not a stray.
      if (ds.raw_layout && ends_with(name, ".nii.gz") && name.size() > 12 && name[name.size() - 12] == '_') {
        const std::string id = name.substr(0, name.size() - 12);
        const std::string channel = name.substr(name.size() - 11, 4);
        const bool is_listed = std::any_of(ds.cases.begin(), ds.cases.end(), [&](const CaseSpec& c) {
          return c.id == id && !c.images.empty() && c.images[0].rfind(folder, 0) == 0;
        });
        if (is_listed && std::all_of(channel.begin(), channel.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
          errors_out.push_back({"error", id, path,
                                "channel file _" + channel + " present but dataset.json \"modality\" declares " +
                                    std::to_string(ds.channels) + " channel(s)"});
          continue;
        }
      }
      sink.warning("", path, "not listed in " + ds.json_name + " (ignored)");
    }
  }
}

VerifyReport run_checks(DatasetSpec& ds, std::vector<Problem> dataset_problems) {
  VerifyReport report;
  for (const CaseSpec& c : ds.cases) (c.training ? report.training_cases : report.test_cases)++;

  std::vector<CaseResult> results(ds.cases.size());
  const long n = static_cast<long>(ds.cases.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; ++i) {
    try {
      results[i] = check_case(ds.cases[i], ds);
    } catch (const std::exception& e) {
      results[i].problems.push_back({"error", ds.cases[i].id, "", std::string("internal error while checking: ") + e.what()});
    } catch (...) {
      results[i].problems.push_back({"error", ds.cases[i].id, "", "internal error while checking"});
    }
  }

  report.problems = std::move(dataset_problems);
  for (CaseResult& r : results)
    for (Problem& p : r.problems) report.problems.push_back(std::move(p));

  std::vector<Problem> strays, channel_errors;
  Sink stray_sink(strays);
  find_strays(ds, stray_sink, channel_errors);
  for (Problem& p : channel_errors) report.problems.push_back(std::move(p));
  for (Problem& p : strays) report.problems.push_back(std::move(p));

  // nnU-Net's verify_all_same_orientation: a warning when training images differ in axis orientation.
  std::map<std::string, std::vector<std::string>> by_orientation;
  for (size_t i = 0; i < ds.cases.size(); ++i)
    if (ds.cases[i].training && results[i].image_geom) by_orientation[axcodes(*results[i].image_geom)].push_back(ds.cases[i].id);
  if (by_orientation.size() > 1) {
    std::string s;
    for (const auto& [codes, ids] : by_orientation) {
      s += (s.empty() ? "" : "; ") + codes + ": " + plural(static_cast<int>(ids.size()), "case") + " (";
      for (size_t k = 0; k < ids.size() && k < 5; ++k) s += (k ? ", " : "") + ids[k];
      s += ids.size() > 5 ? ", ...)" : ")";
    }
    report.problems.push_back({"warning", "", "", "training images differ in axis orientation (" + s +
                                                      "); nnU-Net works on the voxel grid as stored"});
  }
  return report;
}

void check_folder(const std::string& folder, DatasetSpec& ds, Sink& sink, bool needed) {
  std::error_code ec;
  if (fs::is_directory(folder, ec)) return;
  ds.missing_folders.insert(folder);
  if (needed) sink.error("", folder, "folder is missing");
}

bool any_case(const DatasetSpec& ds, bool training) {
  return std::any_of(ds.cases.begin(), ds.cases.end(), [&](const CaseSpec& c) { return c.training == training; });
}

std::string strip_trailing_slash(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------------------------------

VerifyReport verify_amos_dir(const std::string& amos_dir_in, int task_id) {
  const std::string amos_dir = strip_trailing_slash(amos_dir_in);
  std::vector<Problem> problems;
  Sink sink(problems);
  DatasetSpec ds;
  ds.json_name = task_id == 217 ? "task2_dataset.json" : "task1_dataset.json";
  if (task_id != 216 && task_id != 217) {
    sink.error("", "", "unsupported task id " + std::to_string(task_id) + " (216 or 217)");
    VerifyReport r;
    r.problems = std::move(problems);
    return r;
  }
  std::error_code ec;
  if (!fs::is_directory(amos_dir, ec)) {
    sink.error("", amos_dir, "not a directory");
    VerifyReport r;
    r.problems = std::move(problems);
    return r;
  }
  const std::string json_path = join(amos_dir, ds.json_name);
  const std::optional<ojson> j = load_json(json_path, sink);
  if (!j) return run_checks(ds, std::move(problems));

  read_labels(*j, json_path, ds, sink);
  const std::string images_tr = join(amos_dir, "imagesTr"), labels_tr = join(amos_dir, "labelsTr"),
                    images_ts = join(amos_dir, "imagesTs");
  std::set<std::string> seen_train, seen_test;
  read_cases(
      *j, json_path, true, [&](const std::string& id) { return std::vector<std::string>{join(images_tr, id + ".nii.gz")}; },
      [&](const std::string& id, const std::string& listed, const std::string& jp, Sink& s) {
        // The Task216 conversion copies labelsTr/<id>.nii.gz whatever the "label" entry says.
        if (listed.empty())
          s.warning(id, jp, "training entry has no \"label\" path; labelsTr/" + id + ".nii.gz is used");
        else if (last_component(listed) != id + ".nii.gz")
          s.warning(id, jp, "\"label\" \"" + listed + "\" differs from labelsTr/" + id +
                                ".nii.gz, which the conversion uses");
        return join(labels_tr, id + ".nii.gz");
      },
      ds, sink, seen_train);
  read_cases(
      *j, json_path, false, [&](const std::string& id) { return std::vector<std::string>{join(images_ts, id + ".nii.gz")}; },
      [](const std::string&, const std::string&, const std::string&, Sink&) { return std::string(); }, ds, sink,
      seen_test);
  for (const std::string& id : seen_test)
    if (seen_train.count(id)) sink.warning(id, json_path, "listed both in \"training\" and in \"test\"");
  if (j->contains("numTraining") && ds.training_listed) {
    const ojson& nt = j->at("numTraining");
    const auto listed = static_cast<int64_t>(seen_train.size());
    if (!nt.is_number_integer() || nt.get<int64_t>() != listed)
      sink.warning("", json_path, "\"numTraining\" is " + nt.dump() + " but \"training\" lists " +
                                      std::to_string(listed) + " case(s) (the conversion recomputes it)");
  }

  check_folder(images_tr, ds, sink, any_case(ds, true));
  check_folder(labels_tr, ds, sink, any_case(ds, true));
  check_folder(images_ts, ds, sink, any_case(ds, false));
  std::set<std::string> tr_imgs, tr_lbls, ts_imgs;
  for (const CaseSpec& c : ds.cases) {
    (c.training ? tr_imgs : ts_imgs).insert(c.id + ".nii.gz");
    if (c.training) tr_lbls.insert(c.id + ".nii.gz");
  }
  ds.folders = {{images_tr, tr_imgs, ds.training_listed},
                {labels_tr, tr_lbls, ds.training_listed},
                {images_ts, ts_imgs, ds.test_listed}};
  return run_checks(ds, std::move(problems));
}

VerifyReport verify_raw_task(const std::string& task_dir_in) {
  const std::string task_dir = strip_trailing_slash(task_dir_in);
  std::vector<Problem> problems;
  Sink sink(problems);
  DatasetSpec ds;
  ds.json_name = "dataset.json";
  ds.raw_layout = true;
  std::error_code ec;
  if (!fs::is_directory(task_dir, ec)) {
    sink.error("", task_dir, "not a directory");
    VerifyReport r;
    r.problems = std::move(problems);
    return r;
  }
  const std::string json_path = join(task_dir, "dataset.json");
  const std::optional<ojson> j = load_json(json_path, sink);
  if (!j) return run_checks(ds, std::move(problems));

  read_labels(*j, json_path, ds, sink);
  if (!j->contains("modality") || !j->at("modality").is_object() || j->at("modality").empty()) {
    sink.error("", json_path, "no \"modality\" object ({\"0\": \"CT\"}): the channel count is unknown; 1 assumed");
  } else {
    ds.channels = static_cast<int>(j->at("modality").size());
    for (int k = 0; k < ds.channels; ++k)
      if (!j->at("modality").contains(std::to_string(k)))
        sink.error("", json_path, "\"modality\" keys must be \"0\", \"1\", ... (key \"" + std::to_string(k) + "\" is missing)");
  }
  const std::string images_tr = join(task_dir, "imagesTr"), labels_tr = join(task_dir, "labelsTr"),
                    images_ts = join(task_dir, "imagesTs");
  auto channel_files = [&](const std::string& folder) {
    return [&, folder](const std::string& id) {
      std::vector<std::string> files;
      for (int k = 0; k < ds.channels; ++k) {
        char suffix[32];
        std::snprintf(suffix, sizeof suffix, "_%04d.nii.gz", k);
        files.push_back(join(folder, id + suffix));
      }
      return files;
    };
  };
  std::set<std::string> seen_train, seen_test;
  read_cases(
      *j, json_path, true, channel_files(images_tr),
      [&](const std::string& id, const std::string& listed, const std::string& jp, Sink& s) {
        if (listed.empty()) {
          s.error(id, jp, "training entry has no \"label\" path");
          return std::string();
        }
        return join(labels_tr, last_component(listed));
      },
      ds, sink, seen_train);
  read_cases(
      *j, json_path, false, channel_files(images_ts),
      [](const std::string&, const std::string&, const std::string&, Sink&) { return std::string(); }, ds, sink,
      seen_test);
  if (!j->contains("numTraining")) {
    sink.error("", json_path, "no \"numTraining\" key");
  } else if (ds.training_listed) {
    const ojson& nt = j->at("numTraining");
    const auto listed = static_cast<int64_t>(seen_train.size());
    if (!nt.is_number_integer() || nt.get<int64_t>() != listed)
      sink.error("", json_path, "\"numTraining\" is " + nt.dump() + " but \"training\" lists " +
                                    std::to_string(listed) + " case(s)");
  }
  check_folder(images_tr, ds, sink, any_case(ds, true));
  check_folder(labels_tr, ds, sink, any_case(ds, true));
  check_folder(images_ts, ds, sink, any_case(ds, false));
  std::set<std::string> tr_imgs, tr_lbls, ts_imgs;
  for (const CaseSpec& c : ds.cases) {
    for (const std::string& p : c.images) (c.training ? tr_imgs : ts_imgs).insert(last_component(p));
    if (c.training && !c.label.empty()) tr_lbls.insert(last_component(c.label));
  }
  ds.folders = {{images_tr, tr_imgs, ds.training_listed},
                {labels_tr, tr_lbls, ds.training_listed},
                {images_ts, ts_imgs, ds.test_listed}};
  return run_checks(ds, std::move(problems));
}

}  // namespace amosprep
