#include "amosprep/pipeline.hpp"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <sys/resource.h>
#include <sstream>
#include <thread>

#include "amosprep/amos_dataset.hpp"
#include "amosprep/class_locations.hpp"
#include "amosprep/core_sharing.hpp"
#include "amosprep/crop.hpp"
#include "amosprep/distributed.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fingerprint.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/h5_store.hpp"
#include "amosprep/isa.hpp"
#include "amosprep/json_mirror.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/normalize.hpp"
#include "amosprep/pickle_writer.hpp"
#include "amosprep/progress.hpp"
#include "amosprep/resample.hpp"
#include "amosprep/run_control.hpp"
#include "amosprep/verify.hpp"

namespace fs = std::filesystem;

namespace amosprep {

std::string raw_task_dir(const std::string& raw_base, int task_id) {
  return (fs::path(raw_base) / "nnUNet_raw_data" / task_folder_name(task_id)).string();
}

std::string preprocessed_task_dir(const std::string& preprocessed, int task_id) {
  return (fs::path(preprocessed) / task_folder_name(task_id)).string();
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Wall and CPU seconds per named phase, accumulated over the cases of one rank (for log.json and bench/).
struct PhaseTimes {
  std::map<std::string, std::pair<double, double>> wall_cpu;
  void add(const std::string& phase, double wall, double cpu) {
    auto& w = wall_cpu[phase];
    w.first += wall;
    w.second += cpu;
  }
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Times a scope into `times[phase]` (and into `case_times` when given).
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimes& times, std::string phase, nlohmann::json* case_times = nullptr)
      : times_(times), phase_(std::move(phase)), case_times_(case_times), t0_(Clock::now()), c0_(process_cpu_seconds()) {}
  /// Leaves out time spent in other phases nested in this one.
  void exclude(double wall, double cpu) {
    excluded_wall_ += wall;
    excluded_cpu_ += cpu;
  }
  ~ScopedPhase() {
    const double wall = seconds_since(t0_) - excluded_wall_, cpu = process_cpu_seconds() - c0_ - excluded_cpu_;
    times_.add(phase_, wall, cpu);
    if (case_times_) {
      auto it = case_times_->find(phase_);
      (*case_times_)[phase_] = it != case_times_->end() && it->is_number() ? it->get<double>() + wall : wall;
    }
  }

 private:
  PhaseTimes& times_;
  std::string phase_;
  nlohmann::json* case_times_;
  Clock::time_point t0_;
  double c0_;
  double excluded_wall_ = 0, excluded_cpu_ = 0;
};

// HDF5 chunk shape of a case-stage's (z, y, x) volumes.
std::vector<int64_t> chunk_for(const StagePlan& sp, const Shape3& s) {
  std::vector<int64_t> c;
  for (int a = 0; a < 3; ++a) c.push_back(chunk_extent(s[a], (sp.patch_size[a] + 1) / 2));
  return c;
}

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// ---- per-case metadata (what the cropped pkl holds) --------------------------------------------------------
struct CaseMeta {
  std::string id;
  std::vector<std::string> image_files;
  std::string seg_file;
  Geometry geom;
  std::array<std::array<int64_t, 2>, 3> bbox{};
  std::vector<float> classes;
  Shape3 size_after_cropping{0, 0, 0};
};

struct InputIdentity {
  std::vector<std::string> files;
  std::vector<int64_t> sizes, mtimes_ns;
  std::vector<uint32_t> crcs;
  bool operator==(const InputIdentity&) const = default;
};

InputIdentity identity_of(const std::vector<std::string>& files) {
  InputIdentity id;
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) throw IoError(f, "cannot stat input");
    id.files.push_back(f);
    id.sizes.push_back(st.st_size);
    id.mtimes_ns.push_back(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
    id.crcs.push_back(digest_of_file(f).crc32);
  }
  return id;
}

nlohmann::json identity_json(const InputIdentity& id) {
  nlohmann::json j = nlohmann::json::array();
  for (size_t i = 0; i < id.files.size(); ++i)
    j.push_back({{"file", id.files[i]}, {"size", id.sizes[i]}, {"mtime_ns", id.mtimes_ns[i]}, {"crc32", id.crcs[i]}});
  return j;
}

void put_meta(ByteWriter& w, const CaseMeta& m) {
  w.put_string(m.id);
  w.put<uint64_t>(m.image_files.size());
  for (const auto& f : m.image_files) w.put_string(f);
  w.put_string(m.seg_file);
  w.put(m.geom);
  w.put(m.bbox);
  w.put_vector(m.classes);
  w.put(m.size_after_cropping);
}

CaseMeta get_meta(ByteReader& r) {
  CaseMeta m;
  m.id = r.get_string();
  const auto n = r.get<uint64_t>();
  for (uint64_t i = 0; i < n; ++i) m.image_files.push_back(r.get_string());
  m.seg_file = r.get_string();
  m.geom = r.get<Geometry>();
  m.bbox = r.get<std::array<std::array<int64_t, 2>, 3>>();
  m.classes = r.get_vector<float>();
  m.size_after_cropping = r.get<Shape3>();
  return m;
}

// ---- Python property objects ------------------------------------------------------------------------------
py::Value use_mask_py(const Plan& plan) {
  py::Value d = py::odict({});
  for (size_t i = 0; i < plan.use_mask_for_norm.size(); ++i)
    py::dict_set(d, static_cast<int64_t>(i), static_cast<bool>(plan.use_mask_for_norm[i]));
  return d;
}

py::Value cropped_properties_py(const CaseMeta& m) {
  std::vector<py::Value> files, bbox;
  for (const auto& f : m.image_files) files.push_back(f);
  for (const auto& b : m.bbox) bbox.push_back(py::list({b[0], b[1]}));
  const auto& g = m.geom;
  std::vector<py::Value> dir;
  for (double d : g.itk_direction) dir.push_back(d);
  return py::odict({
      {"original_size_of_raw_data", py::nd_i8({g.shape[0], g.shape[1], g.shape[2]})},
      {"original_spacing", py::nd_f8({g.spacing[0], g.spacing[1], g.spacing[2]})},
      {"list_of_data_files", py::list(files)},
      {"seg_file", m.seg_file},
      {"itk_origin", py::tuple({g.itk_origin[0], g.itk_origin[1], g.itk_origin[2]})},
      {"itk_spacing", py::tuple({g.itk_spacing[0], g.itk_spacing[1], g.itk_spacing[2]})},
      {"itk_direction", py::tuple(dir)},
      {"crop_bbox", py::list(bbox)},
      {"classes", py::nd_f4(m.classes)},
      {"size_after_cropping", py::tuple({m.size_after_cropping[0], m.size_after_cropping[1], m.size_after_cropping[2]})},
  });
}

// ---- the run ---------------------------------------------------------------------------------------------
/// A cropped case kept in memory between the fingerprint and preprocessing. CT voxels are integers and labels
/// small: held as int16 / int8 when that is lossless (3 instead of 8 bytes per voxel), float32 otherwise.
class CroppedCase {
 public:
  explicit CroppedCase(CropResult&& crop) {
    bool compact = crop.seg.size() > 0;
    for (const auto& ch : crop.data)
      for (float x : ch.v)
        if (!(x >= -32768.0f && x <= 32767.0f && x == std::nearbyint(x)) || (x == 0.0f && std::signbit(x))) {
          compact = false;
          break;
        }
    for (float x : crop.seg.v)
      if (!(x >= -128.0f && x <= 127.0f && x == std::nearbyint(x))) compact = false;
    if (!compact) {
      full_ = std::move(crop);
      return;
    }
    shape_ = crop.seg.shape;
    bbox_ = crop.bbox;
    classes_ = std::move(crop.classes);
    for (const auto& ch : crop.data) {
      data16_.emplace_back();
      data16_.back().shape = shape_;
      data16_.back().v.assign(ch.v.begin(), ch.v.end());
    }
    seg8_.shape = shape_;
    seg8_.v.assign(crop.seg.v.begin(), crop.seg.v.end());
  }
  /// A crop made in the compact types to begin with (no float32 round trip).
  explicit CroppedCase(CompactCrop&& crop)
      : shape_(crop.size_after_cropping), bbox_(crop.bbox), classes_(std::move(crop.classes)) {
    data16_ = std::move(crop.data);
    seg8_ = std::move(crop.seg);
  }
  int64_t bytes() const {
    if (compact()) {
      size_t held = seg8_.v.capacity();  // a crop made in place keeps its input's storage
      for (const auto& ch : data16_) held += 2 * ch.v.capacity();
      return static_cast<int64_t>(held);
    }
    return static_cast<int64_t>((full_.data.size() + 1) * full_.seg.size() * sizeof(float));
  }
  /// int16 CT channels and int8 labels (else the float32 form, full()).
  bool compact() const { return !data16_.empty() || seg8_.size() > 0; }
  Shape3 shape() const { return compact() ? shape_ : full_.size_after_cropping; }
  size_t channels() const { return compact() ? data16_.size() : full_.data.size(); }
  const std::vector<Array3<int16_t>>& data16() const { return data16_; }
  const Array3<int8_t>& seg8() const { return seg8_; }
  CropResult& full() { return full_; }
  /// Frees the image channels (after the last stage has resampled them).
  void release_data() {
    std::vector<Array3<int16_t>>().swap(data16_);
    std::vector<Array3<float>>().swap(full_.data);
  }
  /// The float32 CropResult the stages work on (exactly the values cropped).
  CropResult expand() && {
    if (!compact()) return std::move(full_);
    CropResult out;
    out.bbox = bbox_;
    out.classes = std::move(classes_);
    out.size_after_cropping = shape_;
    for (auto& ch : data16_) {
      Array3<float> a;
      a.shape = shape_;
      a.v.assign(ch.v.begin(), ch.v.end());
      std::vector<int16_t>().swap(ch.v);
      out.data.push_back(std::move(a));
    }
    out.seg.shape = shape_;
    out.seg.v.assign(seg8_.v.begin(), seg8_.v.end());
    std::vector<int8_t>().swap(seg8_.v);
    return out;
  }

