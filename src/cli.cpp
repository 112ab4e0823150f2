#include "amosprep/cli.hpp"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "amosprep/amos_dataset.hpp"
#include "amosprep/distributed.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/pipeline.hpp"
#include "amosprep/qa.hpp"
#include "amosprep/verify.hpp"
#include "amosprep/run_control.hpp"
#include "amosprep/synth.hpp"

namespace fs = std::filesystem;

namespace amosprep {

namespace {

/// Flags of one subcommand: "--name value" options, boolean switches, and their help lines.
class Args {
 public:
  Args(std::string command, std::vector<std::string> argv) : command_(std::move(command)), argv_(std::move(argv)) {}

  void option(const std::string& names, const std::string& metavar, const std::string& help, std::string def = "") {
    specs_.push_back({split(names), metavar, help, def, false});
  }
  void flag(const std::string& names, const std::string& help) { specs_.push_back({split(names), "", help, "", true}); }

  /// Returns false when --help was printed.
  bool parse() {
    for (size_t i = 0; i < argv_.size(); ++i) {
      const std::string& a = argv_[i];
      if (a == "-h" || a == "--help") {
        std::cout << usage();
        return false;
      }
      std::string name = a, inline_value;
      bool has_inline = false;
      if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
        name = a.substr(0, a.find('='));
        inline_value = a.substr(a.find('=') + 1);
        has_inline = true;
      }
      const Spec* s = find(name);
      if (!s) throw UsageError("amos-prep " + command_ + ": unknown option '" + a + "' (see --help)");
      if (s->is_flag) {
        values_[s->names[0]] = "1";
        continue;
      }
      if (has_inline) {
        values_[s->names[0]] = inline_value;
      } else {
        if (i + 1 >= argv_.size()) throw UsageError("amos-prep " + command_ + ": option " + name + " needs a value");
        values_[s->names[0]] = argv_[++i];
      }
    }
    return true;
  }

  bool has(const std::string& name) const { return values_.count(canonical(name)) > 0; }
  std::string get(const std::string& name) const {
    auto it = values_.find(canonical(name));
    if (it != values_.end()) return it->second;
    return find(name)->def;
  }
  std::string required(const std::string& name) const {
    if (!has(name)) throw UsageError("amos-prep " + command_ + ": missing required option " + name + " (see --help)");
    return get(name);
  }
  int64_t get_int(const std::string& name) const {
    const std::string v = get(name);
    try {
      size_t pos = 0;
      long long x = std::stoll(v, &pos);
      if (pos != v.size()) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      throw UsageError("amos-prep " + command_ + ": option " + name + " expects an integer, got '" + v + "'");
    }
  }

  void set_description(std::string d) { description_ = std::move(d); }
  std::string usage() const {
    std::ostringstream o;
    o << "usage: amos-prep " << command_ << " [options]\n\n" << description_ << "\n\noptions:\n";
    for (const auto& s : specs_) {
      std::string left;
      for (const auto& n : s.names) left += (left.empty() ? "" : ", ") + n;
      if (!s.is_flag) left += " " + s.metavar;
      o << "  " << left;
      o << std::string(left.size() < 34 ? 34 - left.size() : 1, ' ') << s.help;
      if (!s.def.empty()) o << " (default: " << s.def << ")";
      o << "\n";
    }
    o << "  -h, --help" << std::string(24, ' ') << "show this help\n";
    return o.str();
  }

 private:
  struct Spec {
    std::vector<std::string> names;
    std::string metavar, help, def;
    bool is_flag;
  };
  static std::vector<std::string> split(const std::string& names) {
    std::vector<std::string> out;
    std::stringstream s(names);
    std::string n;
    while (std::getline(s, n, ',')) out.push_back(n);
    return out;
  }
  const Spec* find(const std::string& name) const {
    for (const auto& s : specs_)
      for (const auto& n : s.names)
        if (n == name) return &s;
    return nullptr;
  }
  std::string canonical(const std::string& name) const {
    const Spec* s = find(name);
    if (!s) throw InternalError("undeclared option " + name);
    return s->names[0];
  }

  std::string command_, description_;
  std::vector<std::string> argv_;
  std::vector<Spec> specs_;
  std::map<std::string, std::string> values_;
};

int64_t parse_bytes(const std::string& text, const std::string& what) {
  if (text.empty()) return 0;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw UsageError(what + ": cannot parse size '" + text + "' (use e.g. 16G, 500M)");
  }
  std::string unit = text.substr(pos);
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") mult = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TB" || unit == "TiB") mult = 1024.0 * 1024 * 1024 * 1024;
  else throw UsageError(what + ": unknown size unit in '" + text + "'");
  return static_cast<int64_t>(v * mult);
}

