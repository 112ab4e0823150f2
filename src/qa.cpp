#include "amosprep/qa.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/npz_writer.hpp"

namespace amosprep {

namespace fs = std::filesystem;

// Label 0 is background; 1..15 are well separated hues (AMOS: spleen, kidneys, gallbladder, ...).
const std::array<std::array<uint8_t, 3>, 16> kQaLabelPalette = {{
    {0, 0, 0},       {230, 25, 75},  {60, 180, 75},   {255, 225, 25}, {0, 130, 200},  {245, 130, 48},
    {145, 30, 180},  {70, 240, 240}, {240, 50, 230},  {210, 245, 60}, {250, 190, 212}, {0, 128, 128},
    {220, 190, 255}, {170, 110, 40}, {255, 250, 200}, {128, 0, 0},
}};

const char* slice_view_name(SliceView v) {
  switch (v) {
    case SliceView::axial: return "axial";
    case SliceView::coronal: return "coronal";
    case SliceView::sagittal: return "sagittal";
  }
  return "?";
}

namespace {

constexpr SliceView kViews[3] = {SliceView::axial, SliceView::coronal, SliceView::sagittal};

// Axis indices (into z, y, x) shown along picture rows and columns.
std::array<int, 2> view_axes(SliceView v) {
  switch (v) {
    case SliceView::axial: return {1, 2};
    case SliceView::coronal: return {0, 2};
    case SliceView::sagittal: return {0, 1};
  }
  return {1, 2};
}

double usable_spacing(double s) { return (std::isfinite(s) && s > 0) ? s : 1.0; }

}  // namespace

std::array<int, 2> qa_picture_size(const Shape3& shape, const std::array<double, 3>& spacing, SliceView view) {
  const auto [ra, ca] = view_axes(view);
  const double sr = usable_spacing(spacing[ra]), sc = usable_spacing(spacing[ca]);
  const double p = std::min(sr, sc);
  const double h = static_cast<double>(shape[ra]) * sr / p, w = static_cast<double>(shape[ca]) * sc / p;
  const double longer = std::max(h, w);
  double f = 1.0;
  if (longer < 256.0)
    f = std::max(1.0, std::floor(256.0 / longer));
  else if (longer > 1024.0)
    f = 1024.0 / longer;
  const auto clamp_size = [](double v) {
    return static_cast<int>(std::clamp(std::nearbyint(v), 1.0, 1e6));
  };
  return {clamp_size(h * f), clamp_size(w * f)};
}

std::array<float, 2> qa_window(const float* voxels, size_t n) {
  const size_t max_samples = size_t(1) << 20;
  const size_t stride = std::max<size_t>(1, n / max_samples);
  std::vector<float> s;
  s.reserve(std::min(n, max_samples + 1));
  for (size_t i = 0; i < n; i += stride)
    if (!std::isnan(voxels[i])) s.push_back(voxels[i]);
  if (s.empty()) return {0.0f, 1.0f};
  const auto rank = [&](double q) { return static_cast<size_t>(std::nearbyint(q * static_cast<double>(s.size() - 1))); };
  const size_t klo = rank(0.005), khi = rank(0.995);
  std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(klo), s.end());
  const float lo = s[klo];
  std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(khi), s.end());
  float hi = s[khi];
  if (!(hi > lo)) hi = lo + 1.0f;
  return {lo, hi};
}