 private:
  CropResult full_;
  Shape3 shape_{0, 0, 0};
  std::array<std::array<int64_t, 2>, 3> bbox_{};
  std::vector<float> classes_;
  std::vector<Array3<int16_t>> data16_;
  Array3<int8_t> seg8_;
};

class Logger {
 public:
  explicit Logger(bool quiet) : quiet_(quiet), t0_(Clock::now()) {}
  void info(const std::string& msg) const {
    if (!quiet_ && mpi_rank() == 0) std::cerr << "[amos-prep " << fmt_time() << "] " << msg << std::endl;
  }


 private:
  std::string fmt_time() const {
    std::ostringstream s;
    s.setf(std::ios::fixed);
    s.precision(1);
    s << seconds_since(t0_) << "s";
    return s.str();
  }
  bool quiet_;
  Clock::time_point t0_;
};

class Pipeline {
 public:
  explicit Pipeline(const PipelineOptions& o) : opt_(o), log_(o.quiet), rank_(mpi_rank()), nranks_(mpi_size()) {}
  ~Pipeline() {
    if (run_lock_fd_ >= 0) ::close(run_lock_fd_);
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void run();

 private:
  void load_task();
  // Rank 0: an exclusive lock on amos-prep/run.lock for the whole run, so that a second run into the same output
  // folder stops at once instead of removing this run's temporary files and claims. UsageError when it is held.
  void lock_output_folder();
  int run_lock_fd_ = -1;
  void phase_crop_and_fingerprint();
  void phase_plan();
  void phase_preprocess();
  CroppedCase read_and_crop(size_t case_index, CaseMeta* meta_out, CaseSummary* summary_out) const;
  std::optional<CroppedCase> read_and_crop_compact(size_t case_index, CaseMeta* meta_out, CaseSummary* summary_out) const;
  // Fills the case's metadata and fingerprint summary (when asked for) from a crop of either kind.
  template <class Crop>
  void describe_crop(const CaseFiles& c, const Geometry& geom, const Crop& crop, CaseMeta* meta,
                     CaseSummary* summary) const;
  std::string manifest_path(int stage, const std::string& id) const;
  // Binary class locations of a case-stage (per class of all_classes_: int64 count*3, then the rows).
  std::string locs_path(int stage, const std::string& id) const {
    return state_dir_ + "/locs/" + plan_.data_identifier + "_stage" + std::to_string(stage) + "_" + id + ".bin";
  }
  bool manifest_complete(int stage, size_t case_index) const;
  // Preprocesses one stage of a case. On the case's last stage the cropped image channels are released as soon as
  // they are resampled (`last_stage`).
  void process_case_stage(int stage, size_t case_index, CroppedCase& crop, bool last_stage);

  PipelineOptions opt_;
  Logger log_;
  int rank_, nranks_;
  RawTask task_;
  std::vector<int64_t> all_classes_;
  std::string out_dir_, state_dir_, cropped_dir_;
  std::vector<int> owner_;     // the rank that crops a case (phase 1) and preprocesses it unless another takes it
  std::vector<int> finisher_;  // the rank that took each case in phase 2 (writes its small HDF5 datasets)
  // The image files and the label file of a case.
  std::vector<std::string> case_inputs(size_t i) const {
    std::vector<std::string> files = task_.training[i].images;
    files.push_back(task_.training[i].label);
    return files;
  }
  // Test hook for work sharing: the environment variable `name` = "R:MS" makes rank R sleep MS milliseconds.
  void lag_for_tests(const char* name) const {
    const char* v = std::getenv(name);
    if (v && std::strchr(v, ':') && std::atoi(v) == rank_)
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(std::strchr(v, ':') + 1)));
  }
  // Work sharing between ranks in `phase` ("crop" or "preprocess"): on with more than one rank unless
  // AMOSPREP_WORK_SHARING is 0 (off) or names the other phase only.
  bool work_sharing(const std::string& phase) const {
    const char* v = std::getenv("AMOSPREP_WORK_SHARING");
    const std::string only = v ? v : "";
    return nranks_ > 1 && only != "0" && (only.empty() || only == phase);
  }
  // True when this rank is the first to claim case i for `phase` ("crop" or "preprocess"): an O_EXCL file under
  // the state folder.
  bool claim_case(const std::string& phase, size_t i) const;
  // Each rank's cases (owner_), in case order.
  std::vector<std::vector<size_t>> queues_by_owner() const {
    std::vector<std::vector<size_t>> queues(static_cast<size_t>(nranks_));
    for (size_t i = 0; i < owner_.size(); ++i) queues[static_cast<size_t>(owner_[i])].push_back(i);
    return queues;
  }
  // Cases of other ranks in the order a rank done with its own takes them: from the ends of their queues, nearest
  // ranks first.
  std::vector<size_t> others_queue_ends(const std::vector<std::vector<size_t>>& queues) const {
    std::vector<size_t> out;
    size_t longest = 0;
    for (const auto& q : queues) longest = std::max(longest, q.size());
    for (size_t depth = 0; depth < longest; ++depth)
      for (int d = 1; d < nranks_; ++d) {
        const auto& q = queues[static_cast<size_t>((rank_ + d) % nranks_)];
        if (depth < q.size()) out.push_back(q[q.size() - 1 - depth]);
      }
    return out;
  }
  std::vector<CaseMeta> metas_;                 // all cases (allgathered)
  std::vector<InputIdentity> identities_;       // all cases
  std::map<size_t, CroppedCase> mine_;          // cropped data kept in memory
  mutable std::vector<uint8_t> crop_scratch_;   // hole-filling state reused between the crops of phase 1
  DatasetFingerprint fp_;
  PlannerInput planner_input_;
  std::vector<double> schedule_costs() const;
  Plan plan_;
  std::string plan_hash_;
  mutable PhaseTimes times_;
  mutable nlohmann::json case_log_entry_;
  std::vector<std::string> warnings_;
  Clock::time_point run_t0_ = Clock::now();
  int64_t estimate_case_peak(size_t i) const;
  void write_log();
  std::unique_ptr<H5Store> h5_;
  std::unique_ptr<CoreSharing> cores_;  // phase 2: cores lent by ranks of this node that have run out of cases
  int case_threads_ = 1;                // the most OpenMP threads the current case-stage ran with
  // Between parallel regions of phase 2: takes a share of the cores idle ranks offer (a no-op without them).
  void share_cores() {
    if (cores_) case_threads_ = std::max(case_threads_, cores_->borrow());
  }
  std::string h5_path_;
  std::vector<std::vector<bool>> h5_data_written_;  // [stage][case]: data/seg already in the store
  nlohmann::json case_log_ = nlohmann::json::array();

  void h5_create_case_datasets();
  // Chunked layout, in preprocessing: one image channel; the segmentation (float32 in, stored as int8).
  void h5_write_channel(int stage, size_t i, size_t channel, const float* data);
  void h5_write_channel(int stage, size_t i, size_t channel, const SliceMappedVolume& data);
  void h5_write_seg(int stage, size_t i, const float* seg_f32);
  void h5_write_seg(int stage, size_t i, const SliceMappedVolume& seg);
  void h5_write_seg(int stage, size_t i, const SliceMappedLabels& seg);
  void h5_seg_written(int stage, size_t i);  // the case-stage's volumes are all in the store
  // Writes one case-stage into the store: each image channel and the segmentation (float32, stored as int8).
  void h5_write_volume(int stage, size_t i, const std::vector<const float*>& channels, const float* seg_f32,
                       const Shape3& s);
  // Same from an export array (C+1, z, y, x) read back from an npz.
  void h5_write_export_array(int stage, size_t i, const std::vector<float>& all, const std::vector<int64_t>& shape);
  void h5_finish();
  std::string h5_case_group(int stage, size_t i) const {
    return "/stage" + std::to_string(stage) + "/" + metas_[i].id;
  }
  Shape3 stage_shape(int stage, size_t i) const {
    return resampled_shape(metas_[i].geom.spacing, plan_.stages[static_cast<size_t>(stage)].current_spacing,
                           metas_[i].size_after_cropping);
  }
};

void Pipeline::load_task() {
  task_ = read_raw_task(opt_.raw_base, opt_.task_id);
  if (task_.training.empty()) throw InputError("", task_.dir + "/dataset.json", "no training cases listed");
  std::sort(task_.training.begin(), task_.training.end(),
            [](const CaseFiles& a, const CaseFiles& b) { return a.id < b.id; });
  for (size_t i = 1; i < task_.training.size(); ++i)
    if (task_.training[i].id == task_.training[i - 1].id)
      throw InputError(task_.training[i].id, task_.dir + "/dataset.json", "duplicate case id");
  all_classes_ = all_classes_of(task_);
  out_dir_ = preprocessed_task_dir(opt_.preprocessed, opt_.task_id);
  state_dir_ = (fs::path(out_dir_) / "amos-prep").string();
  cropped_dir_ = (fs::path(opt_.raw_base) / "nnUNet_cropped_data" / task_folder_name(opt_.task_id)).string();
  if (rank_ == 0) {
    make_dirs(state_dir_);
    lock_output_folder();  // before touching anything another run might be writing
    // Temporary files of an earlier, killed run are never final outputs: remove them.
    for (const std::string& root : {out_dir_, cropped_dir_}) {
      std::error_code ec;
      if (!fs::is_directory(root, ec)) continue;
      for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && it->path().filename().string().find(".tmp.") != std::string::npos)
          fs::remove(it->path(), ec);
    }
    make_dirs(out_dir_);
    make_dirs(state_dir_ + "/manifest");
    make_dirs(state_dir_ + "/cache");
    make_dirs(state_dir_ + "/json");
    make_dirs(state_dir_ + "/locs");
    {  // claims of an earlier run mean nothing to this one
      std::error_code ec;
      fs::remove_all(state_dir_ + "/claims", ec);
      make_dirs(state_dir_ + "/claims");
    }
    make_dirs(out_dir_ + "/gt_segmentations");
    if (opt_.write_cropped) make_dirs(cropped_dir_ + "/gt_segmentations");
  }
  barrier();
  owner_ = largest_first_schedule(schedule_costs(), nranks_);
}

