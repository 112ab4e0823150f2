#include "amosprep/fingerprint.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "amosprep/error.hpp"

namespace amosprep {

void write_summary(ByteWriter& w, const CaseSummary& s, bool with_samples) {
  w.put_string(s.id);
  w.put(s.original_size);
  w.put(s.original_spacing);
  w.put(s.size_after_cropping);
  w.put<uint64_t>(with_samples ? s.foreground_samples.size() : 0);
  if (with_samples)
    for (const auto& v : s.foreground_samples) w.put_vector(v);
  w.put_vector(s.local_stats);
}

CaseSummary read_summary(ByteReader& r) {
  CaseSummary s;
  s.id = r.get_string();
  s.original_size = r.get<Shape3>();
  s.original_spacing = r.get<std::array<double, 3>>();
  s.size_after_cropping = r.get<Shape3>();
  const auto n = r.get<uint64_t>();
  for (uint64_t i = 0; i < n; ++i) s.foreground_samples.push_back(r.get_vector<float>());
  s.local_stats = r.get_vector<IntensityStats>();
  return s;
}

void summarize_intensities(CaseSummary& s) {
  s.local_stats.clear();
  for (const auto& v : s.foreground_samples) s.local_stats.push_back(compute_intensity_stats(v));
}

namespace {
template <class TC, class TS>
std::vector<float> every_tenth_foreground(const Array3<TC>& channel, const Array3<TS>& seg) {
  AMOSPREP_VERIFY(channel.shape == seg.shape, "foreground_sample: channel and seg shapes differ");
  std::vector<float> out;
  int64_t rank_in_foreground = 0;
  const size_t n = channel.size();
  const TC* c = channel.data();
  const TS* s = seg.data();
  size_t i = 0;
  if constexpr (std::is_same_v<TS, int8_t>) {  // skip 8 labels at a time where none is positive
    constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full, kHigh = 0x8080808080808080ull;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((((w & kLow7) + kLow7) & ~w & kHigh) == 0) continue;  // no byte with sign bit clear and not zero
      for (size_t j = i; j < i + 8; ++j)
        if (s[j] > TS(0)) {
          if (rank_in_foreground % 10 == 0) out.push_back(static_cast<float>(c[j]));
          ++rank_in_foreground;
        }
    }
  }
  for (; i < n; ++i) {
    if (s[i] > TS(0)) {
      if (rank_in_foreground % 10 == 0) out.push_back(static_cast<float>(c[i]));
      ++rank_in_foreground;
    }
  }
  return out;
}
}  // namespace

std::vector<float> foreground_sample(const Array3<float>& channel, const Array3<float>& seg) {
  return every_tenth_foreground(channel, seg);
}

std::vector<float> foreground_sample(const Array3<int16_t>& channel, const Array3<int8_t>& seg) {
  return every_tenth_foreground(channel, seg);
}

static bool is_ct(const std::string& m) { return m.find("CT") != std::string::npos || m == "ct"; }

DatasetFingerprint merge_fingerprint(std::vector<CaseSummary> cases, const std::vector<int64_t>& all_classes,
                                     const std::vector<std::string>& modalities) {
  std::sort(cases.begin(), cases.end(), [](const CaseSummary& a, const CaseSummary& b) { return a.id < b.id; });
  DatasetFingerprint fp;
  fp.all_classes = all_classes;
  fp.modalities = modalities;
  for (const auto& c : cases) {
    fp.case_ids.push_back(c.id);
    fp.sizes.push_back(c.size_after_cropping);
    fp.spacings.push_back(c.original_spacing);
    fp.size_reductions.push_back(static_cast<double>(voxel_count(c.size_after_cropping)) /
                                 static_cast<double>(voxel_count(c.original_size)));
  }
  const bool collect_intensities = std::any_of(modalities.begin(), modalities.end(), is_ct);
  if (collect_intensities) {
    for (size_t m = 0; m < modalities.size(); ++m) {
      std::vector<IntensityStats> local;
      size_t total = 0;
      for (const auto& c : cases) {
        AMOSPREP_VERIFY(c.foreground_samples.size() == modalities.size(), "case summary lacks a modality sample");
        total += c.foreground_samples[m].size();
      }
      std::vector<float> all;
      all.reserve(total);
      for (const auto& c : cases) {
        local.push_back(c.local_stats.size() == modalities.size() ? c.local_stats[m]
                                                                   : compute_intensity_stats(c.foreground_samples[m]));
        all.insert(all.end(), c.foreground_samples[m].begin(), c.foreground_samples[m].end());
      }
      fp.local_stats.push_back(std::move(local));
      fp.global_stats.push_back(compute_intensity_stats(std::move(all)));
    }
  }
  return fp;
}

static std::vector<std::pair<py::Value, py::Value>> stats_items(const IntensityStats& s) {
  return {{"median", py::np_float32(s.median)},
          {"mean", py::np_float32(s.mean)},
          {"sd", py::np_float32(s.sd)},
          {"mn", py::np_float32(s.mn)},
          {"mx", py::np_float32(s.mx)},
          {"percentile_99_5", py::np_float64(s.percentile_99_5)},
          {"percentile_00_5", py::np_float64(s.percentile_00_5)}};
}

py::Value intensity_properties_to_py(const DatasetFingerprint& fp) {
  py::Value out = py::odict({});
  for (size_t m = 0; m < fp.global_stats.size(); ++m) {
    py::Value local = py::odict({});
    for (size_t i = 0; i < fp.case_ids.size(); ++i)
      py::dict_set(local, fp.case_ids[i], py::odict(stats_items(fp.local_stats[m][i])));
    std::vector<std::pair<py::Value, py::Value>> items{{"local_props", local}};
    for (auto& kv : stats_items(fp.global_stats[m])) items.push_back(kv);
    py::dict_set(out, static_cast<int64_t>(m), py::odict(std::move(items)));
  }
  return out;
}

py::Value dataset_properties_to_py(const DatasetFingerprint& fp) {
  std::vector<py::Value> sizes, spacings, classes;
  for (const auto& s : fp.sizes) sizes.push_back(py::tuple({s[0], s[1], s[2]}));
  for (const auto& s : fp.spacings) spacings.push_back(py::nd_f8({s[0], s[1], s[2]}));
  for (int64_t c : fp.all_classes) classes.push_back(c);
  py::Value modalities = py::dict({});
  for (size_t m = 0; m < fp.modalities.size(); ++m) py::dict_set(modalities, static_cast<int64_t>(m), fp.modalities[m]);
  py::Value reductions = py::odict({});
  for (size_t i = 0; i < fp.case_ids.size(); ++i) py::dict_set(reductions, fp.case_ids[i], py::np_float64(fp.size_reductions[i]));
  py::Value intensity = fp.global_stats.empty() ? py::Value() : intensity_properties_to_py(fp);
  return py::dict({{"all_sizes", py::list(sizes)},
                   {"all_spacings", py::list(spacings)},
                   {"all_classes", py::list(classes)},
                   {"modalities", modalities},
                   {"intensityproperties", intensity},
                   {"size_reductions", reductions}});
}

}  // namespace amosprep