RgbImage render_slice_overlay(const float* image, const float* labels, const Shape3& shape,
                              const std::array<double, 3>& spacing, SliceView view, std::array<float, 2> window) {
  AMOSPREP_VERIFY(shape[0] > 0 && shape[1] > 0 && shape[2] > 0, "QA slice of an empty volume");
  const auto [height, width] = qa_picture_size(shape, spacing, view);
  const auto [ra, ca] = view_axes(view);
  const int64_t nr = shape[ra], nc = shape[ca];
  const int64_t mid_z = shape[0] / 2, mid_y = shape[1] / 2, mid_x = shape[2] / 2;
  const double lo = window[0], span = static_cast<double>(window[1]) - static_cast<double>(window[0]);

  std::vector<int64_t> col_src(static_cast<size_t>(width));
  for (int j = 0; j < width; ++j)
    col_src[static_cast<size_t>(j)] =
        std::min<int64_t>(nc - 1, static_cast<int64_t>((j + 0.5) * static_cast<double>(nc) / width));

  RgbImage img(width, height);
  for (int i = 0; i < height; ++i) {
    int64_t r = std::min<int64_t>(nr - 1, static_cast<int64_t>((i + 0.5) * static_cast<double>(nr) / height));
    if (view != SliceView::axial) r = nr - 1 - r;  // highest z on top
    for (int j = 0; j < width; ++j) {
      const int64_t c = col_src[static_cast<size_t>(j)];
      int64_t z = mid_z, y = mid_y, x = mid_x;
      switch (view) {
        case SliceView::axial: y = r; x = c; break;
        case SliceView::coronal: z = r; x = c; break;
        case SliceView::sagittal: z = r; y = c; break;
      }
      const size_t idx = static_cast<size_t>((z * shape[1] + y) * shape[2] + x);
      const float v = image[idx];
      double t = std::isnan(v) ? 0.0 : (static_cast<double>(v) - lo) / span;
      t = std::clamp(t, 0.0, 1.0);
      const double grey = std::nearbyint(t * 255.0);
      uint8_t* px = img.pixel(j, i);
      px[0] = px[1] = px[2] = static_cast<uint8_t>(grey);
      if (labels) {
        const float lv = labels[idx];
        if (lv >= 1.0f && lv <= 15.0f && lv == std::floor(lv)) {
          const auto& colour = kQaLabelPalette[static_cast<size_t>(lv)];
          for (int k = 0; k < 3; ++k)
            px[k] = static_cast<uint8_t>(
                std::nearbyint((1.0 - kQaLabelAlpha) * grey + kQaLabelAlpha * static_cast<double>(colour[k])));
        }
      }
    }
  }
  return img;
}