void Pipeline::lock_output_folder() {
  const std::string path = state_dir_ + "/run.lock";
  run_lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (run_lock_fd_ < 0) throw IoError(path, std::string("cannot create the run lock: ") + std::strerror(errno));
  if (::flock(run_lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      std::string holder = read_file(path);
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      throw UsageError("another amos-prep run (" + (holder.empty() ? std::string("unknown process") : holder) +
                       ") is writing " + out_dir_ + " (" + path + " is locked); wait for it to end or use another --out");
    }
    // A file system without flock (some Lustre mounts): run unprotected, as before.
    log_.info("warning: cannot lock " + path + " (" + std::strerror(errno) + "); concurrent runs are not detected");
    return;
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string who = "pid " + std::to_string(::getpid()) + " on " + host + "\n";
  if (::ftruncate(run_lock_fd_, 0) == 0) (void)!::pwrite(run_lock_fd_, who.data(), who.size(), 0);
}

bool Pipeline::claim_case(const std::string& phase, size_t i) const {
  if (!work_sharing(phase)) return true;
  const std::string path = state_dir_ + "/claims/" + phase + "-" + task_.training[i].id;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  if (errno == EEXIST) return false;
  throw IoError(path, std::string("cannot create the claim file: ") + std::strerror(errno), task_.training[i].id);
}

std::vector<double> Pipeline::schedule_costs() const {
  // Largest first on a cost read off the headers alone: the input voxels (read, crop) plus the output voxels of
  // every stage the planner would choose for these spacings and sizes (resampling and export dominate, and a
  // 5 mm case upsampled to 1.5 mm in 3-D costs several times its input), counting only the distinct slices where
  // separate-z keeps them once. Sizes before cropping stand in for sizes after.
  const size_t n = task_.training.size();
  std::vector<double> input_voxels(n);
  PlannerInput header_fp;
  for (size_t i = 0; i < n; ++i) {
    const CaseFiles& c = task_.training[i];
    NiftiHeaderInfo h;
    try {
      h = read_nifti_header(c.images.at(0));
    } catch (const InputError& e) {
      throw InputError(c.id, c.images.at(0), e.reason());
    }
    input_voxels[i] = static_cast<double>(h.dim[1]) * static_cast<double>(h.dim[2]) * static_cast<double>(h.dim[3]);
    header_fp.spacings.push_back({h.pixdim[3], h.pixdim[2], h.pixdim[1]});
    header_fp.sizes.push_back({h.dim[3], h.dim[2], h.dim[1]});
    header_fp.size_reductions.push_back(1.0);
  }
  header_fp.num_cases = static_cast<int64_t>(n);
  header_fp.modalities = task_.modalities;
  header_fp.num_classes = static_cast<int>(all_classes_.size());
  std::optional<Plan> plan;
  try {
    plan = make_plan(opt_.planner, header_fp);
  } catch (const std::exception&) {
    // Odd headers: phase 1 reports them with the case named. Schedule on input voxels meanwhile.
  }
  constexpr double kOutputVoxelWeight = 2.0;  // phase-2 CPU per output voxel vs phase-1 CPU per input voxel
  std::vector<double> costs = input_voxels;
  if (!plan) return costs;
  for (size_t i = 0; i < n; ++i)
    for (const StagePlan& sp : plan->stages) {
      std::array<double, 3> out{};
      for (int a = 0; a < 3; ++a)
        out[static_cast<size_t>(a)] =
            std::round(static_cast<double>(header_fp.sizes[i][static_cast<size_t>(a)]) *
                       header_fp.spacings[i][static_cast<size_t>(a)] / sp.current_spacing[static_cast<size_t>(a)]);
      // Separate-z along axis 0 resamples each input slice in-plane once; the output slices are copies of them.
      const SeparateZ sz = decide_separate_z(header_fp.spacings[i], sp.current_spacing, plan->force_separate_z);
      if (sz.separate && sz.axis == 0) out[0] = static_cast<double>(header_fp.sizes[i][0]);
      costs[i] += kOutputVoxelWeight * out[0] * out[1] * out[2];
    }
  return costs;
}

template <class Crop>
void Pipeline::describe_crop(const CaseFiles& c, const Geometry& geom, const Crop& crop, CaseMeta* meta,
                             CaseSummary* summary) const {
  if (meta) {
    meta->id = c.id;
    meta->image_files = c.images;
    meta->seg_file = c.label;
    meta->geom = geom;
    meta->bbox = crop.bbox;
    meta->classes = crop.classes;
    meta->size_after_cropping = crop.size_after_cropping;
  }
  if (summary) {
    ScopedPhase fingerprinting(times_, "fingerprint", &case_log_entry_);
    summary->id = c.id;
    summary->original_size = geom.shape;
    summary->original_spacing = geom.spacing;
    summary->size_after_cropping = crop.size_after_cropping;
    summary->foreground_samples.clear();
    for (const auto& ch : crop.data) summary->foreground_samples.push_back(foreground_sample(ch, crop.seg));
    summarize_intensities(*summary);  // here, on the cropping rank, not serially in the merge on rank 0
  }
}

std::optional<CroppedCase> Pipeline::read_and_crop_compact(size_t i, CaseMeta* meta, CaseSummary* summary) const {
  // CT volumes are int16 and label maps uint8 on disk: read, crop and sample them in those types.
  const CaseFiles& c = task_.training[i];
  std::optional<ScopedPhase> reading(std::in_place, times_, "read", &case_log_entry_);
  std::vector<Array3<int16_t>> channels;
  Geometry geom;
  for (size_t m = 0; m < c.images.size(); ++m) {
    Geometry g;
    auto img = read_nifti_exact<int16_t>(c.images[m], c.id, g);
    if (!img || (m > 0 && g.shape != geom.shape)) return std::nullopt;
    if (m == 0) geom = g;
    channels.push_back(std::move(*img));
  }
  Geometry seg_geom;
  auto seg = read_nifti_exact<int8_t>(c.label, c.id, seg_geom);  // uint8 labels up to 127
  if (!seg || seg_geom.shape != geom.shape || std::any_of(seg->v.begin(), seg->v.end(), [](int8_t v) { return v < 0; }))
    return std::nullopt;
  reading.reset();
  ScopedPhase cropping(times_, "crop", &case_log_entry_);
  CompactCrop crop;
  try {
    crop = crop_to_nonzero(std::move(channels), std::move(*seg), crop_scratch_);
  } catch (const InputError& e) {
    throw InputError(c.id, c.images[0], e.reason());
  }
  describe_crop(c, geom, crop, meta, summary);
  return CroppedCase(std::move(crop));
}

CroppedCase Pipeline::read_and_crop(size_t i, CaseMeta* meta, CaseSummary* summary) const {
  if (auto compact = read_and_crop_compact(i, meta, summary)) return std::move(*compact);
  const CaseFiles& c = task_.training[i];
  std::vector<Array3<float>> channels;
  Geometry geom;
  std::optional<ScopedPhase> reading(std::in_place, times_, "read", &case_log_entry_);
  for (size_t m = 0; m < c.images.size(); ++m) {
    Image img = read_nifti(c.images[m], c.id);
    if (m == 0) geom = img.geom;
    else if (img.geom.shape != geom.shape)
      throw InputError(c.id, c.images[m], "modality shape differs from " + c.images[0]);
    channels.push_back(std::move(img.voxels));
  }
  Image seg = read_nifti(c.label, c.id);
  if (seg.geom.shape != geom.shape) {
    std::ostringstream s;
    s << "label shape (" << seg.geom.shape[0] << ", " << seg.geom.shape[1] << ", " << seg.geom.shape[2]
      << ") differs from image shape (" << geom.shape[0] << ", " << geom.shape[1] << ", " << geom.shape[2] << ")";
    throw InputError(c.id, c.label, s.str());
  }
  reading.reset();
  ScopedPhase cropping(times_, "crop", &case_log_entry_);
  CropResult crop;
  try {
    crop = crop_to_nonzero(channels, &seg.voxels);
  } catch (const InputError& e) {
    throw InputError(c.id, c.images[0], e.reason());
  }
  describe_crop(c, geom, crop, meta, summary);
  return CroppedCase(std::move(crop));
}

void Pipeline::phase_crop_and_fingerprint() {
  const auto t0 = Clock::now();
  const size_t n = task_.training.size();
  ByteWriter metas_out, summaries_small, samples_out;
  std::vector<CaseSummary> my_summaries;
  int64_t kept_bytes = 0;
  identities_.assign(n, InputIdentity{});
  Progress progress("crop+fingerprint", 0, static_cast<int64_t>(n), opt_.quiet);
  const int64_t budget = opt_.mem_per_rank;
  // Each rank crops its own cases, then (work sharing) the ones other ranks have not started; whoever crops a case
  // keeps it for phase 2.
  const std::vector<std::vector<size_t>> queue = queues_by_owner();
  std::vector<size_t> to_crop = queue[static_cast<size_t>(rank_)];
  if (work_sharing("crop"))
    for (size_t i : others_queue_ends(queue)) to_crop.push_back(i);
  for (size_t i : to_crop) {
    if (stop_requested()) break;
    if (!claim_case("crop", i)) continue;
    const CaseFiles& c = task_.training[i];
    InputIdentity ident;
    {
      ScopedPhase hashing(times_, "input_checksum");
      ident = identity_of(case_inputs(i));
    }
    CaseMeta meta;
    CaseSummary summary;
    const std::string cache = state_dir_ + "/cache/" + c.id + ".summary2";  // 2: with the local statistics
    bool cached = false;
    if (!opt_.force && path_exists(cache)) {
      try {
        const std::string bytes = read_file(cache);
        ByteReader r(bytes);
        const std::string ident_json = r.get_string();
        if (ident_json == identity_json(ident).dump()) {
          meta = get_meta(r);
          summary = read_summary(r);
          cached = r.done();
        }
      } catch (const Error&) {
        cached = false;
      }
    }
    if (!cached) {
      case_log_entry_ = nlohmann::json::object();
      CroppedCase kept = read_and_crop(i, &meta, &summary);
      case_log_.push_back({{"case", c.id}, {"phase", "crop"}, {"rank", rank_}, {"stolen", owner_[i] != rank_},
                           {"seconds", case_log_entry_}});
      ByteWriter w;
      w.put_string(identity_json(ident).dump());
      put_meta(w, meta);
      write_summary(w, summary, true);
      write_file_atomic(cache, w.bytes());
      if (opt_.write_cropped) {
        // nnU-Net's cropped folder: data channels + seg stacked, plus the properties pkl.
        const CropResult crop = CroppedCase(kept).expand();
        const Shape3 s = crop.size_after_cropping;
        std::vector<std::span<const float>> pieces;
        for (const auto& ch : crop.data) pieces.emplace_back(ch.v);
        pieces.emplace_back(crop.seg.v);
        write_npz(cropped_dir_ + "/" + c.id + ".npz", "data", pieces,
                  {static_cast<int64_t>(crop.data.size() + 1), s[0], s[1], s[2]}, opt_.npz_compression);
      }
      if (budget <= 0 || kept_bytes + kept.bytes() <= budget / 3) {
        kept_bytes += kept.bytes();
        mine_.emplace(i, std::move(kept));
      }
    }
    copy_file_atomic(c.label, out_dir_ + "/gt_segmentations/" + fs::path(c.label).filename().string());
    if (opt_.write_cropped)
      copy_file_atomic(c.label, cropped_dir_ + "/gt_segmentations/" + fs::path(c.label).filename().string());
    put_meta(metas_out, meta);
    identities_[i] = ident;
    write_summary(summaries_small, summary, true);
    my_summaries.push_back(std::move(summary));
    progress.item_done(c.id, 0, cached);
    lag_for_tests("AMOSPREP_TEST_SLOW_CROP_RANK");
  }
  progress.finish();
  std::vector<uint8_t>().swap(crop_scratch_);
  if (allreduce_or(stop_requested())) throw Interrupted("stop requested during cropping");

  // Metadata to everyone; the foreground samples (large) only matter on rank 0, but the allgather keeps the
  // code simple and is bounded by ~1/10 of the foreground voxels.
  const auto all_metas = allgather_bytes(metas_out.bytes());
  metas_.assign(n, CaseMeta{});
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < n; ++i) index_of[task_.training[i].id] = i;
  for (size_t from = 0; from < all_metas.size(); ++from) {
    ByteReader r(all_metas[from]);
    while (!r.done()) {
      CaseMeta m = get_meta(r);
      const size_t i = index_of.at(m.id);
      owner_[i] = static_cast<int>(from);  // the rank that cropped it keeps it
      metas_[i] = std::move(m);
    }
  }
  // Sizes and spacings go to every rank; the foreground samples (about a tenth of all foreground voxels) only
  // to rank 0, which computes the numpy-exact statistics over their concatenation in sorted case order and
  // broadcasts them.
  ByteWriter small_out;
  for (const auto& sm : my_summaries) write_summary(small_out, sm, false);
  std::vector<CaseSummary> summaries;
  for (const auto& b : allgather_bytes(small_out.bytes())) {
    ByteReader r(b);
    while (!r.done()) summaries.push_back(read_summary(r));
  }
  if (rank_ == 0) {
    std::map<std::string, std::vector<std::vector<float>>> samples;
    for (const auto& b : gather_bytes(summaries_small.bytes())) {
      ByteReader r(b);
      while (!r.done()) {
        CaseSummary sm = read_summary(r);
        samples[sm.id] = std::move(sm.foreground_samples);
      }
    }
    for (auto& sm : summaries) sm.foreground_samples = std::move(samples.at(sm.id));
  } else {
    gather_bytes(summaries_small.bytes());
    for (auto& sm : summaries) sm.foreground_samples.assign(task_.modalities.size(), {});
  }
  fp_ = merge_fingerprint(std::move(summaries), all_classes_, task_.modalities);
  ByteWriter stats;
  for (const auto& g : fp_.global_stats) stats.put(g);
  for (const auto& l : fp_.local_stats) stats.put_vector(l);
  const std::string stats_bytes = broadcast_bytes(stats.bytes());
  ByteReader sr(stats_bytes);
  for (auto& g : fp_.global_stats) g = sr.get<IntensityStats>();
  for (auto& l : fp_.local_stats) l = sr.get_vector<IntensityStats>();
  const int64_t kept = static_cast<int64_t>(allreduce_sum(static_cast<double>(mine_.size())));
  log_.info("cropped and fingerprinted " + std::to_string(n) + " cases in " + std::to_string(seconds_since(t0)) + " s (" +
            std::to_string(kept) + " kept in memory until preprocessing, " + std::to_string(static_cast<int64_t>(n) - kept) +
            " to be re-read)");
}

