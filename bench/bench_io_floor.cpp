// Two measurements for bench/run_bench.sh, each written as one JSON object (stdout or --json FILE).
//
// io: the I/O floor of a run. Times, on one thread, only what no implementation can avoid:
//   - read + gunzip of every input .nii.gz (read_file + libdeflate), and the same through amos-prep's read_nifti
//     (header, gunzip, int16 -> float32);
//   - writing every produced preprocessed .npz again with the same npz compression (write_npz, fsync'ed like the
//     pipeline; the arrays are the produced ones, read back untimed, so compression sees the real data);
//   - writing the bytes of the chunked HDF5 store (float32 data + int8 seg per voxel) with plain write(2).
//   usage: bench_io_floor io --inputs AMOS_DIR --outputs TASK_PREPROCESSED_DIR --npz-compression MODE
//                            --scratch DIR [--runs N] [--json FILE]
//
// serial: the parts of a run that do not shrink with more ranks, for a dataset given as a CSV (one case a line:
//   id,spacing_z,spacing_y,spacing_x,size_z,size_y,size_x,foreground_samples). Synthetic foreground samples of the
//   given lengths stand in for the real ones. Times the serialisation of the summaries (the allgather payload),
//   merge_fingerprint, make_plan, the plans/properties pickles, and the HDF5 metadata work of the store (dataset
//   creation for every case-stage, then the per-case small datasets and status attributes of the finish step;
//   no volume data is written). Run it under mpirun -n P to see how the collective HDF5 part grows with P.
//   --sample-scale F multiplies the foreground sample lengths (to keep several ranks within memory; the merge is
//   linear in them, so its time scales back by 1/F).
//   usage: bench_io_floor serial --cases CSV --planner NAME --scratch DIR [--runs N] [--json FILE] [--no-h5]
//                                [--sample-scale F]
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "amosprep/pages.hpp"
#include "amosprep/distributed.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fingerprint.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/h5_store.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/npz_writer.hpp"
#include "amosprep/pickle_writer.hpp"
#include "amosprep/planner.hpp"
#include "amosprep/resample.hpp"

using namespace amosprep;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/// Accumulates wall and CPU seconds of the scopes it times.
struct Timer {
  double wall = 0, cpu = 0;
  template <class F>
  void time(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    f();
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu += cpu_seconds() - c0;
  }
  json to_json() const { return {{"wall_seconds", wall}, {"cpu_seconds", cpu}}; }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Medians over runs of every {wall_seconds, cpu_seconds} entry of run objects.
json medians_of(const std::vector<json>& runs) {
  json out;
  if (runs.empty()) return out;
  for (const auto& [name, v] : runs[0].items()) {
    if (!v.is_object() || !v.contains("wall_seconds")) continue;
    std::vector<double> w, c;
    for (const auto& r : runs) {
      w.push_back(r.at(name).at("wall_seconds").get<double>());
      c.push_back(r.at(name).at("cpu_seconds").get<double>());
    }
    out[name] = {{"wall_seconds", median(w)}, {"cpu_seconds", median(c)}};
  }
  return out;
}

std::map<std::string, std::string> parse_options(int argc, char** argv, int first) {
  std::map<std::string, std::string> o;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument " + a);
    if (a == "--no-h5") {
      o[a] = "1";
      continue;
    }
    if (i + 1 >= argc) throw UsageError(a + " needs a value");
    o[a] = argv[++i];
  }
  return o;
}

std::string need(const std::map<std::string, std::string>& o, const std::string& key) {
  auto it = o.find(key);
  if (it == o.end()) throw UsageError("missing " + key);
  return it->second;
}

void emit(const json& j, const std::map<std::string, std::string>& o) {
  if (mpi_rank() != 0) return;
  auto it = o.find("--json");
  if (it == o.end()) std::cout << j.dump(1) << std::endl;
  else write_file_atomic(it->second, j.dump(1));
}