/// Per-rank memory budget: SLURM's per-CPU or per-node memory if set, else this node's available memory shared
/// among the node's ranks.
int64_t default_mem_per_rank() {
  const auto env = [](const char* n) -> std::optional<std::string> {
    const char* v = std::getenv(n);
    if (v && *v) return std::string(v);
    return std::nullopt;
  };
  const int64_t mib = 1024 * 1024;
  if (auto per_cpu = env("SLURM_MEM_PER_CPU")) {
    int64_t cpus = 1;
    if (auto c = env("SLURM_CPUS_PER_TASK")) cpus = std::max<int64_t>(1, std::atoll(c->c_str()));
    return std::atoll(per_cpu->c_str()) * mib * cpus;
  }
  int64_t local_ranks = 1;
  if (auto l = env("OMPI_COMM_WORLD_LOCAL_SIZE")) local_ranks = std::max<int64_t>(1, std::atoll(l->c_str()));
  else if (auto t = env("SLURM_NTASKS_PER_NODE")) local_ranks = std::max<int64_t>(1, std::atoll(t->c_str()));
  if (auto per_node = env("SLURM_MEM_PER_NODE")) return std::atoll(per_node->c_str()) * mib / local_ranks;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024 / local_ranks;
  return 0;
}

void configure_threads(const Args& a) {
  if (a.has("--threads")) {
    omp_set_num_threads(static_cast<int>(std::max<int64_t>(1, a.get_int("--threads"))));
  } else if (!std::getenv("OMP_NUM_THREADS")) {
    if (const char* c = std::getenv("SLURM_CPUS_PER_TASK")) omp_set_num_threads(std::max(1, std::atoi(c)));
  }
}

void declare_pipeline_options(Args& a) {
  a.option("-pl3d", "PLANNER", "3-D experiment planner: ExperimentPlanner3D_v21, ExperimentPlanner3D_residual_v21_bfnnUNet, "
           "ExperimentPlanner3D_residual_v21_bfnnUNet_31, ExperimentPlanner3D_residual_v21_bfnnUNet_31_spRegnnU",
           "ExperimentPlanner3D_v21");
  a.option("-pl2d", "PLANNER", "2-D planner; only None is supported", "None");
  a.option("-tl,--tl", "N", "accepted for nnU-Net compatibility; amos-prep uses MPI ranks and OpenMP threads instead");
  a.option("-tf,--tf", "N", "accepted for nnU-Net compatibility (see -tl)");
  a.option("--npz-compression", "MODE", "npz member compression: none | fast (libdeflate level 1) | nnunet (zlib level 6)", "fast");
  a.option("--h5", "LAYOUT", "HDF5 store amos-prep.h5: none | chunked (uncompressed) | deflate (chunked + shuffle + deflate)", "chunked");
  a.option("--seed", "S", "RandomState seed of class_locations", "1234");
  a.option("--threads", "N", "OpenMP threads per rank (default: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK)");
  a.option("--mem-per-rank", "SIZE", "memory budget per rank, e.g. 16G (default: SLURM_MEM_PER_CPU or available memory / local ranks)");
  a.option("--log-json", "FILE", "machine-readable log (default: <task>/amos-prep/log.json)");
  a.flag("--write-cropped", "also write nnU-Net's nnUNet_cropped_data folder (for comparisons)");
  a.flag("--verify-dataset-integrity", "check the dataset before any heavy work (as nnU-Net's flag)");
  a.flag("--force", "redo every case even when the manifest says it is complete");
  a.flag("--quiet", "print only errors");
}

