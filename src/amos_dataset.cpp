#include "amosprep/amos_dataset.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/pyjson.hpp"

namespace amosprep {

namespace {

using ojson = nlohmann::ordered_json;

struct TaskSpec {
  const char* folder;
  const char* source_json;
  const char* modality;
};

TaskSpec task_spec(int task_id) {
  if (task_id == 216) return {"Task216_AMOS2022_task1", "task1_dataset.json", "CT"};
  if (task_id == 217) return {"Task217_AMOS2022_task2", "task2_dataset.json", "nonCT"};
  throw UsageError("unsupported task id " + std::to_string(task_id) + " (amos-prep knows 216 and 217)");
}

/// Number of bytes taken by the last `k` UTF-8 code points of `s` (Python slices count code points).
size_t tail_bytes(const std::string& s, size_t k) {
  size_t pos = s.size();
  while (k > 0 && pos > 0) {
    --pos;
    while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
    --k;
  }
  return s.size() - pos;
}

/// Python's `s[:-k]` (k > 0) on code points.
std::string drop_last(const std::string& s, size_t k) { return s.substr(0, s.size() - tail_bytes(s, k)); }

/// Python's `s.split('/')[-1]`.
std::string last_component(const std::string& s) {
  const size_t p = s.rfind('/');
  return p == std::string::npos ? s : s.substr(p + 1);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ojson load_json_file(const std::string& path, const std::string& what) {
  if (!path_exists(path)) throw InputError("", path, what + " is missing");
  std::string text;
  try {
    text = read_file(path);
  } catch (const IoError& e) {
    throw InputError("", path, "cannot read " + what + ": " + e.reason());
  }
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("", path, what + " is not valid JSON: " + e.what());
  }
}

const ojson& require_key(const ojson& obj, const char* key, const std::string& path) {
  if (!obj.is_object() || !obj.contains(key))
    throw InputError("", path, std::string("JSON has no \"") + key + "\" entry");
  return obj.at(key);
}

const std::string& require_string(const ojson& v, const std::string& path, const std::string& what) {
  if (!v.is_string()) throw InputError("", path, what + " must be a string, got " + v.dump());
  return v.get_ref<const std::string&>();
}

/// Copies `from` to `to` unless `to` already has the same size and modification time; the copy gets `from`'s
/// modification time, so reruns skip it.
void copy_case_file(const std::string& from, const std::string& to, const std::string& case_id) {
  struct stat src {};
  if (::stat(from.c_str(), &src) != 0)
    throw InputError(case_id, from, std::string("missing or unreadable: ") + std::strerror(errno));
  if (!S_ISREG(src.st_mode)) throw InputError(case_id, from, "not a regular file");
  struct stat dst {};
  if (::stat(to.c_str(), &dst) == 0 && S_ISREG(dst.st_mode) && dst.st_size == src.st_size &&
      dst.st_mtim.tv_sec == src.st_mtim.tv_sec && dst.st_mtim.tv_nsec == src.st_mtim.tv_nsec)
    return;
  try {
    copy_file_atomic(from, to, /*keep_cached=*/true);  // preprocessing reads the copies next
  } catch (const IoError& e) {
    if (e.file() == from) throw InputError(case_id, from, e.reason());
    throw;
  }
  const struct timespec times[2] = {src.st_atim, src.st_mtim};
  if (::utimensat(AT_FDCWD, to.c_str(), times, 0) != 0)
    throw IoError(to, std::string("cannot set modification time: ") + std::strerror(errno), case_id);
}

/// batchgenerators' subfiles(folder, suffix='.nii.gz', join=False) -> [i[:-12]] -> numpy.unique (sorted, unique).
std::vector<std::string> identifiers_from_folder(const std::string& folder) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code ec2;
    if (!ends_with(name, ".nii.gz") || !std::filesystem::is_regular_file(it->path(), ec2)) continue;
    ids.push_back(drop_last(name, 12));
  }
  if (ec) throw IoError(folder, "cannot list directory: " + ec.message());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

/// Python's int(s) for a dataset.json label key (surrounding whitespace, sign, '_' between digits).
bool parse_python_int(const std::string& s, int64_t& out) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  bool neg = false;
  if (b < e && (s[b] == '+' || s[b] == '-')) neg = s[b++] == '-';
  if (b == e) return false;
  int64_t v = 0;
  bool prev_digit = false;
  for (size_t i = b; i < e; ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!prev_digit || i + 1 == e) return false;
      prev_digit = false;
      continue;
    }
    if (c < '0' || c > '9') return false;
    if (v > (INT64_MAX - (c - '0')) / 10) return false;
    v = v * 10 + (c - '0');
    prev_digit = true;
  }
  if (!prev_digit) return false;
  out = neg ? -v : v;
  return true;
}