void Pipeline::phase_plan() {
  planner_input_.spacings = fp_.spacings;
  planner_input_.sizes = fp_.sizes;
  planner_input_.num_cases = static_cast<int64_t>(fp_.case_ids.size());
  planner_input_.modalities = fp_.modalities;
  planner_input_.num_classes = static_cast<int>(all_classes_.size());
  planner_input_.size_reductions = fp_.size_reductions;
  plan_ = make_plan(opt_.planner, planner_input_);

  PlansContext ctx;
  ctx.dataset_properties = dataset_properties_to_py(fp_);
  for (const auto& id : fp_.case_ids) ctx.list_of_npz_files.push_back(cropped_dir_ + "/" + id + ".npz");
  ctx.preprocessed_data_folder = fs::absolute(out_dir_).lexically_normal().string();
  ctx.all_classes = all_classes_;
  ctx.original_spacings = fp_.spacings;
  ctx.original_sizes = fp_.sizes;
  const py::Value plans = plans_to_py(plan_, planner_input_, ctx);
  const std::string plans_bytes = pickle_dumps(plans);
  std::ostringstream h;
  h << std::hex << crc32_of(plans_bytes) << "-" << opt_.seed << "-" << static_cast<int>(opt_.npz_compression) << "-"
    << plans_bytes.size();
  plan_hash_ = h.str();
  // Every rank derived the plan from the same gathered fingerprint; rank 0's is the reference.
  AMOSPREP_VERIFY(broadcast_bytes(plan_hash_) == plan_hash_, "ranks disagree on the plan");

  if (rank_ == 0) {
    const std::string props = pickle_dumps(ctx.dataset_properties);
    write_file_atomic(out_dir_ + "/dataset_properties.pkl", props);
    write_json_mirror(state_dir_ + "/json/dataset_properties.json", ctx.dataset_properties);
    write_file_atomic(out_dir_ + "/" + plan_.plans_file_name, plans_bytes);
    write_json_mirror(state_dir_ + "/json/" + fs::path(plan_.plans_file_name).stem().string() + ".json", plans);
    copy_file_atomic(task_.dir + "/dataset.json", out_dir_ + "/dataset.json");
    if (opt_.write_cropped) {
      write_file_atomic(cropped_dir_ + "/dataset_properties.pkl", props);
      write_file_atomic(cropped_dir_ + "/intensityproperties.pkl",
                        pickle_dumps(intensity_properties_to_py(fp_)));
      copy_file_atomic(task_.dir + "/dataset.json", cropped_dir_ + "/dataset.json");
    }
  }
  if (opt_.write_cropped) {
    for (size_t i = 0; i < metas_.size(); ++i) {
      if (owner_[i] != rank_) continue;
      py::Value p = cropped_properties_py(metas_[i]);
      py::dict_set(p, "use_nonzero_mask_for_norm", use_mask_py(plan_));
      write_pickle(cropped_dir_ + "/" + metas_[i].id + ".pkl", p);
    }
  }
  std::ostringstream s;
  s << "plan " << planner_name(plan_.kind) << ": " << plan_.stages.size() << " stage(s)";
  for (size_t k = 0; k < plan_.stages.size(); ++k) {
    const auto& st = plan_.stages[k];
    s << "; stage " << k << " spacing " << st.current_spacing[0] << "x" << st.current_spacing[1] << "x"
      << st.current_spacing[2] << " patch " << st.patch_size[0] << "x" << st.patch_size[1] << "x" << st.patch_size[2]
      << " batch " << st.batch_size;
  }
  log_.info(s.str());
}

std::string Pipeline::manifest_path(int stage, const std::string& id) const {
  return state_dir_ + "/manifest/stage" + std::to_string(stage) + "_" + id + ".json";
}

std::string stage_dir(const std::string& out_dir, const Plan& plan, int stage) {
  return out_dir + "/" + plan.data_identifier + "_stage" + std::to_string(stage);
}