PipelineOptions pipeline_options_from(const Args& a) {
  PipelineOptions o;
  const std::string pl2d = a.get("-pl2d");
  if (pl2d != "None")
    throw UsageError("2-D planner '" + pl2d + "' is not supported yet; pass -pl2d None (the AMOS recipe does)");
  o.planner = planner_from_name(a.get("-pl3d"));
  o.npz_compression = npz_compression_from_name(a.get("--npz-compression"));
  o.h5_layout = a.get("--h5");
  if (o.h5_layout != "none" && o.h5_layout != "chunked" && o.h5_layout != "deflate")
    throw UsageError("--h5 must be none, chunked or deflate, not '" + o.h5_layout + "'");
  const int64_t seed = a.get_int("--seed");
  if (seed < 0 || seed > 0xFFFFFFFFLL) throw UsageError("--seed must be in [0, 2^32 - 1]");
  o.seed = static_cast<uint32_t>(seed);
  o.write_cropped = a.has("--write-cropped");
  o.verify_integrity = a.has("--verify-dataset-integrity");
  o.force = a.has("--force");
  o.quiet = a.has("--quiet");
  o.mem_per_rank = a.has("--mem-per-rank") ? parse_bytes(a.get("--mem-per-rank"), "--mem-per-rank") : default_mem_per_rank();
  o.log_json = a.get("--log-json");
  return o;
}

int task_id_from(const Args& a) {
  const int64_t t = a.get_int("-t");
  if (t != 216 && t != 217) throw UsageError("-t must be 216 (AMOS22 task 1) or 217 (task 2), not " + std::to_string(t));
  return static_cast<int>(t);
}

