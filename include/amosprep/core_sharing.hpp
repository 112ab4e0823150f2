#pragma once
// Core sharing in the tail of a phase: a rank that has run out of work lends its cores to the ranks on the same
// node that still have some, which then run their OpenMP regions on more threads. A job of a few large cases no
// longer ends with one rank working and the others waiting. Outputs do not depend on thread counts, so they are
// unchanged.
//
// Ranks on a node share one small table (MPI shared memory): per rank its state (working, offering, lent) and
// OpenMP thread count. CPU masks are exchanged once. A borrower widens its CPU mask (the MPI launcher may have
// bound it to its own cores) to the lenders' and raises its thread count; it gives both back when its own work
// ends.
#include <cstdint>
#include <memory>
#include <vector>

namespace amosprep {

/// How many of the `offered` idle ranks' cores a working rank takes when `working` ranks (itself included) still
/// work, `lent` cores are already lent to ranks and `mine` of those to this one: an even share of all idle ranks,
/// rounded up, less what it holds; never more than is offered.
int core_share(int offered, int lent, int working, int mine);

class CoreSharing {
 public:
  /// Collective over all ranks. Inactive (every call a no-op) when `enabled` is false, with one rank per node,
  /// when OMP_PROC_BIND pins OpenMP threads, or when the node-shared table cannot be set up.
  explicit CoreSharing(bool enabled);
  ~CoreSharing();
  CoreSharing(const CoreSharing&) = delete;
  CoreSharing& operator=(const CoreSharing&) = delete;

  /// Takes this rank's share of the cores offered on its node, if any, and returns the OpenMP threads it now
  /// runs (its own count when it has borrowed nothing). Cheap: call it between parallel regions.
  int borrow();
  /// This rank has no more work in the phase: gives back what it borrowed and offers its own cores.
  void offer_mine();
  /// Collective: ends sharing (every rank must have called offer_mine() or have nothing to share).
  void close();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace amosprep
