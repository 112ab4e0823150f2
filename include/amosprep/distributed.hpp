#pragma once
// MPI in one place: start-up, the collectives the pipeline needs (byte-string gathers and broadcasts, flag
// reductions), a deterministic largest-first schedule, and abort. Works as a plain process (singleton MPI).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace amosprep {

/// Reads an environment variable: its value, or nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const char*)>;

/// The Open MPI point-to-point layer (MCA `pml`) to preset before MPI_Init, or "" to leave Open MPI's choice.
/// "ob1" (shared memory between the ranks) when every rank is known to run on this node: a singleton, mpirun with
/// OMPI_COMM_WORLD_LOCAL_SIZE == OMPI_COMM_WORLD_SIZE, or srun with SLURM_STEP_NUM_NODES == 1. Open MPI otherwise
/// probes the network fabrics (cm/psm2, ...) first, about 0.2 s per process start on our machines. A pml the user
/// chose (OMPI_MCA_pml, which `mpirun --mca pml X` also sets) is never overridden.
std::string single_node_pml(const EnvLookup& env);

/// Initialises MPI (thread level FUNNELED) on construction and finalises on destruction. Presets
/// single_node_pml() first.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

int mpi_rank();
int mpi_size();
bool mpi_active();

/// Every rank's bytes, in rank order, on every rank.
std::vector<std::string> allgather_bytes(const std::string& mine);
/// Every rank's bytes, in rank order, on `root` only (other ranks get an empty vector).
std::vector<std::string> gather_bytes(const std::string& mine, int root = 0);
/// Root's bytes on every rank.
std::string broadcast_bytes(const std::string& bytes, int root = 0);
/// Logical OR / max / sum of a value over ranks (on every rank).
bool allreduce_or(bool flag);
int64_t allreduce_max(int64_t v);
double allreduce_sum(double v);
/// Waits for every rank without spinning a core (nonblocking barrier polled with short sleeps).
void barrier();
/// Ends the whole job with `code` (MPI_Abort under mpirun, exit otherwise). Never returns.
[[noreturn]] void abort_job(int code);

/// Largest-first (LPT) assignment of items with the given costs to `ranks` bins; ties broken by index, so the
/// schedule is deterministic. Returns the owner rank of each item.
std::vector<int> largest_first_schedule(const std::vector<double>& costs, int ranks);

/// Tiny binary serializer for summaries exchanged between ranks.
class ByteWriter {
 public:
  template <class T>
  void put(const T& v) { buf_.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void put_string(const std::string& s);
  template <class T>
  void put_vector(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    buf_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::string& b) : buf_(b) {}
  explicit ByteReader(std::string&&) = delete;  // it keeps a reference: a temporary would dangle
  template <class T>
  T get() {
    T v;
    take(&v, sizeof(T));
    return v;
  }
  std::string get_string();
  template <class T>
  std::vector<T> get_vector() {
    std::vector<T> v(get<uint64_t>());
    take(v.data(), v.size() * sizeof(T));
    return v;
  }
  bool done() const { return pos_ == buf_.size(); }

 private:
  void take(void* dst, size_t n);
  const std::string& buf_;
  size_t pos_ = 0;
};

}  // namespace amosprep
