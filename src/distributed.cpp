#include "amosprep/distributed.hpp"

#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <queue>

#include "amosprep/error.hpp"

namespace amosprep {

static bool g_we_initialised = false;

std::string single_node_pml(const EnvLookup& env) {
  if (env("OMPI_MCA_pml")) return "";
  const auto world = env("OMPI_COMM_WORLD_SIZE");
  const auto local = env("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (world || local) return world && local && *world == *local ? "ob1" : "";
  // srun (PMI/PMIx) sets no OMPI_COMM_WORLD_*; its step knows its node count.
  if (env("SLURM_PROCID") || env("PMIX_RANK") || env("PMI_RANK")) {
    const auto nodes = env("SLURM_STEP_NUM_NODES");
    return nodes && *nodes == "1" ? "ob1" : "";
  }
  return "ob1";  // singleton: no launcher, one process
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    const std::string pml = single_node_pml([](const char* name) -> std::optional<std::string> {
      const char* v = std::getenv(name);
      return v ? std::optional<std::string>(v) : std::nullopt;
    });
    if (!pml.empty()) setenv("OMPI_MCA_pml", pml.c_str(), 0);
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_we_initialised = true;
    // Errors become return codes we turn into exceptions, never silent hangs.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_we_initialised && !finalized) MPI_Finalize();
}

bool mpi_active() {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  return initialised && !finalized;
}

int mpi_rank() {
  if (!mpi_active()) return 0;
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int mpi_size() {
  if (!mpi_active()) return 1;
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

static void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw InternalError(std::string("MPI ") + what + " failed: " + std::string(msg, static_cast<size_t>(len)));
  }
}

std::vector<std::string> allgather_bytes(const std::string& mine) {
  const int n = mpi_size();
  if (n == 1) return {mine};
  // Sizes first, then the payload in chunks of at most 1 GiB to stay inside int counts.
  int64_t my_size = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(static_cast<size_t>(n));
  check(MPI_Allgather(&my_size, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, MPI_COMM_WORLD), "Allgather");
  std::vector<std::string> out(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    out[static_cast<size_t>(r)] = r == mpi_rank() ? mine : std::string(static_cast<size_t>(sizes[static_cast<size_t>(r)]), '\0');
    const int64_t chunk = int64_t{1} << 30;
    for (int64_t off = 0; off < sizes[static_cast<size_t>(r)]; off += chunk) {
      const int count = static_cast<int>(std::min(chunk, sizes[static_cast<size_t>(r)] - off));
      check(MPI_Bcast(out[static_cast<size_t>(r)].data() + off, count, MPI_BYTE, r, MPI_COMM_WORLD), "Bcast");
    }
  }
  return out;
}

std::vector<std::string> gather_bytes(const std::string& mine, int root) {
  const int n = mpi_size(), me = mpi_rank();
  if (n == 1) return {mine};
  int64_t my_size = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(static_cast<size_t>(n));
  check(MPI_Gather(&my_size, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, root, MPI_COMM_WORLD), "Gather");
  const int64_t chunk = int64_t{1} << 30;
  constexpr int kTag = 7310;
  std::vector<std::string> out;
  if (me != root) {
    for (int64_t off = 0; off < my_size; off += chunk)
      check(MPI_Send(mine.data() + off, static_cast<int>(std::min(chunk, my_size - off)), MPI_BYTE, root, kTag,
                     MPI_COMM_WORLD),
            "Send");
    return out;
  }
  out.resize(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    if (r == root) {
      out[static_cast<size_t>(r)] = mine;
      continue;
    }
    auto& buf = out[static_cast<size_t>(r)];
    buf.assign(static_cast<size_t>(sizes[static_cast<size_t>(r)]), '\0');
    for (int64_t off = 0; off < sizes[static_cast<size_t>(r)]; off += chunk)
      check(MPI_Recv(buf.data() + off, static_cast<int>(std::min(chunk, sizes[static_cast<size_t>(r)] - off)), MPI_BYTE, r,
                     kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
            "Recv");
  }
  return out;
}

std::string broadcast_bytes(const std::string& bytes, int root) {
  if (mpi_size() == 1) return bytes;
  int64_t size = static_cast<int64_t>(bytes.size());
  check(MPI_Bcast(&size, 1, MPI_INT64_T, root, MPI_COMM_WORLD), "Bcast");
  std::string out = mpi_rank() == root ? bytes : std::string(static_cast<size_t>(size), '\0');
  const int64_t chunk = int64_t{1} << 30;
  for (int64_t off = 0; off < size; off += chunk) {
    const int count = static_cast<int>(std::min(chunk, size - off));
    check(MPI_Bcast(out.data() + off, count, MPI_BYTE, root, MPI_COMM_WORLD), "Bcast");
  }
  return out;
}

bool allreduce_or(bool flag) {
  if (mpi_size() == 1) return flag;
  int in = flag ? 1 : 0, out = 0;
  check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD), "Allreduce");
  return out != 0;
}

int64_t allreduce_max(int64_t v) {
  if (mpi_size() == 1) return v;
  int64_t out = 0;
  check(MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "Allreduce");
  return out;
}

double allreduce_sum(double v) {
  if (mpi_size() == 1) return v;
  double out = 0;
  check(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "Allreduce");
  return out;
}

void barrier() {
  if (mpi_size() <= 1) return;
  // Ranks that finish early sleep here instead of spinning a core in MPI's busy poll: a nonblocking barrier
  // tested with a growing sleep (50 us .. 2 ms), so waiting costs (almost) no CPU and adds at most ~2 ms.
  MPI_Request req;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "Ibarrier");
  long sleep_ns = 50'000;
  for (;;) {
    int done = 0;
    check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "Test");
    if (done) return;
    const timespec ts{0, sleep_ns};
    nanosleep(&ts, nullptr);
    sleep_ns = std::min<long>(sleep_ns * 2, 2'000'000);
  }
}

void abort_job(int code) {
  if (mpi_active() && mpi_size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

std::vector<int> largest_first_schedule(const std::vector<double>& costs, int ranks) {
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  using Load = std::pair<double, int>;  // (load, rank): the least loaded, lowest rank first
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> heap;
  for (int r = 0; r < ranks; ++r) heap.push({0.0, r});
  std::vector<int> owner(costs.size(), 0);
  for (size_t i : order) {
    auto [load, r] = heap.top();
    heap.pop();
    owner[i] = r;
    heap.push({load + costs[i], r});
  }
  return owner;
}

void ByteWriter::put_string(const std::string& s) {
  put<uint64_t>(s.size());
  buf_.append(s);
}

std::string ByteReader::get_string() {
  std::string s(get<uint64_t>(), '\0');
  take(s.data(), s.size());
  return s;
}

void ByteReader::take(void* dst, size_t n) {
  if (pos_ + n > buf_.size()) throw InternalError("ByteReader: truncated message");
  if (n) std::memcpy(dst, buf_.data() + pos_, n);
  pos_ += n;
}

}  // namespace amosprep
