#include "amosprep/core_sharing.hpp"

#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

namespace amosprep {

int core_share(int offered, int lent, int working, int mine) {
  if (offered <= 0 || working <= 0) return 0;
  const int idle = offered + lent;
  const int fair = (idle + working - 1) / working;
  return std::clamp(fair - mine, 0, offered);
}

namespace {

enum : int32_t { kWorking = 0, kOffering = 1, kLent = 2 };

struct Slot {  // one per rank of the node, in memory shared by them
  int32_t state;
  int32_t threads;
};

std::atomic_ref<int32_t> state_of(Slot& s) { return std::atomic_ref<int32_t>(s.state); }

// OpenMP places bind each thread to the places of the starting mask; a widened mask would not reach them.
bool openmp_threads_pinned() {
  const char* bind = std::getenv("OMP_PROC_BIND");
  if (bind && *bind && strcasecmp(bind, "false") != 0) return true;
  return std::getenv("OMP_PLACES") != nullptr;
}

}  // namespace

struct CoreSharing::State {
  bool active = false;
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Win win = MPI_WIN_NULL;
  Slot* table = nullptr;
  int me = 0, local = 1;
  int own_threads = 1, threads = 1;
  std::vector<cpu_set_t> masks;  // every local rank's CPU mask at the start
  std::vector<int> borrowed;     // local ranks whose cores this rank runs on
  bool offered = false;
  bool mask_refused = false;  // the OS refused a widened mask once (a cpuset per task): stop asking

  // Returns false (and changes nothing) when the mask cannot be applied, e.g. outside this job's cpuset.
  bool run_on(const cpu_set_t& mask, int n) {
    if (sched_setaffinity(0, sizeof mask, &mask) != 0) return false;
    omp_set_num_threads(n);
    // OpenMP workers started from now on inherit the calling thread's mask; those already running take it here.
#pragma omp parallel num_threads(n)
    (void)sched_setaffinity(0, sizeof mask, &mask);
    threads = n;
    return true;
  }

  void give_back() {
    if (borrowed.empty()) return;
    run_on(masks[static_cast<size_t>(me)], own_threads);  // first stop using the cores, then release them
    for (int j : borrowed) state_of(table[j]).store(kOffering, std::memory_order_release);
    borrowed.clear();
  }
};

CoreSharing::CoreSharing(bool enabled) : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.own_threads = s.threads = omp_get_max_threads();
  int initialised = 0, finalized = 0, world = 1;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  if (!initialised || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world == 1) return;
  // Every rank takes the same branch: the environment could differ between ranks.
  int ok = enabled && !openmp_threads_pinned() ? 1 : 0, all_ok = 0;
  if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS || !all_ok) return;
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &s.node) != MPI_SUCCESS)
    return;
  MPI_Comm_rank(s.node, &s.me);
  MPI_Comm_size(s.node, &s.local);
  if (s.local == 1) {  // alone on its node (the other nodes decide for themselves)
    MPI_Comm_free(&s.node);
    return;
  }
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ok = sched_getaffinity(0, sizeof mine, &mine) == 0 ? 1 : 0;
  s.masks.resize(static_cast<size_t>(s.local));
  ok = ok && MPI_Allgather(&mine, sizeof mine, MPI_BYTE, s.masks.data(), sizeof mine, MPI_BYTE, s.node) == MPI_SUCCESS;
  void* base = nullptr;
  const MPI_Aint bytes = s.me == 0 ? static_cast<MPI_Aint>(s.local * sizeof(Slot)) : 0;
  ok = ok && MPI_Win_allocate_shared(bytes, sizeof(Slot), MPI_INFO_NULL, s.node, &base, &s.win) == MPI_SUCCESS;
  if (ok) {
    MPI_Win_set_errhandler(s.win, MPI_ERRORS_RETURN);
    MPI_Aint size = 0;
    int unit = 0;
    ok = MPI_Win_shared_query(s.win, 0, &size, &unit, &base) == MPI_SUCCESS && base != nullptr;
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, s.node);
  if (!ok) {
    if (s.win != MPI_WIN_NULL) MPI_Win_free(&s.win);
    MPI_Comm_free(&s.node);
    return;
  }
  s.table = static_cast<Slot*>(base);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, s.win);
  s.table[s.me].threads = s.own_threads;
  state_of(s.table[s.me]).store(kWorking, std::memory_order_release);
  MPI_Win_sync(s.win);
  MPI_Barrier(s.node);
  MPI_Win_sync(s.win);
  s.active = true;
}

CoreSharing::~CoreSharing() {
  // Without close() (an error ends the job): stop using borrowed cores, but call nothing collective.
  if (s_ && s_->active) s_->give_back();
}

int CoreSharing::borrow() {
  State& s = *s_;
  if (!s.active || s.offered || s.mask_refused || omp_in_parallel()) return s.threads;
  int working = 0, offering = 0, lent = 0;
  for (int j = 0; j < s.local; ++j) {
    const int32_t st = state_of(s.table[j]).load(std::memory_order_acquire);
    working += st == kWorking;
    offering += st == kOffering;
    lent += st == kLent;
  }
  int want = core_share(offering, lent, working, static_cast<int>(s.borrowed.size()));
  if (want == 0) return s.threads;
  const size_t before = s.borrowed.size();
  for (int j = 0; j < s.local && want > 0; ++j) {
    int32_t expected = kOffering;
    if (j != s.me && state_of(s.table[j]).compare_exchange_strong(expected, kLent, std::memory_order_acq_rel)) {
      s.borrowed.push_back(j);
      --want;
    }
  }
  if (s.borrowed.size() == before) return s.threads;
  cpu_set_t mask = s.masks[static_cast<size_t>(s.me)];
  int n = s.own_threads;
  for (int j : s.borrowed) {
    CPU_OR(&mask, &mask, &s.masks[static_cast<size_t>(j)]);
    n += s.table[j].threads;
  }
  if (!s.run_on(mask, n)) {  // e.g. a cpuset that excludes the lenders' cores: lend them back, carry on alone
    for (size_t k = before; k < s.borrowed.size(); ++k)
      state_of(s.table[s.borrowed[k]]).store(kOffering, std::memory_order_release);
    s.borrowed.resize(before);
    s.mask_refused = true;
  }
  return s.threads;
}

void CoreSharing::offer_mine() {
  State& s = *s_;
  if (!s.active || s.offered) return;
  s.give_back();
  s.offered = true;
  state_of(s.table[s.me]).store(kOffering, std::memory_order_release);
}

void CoreSharing::close() {
  State& s = *s_;
  if (!s.active) return;
  s.give_back();
  s.active = false;
  MPI_Win_unlock_all(s.win);
  MPI_Win_free(&s.win);
  MPI_Comm_free(&s.node);
  s.table = nullptr;
}

}  // namespace amosprep