std::string raw_task_dir(const std::string& raw_base, int task_id) {
  return py_path_join(py_path_join(raw_base, "nnUNet_raw_data"), task_spec(task_id).folder);
}

}  // namespace

std::string task_folder_name(int task_id) { return task_spec(task_id).folder; }

std::string py_path_join(const std::string& a, const std::string& b) {
  if (!b.empty() && b[0] == '/') return b;
  if (a.empty() || a.back() == '/') return a + b;
  return a + "/" + b;
}

void convert_amos_copy(const std::string& amos_dir, const std::string& raw_base, int task_id, int part, int parts) {
  const TaskSpec spec = task_spec(task_id);
  const std::string out_base = raw_task_dir(raw_base, task_id);
  const std::string images_tr = py_path_join(out_base, "imagesTr");
  const std::string images_ts = py_path_join(out_base, "imagesTs");
  const std::string labels_tr = py_path_join(out_base, "labelsTr");
  make_dirs(images_tr);
  make_dirs(images_ts);
  make_dirs(labels_tr);

  const std::string source_path = py_path_join(amos_dir, spec.source_json);
  const ojson source = load_json_file(source_path, spec.source_json);
  const ojson& training = require_key(source, "training", source_path);
  const ojson& test = require_key(source, "test", source_path);
  const ojson& labels = require_key(source, "labels", source_path);
  if (!training.is_array() || !test.is_array() || !labels.is_object())
    throw InputError("", source_path, "\"training\" and \"test\" must be lists and \"labels\" an object");

  size_t index = 0;
  const auto mine = [&] { return static_cast<int>(index++ % static_cast<size_t>(std::max(parts, 1))) == part; };
  for (const ojson& entry : training) {
    const std::string& image = require_string(require_key(entry, "image", source_path), source_path,
                                              "a training \"image\" entry");
    const std::string id = drop_last(last_component(image), 7);
    if (!mine()) continue;
    copy_case_file(py_path_join(py_path_join(amos_dir, "imagesTr"), id + ".nii.gz"),
                   py_path_join(images_tr, id + "_0000.nii.gz"), id);
    copy_case_file(py_path_join(py_path_join(amos_dir, "labelsTr"), id + ".nii.gz"),
                   py_path_join(labels_tr, id + ".nii.gz"), id);
  }
  for (const ojson& entry : test) {
    const std::string& image = require_string(entry, source_path, "a \"test\" entry (nnU-Net expects path strings)");
    const std::string id = drop_last(last_component(image), 7);
    if (!mine()) continue;
    copy_case_file(py_path_join(py_path_join(amos_dir, "imagesTs"), id + ".nii.gz"),
                   py_path_join(images_ts, id + "_0000.nii.gz"), id);
  }

}

std::string convert_amos_finish(const std::string& amos_dir, const std::string& raw_base, int task_id) {
  const TaskSpec spec = task_spec(task_id);
  const std::string out_base = raw_task_dir(raw_base, task_id);
  const std::string images_tr = py_path_join(out_base, "imagesTr");
  const std::string images_ts = py_path_join(out_base, "imagesTs");
  const std::string source_path = py_path_join(amos_dir, spec.source_json);
  const ojson source = load_json_file(source_path, spec.source_json);
  const ojson& labels = require_key(source, "labels", source_path);
  // generate_dataset_json: case lists come from the output folders, not from the source JSON.
  const std::vector<std::string> train_ids = identifiers_from_folder(images_tr);
  const std::vector<std::string> test_ids = identifiers_from_folder(images_ts);
  ojson out = ojson::object();
  out["name"] = spec.folder;
  out["description"] = "";
  out["tensorImageSize"] = "4D";
  out["reference"] = "";
  out["licence"] = "hands off!";
  out["release"] = "0.0";
  out["modality"] = ojson::object({{"0", spec.modality}});
  out["labels"] = labels;
  out["numTraining"] = static_cast<int64_t>(train_ids.size());
  out["numTest"] = static_cast<int64_t>(test_ids.size());
  ojson tr = ojson::array();
  for (const std::string& id : train_ids)
    tr.push_back(ojson::object({{"image", "./imagesTr/" + id + ".nii.gz"}, {"label", "./labelsTr/" + id + ".nii.gz"}}));
  out["training"] = std::move(tr);
  ojson ts = ojson::array();
  for (const std::string& id : test_ids) ts.push_back("./imagesTs/" + id + ".nii.gz");
  out["test"] = std::move(ts);
  write_file_atomic(py_path_join(out_base, "dataset.json"), python_json_dumps(out, 4, true));
  return out_base;
}