std::vector<std::string> files_under(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string p = e.path().string();
    if (e.is_regular_file() && p.size() > suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- io -----------------------------------------------------------------------------------------------------
int run_io(const std::map<std::string, std::string>& o) {
  const std::string inputs_dir = need(o, "--inputs"), outputs_dir = need(o, "--outputs"), scratch = need(o, "--scratch");
  const NpzCompression compression = npz_compression_from_name(need(o, "--npz-compression"));
  const int runs = o.count("--runs") ? std::stoi(o.at("--runs")) : 3;
  const auto inputs = files_under(inputs_dir, ".nii.gz");
  std::vector<std::string> outputs;
  for (const auto& f : files_under(outputs_dir, ".npz"))
    if (fs::path(f).parent_path().filename().string().find("_stage") != std::string::npos) outputs.push_back(f);
  if (inputs.empty() || outputs.empty()) throw UsageError("no .nii.gz inputs or no preprocessed .npz outputs found");
  make_dirs(scratch);

  json info = {{"inputs", json::array()}, {"outputs", json::array()}};
  int64_t in_compressed = 0, in_raw = 0, out_voxels = 0, out_raw_bytes = 0, out_npz_bytes = 0;
  std::vector<json> run_results;
  libdeflate_decompressor* dec = libdeflate_alloc_decompressor();
  for (int run = 0; run < runs; ++run) {
    Timer gunzip, nifti, npz, h5raw;
    for (const auto& f : inputs) {
      std::string raw;
      gunzip.time([&] {
        const std::string gz = read_file(f);
        // ISIZE (last 4 bytes) is the size mod 2^32; the inputs here are far below 4 GiB.
        uint32_t isize = 0;
        std::memcpy(&isize, gz.data() + gz.size() - 4, 4);
        raw.resize(isize);
        size_t got = 0;
        if (libdeflate_gzip_decompress(dec, gz.data(), gz.size(), raw.data(), raw.size(), &got) != LIBDEFLATE_SUCCESS)
          throw IoError(f, "gunzip failed");
        if (run == 0) {
          in_compressed += static_cast<int64_t>(gz.size());
          in_raw += static_cast<int64_t>(got);
          info["inputs"].push_back({{"file", fs::path(f).filename().string()}, {"bytes", gz.size()}, {"raw_bytes", got}});
        }
      });
      nifti.time([&] { (void)read_nifti(f); });
    }
    for (const auto& f : outputs) {
      std::vector<int64_t> shape;
      std::vector<float> all = read_npz_f32(f, "data", &shape);  // untimed: only the write is the floor
      const std::string dst = scratch + "/floor.npz";
      npz.time([&] { write_npz(dst, "data", all.data(), shape, compression); });
      // The chunked HDF5 store holds the same voxels as float32 channels plus an int8 seg.
      int64_t vox = 1;
      for (size_t a = 1; a < shape.size(); ++a) vox *= shape[a];
      const int64_t h5_bytes = 4 * (shape[0] - 1) * vox + vox;
      h5raw.time([&] {
        const std::string p = scratch + "/floor.raw";
        const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) throw IoError(p, "cannot create");
        std::vector<int8_t> seg(static_cast<size_t>(vox));
        const float* sf = all.data() + (shape[0] - 1) * vox;
        for (int64_t v = 0; v < vox; ++v) seg[static_cast<size_t>(v)] = static_cast<int8_t>(sf[v]);
        auto put = [&](const char* p0, int64_t n) {
          while (n > 0) {
            const ssize_t w = ::write(fd, p0, static_cast<size_t>(std::min<int64_t>(n, int64_t{1} << 30)));
            if (w <= 0) throw IoError(p, "write failed");
            p0 += w;
            n -= w;
          }
        };
        put(reinterpret_cast<const char*>(all.data()), 4 * (shape[0] - 1) * vox);
        put(reinterpret_cast<const char*>(seg.data()), vox);
        ::close(fd);
      });
      if (run == 0) {
        const int64_t nbytes = static_cast<int64_t>(fs::file_size(dst));
        out_voxels += vox;
        out_raw_bytes += h5_bytes;
        out_npz_bytes += nbytes;
        info["outputs"].push_back({{"file", fs::path(f).parent_path().filename().string() + "/" + fs::path(f).filename().string()},
                                   {"shape", shape},
                                   {"npz_bytes", nbytes}});
      }
    }
    json r = {{"read_gunzip", gunzip.to_json()}, {"read_nifti", nifti.to_json()}, {"write_npz", npz.to_json()},
              {"write_h5_raw", h5raw.to_json()}};
    run_results.push_back(r);
  }
  libdeflate_free_decompressor(dec);
  std::error_code ec;
  fs::remove(scratch + "/floor.npz", ec);
  fs::remove(scratch + "/floor.raw", ec);
  json out = {{"mode", "io"},
              {"npz_compression", npz_compression_name(compression)},
              {"runs", run_results},
              {"median", medians_of(run_results)},
              {"input_compressed_bytes", in_compressed},
              {"input_raw_bytes", in_raw},
              {"output_voxels", out_voxels},
              {"output_npz_bytes", out_npz_bytes},
              {"output_h5_raw_bytes", out_raw_bytes},
              {"files", info}};
  emit(out, o);
  return 0;
}

// ---- serial -------------------------------------------------------------------------------------------------
struct CsvCase {
  std::string id;
  std::array<double, 3> spacing{};
  Shape3 size{0, 0, 0};
  int64_t samples = 0;
};

std::vector<CsvCase> read_cases(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path, "cannot open");
  std::vector<CsvCase> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind("id,", 0) == 0) continue;
    std::stringstream s(line);
    std::string f;
    std::vector<std::string> cols;
    while (std::getline(s, f, ',')) cols.push_back(f);
    if (cols.size() != 8) throw InputError("", path, "expected 8 columns: " + line);
    CsvCase c;
    c.id = cols[0];
    for (int a = 0; a < 3; ++a) c.spacing[static_cast<size_t>(a)] = std::stod(cols[static_cast<size_t>(1 + a)]);
    for (int a = 0; a < 3; ++a) c.size[static_cast<size_t>(a)] = std::stoll(cols[static_cast<size_t>(4 + a)]);
    c.samples = std::stoll(cols[7]);
    out.push_back(c);
  }
  std::sort(out.begin(), out.end(), [](const CsvCase& a, const CsvCase& b) { return a.id < b.id; });
  return out;
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int run_serial(const std::map<std::string, std::string>& o) {
  const auto cases = read_cases(need(o, "--cases"));
  const PlannerKind kind = planner_from_name(need(o, "--planner"));
  const std::string scratch = need(o, "--scratch");
  const int runs = o.count("--runs") ? std::stoi(o.at("--runs")) : 3;
  const bool with_h5 = !o.count("--no-h5");
  const double sample_scale = o.count("--sample-scale") ? std::stod(o.at("--sample-scale")) : 1.0;
  if (mpi_rank() == 0) make_dirs(scratch);
  barrier();
  const std::vector<int64_t> all_classes{1, 10, 11, 12, 13, 14, 15, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<std::string> modalities{"CT"};

  // Integer-valued HU-like foreground samples (organs 0..250 HU with noise, a few bright/dark outliers).
  std::vector<CaseSummary> summaries;
  int64_t total_samples = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    CaseSummary s;
    s.id = cases[i].id;
    s.original_size = cases[i].size;
    s.original_spacing = cases[i].spacing;
    s.size_after_cropping = cases[i].size;
    std::vector<float> v(static_cast<size_t>(static_cast<double>(cases[i].samples) * sample_scale));
    uint64_t st = 1000 + i;
    for (auto& x : v) {
      const uint64_t r = splitmix(st);
      const int organ = static_cast<int>(r % 15);
      const int noise = static_cast<int>((r >> 8) % 61) - 30;
      const bool outlier = ((r >> 20) % 500) == 0;
      x = static_cast<float>(outlier ? static_cast<int>((r >> 32) % 3000) - 1000 : 20 + organ * 15 + noise);
    }
    total_samples += static_cast<int64_t>(v.size());
    s.foreground_samples.push_back(std::move(v));
    summarize_intensities(s);  // the pipeline does this on the cropping ranks, in parallel, not in the merge
    summaries.push_back(std::move(s));
  }

  std::vector<json> run_results;
  json plan_json;
  int64_t gather_bytes = 0;
  for (int run = 0; run < runs; ++run) {
    Timer ser, merge, plan_t, pickles, h5_create, h5_finish, h5_close;
    std::string bytes;
    ser.time([&] {
      ByteWriter w;
      for (const auto& s : summaries) write_summary(w, s, true);
      bytes = w.bytes();
      ByteReader r(bytes);  // and back, as every rank does with the gathered bytes
      std::vector<CaseSummary> back;
      while (!r.done()) back.push_back(read_summary(r));
    });
    gather_bytes = static_cast<int64_t>(bytes.size());
    bytes.clear();
    bytes.shrink_to_fit();
    DatasetFingerprint fp;
    std::vector<CaseSummary> to_merge = summaries;  // the pipeline hands its gathered copy over (moved)
    merge.time([&] { fp = merge_fingerprint(std::move(to_merge), all_classes, modalities); });
    PlannerInput in;
    in.spacings = fp.spacings;
    in.sizes = fp.sizes;
    in.num_cases = static_cast<int64_t>(fp.case_ids.size());
    in.modalities = fp.modalities;
    in.num_classes = static_cast<int>(all_classes.size());
    in.size_reductions = fp.size_reductions;
    Plan plan;
    plan_t.time([&] { plan = make_plan(kind, in); });
    size_t pickle_bytes = 0;
    pickles.time([&] {
      PlansContext ctx;
      ctx.dataset_properties = dataset_properties_to_py(fp);
      for (const auto& id : fp.case_ids) ctx.list_of_npz_files.push_back("/cropped/" + id + ".npz");
      ctx.preprocessed_data_folder = "/preprocessed";
      ctx.all_classes = all_classes;
      ctx.original_spacings = fp.spacings;
      ctx.original_sizes = fp.sizes;
      pickle_bytes = pickle_dumps(plans_to_py(plan, in, ctx)).size() + pickle_dumps(ctx.dataset_properties).size();
    });
    if (run == 0) {
      plan_json = {{"planner", planner_name(kind)}, {"stages", json::array()}, {"pickle_bytes", pickle_bytes}};
      for (const auto& sp : plan.stages) {
        json shapes = json::array();
        for (size_t i = 0; i < cases.size(); ++i) {
          const Shape3 s = resampled_shape(fp.spacings[i], sp.current_spacing, fp.sizes[i]);
          shapes.push_back({s[0], s[1], s[2]});
        }
        plan_json["stages"].push_back({{"current_spacing", sp.current_spacing},
                                       {"patch_size", sp.patch_size},
                                       {"case_ids", fp.case_ids},
                                       {"resampled_shapes", shapes}});
      }
    }
    if (with_h5) {
      // What Pipeline::h5_create_case_datasets and the metadata half of h5_finish do, collectively.
      const std::string path = scratch + "/serial.h5";
      std::unique_ptr<H5Store> h5;
      h5_create.time([&] {
        h5 = std::make_unique<H5Store>(path, H5Layout::chunked);
        h5->set_attr("/", "format", std::string("amos-prep-h5/1"));
        for (size_t k = 0; k < plan.stages.size(); ++k) {
          const auto& sp = plan.stages[k];
          const std::string sg = "/stage" + std::to_string(k);
          h5->create_group(sg);
          for (size_t i = 0; i < cases.size(); ++i) {
            const Shape3 s = resampled_shape(fp.spacings[i], sp.current_spacing, fp.sizes[i]);
            const std::string g = sg + "/" + fp.case_ids[i];
            h5->create_group(g);
            std::vector<int64_t> chunk;
            for (int a = 0; a < 3; ++a)
              chunk.push_back(std::max<int64_t>(1, std::min<int64_t>(s[static_cast<size_t>(a)], (sp.patch_size[static_cast<size_t>(a)] + 1) / 2)));
            std::vector<int64_t> dchunk{1};
            dchunk.insert(dchunk.end(), chunk.begin(), chunk.end());
            h5->create_f32(g + "/data", {2, s[0], s[1], s[2]}, dchunk);
            h5->create_i8(g + "/seg", {s[0], s[1], s[2]}, chunk);
          }
        }
      });
      h5_finish.time([&] {
        for (size_t k = 0; k < plan.stages.size(); ++k)
          for (size_t i = 0; i < cases.size(); ++i) {
            const std::string g = "/stage" + std::to_string(k) + "/" + fp.case_ids[i];
            h5->create_u8(g + "/properties.pkl", 2000000);
            h5->create_u8(g + "/properties.json", 3000000);
            for (int64_t c : all_classes) h5->create_i64(g + "/class_locations/" + std::to_string(c), {10000, 3});
          }
        for (size_t k = 0; k < plan.stages.size(); ++k)
          for (size_t i = 0; i < cases.size(); ++i)
            h5->set_attr("/stage" + std::to_string(k) + "/" + fp.case_ids[i], "status", std::string("complete"));
        h5->set_attr("/", "status", std::string("complete"));
      });
      h5_close.time([&] {
        h5->close();
        h5.reset();
        barrier();
      });
      if (mpi_rank() == 0) {
        std::error_code ec;
        fs::remove(path, ec);
      }
      barrier();
    }
    json r = {{"serialize_summaries", ser.to_json()}, {"merge_fingerprint", merge.to_json()},
              {"make_plan", plan_t.to_json()},        {"pickles", pickles.to_json()}};
    if (with_h5) {
      r["h5_create_datasets"] = h5_create.to_json();
      r["h5_finish_metadata"] = h5_finish.to_json();
      r["h5_close"] = h5_close.to_json();
    }
    run_results.push_back(r);
  }
  json out = {{"mode", "serial"},
              {"ranks", mpi_size()},
              {"cases", cases.size()},
              {"foreground_samples_total", total_samples},
              {"sample_scale", sample_scale},
              {"gather_bytes", gather_bytes},
              {"runs", run_results},
              {"median", medians_of(run_results)},
              {"plan", plan_json}};
  emit(out, o);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  apply_page_choice(argv);  // the same page size as amos-prep would use here
  MpiSession mpi(&argc, &argv);
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    const auto o = parse_options(argc, argv, 2);
    if (mode == "io") return run_io(o);
    if (mode == "serial") return run_serial(o);
    throw UsageError("usage: bench_io_floor io|serial [options] (see the comment at the top of bench_io_floor.cpp)");
  } catch (const std::exception& e) {
    std::cerr << "bench_io_floor: " << e.what() << std::endl;
    return 2;
  }
}