std::string env_or(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

void require_dir(const std::string& path, const std::string& what) {
  if (!fs::is_directory(path)) throw InputError("", path, what + " does not exist or is not a directory");
}

/// nnU-Net's conversion with the byte copies shared by all ranks; rank 0 writes dataset.json afterwards.
std::string convert_on_all_ranks(const std::string& amos, const std::string& raw_base, int task) {
  if (mpi_rank() == 0) make_dirs(raw_task_dir(raw_base, task));
  barrier();
  convert_amos_copy(amos, raw_base, task, mpi_rank(), mpi_size());
  barrier();
  std::string dir = raw_task_dir(raw_base, task);
  if (mpi_rank() == 0) dir = convert_amos_finish(amos, raw_base, task);
  barrier();
  return dir;
}

// ---- subcommands ------------------------------------------------------------------------------------------
int cmd_synth(std::vector<std::string> argv) {
  Args a("synth", std::move(argv));
  a.set_description("Writes a deterministic AMOS22-layout phantom dataset (task1_dataset.json, imagesTr/, labelsTr/, imagesTs/).");
  a.option("--out", "DIR", "output folder");
  a.option("--train", "N", "training cases", "4");
  a.option("--test", "M", "test cases", "1");
  a.option("--size", "SIZE", "tiny | medium | realistic (512x512 in-plane)", "tiny");
  a.option("--seed", "S", "generator seed", "0");
  if (!a.parse()) return kExitOk;
  SynthOptions o;
  o.out_dir = a.required("--out");
  o.n_train = static_cast<int>(a.get_int("--train"));
  o.n_test = static_cast<int>(a.get_int("--test"));
  o.size = a.get("--size");
  o.seed = static_cast<uint64_t>(a.get_int("--seed"));
  if (o.size != "tiny" && o.size != "medium" && o.size != "realistic")
    throw UsageError("--size must be tiny, medium or realistic, not '" + o.size + "'");
  if (o.n_train < 1 || o.n_test < 0) throw UsageError("--train must be >= 1 and --test >= 0");
  if (mpi_rank() == 0) {
    synth_amos_dataset(o);
    std::cerr << "amos-prep synth: wrote " << o.n_train << " training and " << o.n_test << " test cases ("
              << o.size << ") to " << o.out_dir << "\n";
  }
  barrier();
  return kExitOk;
}

int cmd_convert(std::vector<std::string> argv) {
  Args a("convert", std::move(argv));
  a.set_description("Converts an AMOS22 folder into nnU-Net v1's raw layout, exactly as nnU-Net's Task216/217 script.");
  a.option("--amos-dir", "DIR", "AMOS22 folder (task1_dataset.json, imagesTr/, labelsTr/, imagesTs/)");
  a.option("--raw-base", "RAW", "nnUNet_raw_data_base (default: $nnUNet_raw_data_base)");
  a.option("-t,--task", "ID", "216 or 217", "216");
  if (!a.parse()) return kExitOk;
  const std::string amos = a.required("--amos-dir");
  const std::string raw = a.has("--raw-base") ? a.get("--raw-base") : env_or("nnUNet_raw_data_base");
  if (raw.empty()) throw UsageError("convert: give --raw-base or set nnUNet_raw_data_base");
  const int task = task_id_from(a);
  require_dir(amos, "--amos-dir");
  const std::string dir = convert_on_all_ranks(amos, raw, task);
  if (mpi_rank() == 0) std::cerr << "amos-prep convert: wrote " << dir << "\n";
  return kExitOk;
}

int cmd_verify(std::vector<std::string> argv) {
  Args a("verify", std::move(argv));
  a.set_description("Checks a dataset before any heavy work and lists every problem (errors, then warnings).\n"
                    "Give an AMOS22 folder (--amos-dir) or an nnU-Net raw task folder (--raw-base with -t).\n"
                    "Exit code 0: no errors (warnings allowed); 3: at least one error.");
  a.option("--amos-dir", "DIR", "AMOS22 folder");
  a.option("--raw-base", "RAW", "nnUNet_raw_data_base holding nnUNet_raw_data/TaskXXX_...");
  a.option("-t,--task", "ID", "216 or 217", "216");
  if (!a.parse()) return kExitOk;
  const int task = task_id_from(a);
  VerifyReport report;
  if (a.has("--amos-dir")) {
    require_dir(a.get("--amos-dir"), "--amos-dir");
    report = verify_amos_dir(a.get("--amos-dir"), task);
  } else if (a.has("--raw-base")) {
    report = verify_raw_task(raw_task_dir(a.get("--raw-base"), task));
  } else {
    throw UsageError("verify: give --amos-dir DIR or --raw-base RAW (see --help)");
  }
  if (mpi_rank() == 0) std::cout << report.text() << std::flush;
  return report.exit_code();
}

int cmd_qa(std::vector<std::string> argv) {
  Args a("qa", std::move(argv));
  a.set_description("Writes PNG overlays (image + labels, three orthogonal mid-slices, before and after preprocessing)\n"
                    "per case and stage, and an index.html, so a run can be eyeballed in a browser.");
  a.option("--preprocessed", "TASK_DIR", "preprocessed task folder, e.g. PRE/Task216_AMOS2022_task1");
  a.option("--out", "DIR", "where the pictures and index.html go");
  a.option("--raw-base", "RAW", "nnUNet_raw_data_base for the 'before' pictures (default: $nnUNet_raw_data_base; without "
           "either, only 'after' pictures are drawn; when given, the paths recorded in the properties are tried first)");
  if (!a.parse()) return kExitOk;
  const std::string task = a.required("--preprocessed"), out = a.required("--out");
  require_dir(task, "--preprocessed");
  if (mpi_rank() == 0) {
    run_qa(task, out, a.has("--raw-base") ? a.get("--raw-base") : env_or("nnUNet_raw_data_base"));
    std::cerr << "amos-prep qa: open " << (fs::path(out) / "index.html").string() << "\n";
  }
  barrier();
  return kExitOk;
}

int run_pipeline(PipelineOptions o) {
  plan_and_preprocess(o);
  return kExitOk;
}

int cmd_plan_and_preprocess(std::vector<std::string> argv) {
  Args a("plan_and_preprocess", std::move(argv));
  a.set_description("nnU-Net v1's nnUNet_plan_and_preprocess for one 3-D planner: crop, fingerprint, plan, preprocess.\n"
                    "Writes PRE/Task216_AMOS2022_task1/ in nnU-Net v1's layout, plus amos-prep.h5.");
  a.option("-t,--task", "ID", "216 or 217", "216");
  a.option("--raw-base", "RAW", "nnUNet_raw_data_base (default: $nnUNet_raw_data_base)");
  a.option("--preprocessed", "PRE", "nnUNet_preprocessed (default: $nnUNet_preprocessed)");
  declare_pipeline_options(a);
  if (!a.parse()) return kExitOk;
  install_stop_handlers();
  configure_threads(a);
  PipelineOptions o = pipeline_options_from(a);
  o.task_id = task_id_from(a);
  o.raw_base = a.has("--raw-base") ? a.get("--raw-base") : env_or("nnUNet_raw_data_base");
  o.preprocessed = a.has("--preprocessed") ? a.get("--preprocessed") : env_or("nnUNet_preprocessed");
  if (o.raw_base.empty()) throw UsageError("plan_and_preprocess: give --raw-base or set nnUNet_raw_data_base");
  if (o.preprocessed.empty()) throw UsageError("plan_and_preprocess: give --preprocessed or set nnUNet_preprocessed");
  require_dir(raw_task_dir(o.raw_base, o.task_id), "raw task folder");
  return run_pipeline(o);
}

int cmd_run(std::vector<std::string> argv) {
  Args a("run", std::move(argv));
  a.set_description("convert + plan_and_preprocess: AMOS22 folder -> OUT/nnUNet_raw_data_base -> OUT/nnUNet_preprocessed.");
  a.option("--amos-dir", "DIR", "AMOS22 folder");
  a.option("--out", "OUT", "work root");
  a.option("-t,--task", "ID", "216 or 217", "216");
  declare_pipeline_options(a);
  if (!a.parse()) return kExitOk;
  install_stop_handlers();  // before convert: a stop during the conversion ends as cleanly as one later
  configure_threads(a);
  PipelineOptions o = pipeline_options_from(a);
  o.task_id = task_id_from(a);
  const std::string amos = a.required("--amos-dir");
  const std::string out = a.required("--out");
  require_dir(amos, "--amos-dir");
  o.raw_base = (fs::path(out) / "nnUNet_raw_data_base").string();
  o.preprocessed = (fs::path(out) / "nnUNet_preprocessed").string();
  if (o.verify_integrity) {
    int code = kExitOk;
    if (mpi_rank() == 0) {
      const VerifyReport report = verify_amos_dir(amos, o.task_id);
      std::cerr << report.text();
      code = report.exit_code();
    }
    if (allreduce_max(code) != kExitOk)
      throw InputError("", amos, "dataset integrity check failed (see the problems listed above)");
    o.verify_integrity = false;  // the converted copy holds the same bytes
  }
  convert_on_all_ranks(amos, o.raw_base, o.task_id);
  return run_pipeline(o);
}

const char* kTopUsage =
    "usage: amos-prep <command> [options]     (amos-prep <command> --help for details)\n\n"
    "commands:\n"
    "  synth                 write a deterministic AMOS22-layout phantom dataset\n"
    "  convert               AMOS22 folder -> nnU-Net v1 raw Task216/217 folder\n"
    "  plan_and_preprocess   nnU-Net v1 plan_and_preprocess (crop, fingerprint, plan, preprocess)\n"
    "  run                   convert + plan_and_preprocess into one work root\n"
    "  verify                check a dataset and list every problem before any heavy work\n"
    "  qa                    PNG overlays + index.html of a preprocessed task folder\n\n"
    "Works as a plain process and under mpirun -n N. Exit codes: 0 ok, 2 usage, 3 bad input, 4 I/O,\n"
    "5 internal error, 75 interrupted (rerun the same command to resume).\n";

}  // namespace