std::string convert_amos(const std::string& amos_dir, const std::string& raw_base, int task_id) {
  convert_amos_copy(amos_dir, raw_base, task_id, 0, 1);
  return convert_amos_finish(amos_dir, raw_base, task_id);
}

RawTask read_raw_task(const std::string& raw_base, int task_id) {
  std::string base = raw_base;
  if (base.empty() || base[0] != '/') base = std::filesystem::absolute(base.empty() ? "." : base).string();
  RawTask t;
  t.task_id = task_id;
  t.dir = raw_task_dir(base, task_id);
  const std::string json_path = py_path_join(t.dir, "dataset.json");
  const ojson d = load_json_file(json_path, "dataset.json");

  const ojson& name = require_key(d, "name", json_path);
  t.name = name.is_string() ? name.get<std::string>() : name.dump();

  const ojson& modality = require_key(d, "modality", json_path);
  if (!modality.is_object() || modality.empty())
    throw InputError("", json_path, "\"modality\" must be a non-empty object");
  for (size_t i = 0; i < modality.size(); ++i) {
    const std::string key = std::to_string(i);
    if (!modality.contains(key)) throw InputError("", json_path, "\"modality\" has no key \"" + key + "\"");
    t.modalities.push_back(require_string(modality.at(key), json_path, "modality " + key));
  }

  const ojson& labels = require_key(d, "labels", json_path);
  if (!labels.is_object()) throw InputError("", json_path, "\"labels\" must be an object");
  for (auto it = labels.begin(); it != labels.end(); ++it)
    t.labels.push_back({it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump()});

  const std::string images_tr = py_path_join(t.dir, "imagesTr");
  const std::string labels_tr = py_path_join(t.dir, "labelsTr");
  const std::string images_ts = py_path_join(t.dir, "imagesTs");
  auto image_names = [&](const std::string& folder, const std::string& stem) {
    std::vector<std::string> files;
    for (size_t m = 0; m < t.modalities.size(); ++m) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%04zu.nii.gz", m);
      files.push_back(py_path_join(folder, stem + suffix));
    }
    return files;
  };

  const ojson& training = require_key(d, "training", json_path);
  if (!training.is_array()) throw InputError("", json_path, "\"training\" must be a list");
  for (const ojson& entry : training) {
    CaseFiles c;
    const std::string& image = require_string(require_key(entry, "image", json_path), json_path, "\"image\"");
    const std::string& label = require_string(require_key(entry, "label", json_path), json_path, "\"label\"");
    c.images = image_names(images_tr, drop_last(last_component(image), 7));
    c.label = py_path_join(labels_tr, last_component(label));
    const std::string first = last_component(c.images[0]);
    c.id = drop_last(first.substr(0, first.find(".nii.gz")), 5);
    for (const std::string& f : c.images)
      if (!path_exists(f)) throw InputError(c.id, f, "training image is missing");
    if (!path_exists(c.label)) throw InputError(c.id, c.label, "training label is missing");
    t.training.push_back(std::move(c));
  }
  if (d.contains("test")) {
    const ojson& test = d.at("test");
    if (!test.is_array()) throw InputError("", json_path, "\"test\" must be a list");
    for (const ojson& entry : test) {
      CaseFiles c;
      const std::string& image = require_string(entry, json_path, "a \"test\" entry");
      c.id = drop_last(last_component(image), 7);
      c.images = image_names(images_ts, c.id);
      t.test.push_back(std::move(c));
    }
  }
  return t;
}

std::vector<int64_t> all_classes_of(const RawTask& t) {
  std::vector<int64_t> classes;
  for (const AmosLabel& l : t.labels) {
    int64_t v = 0;
    if (!parse_python_int(l.key, v))
      throw InputError("", py_path_join(t.dir, "dataset.json"), "label key \"" + l.key + "\" is not an integer");
    if (v > 0) classes.push_back(v);
  }
  return classes;
}

}  // namespace amosprep
