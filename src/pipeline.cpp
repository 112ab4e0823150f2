#include "amosprep/pipeline.hpp"

#include <libdeflate.h>
#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <sys/resource.h>
#include <sstream>

#include "amosprep/amos_dataset.hpp"
#include "amosprep/class_locations.hpp"
#include "amosprep/crop.hpp"
#include "amosprep/distributed.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fingerprint.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/h5_store.hpp"
#include "amosprep/json_mirror.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/normalize.hpp"
#include "amosprep/pickle_writer.hpp"
#include "amosprep/resample.hpp"
#include "amosprep/run_control.hpp"

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

uint32_t crc_of(const std::string& bytes) {
  return libdeflate_crc32(0, bytes.data(), bytes.size());
}

InputIdentity identity_of(const std::vector<std::string>& files) {
  InputIdentity id;
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) throw IoError(f, "cannot stat input");
    id.files.push_back(f);
    id.sizes.push_back(st.st_size);
    id.mtimes_ns.push_back(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
    id.crcs.push_back(crc_of(read_file(f)));
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

void put_summary(ByteWriter& w, const CaseSummary& s, bool with_samples) {
  w.put_string(s.id);
  w.put(s.original_size);
  w.put(s.original_spacing);
  w.put(s.size_after_cropping);
  w.put<uint64_t>(with_samples ? s.foreground_samples.size() : 0);
  if (with_samples)
    for (const auto& v : s.foreground_samples) w.put_vector(v);
}

CaseSummary get_summary(ByteReader& r) {
  CaseSummary s;
  s.id = r.get_string();
  s.original_size = r.get<Shape3>();
  s.original_spacing = r.get<std::array<double, 3>>();
  s.size_after_cropping = r.get<Shape3>();
  const auto n = r.get<uint64_t>();
  for (uint64_t i = 0; i < n; ++i) s.foreground_samples.push_back(r.get_vector<float>());
  return s;
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
struct CroppedCase {
  CropResult crop;
  bool present = false;
};

class Logger {
 public:
  explicit Logger(bool quiet) : quiet_(quiet), t0_(Clock::now()) {}
  void info(const std::string& msg) const {
    if (!quiet_ && mpi_rank() == 0) std::cerr << "[amos-prep " << fmt_time() << "] " << msg << std::endl;
  }
  void rank_info(const std::string& msg) const {
    if (!quiet_) std::cerr << "[amos-prep " << fmt_time() << " r" << mpi_rank() << "] " << msg << std::endl;
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

  void run();

 private:
  void load_task();
  void phase_crop_and_fingerprint();
  void phase_plan();
  void phase_preprocess();
  CropResult read_and_crop(size_t case_index, CaseMeta* meta_out, CaseSummary* summary_out) const;
  std::string manifest_path(int stage, const std::string& id) const;
  bool manifest_complete(int stage, size_t case_index) const;
  void process_case_stage(int stage, size_t case_index, const CropResult& crop);

  PipelineOptions opt_;
  Logger log_;
  int rank_, nranks_;
  RawTask task_;
  std::vector<int64_t> all_classes_;
  std::string out_dir_, state_dir_, cropped_dir_;
  std::vector<int> owner_;
  std::vector<CaseMeta> metas_;                 // all cases (allgathered)
  std::vector<InputIdentity> identities_;       // all cases
  std::map<size_t, CroppedCase> mine_;          // cropped data kept in memory
  DatasetFingerprint fp_;
  PlannerInput planner_input_;
  Plan plan_;
  std::string plan_hash_;
  std::unique_ptr<H5Store> h5_;
  std::string h5_path_;
  std::vector<std::vector<bool>> h5_data_written_;  // [stage][case]: data/seg already in the store
  nlohmann::json case_log_ = nlohmann::json::array();

  void h5_create_case_datasets();
  void h5_write_volume(int stage, size_t i, const float* all, const Shape3& s, size_t channels);
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
    make_dirs(out_dir_);
    make_dirs(state_dir_ + "/manifest");
    make_dirs(state_dir_ + "/cache");
    make_dirs(state_dir_ + "/json");
    make_dirs(out_dir_ + "/gt_segmentations");
    if (opt_.write_cropped) make_dirs(cropped_dir_ + "/gt_segmentations");
  }
  barrier();
  // Largest first by voxel count from the headers (cheap), so no rank waits for one giant case.
  std::vector<double> costs;
  for (const auto& c : task_.training) {
    const auto h = read_nifti_header(c.images.at(0));
    costs.push_back(static_cast<double>(h.dim[1]) * static_cast<double>(h.dim[2]) * static_cast<double>(h.dim[3]));
  }
  owner_ = largest_first_schedule(costs, nranks_);
}

CropResult Pipeline::read_and_crop(size_t i, CaseMeta* meta, CaseSummary* summary) const {
  const CaseFiles& c = task_.training[i];
  std::vector<Array3<float>> channels;
  Geometry geom;
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
  for (auto& ch : channels)  // nnU-Net: data[isnan(data)] = 0 happens in preprocessing; crop sees raw values
    (void)ch;
  CropResult crop;
  try {
    crop = crop_to_nonzero(channels, &seg.voxels);
  } catch (const InputError& e) {
    throw InputError(c.id, c.images[0], e.reason());
  }
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
    summary->id = c.id;
    summary->original_size = geom.shape;
    summary->original_spacing = geom.spacing;
    summary->size_after_cropping = crop.size_after_cropping;
    summary->foreground_samples.clear();
    for (const auto& ch : crop.data) summary->foreground_samples.push_back(foreground_sample(ch, crop.seg));
  }
  return crop;
}

void Pipeline::phase_crop_and_fingerprint() {
  const auto t0 = Clock::now();
  const size_t n = task_.training.size();
  ByteWriter metas_out, summaries_small, samples_out;
  std::vector<CaseSummary> my_summaries;
  int64_t kept_bytes = 0;
  identities_.assign(n, InputIdentity{});
  const int64_t budget = opt_.mem_per_rank;
  for (size_t i = 0; i < n; ++i) {
    if (owner_[i] != rank_) continue;
    if (stop_requested()) break;
    const CaseFiles& c = task_.training[i];
    std::vector<std::string> inputs = c.images;
    inputs.push_back(c.label);
    InputIdentity ident = identity_of(inputs);
    CaseMeta meta;
    CaseSummary summary;
    const std::string cache = state_dir_ + "/cache/" + c.id + ".summary";
    bool cached = false;
    if (!opt_.force && path_exists(cache)) {
      try {
        const std::string bytes = read_file(cache);
        ByteReader r(bytes);
        const std::string ident_json = r.get_string();
        if (ident_json == identity_json(ident).dump()) {
          meta = get_meta(r);
          summary = get_summary(r);
          cached = r.done();
        }
      } catch (const Error&) {
        cached = false;
      }
    }
    if (!cached) {
      CropResult crop = read_and_crop(i, &meta, &summary);
      ByteWriter w;
      w.put_string(identity_json(ident).dump());
      put_meta(w, meta);
      put_summary(w, summary, true);
      write_file_atomic(cache, w.bytes());
      if (opt_.write_cropped) {
        // nnU-Net's cropped folder: data channels + seg stacked, plus the properties pkl.
        const Shape3 s = crop.size_after_cropping;
        const size_t vox = static_cast<size_t>(voxel_count(s));
        std::vector<float> all((crop.data.size() + 1) * vox);
        for (size_t ch = 0; ch < crop.data.size(); ++ch)
          std::copy(crop.data[ch].v.begin(), crop.data[ch].v.end(), all.begin() + static_cast<std::ptrdiff_t>(ch * vox));
        std::copy(crop.seg.v.begin(), crop.seg.v.end(), all.begin() + static_cast<std::ptrdiff_t>(crop.data.size() * vox));
        write_npz(cropped_dir_ + "/" + c.id + ".npz", "data", all.data(),
                  {static_cast<int64_t>(crop.data.size() + 1), s[0], s[1], s[2]}, opt_.npz_compression);
      }
      const int64_t bytes = static_cast<int64_t>((crop.data.size() + 1) * crop.seg.size() * sizeof(float));
      if (budget <= 0 || kept_bytes + bytes <= budget / 3) {
        kept_bytes += bytes;
        mine_[i] = CroppedCase{std::move(crop), true};
      }
    }
    copy_file_atomic(c.label, out_dir_ + "/gt_segmentations/" + fs::path(c.label).filename().string());
    if (opt_.write_cropped)
      copy_file_atomic(c.label, cropped_dir_ + "/gt_segmentations/" + fs::path(c.label).filename().string());
    put_meta(metas_out, meta);
    identities_[i] = ident;
    put_summary(summaries_small, summary, true);
    my_summaries.push_back(std::move(summary));
  }
  if (allreduce_or(stop_requested())) throw Interrupted("stop requested during cropping");

  // Metadata to everyone; the foreground samples (large) only matter on rank 0, but the allgather keeps the
  // code simple and is bounded by ~1/10 of the foreground voxels.
  const auto all_metas = allgather_bytes(metas_out.bytes());
  metas_.assign(n, CaseMeta{});
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < n; ++i) index_of[task_.training[i].id] = i;
  for (const auto& b : all_metas) {
    ByteReader r(b);
    while (!r.done()) {
      CaseMeta m = get_meta(r);
      metas_[index_of.at(m.id)] = std::move(m);
    }
  }
  const auto all_summaries = allgather_bytes(summaries_small.bytes());
  std::vector<CaseSummary> summaries;
  for (const auto& b : all_summaries) {
    ByteReader r(b);
    while (!r.done()) summaries.push_back(get_summary(r));
  }
  fp_ = merge_fingerprint(std::move(summaries), all_classes_, task_.modalities);
  log_.info("cropped and fingerprinted " + std::to_string(n) + " cases in " + std::to_string(seconds_since(t0)) + " s (" +
            std::to_string(mine_.size()) + " kept in memory on rank 0)");
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
  h << std::hex << crc_of(plans_bytes) << "-" << opt_.seed << "-" << static_cast<int>(opt_.npz_compression) << "-"
    << plans_bytes.size();
  plan_hash_ = h.str();

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
      const std::string bytes = read_file(file);
      if (static_cast<int64_t>(bytes.size()) != rec.at("size").get<int64_t>()) return false;
      if (crc_of(bytes) != rec.at("crc32").get<uint32_t>()) return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

void Pipeline::process_case_stage(int stage, size_t i, const CropResult& crop) {
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
  std::vector<Array3<float>> data = crop.data;
  for (auto& ch : data)
    for (auto& x : ch.v)
      if (std::isnan(x)) x = 0.0f;
  std::vector<Array3<float>> data_out;
  Array3<float> seg_out;
  resample_patient(data, crop.seg, meta.geom.spacing, sp.current_spacing, rs, data_out, seg_out);
  data.clear();
  for (auto& x : seg_out.v)
    if (x < -1.0f) x = 0.0f;
  for (size_t c = 0; c < data_out.size(); ++c) {
    const std::string& scheme = plan_.normalization_schemes.at(c);
    if (scheme == "CT") normalize_ct(data_out[c], fp_.global_stats.at(c));
    else if (scheme == "CT2") normalize_ct2(data_out[c], fp_.global_stats.at(c));
    else if (scheme == "nonCT") normalize_nonct(data_out[c], plan_.use_mask_for_norm.at(c) ? &seg_out : nullptr);
  }
  const ClassLocations locs = sample_class_locations(seg_out, all_classes_, opt_.seed);

  const Shape3 s = seg_out.shape;
  const size_t vox = static_cast<size_t>(voxel_count(s));
  std::vector<float> all((data_out.size() + 1) * vox);
  for (size_t c = 0; c < data_out.size(); ++c)
    std::copy(data_out[c].v.begin(), data_out[c].v.end(), all.begin() + static_cast<std::ptrdiff_t>(c * vox));
  std::copy(seg_out.v.begin(), seg_out.v.end(), all.begin() + static_cast<std::ptrdiff_t>(data_out.size() * vox));
  const size_t data_out_channels = data_out.size();
  data_out.clear();

  py::Value props = cropped_properties_py(meta);
  py::dict_set(props, "use_nonzero_mask_for_norm", use_mask_py(plan_));
  py::dict_set(props, "size_after_resampling", py::tuple({s[0], s[1], s[2]}));
  py::dict_set(props, "spacing_after_resampling",
               py::nd_f8({sp.current_spacing[0], sp.current_spacing[1], sp.current_spacing[2]}));
  py::dict_set(props, "class_locations", class_locations_to_py(locs));

  const std::string dir = stage_dir(out_dir_, plan_, stage);
  const std::string npz = dir + "/" + meta.id + ".npz", pkl = dir + "/" + meta.id + ".pkl";
  write_npz(npz, "data", all.data(), {static_cast<int64_t>(data_out_channels + 1), s[0], s[1], s[2]},
            opt_.npz_compression);
  if (h5_ && h5_->layout() == H5Layout::chunked) {
    h5_write_volume(stage, i, all.data(), s, data_out_channels);
  }
  const std::string pkl_bytes = pickle_dumps(props);
  write_file_atomic(pkl, pkl_bytes);
  write_json_mirror(state_dir_ + "/json/" + plan_.data_identifier + "_stage" + std::to_string(stage) + "_" + meta.id + ".json",
                    props);

  nlohmann::json outputs;
  const std::string npz_bytes = read_file(npz);
  outputs[meta.id + ".npz"] = {{"size", npz_bytes.size()}, {"crc32", crc_of(npz_bytes)}};
  outputs[meta.id + ".pkl"] = {{"size", pkl_bytes.size()}, {"crc32", crc_of(pkl_bytes)}};
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
  const auto t0 = Clock::now();
  int64_t done = 0, skipped = 0;
  for (size_t i = 0; i < n; ++i) {
    if (owner_[i] != rank_) continue;
    if (stop_requested()) break;
    std::vector<int> todo;
    for (size_t k = 0; k < plan_.stages.size(); ++k)
      if (!manifest_complete(static_cast<int>(k), i)) todo.push_back(static_cast<int>(k));
    skipped += static_cast<int64_t>(plan_.stages.size() - todo.size());
    if (todo.empty()) continue;
    auto it = mine_.find(i);
    CropResult reread;
    const CropResult* crop = nullptr;
    if (it != mine_.end()) crop = &it->second.crop;
    else {
      reread = read_and_crop(i, nullptr, nullptr);
      crop = &reread;
    }
    for (int k : todo) {
      if (stop_requested()) break;
      const auto tc = Clock::now();
      process_case_stage(k, i, *crop);
      ++done;
      log_.rank_info("case " + metas_[i].id + " stage " + std::to_string(k) + " done in " +
                     std::to_string(seconds_since(tc)) + " s");
    }
    if (it != mine_.end()) mine_.erase(it);
  }
  const bool interrupted = allreduce_or(stop_requested());
  const double total_done = allreduce_sum(static_cast<double>(done));
  const double total_skipped = allreduce_sum(static_cast<double>(skipped));
  if (interrupted) {
    if (h5_) {
      h5_->close();  // the store stays under its .partial name; a rerun rebuilds it
      h5_.reset();
    }
    throw Interrupted("stop requested; completed outputs are kept, rerun the same command to resume");
  }
  if (h5_) h5_finish();
  log_.info("preprocessed " + std::to_string(static_cast<int64_t>(total_done)) + " case-stages (" +
            std::to_string(static_cast<int64_t>(total_skipped)) + " already complete) in " +
            std::to_string(seconds_since(t0)) + " s");
}

// ---- HDF5 store -------------------------------------------------------------------------------------------
std::vector<int64_t> chunk_for(const StagePlan& sp, const Shape3& s) {
  // Half the patch per axis: a random patch touches at most 3 chunks per axis.
  std::vector<int64_t> c;
  for (int a = 0; a < 3; ++a) c.push_back(std::max<int64_t>(1, std::min<int64_t>(s[a], (sp.patch_size[a] + 1) / 2)));
  return c;
}

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

void Pipeline::h5_write_volume(int stage, size_t i, const float* all, const Shape3& s, size_t channels) {
  AMOSPREP_VERIFY(s == stage_shape(stage, i), "resampled shape differs from the planned HDF5 dataset shape");
  const size_t vox = static_cast<size_t>(voxel_count(s));
  std::vector<int8_t> seg(vox);
  const float* sf = all + channels * vox;
  for (size_t v = 0; v < vox; ++v) seg[v] = static_cast<int8_t>(sf[v]);
  const std::string g = h5_case_group(stage, i);
  if (h5_->layout() == H5Layout::chunked) {
    h5_->write_independent(g + "/data", all);
    h5_->write_independent(g + "/seg", seg.data());
  } else {
    h5_->write_collective(g + "/data", all);
    h5_->write_collective(g + "/seg", seg.data());
  }
  h5_data_written_[static_cast<size_t>(stage)][i] = true;
}

void Pipeline::h5_finish() {
  const auto t0 = Clock::now();
  const size_t n = metas_.size(), stages = plan_.stages.size();
  // 1) Volumes not yet in the store (resumed cases; every case in the deflate layout) come back from the npz.
  //    Filtered datasets need collective writes: rounds in which every rank writes its r-th pending volume.
  std::vector<std::pair<int, size_t>> pending;
  for (size_t k = 0; k < stages; ++k)
    for (size_t i = 0; i < n; ++i)
      if (owner_[i] == rank_ && !h5_data_written_[k][i]) pending.push_back({static_cast<int>(k), i});
  auto load_npz = [&](int k, size_t i, std::vector<int64_t>& shape) {
    return read_npz_f32(stage_dir(out_dir_, plan_, k) + "/" + metas_[i].id + ".npz", "data", &shape);
  };
  if (h5_->layout() == H5Layout::chunked) {
    for (auto [k, i] : pending) {
      std::vector<int64_t> shape;
      auto all = load_npz(k, i, shape);
      h5_write_volume(k, i, all.data(), Shape3{shape[1], shape[2], shape[3]}, static_cast<size_t>(shape[0] - 1));
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
          auto all = load_npz(k, i, shape);
          h5_write_volume(k, i, all.data(), Shape3{shape[1], shape[2], shape[3]}, static_cast<size_t>(shape[0] - 1));
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
      if (owner_[i] != rank_) continue;
      const std::string dir = stage_dir(out_dir_, plan_, static_cast<int>(k));
      Small s;
      s.pkl = read_file(dir + "/" + metas_[i].id + ".pkl");
      s.json = read_file(state_dir_ + "/json/" + plan_.data_identifier + "_stage" + std::to_string(k) + "_" +
                         metas_[i].id + ".json");
      const auto j = nlohmann::json::parse(s.json);
      for (int64_t c : all_classes_) {
        std::vector<int64_t> flat;
        for (const auto& row : j.at("class_locations").at(std::to_string(c)))
          for (const auto& v : row) flat.push_back(v.get<int64_t>());
        s.locs.push_back(std::move(flat));
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
  if (rank_ == 0) {
    // plans and fingerprint as small datasets (attributes are limited to 64 KiB)
  }
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

void Pipeline::run() {
  load_task();
  log_.info("task " + task_.name + ": " + std::to_string(task_.training.size()) + " training cases, " +
            std::to_string(nranks_) + " rank(s) x " + std::to_string(omp_get_max_threads()) + " thread(s)");
  phase_crop_and_fingerprint();
  phase_plan();
  phase_preprocess();
  log_.info("outputs in " + out_dir_);
}

}  // namespace

void plan_and_preprocess(const PipelineOptions& options) {
  Pipeline p(options);
  p.run();
}

}  // namespace amosprep