int cli_main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kTopUsage;
    return kExitUsage;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  static const std::map<std::string, std::function<int(std::vector<std::string>)>> commands = {
      {"synth", cmd_synth},
      {"convert", cmd_convert},
      {"plan_and_preprocess", cmd_plan_and_preprocess},
      {"run", cmd_run},
      {"verify", cmd_verify},
      {"qa", cmd_qa},
  };
  try {
    if (cmd == "-h" || cmd == "--help") {
      std::cout << kTopUsage;
      return kExitOk;
    }
    if (cmd == "--version") {
      std::cout << "amos-prep " << AMOSPREP_VERSION << "\n";
      return kExitOk;
    }
    auto it = commands.find(cmd);
    if (it == commands.end()) throw UsageError("unknown command '" + cmd + "'\n" + kTopUsage);
    return it->second(args);
  } catch (const Interrupted& e) {
    if (mpi_rank() == 0) std::cerr << "amos-prep: interrupted: " << e.what() << "\n";
    return kExitInterrupted;  // every rank agreed on this (collective), so a clean finalize follows
  } catch (const Error& e) {
    std::cerr << "amos-prep: error" << (mpi_size() > 1 ? " (rank " + std::to_string(mpi_rank()) + ")" : "") << ": "
              << e.what() << std::endl;
    if (mpi_size() > 1) abort_job(e.code());
    // Temporary files are gone (unwinding ran their destructors). Skip MPI_Finalize: HDF5 would try to flush a
    // store that just failed (e.g. on a full disk) from MPI's finalize hooks.
    std::cerr.flush();
    std::_Exit(e.code());
  } catch (const std::exception& e) {
    std::cerr << "amos-prep: internal error: " << e.what() << std::endl;
    if (mpi_size() > 1) abort_job(kExitInternal);
    std::cerr.flush();
    std::_Exit(kExitInternal);
  }
}

}  // namespace amosprep