namespace {

// What index.html shows for one volume (raw or one stage).
struct PanelInfo {
  std::string title;
  std::vector<std::string> pictures;  // relative to out_dir, axial/coronal/sagittal; empty when not drawn
  std::vector<std::pair<std::string, std::string>> numbers;
  std::vector<std::string> notes;
};

struct CaseReport {
  std::vector<PanelInfo> panels;  // raw first (if any), then stages in folder order
};

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

template <class Seq>
std::string fmt_tuple(const Seq& seq) {
  std::string out = "(";
  bool first = true;
  for (const auto& v : seq) {
    if (!first) out += ", ";
    first = false;
    out += fmt_num(static_cast<double>(v));
  }
  return out + ")";
}

// Compact JSON text of a mirror value (crop_bbox, sizes) for display.
std::string fmt_json(const nlohmann::json& j) {
  std::string s = j.dump();
  std::replace(s.begin(), s.end(), ',', ' ');
  return s;
}

// Sorted distinct values of a label volume: integers, plus a flag for anything non-integral.
std::string labels_present(const float* seg, size_t n) {
  std::array<bool, 17> seen{};  // index value + 1: -1..15
  std::map<double, bool> others;
  for (size_t i = 0; i < n; ++i) {
    const float v = seg[i];
    if (v >= -1.0f && v <= 15.0f && v == std::floor(v))
      seen[static_cast<size_t>(v + 1.0f)] = true;
    else if (others.size() < 8)
      others[static_cast<double>(v)] = true;
  }
  std::string out;
  const auto add = [&out](const std::string& item) {
    if (!out.empty()) out.push_back(' ');
    out.append(item);
  };
  for (size_t k = 0; k < seen.size(); ++k)
    if (seen[k]) add(std::to_string(static_cast<int>(k) - 1));
  for (const auto& [v, unused] : others) {
    (void)unused;
    add(fmt_num(v) + "(!)");
  }
  return out.empty() ? "none" : out;
}

bool read_json_mirror(const std::string& path, nlohmann::json* out, std::string* note) {
  if (!path_exists(path)) {
    *note = "no JSON mirror " + path;
    return false;
  }
  try {
    *out = nlohmann::json::parse(read_file(path));
    return out->is_object();
  } catch (const std::exception& e) {
    *note = "unreadable JSON mirror " + path + ": " + e.what();
    return false;
  }
}

std::array<double, 3> spacing_from_json(const nlohmann::json& j, const char* key, bool* ok) {
  std::array<double, 3> s{1, 1, 1};
  *ok = false;
  const auto it = j.find(key);
  if (it != j.end() && it->is_array() && it->size() == 3) {
    for (size_t k = 0; k < 3; ++k) {
      if (!(*it)[k].is_number()) return s;
      s[k] = (*it)[k].get<double>();
    }
    *ok = true;
  }
  return s;
}

// First existing path among `candidates`, or "".
std::string first_existing(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (!c.empty() && path_exists(c)) return c;
  return "";
}

std::vector<std::string> write_views(const std::string& out_dir, const std::string& rel_prefix, const float* image,
                                     const float* labels, const Shape3& shape, const std::array<double, 3>& spacing,
                                     std::array<float, 2> window) {
  std::vector<std::string> rel;
  for (SliceView v : kViews) {
    const std::string name = rel_prefix + "_" + slice_view_name(v) + ".png";
    write_png(out_dir + "/" + name, render_slice_overlay(image, labels, shape, spacing, v, window));
    rel.push_back(name);
  }
  return rel;
}

// Where a raw file may be: as listed in the mirror, then under raw_base (an nnUNet_raw_data_base or the raw task
// folder itself), in the listed task/sub folder or in the usual sub folders of `task_name`.
std::string find_raw_file(const std::string& listed, const std::string& name, const std::string& raw_base,
                          const std::string& task_name, const std::vector<std::string>& subdirs) {
  std::vector<std::string> candidates{listed};
  const std::string raw_data = raw_base + "/nnUNet_raw_data/";
  if (!listed.empty()) {
    const fs::path lp(listed);
    const std::string sub = lp.parent_path().filename().string();
    const std::string task = lp.parent_path().parent_path().filename().string();
    candidates.push_back(raw_data + task + "/" + sub + "/" + name);
    candidates.push_back(raw_base + "/" + sub + "/" + name);
  }
  for (const auto& sub : subdirs) {
    candidates.push_back(raw_data + task_name + "/" + sub + "/" + name);
    candidates.push_back(raw_base + "/" + sub + "/" + name);
  }
  return first_existing(candidates);
}

// "Before" panel: the case's first raw image and its label, read from the raw NIfTI files.
PanelInfo raw_panel(const std::string& case_id, const nlohmann::json* mirror, const std::string& raw_base,
                    const std::string& task_name, const std::string& out_dir) {
  PanelInfo p;
  p.title = "raw (before)";
  std::string image_listed, label_listed;
  if (mirror) {
    const auto files = mirror->find("list_of_data_files");
    if (files != mirror->end() && files->is_array() && !files->empty() && (*files)[0].is_string())
      image_listed = (*files)[0].get<std::string>();
    if (const auto seg = mirror->find("seg_file"); seg != mirror->end() && seg->is_string())
      label_listed = seg->get<std::string>();
  }
  const std::string image_name = image_listed.empty() ? case_id + "_0000.nii.gz" : fs::path(image_listed).filename().string();
  const std::string label_name = label_listed.empty() ? case_id + ".nii.gz" : fs::path(label_listed).filename().string();
  const std::string image_path = find_raw_file(image_listed, image_name, raw_base, task_name, {"imagesTr", "imagesTs"});
  const std::string label_path = find_raw_file(label_listed, label_name, raw_base, task_name, {"labelsTr"});
  if (image_path.empty()) {
    p.notes.push_back("raw image " + image_name + " not found (listed: " + (image_listed.empty() ? "-" : image_listed) +
                      ", raw base: " + raw_base + ")");
    std::cerr << "amos-prep qa: " << case_id << ": " << p.notes.back() << "\n";
    return p;
  }
  try {
    const Image image = read_nifti(image_path, case_id);
    Image label;
    const float* label_voxels = nullptr;
    if (label_path.empty()) {
      p.notes.push_back("no label file");
    } else {
      label = read_nifti(label_path, case_id);
      if (label.voxels.shape != image.voxels.shape)
        p.notes.push_back("label shape " + fmt_tuple(label.voxels.shape) + " differs from the image's: not overlaid");
      else
        label_voxels = label.voxels.data();
    }
    const auto window = qa_window(image.voxels.data(), image.voxels.size());
    p.pictures = write_views(out_dir, "raw/" + case_id, image.voxels.data(), label_voxels, image.voxels.shape,
                             image.geom.spacing, window);
    p.numbers.emplace_back("file", image_path);
    p.numbers.emplace_back("shape (z, y, x)", fmt_tuple(image.voxels.shape));
    p.numbers.emplace_back("spacing (z, y, x)", fmt_tuple(image.geom.spacing));
    p.numbers.emplace_back("grey window", fmt_tuple(window));
    if (!label_path.empty()) p.numbers.emplace_back("labels present", labels_present(label.voxels.data(), label.voxels.size()));
  } catch (const Error& e) {
    p.notes.push_back(std::string("cannot read the raw files: ") + e.what());
    std::cerr << "amos-prep qa: " << case_id << ": " << p.notes.back() << "\n";
  }
  return p;
}

PanelInfo stage_panel(const std::string& case_id, const std::string& stage_dir_name, const std::string& npz_path,
                      const nlohmann::json* mirror, const std::string& mirror_note, const std::string& out_dir) {
  PanelInfo p;
  p.title = stage_dir_name + " (after)";
  std::vector<int64_t> shape4;
  const std::vector<float> data = read_npz_f32(npz_path, "data", &shape4);
  if (shape4.size() != 4 || shape4[0] < 2 || shape4[1] <= 0 || shape4[2] <= 0 || shape4[3] <= 0)
    throw InputError(case_id, npz_path, "member 'data' must have shape (C+1, z, y, x) with C >= 1, got " +
                                            fmt_tuple(shape4));
  const Shape3 shape{shape4[1], shape4[2], shape4[3]};
  const size_t nvox = static_cast<size_t>(voxel_count(shape));
  const float* image = data.data();
  const float* seg = data.data() + static_cast<size_t>(shape4[0] - 1) * nvox;

  bool spacing_ok = false;
  std::array<double, 3> spacing{1, 1, 1};
  if (mirror) spacing = spacing_from_json(*mirror, "spacing_after_resampling", &spacing_ok);
  if (!spacing_ok) {
    p.notes.push_back((mirror ? std::string("JSON mirror lacks spacing_after_resampling") : mirror_note) +
                      ": pictures drawn with 1 mm isotropic voxels");
  }
  const auto window = qa_window(image, nvox);
  p.pictures = write_views(out_dir, stage_dir_name + "/" + case_id, image, seg, shape, spacing, window);
  p.numbers.emplace_back("file", npz_path);
  p.numbers.emplace_back("channels", std::to_string(shape4[0] - 1) + " image + 1 seg");
  p.numbers.emplace_back("shape (z, y, x)", fmt_tuple(shape));
  p.numbers.emplace_back("spacing (z, y, x)", spacing_ok ? fmt_tuple(spacing) : std::string("unknown"));
  p.numbers.emplace_back("grey window (channel 0)", fmt_tuple(window));
  p.numbers.emplace_back("labels present", labels_present(seg, nvox));
  if (mirror) {
    for (const char* key : {"original_size_of_raw_data", "original_spacing", "crop_bbox", "size_after_cropping"})
      if (const auto it = mirror->find(key); it != mirror->end()) p.numbers.emplace_back(key, fmt_json(*it));
  }
  return p;
}

std::string index_html(const std::string& task_name, const std::vector<std::string>& stage_dirs,
                       const std::map<std::string, CaseReport>& cases) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>amos-prep QA: " << html_escape(task_name)
    << "</title>\n<style>body{font-family:sans-serif;background:#222;color:#ddd}table{border-collapse:collapse}"
       "td,th{border:1px solid #555;padding:4px;vertical-align:top}img{max-width:360px;max-height:360px}"
       "a{color:#8cf}.note{color:#f96}.sw{display:inline-block;padding:0 6px;margin:1px;color:#000}</style>"
       "</head>\n<body>\n<h1>amos-prep QA: "
    << html_escape(task_name) << "</h1>\n<p>" << cases.size() << " case(s); stage folders:";
  for (const auto& s : stage_dirs) h << " " << html_escape(s);
  h << "</p>\n<p>labels:";
  for (size_t k = 1; k < kQaLabelPalette.size(); ++k) {
    const auto& c = kQaLabelPalette[k];
    h << " <span class=\"sw\" style=\"background:rgb(" << int(c[0]) << "," << int(c[1]) << "," << int(c[2])
      << ")\">" << k << "</span>";
  }
  h << "</p>\n<p>Mid-slices in voxel order: axial (rows y, columns x), coronal and sagittal (highest z on top), "
       "physical aspect from the spacing.</p>\n<ul>\n";
  for (const auto& [id, unused] : cases) {
    (void)unused;
    h << "<li><a href=\"#" << html_escape(id) << "\">" << html_escape(id) << "</a></li>\n";
  }
  h << "</ul>\n";
  for (const auto& [id, report] : cases) {
    h << "<h2 id=\"" << html_escape(id) << "\">" << html_escape(id) << "</h2>\n<table>\n"
      << "<tr><th></th><th>axial</th><th>coronal</th><th>sagittal</th><th>numbers</th></tr>\n";
    for (const auto& p : report.panels) {
      h << "<tr><th>" << html_escape(p.title) << "</th>";
      for (size_t k = 0; k < 3; ++k) {
        h << "<td>";
        if (k < p.pictures.size())
          h << "<a href=\"" << html_escape(p.pictures[k]) << "\"><img src=\"" << html_escape(p.pictures[k])
            << "\" alt=\"" << html_escape(id + " " + slice_view_name(kViews[k])) << "\"></a>";
        h << "</td>";
      }
      h << "<td>";
      for (const auto& [k, v] : p.numbers) h << html_escape(k) << ": " << html_escape(v) << "<br>";
      for (const auto& n : p.notes) h << "<span class=\"note\">" << html_escape(n) << "</span><br>";
      h << "</td></tr>\n";
    }
    h << "</table>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace

void run_qa(const std::string& task_dir, const std::string& out_dir, const std::string& raw_base) {
  std::error_code ec;
  if (!fs::is_directory(task_dir, ec))
    throw InputError("", task_dir, "not a directory (expected an nnU-Net v1 preprocessed task folder)");
  fs::path task_path = fs::path(task_dir).lexically_normal();
  if (task_path.filename().empty()) task_path = task_path.parent_path();  // "TASK/" names TASK
  const std::string task_name = task_path.filename().string();

  static const std::regex stage_re(R"(.+_stage[0-9]+)");
  std::vector<std::string> stage_dirs;
  for (const auto& e : fs::directory_iterator(task_dir, ec))
    if (e.is_directory() && std::regex_match(e.path().filename().string(), stage_re))
      stage_dirs.push_back(e.path().filename().string());
  if (ec) throw IoError(task_dir, "cannot list: " + ec.message());
  std::sort(stage_dirs.begin(), stage_dirs.end());
  if (stage_dirs.empty())
    throw InputError("", task_dir, "no <data_identifier>_stage<k> folder: not a preprocessed task folder");

  make_dirs(out_dir);
  if (!raw_base.empty()) make_dirs(out_dir + "/raw");
  const std::string json_dir = task_dir + "/amos-prep/json";

  std::map<std::string, CaseReport> cases;
  for (const auto& stage : stage_dirs) {
    make_dirs(out_dir + "/" + stage);
    std::vector<std::string> ids;
    for (const auto& e : fs::directory_iterator(task_dir + "/" + stage, ec))
      if (e.is_regular_file() && e.path().extension() == ".npz") ids.push_back(e.path().stem().string());
    if (ec) throw IoError(task_dir + "/" + stage, "cannot list: " + ec.message());
    std::sort(ids.begin(), ids.end());
    for (const auto& id : ids) {
      nlohmann::json mirror;
      std::string note;
      const bool have_mirror = read_json_mirror(json_dir + "/" + stage + "_" + id + ".json", &mirror, &note);
      CaseReport& report = cases[id];
      if (!raw_base.empty() && report.panels.empty())
        report.panels.push_back(raw_panel(id, have_mirror ? &mirror : nullptr, raw_base, task_name, out_dir));
      report.panels.push_back(stage_panel(id, stage, task_dir + "/" + stage + "/" + id + ".npz",
                                          have_mirror ? &mirror : nullptr, note, out_dir));
    }
  }
  write_file_atomic(out_dir + "/index.html", index_html(task_name, stage_dirs, cases));
}

}  // namespace amosprep
