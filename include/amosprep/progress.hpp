#pragma once
// Progress of a phase across all ranks, shown by rank 0: a bar on a terminal, plain lines in batch jobs.
// Only the main thread of each rank calls it (MPI_THREAD_FUNNELED). Other ranks send one small message per
// finished unit; rank 0 drains them between its own units and, at the end, until every rank has reported.
#include <chrono>
#include <cstdint>
#include <string>

namespace amosprep {

class Progress {
 public:
  /// `total` units of work (e.g. output voxels) in `count` items (case-stages) over all ranks.
  Progress(std::string phase, double total, int64_t count, bool quiet);

  /// This rank finished one item worth `units` (already-complete items count too, with `skipped`).
  void item_done(const std::string& item, double units, bool skipped);
  /// Rank 0: drain pending reports and redraw (cheap; call between items).
  void poll();
  /// Collective end of the phase: rank 0 waits for every rank's final report; all ranks return together.
  void finish();

 private:
  void record(double units, bool skipped, int from_rank, const std::string& item);
  void draw(bool final_line);

  std::string phase_;
  double total_ = 0, done_units_ = 0;
  int64_t count_ = 0, done_items_ = 0, skipped_items_ = 0;
  bool quiet_, tty_, drawn_complete_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
  std::string last_item_;
};

}  // namespace amosprep