bool Pipeline::manifest_complete(int stage, size_t i) const {
  if (opt_.force) return false;
  const std::string path = manifest_path(stage, metas_[i].id);
  if (!path_exists(path)) return false;
  try {
    const auto j = nlohmann::json::parse(read_file(path));
    if (j.at("plan_hash") != plan_hash_) return false;
    if (j.at("inputs") != identity_json(identities_.at(i))) return false;
    for (const auto& [name, rec] : j.at("outputs").items()) {
      const std::string file = stage_dir(out_dir_, plan_, stage) + "/" + name;
      if (!path_exists(file)) return false;
      const FileDigest d = digest_of_file(file);
      if (static_cast<int64_t>(d.size) != rec.at("size").get<int64_t>()) return false;
      if (d.crc32 != rec.at("crc32").get<uint32_t>()) return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// Adds int8 labels to an open npz member as float32 pieces converted through `buffer` (the writer must release
// pieces): 1 Mi values at a time, whole 1 MiB deflate segments, when no slice repeats (the same bytes as one
// piece); else one piece per slice, a repeat reusing the compressed previous one.
void add_labels_as_f32(NpzWriter& w, const SliceMappedLabels& m, std::vector<float>& buffer) {
  constexpr int64_t kValuesPerPiece = int64_t{1} << 20;
  const int64_t plane = m.shape[1] * m.shape[2];
  auto add = [&](const int8_t* src, int64_t n) {
    buffer.resize(static_cast<size_t>(n));
    std::copy(src, src + n, buffer.begin());
    w.add_piece({reinterpret_cast<const unsigned char*>(buffer.data()), static_cast<size_t>(n) * sizeof(float)});
  };
  if (!m.repeats_slices()) {
    const int64_t n = voxel_count(m.shape);
    for (int64_t first = 0; first < n; first += kValuesPerPiece)
      add(m.planes.data() + first, std::min(kValuesPerPiece, n - first));
    return;
  }
  for (int64_t z = 0; z < m.shape[0]; ++z) {
    if (z > 0 && m.slice(z) == m.slice(z - 1))
      w.add_piece_again();
    else
      add(m.slice(z), plane);
  }
}

void Pipeline::process_case_stage(int stage, size_t i, CroppedCase& crop, bool last_stage) {
  const CaseMeta& meta = metas_[i];
  const StagePlan& sp = plan_.stages[static_cast<size_t>(stage)];
  ResampleSettings rs;
  rs.order_data = plan_.order_data;
  rs.order_seg = plan_.order_seg;
  rs.force_separate_z = plan_.force_separate_z;
  rs.order_z_data = plan_.order_z_data;
  rs.order_z_seg = plan_.order_z_seg;

  // nnU-Net: transpose (identity for AMOS planners, checked by the planner), NaN -> 0, resample, seg < -1 -> 0.
  AMOSPREP_VERIFY(plan_.transpose_forward == (std::array<int64_t, 3>{0, 1, 2}), "non-identity transpose_forward");
  // Compact crops (int16 CT, int8 labels) are resampled as they are. In the float32 form, NaN -> 0 needs a copy
  // only when the case has NaNs (rare); otherwise the cropped channels are used as they are.
  std::vector<Array3<float>> nan_free;
  if (!crop.compact())
    for (const auto& ch : crop.full().data)
      if (std::any_of(ch.v.begin(), ch.v.end(), [](float x) { return std::isnan(x); })) {
        nan_free = crop.full().data;
        for (auto& c : nan_free)
          for (auto& x : c.v)
            if (std::isnan(x)) x = 0.0f;
        break;
      }
  const std::vector<Array3<float>>& data = nan_free.empty() ? crop.full().data : nan_free;
  const Shape3 s = resampled_shape(meta.geom.spacing, sp.current_spacing, crop.shape());
  const size_t channels = crop.channels();
  const bool chunked_h5 = h5_ && h5_->layout() == H5Layout::chunked;
  const std::string dir = stage_dir(out_dir_, plan_, stage);
  const std::string npz = dir + "/" + meta.id + ".npz", pkl = dir + "/" + meta.id + ".pkl";

  // Image channels first, written out (HDF5) and compressed (npz) before the segmentation is resampled, so the
  // two full-size outputs are not in memory together. Only a nonCT channel normalised inside the mask needs the
  // segmentation first.
  bool mask_needed = false;
  for (size_t c = 0; c < channels; ++c)
    mask_needed = mask_needed || (plan_.normalization_schemes.at(c) == "nonCT" && plan_.use_mask_for_norm.at(c));
  // Outputs keep repeated slices once (separate-z along axis 0): the CT normalisation is pointwise, so it runs
  // on the distinct slices; the writers follow the slice mapping. Schemes with per-volume statistics get the full
  // volume.
  std::vector<SliceMappedVolume> data_out;
  SliceMappedVolume seg_out;
  // int8 labels stay int8 (a quarter of the memory) unless a normalisation needs the segmentation as a mask.
  const bool int8_seg = crop.compact() && !mask_needed;
  SliceMappedLabels seg8_out;
  auto full_volume = [](SliceMappedVolume& m) {
    if (m.repeats_slices()) m = slice_mapped(expand_slices(m));
  };
  auto resample_seg = [&] {
    share_cores();
    ScopedPhase t(times_, "resample", &case_log_entry_);
    if (int8_seg) {
      resample_seg_mapped(crop.seg8(), meta.geom.spacing, sp.current_spacing, rs, seg8_out);
      for (auto& x : seg8_out.planes.v) x = x < -1 ? int8_t{0} : x;  // unconditional store: vectorised
      return;
    }
    std::vector<SliceMappedVolume> no_data;
    if (crop.compact())
      resample_patient_mapped(std::vector<Array3<int16_t>>(), crop.seg8(), meta.geom.spacing, sp.current_spacing, rs,
                              no_data, seg_out);
    else
      resample_patient_mapped(std::vector<Array3<float>>(), crop.full().seg, meta.geom.spacing, sp.current_spacing,
                              rs, no_data, seg_out);
    for (auto& x : seg_out.planes.v) x = x < -1.0f ? 0.0f : x;
    if (mask_needed) full_volume(seg_out);
  };
  if (mask_needed) resample_seg();
  std::optional<ScopedPhase> exporting(std::in_place, times_, "export_npz", &case_log_entry_);
  NpzWriter npz_writer(npz, opt_.npz_compression);
  npz_writer.begin_member("data", py::DType::f4, {static_cast<int64_t>(channels + 1), s[0], s[1], s[2]});
  exporting.reset();

  // CT channels of a 3-D zoom are streamed: each batch of output planes is normalised, written to the HDF5 store
  // (whole chunks along z) and compressed into the npz as soon as it is computed, so no channel is whole in memory.
  bool streamed = false;
  const bool all_ct = std::all_of(plan_.normalization_schemes.begin(), plan_.normalization_schemes.end(),
                                  [](const std::string& scheme) { return scheme == "CT"; });
  if (all_ct && !mask_needed && npz_writer.releases_pieces()) {
    ScopedPhase resampling(times_, "resample", &case_log_entry_);
    const int64_t plane = s[1] * s[2];
    std::vector<int64_t> planes_done(channels, 0);
    std::vector<CtNormalization> normalized;  // what take() applies: the only use of the raw planes
    for (size_t c = 0; c < channels; ++c) normalized.emplace_back(fp_.global_stats.at(c));
    auto take = [&](size_t c, int64_t first, int64_t count, float* planes) {
      share_cores();
      const auto t0 = Clock::now();
      const double c0 = process_cpu_seconds();
      {
        ScopedPhase t(times_, "normalize", &case_log_entry_);
        normalize_ct(planes, count * plane, normalized[c]);
      }
      if (chunked_h5) {
        ScopedPhase t(times_, "hdf5", &case_log_entry_);
        h5_->write_independent_plane_range(h5_case_group(stage, i) + "/data", static_cast<int64_t>(c), first, count,
                                           planes);
      }
      {
        ScopedPhase t(times_, "export_npz", &case_log_entry_);
        npz_writer.add_piece({reinterpret_cast<const unsigned char*>(planes), static_cast<size_t>(count * plane) * sizeof(float)});
      }
      planes_done[c] += count;
      resampling.exclude(seconds_since(t0), process_cpu_seconds() - c0);
    };
    const int64_t align = chunked_h5 ? chunk_for(sp, s)[0] : 1;
    streamed = crop.compact()
                   ? resample_data_streamed(crop.data16(), meta.geom.spacing, sp.current_spacing, rs, align, take,
                                            &normalized)
                   : resample_data_streamed(data, meta.geom.spacing, sp.current_spacing, rs, align, take, &normalized);
    for (size_t c = 0; streamed && c < channels; ++c)
      AMOSPREP_VERIFY(planes_done[c] == s[0], "streamed resampling did not produce the planned shape");
  }
  if (!streamed) {
    share_cores();
    {
      ScopedPhase t(times_, "resample", &case_log_entry_);
      SliceMappedVolume unused;
      if (crop.compact())
        resample_patient_mapped(crop.data16(), Array3<int8_t>(), meta.geom.spacing, sp.current_spacing, rs, data_out,
                                unused);
      else
        resample_patient_mapped(data, Array3<float>(), meta.geom.spacing, sp.current_spacing, rs, data_out, unused);
    }
    std::optional<ScopedPhase> normalizing(std::in_place, times_, "normalize", &case_log_entry_);
    for (size_t c = 0; c < data_out.size(); ++c) {
      const std::string& scheme = plan_.normalization_schemes.at(c);
      if (scheme != "CT") full_volume(data_out[c]);
      Array3<float>& planes = data_out[c].planes;
      if (scheme == "CT") normalize_ct(planes, fp_.global_stats.at(c));
      else if (scheme == "CT2") normalize_ct2(planes, fp_.global_stats.at(c));
      else if (scheme == "nonCT") normalize_nonct(planes, plan_.use_mask_for_norm.at(c) ? &seg_out.planes : nullptr);
    }
    normalizing.reset();
    for (const auto& ch : data_out)
      AMOSPREP_VERIFY(ch.shape == s, "resampled shape differs from the planned shape");
    if (chunked_h5) {
      ScopedPhase t(times_, "hdf5", &case_log_entry_);
      for (size_t c = 0; c < channels; ++c) h5_write_channel(stage, i, c, data_out[c]);
    }
  }
  nan_free.clear();
  if (last_stage) crop.release_data();
  // The export array (C+1, z, y, x) goes to the npz from the channel and segmentation buffers: the whole volume
  // as one piece when no slice repeats, else one piece per slice, a repeat reusing the compressed previous one.
  auto add_slices = [](NpzWriter& w, const SliceMappedVolume& m) {
    const int64_t plane = m.shape[1] * m.shape[2];
    const bool repeats = m.repeats_slices();
    for (int64_t z = 0; z < m.shape[0];) {
      if (z > 0 && m.slice(z) == m.slice(z - 1)) {
        w.add_piece_again();
        ++z;
        continue;
      }
      int64_t e = z + 1;
      while (!repeats && e < m.shape[0] && m.slice(e) == m.slice(e - 1) + plane) ++e;
      w.add_piece({reinterpret_cast<const unsigned char*>(m.slice(z)), static_cast<size_t>((e - z) * plane) * sizeof(float)});
      z = e;
    }
  };
  exporting.emplace(times_, "export_npz", &case_log_entry_);
  for (const auto& ch : data_out) add_slices(npz_writer, ch);
  exporting.reset();
  if (npz_writer.releases_pieces()) data_out.clear();

  if (!mask_needed) resample_seg();
  AMOSPREP_VERIFY((int8_seg ? seg8_out.shape : seg_out.shape) == s,
                  "resampled segmentation shape differs from the planned shape");
  std::optional<ScopedPhase> sampling(std::in_place, times_, "sample", &case_log_entry_);
  const ClassLocations locs = int8_seg ? sample_class_locations(seg8_out, all_classes_, opt_.seed)
                                      : sample_class_locations(seg_out, all_classes_, opt_.seed);
  sampling.reset();
  if (chunked_h5) {
    ScopedPhase t(times_, "hdf5", &case_log_entry_);
    if (int8_seg)
      h5_write_seg(stage, i, seg8_out);
    else
      h5_write_seg(stage, i, seg_out);
  }
  share_cores();
  exporting.emplace(times_, "export_npz", &case_log_entry_);
  std::vector<float> seg_f32;  // the labels as float32 pieces for the npz (kept to end_member where pieces must live)
  if (int8_seg && !npz_writer.releases_pieces()) {
    seg_f32.assign(static_cast<size_t>(voxel_count(s)), 0.0f);
    const int64_t plane = s[1] * s[2];
    for (int64_t z = 0; z < s[0]; ++z) std::copy(seg8_out.slice(z), seg8_out.slice(z) + plane, seg_f32.begin() + z * plane);
    npz_writer.add_piece({reinterpret_cast<const unsigned char*>(seg_f32.data()), seg_f32.size() * sizeof(float)});
  } else if (int8_seg) {
    add_labels_as_f32(npz_writer, seg8_out, seg_f32);
  } else {
    add_slices(npz_writer, seg_out);
  }
  npz_writer.end_member();
  const FileDigest npz_digest = npz_writer.close();
  exporting.reset();
  data_out.clear();
  seg_out = SliceMappedVolume();
  seg8_out = SliceMappedLabels();

  py::Value props = cropped_properties_py(meta);
  py::dict_set(props, "use_nonzero_mask_for_norm", use_mask_py(plan_));
  py::dict_set(props, "size_after_resampling", py::tuple({s[0], s[1], s[2]}));
  py::dict_set(props, "spacing_after_resampling",
               py::nd_f8({sp.current_spacing[0], sp.current_spacing[1], sp.current_spacing[2]}));
  py::dict_set(props, "class_locations", class_locations_to_py(locs));

  ScopedPhase t_pkl(times_, "export_pkl_manifest", &case_log_entry_);
  const FileDigest pkl_digest = write_file_atomic(pkl, pickle_dumps(props));
  {  // the class locations once more in binary, for the HDF5 store's metadata (no JSON parsing at the end)
    ByteWriter w;
    for (int64_t c : all_classes_) {
      std::vector<int64_t> flat;
      for (size_t slot = 0; slot < locs.classes.size(); ++slot)
        if (locs.classes[slot] == c)
          for (const auto& row : locs.coords[slot]) flat.insert(flat.end(), row.begin(), row.end());
      w.put_vector(flat);
    }
    write_file_atomic(locs_path(stage, meta.id), w.bytes());
  }
  write_json_mirror(state_dir_ + "/json/" + plan_.data_identifier + "_stage" + std::to_string(stage) + "_" + meta.id + ".json",
                    props);

  nlohmann::json outputs;
  outputs[meta.id + ".npz"] = {{"size", npz_digest.size}, {"crc32", npz_digest.crc32}};
  outputs[meta.id + ".pkl"] = {{"size", pkl_digest.size}, {"crc32", pkl_digest.crc32}};
  nlohmann::json man = {{"case", meta.id},
                        {"stage", stage},
                        {"plan_hash", plan_hash_},
                        {"inputs", identity_json(identities_.at(i))},
                        {"outputs", outputs}};
  write_file_atomic(manifest_path(stage, meta.id), man.dump(1));
}

void Pipeline::phase_preprocess() {
  const size_t n = metas_.size();
  if (rank_ == 0)
    for (size_t k = 0; k < plan_.stages.size(); ++k) make_dirs(stage_dir(out_dir_, plan_, static_cast<int>(k)));
  barrier();
  if (opt_.h5_layout != "none") h5_create_case_datasets();
  const char* sharing = std::getenv("AMOSPREP_CORE_SHARING");
  cores_ = std::make_unique<CoreSharing>(!(sharing && std::string(sharing) == "0"));
  const auto t0 = Clock::now();
  int64_t done = 0, skipped = 0;
  double total_voxels = 0;
  for (size_t k = 0; k < plan_.stages.size(); ++k)
    for (size_t i = 0; i < n; ++i) total_voxels += static_cast<double>(voxel_count(stage_shape(static_cast<int>(k), i)));
  Progress progress("preprocess", total_voxels, static_cast<int64_t>(n * plan_.stages.size()), opt_.quiet);
  // Every rank's queue, the case needing the most memory last: the crops kept from phase 1 are freed case by case,
  // so the biggest working set then meets the fewest of them (a lower peak; outputs do not depend on the order).
  std::vector<int64_t> peak(n, 0);
  for (size_t i = 0; i < n; ++i) peak[i] = estimate_case_peak(i);
  std::vector<std::vector<size_t>> queue = queues_by_owner();
  for (auto& q : queue) std::stable_sort(q.begin(), q.end(), [&](size_t a, size_t b) { return peak[a] < peak[b]; });
  std::vector<size_t> processed;  // cases this rank took in this run
  auto run_case = [&](size_t i, bool stolen) {
    if (identities_[i].files.empty()) {  // a case cropped by another rank
      ScopedPhase hashing(times_, "input_checksum");
      identities_[i] = identity_of(case_inputs(i));
    }
    std::vector<int> todo;
    for (size_t k = 0; k < plan_.stages.size(); ++k) {
      if (!manifest_complete(static_cast<int>(k), i)) todo.push_back(static_cast<int>(k));
      else progress.item_done(metas_[i].id + " stage " + std::to_string(k),
                              static_cast<double>(voxel_count(stage_shape(static_cast<int>(k), i))), true);
    }
    skipped += static_cast<int64_t>(plan_.stages.size() - todo.size());
    processed.push_back(i);
    if (todo.empty()) return;
    const int64_t need = peak[i];
    if (opt_.mem_per_rank > 0 && need > opt_.mem_per_rank)
      throw InputError(metas_[i].id, task_.training[i].images.at(0),
                       "needs about " + std::to_string(need >> 20) + " MiB to preprocess but the budget per rank is " +
                           std::to_string(opt_.mem_per_rank >> 20) +
                           " MiB (--mem-per-rank); run with fewer ranks per node or a larger budget");
    auto it = mine_.find(i);
    std::optional<CroppedCase> cropped;
    if (it != mine_.end()) {
      cropped.emplace(std::move(it->second));
      mine_.erase(it);
    } else {
      case_log_entry_ = nlohmann::json::object();
      cropped.emplace(read_and_crop(i, nullptr, nullptr));
      case_log_.push_back({{"case", metas_[i].id}, {"phase", "crop again"}, {"rank", rank_}, {"seconds", case_log_entry_}});
    }
    for (size_t t = 0; t < todo.size(); ++t) {
      const int k = todo[t];
      if (stop_requested()) break;
      const auto tc = Clock::now();
      case_log_entry_ = nlohmann::json::object();
      case_threads_ = omp_get_max_threads();
      share_cores();
      process_case_stage(k, i, *cropped, t + 1 == todo.size());
      ++done;
      case_log_.push_back({{"case", metas_[i].id},
                           {"stage", k},
                           {"rank", rank_},
                           {"stolen", stolen},
                           {"seconds", case_log_entry_},
                           {"total_seconds", seconds_since(tc)},
                           {"threads", case_threads_},
                           {"estimated_peak_bytes", need},
                           {"peak_rss_bytes_so_far", peak_rss_bytes()}});
      progress.item_done(metas_[i].id + " stage " + std::to_string(k),
                         static_cast<double>(voxel_count(stage_shape(k, i))), false);
      if (const char* d = std::getenv("AMOSPREP_FAULT_DELAY_MS"))  // test hook: widen the window for kill tests
        std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(d)));
      lag_for_tests("AMOSPREP_TEST_SLOW_RANK");
    }
  };
  for (size_t i : queue[static_cast<size_t>(rank_)]) {
    if (stop_requested()) break;
    if (!claim_case("preprocess", i)) {  // another rank, done with its own queue, took it
      mine_.erase(i);
      continue;
    }
    run_case(i, false);
  }
  // Work sharing: a rank done with its own queue takes cases other ranks have not started, from the ends of their
  // queues (nearest ranks first), re-reading them from disk. The claim files make sure one rank does each.
  if (work_sharing("preprocess"))
    for (size_t i : others_queue_ends(queue)) {
      if (stop_requested()) break;
      if (claim_case("preprocess", i)) run_case(i, true);
    }
  // This rank's cores go to the ranks still working, and its resampling buffers (hundreds of MB) back to the
  // node, whose memory the ranks still working need more; it waits without spinning until they are done.
  release_resample_buffers();
  cores_->offer_mine();
  barrier();
  cores_->close();
  cores_.reset();
  progress.finish();
  const bool interrupted = allreduce_or(stop_requested());
  const double total_done = allreduce_sum(static_cast<double>(done));
  const double total_skipped = allreduce_sum(static_cast<double>(skipped));
  finisher_ = owner_;  // who completes each case in the store: the rank that took it
  {
    ByteWriter w;
    w.put_vector(std::vector<uint64_t>(processed.begin(), processed.end()));
    const auto lists = allgather_bytes(w.bytes());
    for (size_t from = 0; from < lists.size(); ++from) {
      ByteReader rd(lists[from]);
      for (uint64_t i : rd.get_vector<uint64_t>()) finisher_[i] = static_cast<int>(from);
    }
  }
  if (rank_ == 0) {  // every rank is past its claims (the allgather above)
    std::error_code ec;
    fs::remove_all(state_dir_ + "/claims", ec);
  }
  if (interrupted) {
    if (h5_) {
      h5_->close();  // the store stays under its .partial name; a rerun rebuilds it
      h5_.reset();
    }
    throw Interrupted("stop requested; completed outputs are kept, rerun the same command to resume");
  }
  if (h5_) {
    const auto th = Clock::now();
    const double c0 = process_cpu_seconds();
    h5_finish();
    times_.add("hdf5_finish", seconds_since(th), process_cpu_seconds() - c0);
  }
  log_.info("preprocessed " + std::to_string(static_cast<int64_t>(total_done)) + " case-stages (" +
            std::to_string(static_cast<int64_t>(total_skipped)) + " already complete) in " +
            std::to_string(seconds_since(t0)) + " s");
}

// ---- HDF5 store -------------------------------------------------------------------------------------------

void Pipeline::h5_create_case_datasets() {
  h5_path_ = out_dir_ + "/amos-prep.h5";
  h5_ = std::make_unique<H5Store>(h5_path_ + ".partial", opt_.h5_layout == "deflate" ? H5Layout::deflate : H5Layout::chunked);
  h5_->set_attr("/", "format", std::string("amos-prep-h5/1"));
  h5_->set_attr("/", "planner", planner_name(plan_.kind));
  h5_->set_attr("/", "data_identifier", plan_.data_identifier);
  h5_->set_attr("/", "plan_hash", plan_hash_);
  h5_->set_attr("/", "seed", std::vector<int64_t>{static_cast<int64_t>(opt_.seed)});
  h5_->set_attr("/", "layout", opt_.h5_layout);
  h5_->set_attr("/", "all_classes", all_classes_);
  h5_data_written_.assign(plan_.stages.size(), std::vector<bool>(metas_.size(), false));
  const int64_t channels = static_cast<int64_t>(task_.modalities.size());
  for (size_t k = 0; k < plan_.stages.size(); ++k) {
    const auto& sp = plan_.stages[k];
    const std::string sg = "/stage" + std::to_string(k);
    h5_->create_group(sg);
    h5_->set_attr(sg, "current_spacing", std::vector<double>(sp.current_spacing.begin(), sp.current_spacing.end()));
    h5_->set_attr(sg, "patch_size", std::vector<int64_t>(sp.patch_size.begin(), sp.patch_size.end()));
    for (size_t i = 0; i < metas_.size(); ++i) {
      const Shape3 s = stage_shape(static_cast<int>(k), i);
      const std::string g = h5_case_group(static_cast<int>(k), i);
      h5_->create_group(g);
      auto chunk = chunk_for(sp, s);
      std::vector<int64_t> dchunk{1};
      dchunk.insert(dchunk.end(), chunk.begin(), chunk.end());
      h5_->create_f32(g + "/data", {channels, s[0], s[1], s[2]}, dchunk);
      h5_->create_i8(g + "/seg", {s[0], s[1], s[2]}, chunk);
    }
  }
}

void Pipeline::h5_write_channel(int stage, size_t i, size_t channel, const float* data) {
  h5_->write_independent_rows(h5_case_group(stage, i) + "/data", static_cast<int64_t>(channel), 1, data);
}

void Pipeline::h5_write_channel(int stage, size_t i, size_t channel, const SliceMappedVolume& data) {
  h5_->write_independent_planes(h5_case_group(stage, i) + "/data", static_cast<int64_t>(channel), 1,
                                data.slice_pointers(), false);
}

void Pipeline::h5_write_seg(int stage, size_t i, const float* seg_f32) {
  h5_->write_independent_f32_as_i8(h5_case_group(stage, i) + "/seg", seg_f32);
  h5_seg_written(stage, i);
}

void Pipeline::h5_write_seg(int stage, size_t i, const SliceMappedVolume& seg) {
  h5_->write_independent_planes(h5_case_group(stage, i) + "/seg", 0, -1, seg.slice_pointers(), true);
  h5_seg_written(stage, i);
}

void Pipeline::h5_write_seg(int stage, size_t i, const SliceMappedLabels& seg) {
  h5_->write_independent_planes(h5_case_group(stage, i) + "/seg", 0, -1, seg.slice_pointers());
  h5_seg_written(stage, i);
}

void Pipeline::h5_seg_written(int stage, size_t i) {
  h5_->release_written_pages();
  h5_data_written_[static_cast<size_t>(stage)][i] = true;
}

void Pipeline::h5_write_volume(int stage, size_t i, const std::vector<const float*>& channels, const float* seg_f32,
                               const Shape3& s) {
  AMOSPREP_VERIFY(s == stage_shape(stage, i), "resampled shape differs from the planned HDF5 dataset shape");
  if (h5_->layout() == H5Layout::chunked) {
    for (size_t c = 0; c < channels.size(); ++c) h5_write_channel(stage, i, c, channels[c]);
    h5_write_seg(stage, i, seg_f32);
    return;
  }
  const size_t vox = static_cast<size_t>(voxel_count(s));
  std::vector<int8_t> seg(vox);
  for (size_t v = 0; v < vox; ++v) seg[v] = static_cast<int8_t>(seg_f32[v]);
  const std::string g = h5_case_group(stage, i);
  for (size_t c = 1; c < channels.size(); ++c)
    AMOSPREP_VERIFY(channels[c] == channels[0] + c * vox, "collective HDF5 writes need the channels contiguous");
  h5_->write_collective(g + "/data", channels.empty() ? seg_f32 : channels[0]);
  h5_->write_collective(g + "/seg", seg.data());
  h5_data_written_[static_cast<size_t>(stage)][i] = true;
}

void Pipeline::h5_write_export_array(int stage, size_t i, const std::vector<float>& all, const std::vector<int64_t>& shape) {
  const Shape3 s{shape[1], shape[2], shape[3]};
  const size_t vox = static_cast<size_t>(voxel_count(s)), channels = static_cast<size_t>(shape[0] - 1);
  std::vector<const float*> ch;
  for (size_t c = 0; c < channels; ++c) ch.push_back(all.data() + c * vox);
  h5_write_volume(stage, i, ch, all.data() + channels * vox, s);
}

void Pipeline::h5_finish() {
  const auto t0 = Clock::now();
  const size_t n = metas_.size(), stages = plan_.stages.size();
  // 1) Volumes not yet in the store (resumed cases; every case in the deflate layout) come back from the npz.
  //    Filtered datasets need collective writes: rounds in which every rank writes its r-th pending volume.
  std::vector<std::pair<int, size_t>> pending;
  for (size_t k = 0; k < stages; ++k)
    for (size_t i = 0; i < n; ++i)
      if (finisher_[i] == rank_ && !h5_data_written_[k][i]) pending.push_back({static_cast<int>(k), i});
  auto load_npz = [&](int k, size_t i, std::vector<int64_t>& shape) {
    return read_npz_f32(stage_dir(out_dir_, plan_, k) + "/" + metas_[i].id + ".npz", "data", &shape);
  };
  if (h5_->layout() == H5Layout::chunked) {
    for (auto [k, i] : pending) {
      std::vector<int64_t> shape;
      h5_write_export_array(k, i, load_npz(k, i, shape), shape);
    }
  } else {
    // Every rank learns every rank's pending list, then all walk the same global order.
    ByteWriter w;
    w.put<uint64_t>(pending.size());
    for (auto [k, i] : pending) {
      w.put<int64_t>(k);
      w.put<uint64_t>(i);
    }
    const auto lists = allgather_bytes(w.bytes());
    std::vector<std::vector<std::pair<int, size_t>>> per_rank(lists.size());
    size_t rounds = 0;
    for (size_t r = 0; r < lists.size(); ++r) {
      ByteReader rd(lists[r]);
      const auto m = rd.get<uint64_t>();
      for (uint64_t j = 0; j < m; ++j) {
        const int k = static_cast<int>(rd.get<int64_t>());
        per_rank[r].push_back({k, rd.get<uint64_t>()});
      }
      rounds = std::max<size_t>(rounds, per_rank[r].size());
    }
    for (size_t round = 0; round < rounds; ++round) {
      for (size_t r = 0; r < per_rank.size(); ++r) {
        if (round >= per_rank[r].size()) continue;
        auto [k, i] = per_rank[r][round];
        const std::string g = h5_case_group(k, i);
        if (static_cast<int>(r) == rank_) {
          std::vector<int64_t> shape;
          h5_write_export_array(k, i, load_npz(k, i, shape), shape);
        } else {
          h5_->write_collective(g + "/data", nullptr);
          h5_->write_collective(g + "/seg", nullptr);
        }
      }
    }
  }
  // 2) Small per-case datasets: class locations and properties. Sizes travel to every rank (collective
  //    creation), then owners write their own independently.
  struct Small {
    std::vector<std::vector<int64_t>> locs;  // per class, flattened (k, 3)
    std::string pkl, json;
  };
  std::map<std::pair<int, size_t>, Small> mine;
  ByteWriter sizes;
  for (size_t k = 0; k < stages; ++k)
    for (size_t i = 0; i < n; ++i) {
      if (finisher_[i] != rank_) continue;
      const std::string dir = stage_dir(out_dir_, plan_, static_cast<int>(k));
      Small s;
      s.pkl = read_file(dir + "/" + metas_[i].id + ".pkl");
      s.json = read_file(state_dir_ + "/json/" + plan_.data_identifier + "_stage" + std::to_string(k) + "_" +
                         metas_[i].id + ".json");
      try {  // binary copy written next to the JSON mirror; older state folders have only the JSON
        const std::string bin = read_file(locs_path(static_cast<int>(k), metas_[i].id));
        ByteReader r(bin);  // keeps a reference to `bin`
        for (size_t c = 0; c < all_classes_.size(); ++c) s.locs.push_back(r.get_vector<int64_t>());
        if (!r.done()) throw IoError(locs_path(static_cast<int>(k), metas_[i].id), "trailing bytes");
      } catch (const std::exception&) {
        s.locs.clear();
        const auto j = nlohmann::json::parse(s.json);
        for (int64_t c : all_classes_) {
          std::vector<int64_t> flat;
          for (const auto& row : j.at("class_locations").at(std::to_string(c)))
            for (const auto& v : row) flat.push_back(v.get<int64_t>());
          s.locs.push_back(std::move(flat));
        }
      }
      sizes.put<int64_t>(static_cast<int64_t>(k));
      sizes.put<uint64_t>(i);
      sizes.put<uint64_t>(s.pkl.size());
      sizes.put<uint64_t>(s.json.size());
      for (const auto& l : s.locs) sizes.put<uint64_t>(l.size() / 3);
      mine[{static_cast<int>(k), i}] = std::move(s);
    }
  std::map<std::pair<int, size_t>, std::vector<uint64_t>> all_sizes;
  for (const auto& b : allgather_bytes(sizes.bytes())) {
    ByteReader r(b);
    while (!r.done()) {
      const int k = static_cast<int>(r.get<int64_t>());
      const size_t i = r.get<uint64_t>();
      std::vector<uint64_t> v{r.get<uint64_t>(), r.get<uint64_t>()};
      for (size_t c = 0; c < all_classes_.size(); ++c) v.push_back(r.get<uint64_t>());
      all_sizes[{k, i}] = std::move(v);
    }
  }
  for (const auto& [key, v] : all_sizes) {  // std::map: the same order on every rank
    const std::string g = h5_case_group(key.first, key.second);
    h5_->create_u8(g + "/properties.pkl", static_cast<int64_t>(v[0]));
    h5_->create_u8(g + "/properties.json", static_cast<int64_t>(v[1]));
    for (size_t c = 0; c < all_classes_.size(); ++c)
      h5_->create_i64(g + "/class_locations/" + std::to_string(all_classes_[c]), {static_cast<int64_t>(v[2 + c]), 3});
  }
  for (const auto& [key, s] : mine) {
    const std::string g = h5_case_group(key.first, key.second);
    h5_->write_independent(g + "/properties.pkl", s.pkl.data());
    h5_->write_independent(g + "/properties.json", s.json.data());
    for (size_t c = 0; c < all_classes_.size(); ++c)
      h5_->write_independent(g + "/class_locations/" + std::to_string(all_classes_[c]), s.locs[c].data());
  }
  // 3) Status flips to complete last, then the file is closed and renamed into place.
  for (const auto& [key, v] : all_sizes) h5_->set_attr(h5_case_group(key.first, key.second), "status", std::string("complete"));
  // The plans and the fingerprint as small datasets (attributes are limited to 64 KiB).
  const std::string plans_bytes = rank_ == 0 ? read_file(out_dir_ + "/" + plan_.plans_file_name) : std::string();
  const std::string props_bytes = rank_ == 0 ? read_file(out_dir_ + "/dataset_properties.pkl") : std::string();
  const std::string plans_b = broadcast_bytes(plans_bytes), props_b = broadcast_bytes(props_bytes);
  h5_->create_u8("/plans.pkl", static_cast<int64_t>(plans_b.size()));
  h5_->create_u8("/dataset_properties.pkl", static_cast<int64_t>(props_b.size()));
  if (rank_ == 0) {
    h5_->write_independent("/plans.pkl", plans_b.data());
    h5_->write_independent("/dataset_properties.pkl", props_b.data());
  }
  h5_->set_attr("/", "status", std::string("complete"));
  h5_->close();
  h5_.reset();
  barrier();
  if (rank_ == 0) {
    fs::rename(h5_path_ + ".partial", h5_path_);
  }
  barrier();
  log_.info("HDF5 store " + h5_path_ + " (" + opt_.h5_layout + ") finished in " + std::to_string(seconds_since(t0)) + " s");
}

int64_t Pipeline::estimate_case_peak(size_t i) const {
  // The cropped input (float32 in the worst case; int16 CT + int8 labels need 3 bytes per voxel), the float64
  // prefilter coefficients of the padded input, and the outputs of the largest stage: float32 image channels
  // (when they cannot be streamed) and float32 labels (int8 for compact crops), plus 64 MiB of buffers.
  const double channels = static_cast<double>(task_.modalities.size());
  const Shape3 in = metas_[i].size_after_cropping;
  double out_vox = 0;
  for (size_t k = 0; k < plan_.stages.size(); ++k)
    out_vox = std::max(out_vox, static_cast<double>(voxel_count(stage_shape(static_cast<int>(k), i))));
  const double padded = static_cast<double>(in[0] + 24) * static_cast<double>(in[1] + 24) * static_cast<double>(in[2] + 24);
  const double bytes = 4.0 * (channels + 1) * static_cast<double>(voxel_count(in)) + 8.0 * padded +
                       4.0 * channels * out_vox + 4.0 * out_vox + 64.0 * 1024 * 1024;
  return static_cast<int64_t>(bytes);
}

void Pipeline::write_log() {
  const char* pages = std::getenv("AMOSPREP_PAGE_CHOICE");  // set by apply_page_choice in main()
  nlohmann::json mine = {{"rank", rank_},
                         {"threads", omp_get_max_threads()},
                         {"pages", pages ? pages : "not probed"},
                         {"peak_rss_bytes", peak_rss_bytes()},
                         {"cases", case_log_}};
  nlohmann::json phases;
  for (const auto& [name, wc] : times_.wall_cpu) phases[name] = {{"wall_seconds", wc.first}, {"cpu_seconds", wc.second}};
  mine["phases"] = phases;
  const auto all = allgather_bytes(mine.dump());
  if (rank_ != 0) return;
  nlohmann::json ranks = nlohmann::json::array(), totals;
  for (const auto& b : all) {
    auto j = nlohmann::json::parse(b);
    for (const auto& [name, v] : j["phases"].items()) {
      auto& t = totals[name];
      if (t.is_null()) t = {{"wall_seconds", 0.0}, {"cpu_seconds", 0.0}};
      t["wall_seconds"] = t["wall_seconds"].get<double>() + v["wall_seconds"].get<double>();
      t["cpu_seconds"] = t["cpu_seconds"].get<double>() + v["cpu_seconds"].get<double>();
    }
    ranks.push_back(std::move(j));
  }
  nlohmann::json log = {{"tool", "amos-prep"},
                        {"version", AMOSPREP_VERSION},
                        {"isa", isa_name(active_isa())},
                        {"planner", planner_name(plan_.kind)},
                        {"task", task_.name},
                        {"ranks", nranks_},
                        {"cases", metas_.size()},
                        {"stages", plan_.stages.size()},
                        {"seed", opt_.seed},
                        {"npz_compression", npz_compression_name(opt_.npz_compression)},
                        {"h5_layout", opt_.h5_layout},
                        {"mem_per_rank_bytes", opt_.mem_per_rank},
                        {"wall_seconds", seconds_since(run_t0_)},
                        {"phase_totals_over_ranks", totals},
                        {"warnings", warnings_},
                        {"per_rank", ranks}};
  const std::string path = opt_.log_json.empty() ? state_dir_ + "/log.json" : opt_.log_json;
  write_file_atomic(path, log.dump(1));
}

void Pipeline::run() {
  if (opt_.verify_integrity) {
    int code = kExitOk;
    if (rank_ == 0) {
      const VerifyReport report = verify_raw_task(raw_task_dir(opt_.raw_base, opt_.task_id));
      std::cerr << report.text();
      code = report.exit_code();
    }
    if (allreduce_max(code) != kExitOk)
      throw InputError("", raw_task_dir(opt_.raw_base, opt_.task_id),
                       "dataset integrity check failed (see the problems listed above)");
  }
  load_task();
  log_.info("task " + task_.name + ": " + std::to_string(task_.training.size()) + " training cases, " +
            std::to_string(nranks_) + " rank(s) x " + std::to_string(omp_get_max_threads()) + " thread(s)");
  phase_crop_and_fingerprint();
  phase_plan();
  phase_preprocess();
  write_log();
  log_.info("outputs in " + out_dir_);
}

}  // namespace

void plan_and_preprocess(const PipelineOptions& options) {
  Pipeline p(options);
  p.run();
}

}  // namespace amosprep
