// scipy 1.10 ndimage.zoom(mode='nearest', grid_mode=True) / skimage 0.19 resize / batchgenerators
// resize_segmentation, as separable passes with exact re-evaluation, and nnU-Net v1 resample_patient on top.
#include "amosprep/resample.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>

#include "amosprep/error.hpp"
#include "amosprep/isa.hpp"
#include "amosprep/pages.hpp"

namespace amosprep {
namespace AMOSPREP_ISA_NS {  // compiled once per instruction-set variant (isa.hpp)
namespace {

// scipy's literal for the cubic B-spline pole (1 ulp away from sqrt(3.0) - 2.0).
constexpr double kPole = -0.267949192431122706472553658494127633;
// scipy >= 1.6 pads by 12 voxels (edge mode) before prefiltering for mode 'nearest'.
constexpr int64_t kSplinePad = 12;
// Label values within this distance of 0.5 are re-evaluated in scipy's order (separable error is ~1e-15).
constexpr double kLabelTieBand = 1e-9;
// |separable - tensor order| <= kDataGuard * (weighted sum of |coefficients|): about 80 roundings of u = 2^-53
// each, with a safety factor of 3. The weighted sum is bounded in turn by the largest |coefficient| of the kernel's
// rows times the product of the axes' largest sums of |weights|.
constexpr double kDataGuard = 256.0 * 0x1p-53;
// Prefilter window around a label's bounding box: truncation errors reach the box at ~z^(2*margin) = 1e-27.
constexpr int64_t kLabelWindowMargin = 24;
// Margin (in coefficients) beyond which a cubic one-hot cannot reach 0.5 (its tail there is below 0.1).
constexpr int64_t kCubicReach = 2;
// Label 0 after the single negative label: the one-hot values of all labels sum to 1 (the spline reproduces
// constants), so label 0 can reach 0.5 where the negative label was written only if the negative label's value is
// below 0.5 + kPartitionSlack or a positive label's value is not negligible. Beyond kPartitionReach coefficients
// (along one axis) from a label's box, its cubic one-hot value is below 4.73 * 0.268^21 * 3 * 3 < 5e-11: per axis,
// the prefilter's impulse response is h(k) = sqrt(3) |z|^|k|, every integer of the mirror extension is an image of
// exactly one voxel, so a row sums |h| over all integers (3) or, for a box at distance >= d, over a two-sided tail
// (4.73 |z|^d); the weights are nonnegative and sum to 1. Order 1 reaches no further than its taps.
constexpr int64_t kPartitionReach = 20;
constexpr double kPartitionTail = 5e-11;
constexpr double kPartitionSlack = 1e-6;
constexpr int kTileLanes = 32;     // lines prefiltered together along axes 0 and 1
constexpr int kRowLanes = 4;       // rows prefiltered together along axis 2
constexpr int64_t kSlabBatch = 8;  // z slabs computed between two emissions of output planes
constexpr int64_t kSliceBatch = 16;  // slices per zoom in slice-wise (separate-z) resizing

int threads_for(int64_t work) {
  return static_cast<int>(
      std::clamp<int64_t>(work / ::amosprep::resample_detail::parallel_grain(), 1, omp_get_max_threads()));
}

struct Range {
  int64_t lo = 0, hi = 0;
  int64_t size() const { return hi - lo; }
  bool empty() const { return hi <= lo; }
};

inline int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

// Uninitialised, reusable storage: pages are first touched by the (parallel) stage that fills them. It grows to
// twice what is asked: only touched pages become resident, and a later, slightly larger case then reuses the
// pages already touched instead of first-touching a whole new buffer (~0.5 CPU s/GiB on our VMs).
template <class T>
struct RawBuffer {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p;
  size_t n = 0;
  T* get(size_t need) {
    if (need > n) {
      p.reset();
      auto whole_pages = [](size_t b) { return (b + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes; };
      size_t bytes = whole_pages(2 * need * sizeof(T));
      T* raw = static_cast<T*>(std::aligned_alloc(kHugePageBytes, bytes));
      if (!raw) {  // no room for the headroom (e.g. an address-space limit): exactly what is needed
        bytes = whole_pages(need * sizeof(T));
        raw = static_cast<T*>(std::aligned_alloc(kHugePageBytes, bytes));
      }
      if (!raw) throw std::bad_alloc();
      advise_huge_pages(raw, bytes);
      p.reset(raw);
      n = bytes / sizeof(T);
    }
    return p.get();
  }
  void release() {
    p.reset();
    n = 0;
  }
};

// Gives `a` the shape `s`; the contents are unspecified (fresh storage is zero, reused storage keeps values).
template <class T>
void size_array(Array3<T>& a, const Shape3& s) {
  const size_t n = static_cast<size_t>(voxel_count(s));
  a.shape = s;
  if (a.v.capacity() < n) {
    std::vector<T> fresh;
    fresh.reserve(n);
    advise_huge_pages(fresh.data(), n * sizeof(T));
    fresh.resize(n);
    a.v.swap(fresh);
  } else {
    a.v.resize(n);
  }
}

// What the coefficient buffer holds after a shareable zoom (a whole-volume data zoom): the same input, padding
// and layout let the next one (another stage of the same case) skip the prefilter steps already done.
struct CoefKey {
  const void* src = nullptr;
  Shape3 shape{};
  size_t elem = 0;
  uint64_t hash = 0;  // of the source bytes: a buffer reused at the same address must not match
  Range need[3];
  int64_t pad[3] = {0, 0, 0}, ny = 0, nx = 0;
  bool operator==(const CoefKey& o) const {
    for (int a = 0; a < 3; ++a)
      if (need[a].lo != o.need[a].lo || need[a].hi != o.need[a].hi || pad[a] != o.pad[a]) return false;
    return src == o.src && shape == o.shape && elem == o.elem && hash == o.hash && ny == o.ny && nx == o.nx;
  }
};

struct Workspace {
  RawBuffer<double> coef;         // prefiltered coefficients (order 3)
  bool coef_shared = false;       // coef holds what coef_key describes, slab states in coef_state
  CoefKey coef_key;
  std::vector<uint8_t> coef_state;  // per slab: 0 prefiltered along axis 0, 1 also axis 1, 2 all three
  RawBuffer<double> ring;         // recent z slabs after the axis-1 pass
  RawBuffer<double> row_max;      // per slab of the ring: the largest |coefficient| of each of its source rows
  RawBuffer<float> window;        // output planes not yet handed on (streamed zooms)
  void release() {
    coef_shared = false;
    coef.release();
    ring.release();
    row_max.release();
    window.release();
  }
};

// Zoom::run's default: nothing between two batches of output planes.
struct NoBatchHook {
  void operator()(int64_t, int64_t) const {}
};

Workspace& workspace() {
  static thread_local Workspace ws;
  return ws;
}

// Per-thread scratch: a line tile, one output row, one slab after the axis-2 pass.
struct Scratch {
  std::vector<double> tile, line, t1;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// ---- sampling tables ---------------------------------------------------------------------------------------

// How one output axis samples its source axis: `taps` source indices (in padded coordinates, clamped) and
// weights per output index. An inactive axis (2-D mode) is the identity with one tap of weight 1.
struct AxisMap {
  int taps = 1;
  bool prefilter = false;
  int64_t n_in = 0, n_out = 0, pad = 0, n_src = 0;
  std::vector<int64_t> idx;
  std::vector<double> w;
  double abs_weight_sum = 1.0;  // the largest sum of |weights| of one output index
  const int64_t* idx_at(int64_t k) const { return idx.data() + k * taps; }
  const double* w_at(int64_t k) const { return w.data() + k * taps; }
};

AxisMap make_axis_map(int64_t n_in, int64_t n_out, int order, bool active) {
  AxisMap m;
  m.n_in = n_in;
  m.n_out = n_out;
  if (!active) {
    AMOSPREP_VERIFY(n_in == n_out, "inactive resampling axis must keep its size");
    m.n_src = n_in;
    m.idx.resize(static_cast<size_t>(n_out));
    m.w.assign(static_cast<size_t>(n_out), 1.0);
    for (int64_t k = 0; k < n_out; ++k) m.idx[static_cast<size_t>(k)] = k;
    return m;
  }
  m.taps = order + 1;
  m.prefilter = order > 1;
  m.pad = m.prefilter ? kSplinePad : 0;
  m.n_src = n_in + 2 * m.pad;
  m.idx.resize(static_cast<size_t>(n_out * m.taps));
  m.w.resize(static_cast<size_t>(n_out * m.taps));
  const double scale = static_cast<double>(n_in) / static_cast<double>(n_out);
  for (int64_t k = 0; k < n_out; ++k) {
    const double cc = ((static_cast<double>(k) + 0.5) * scale - 0.5) + static_cast<double>(m.pad);
    int64_t* idx = m.idx.data() + k * m.taps;
    double* w = m.w.data() + k * m.taps;
    int64_t start;
    if (order == 0) {
      start = static_cast<int64_t>(std::floor(cc + 0.5));
      w[0] = 1.0;
    } else {
      const double f = std::floor(cc);
      const double t = cc - f;
      if (order == 1) {
        start = static_cast<int64_t>(f);
        w[0] = 1.0 - t;
        w[1] = 1.0 - w[0];
      } else {
        start = static_cast<int64_t>(f) - 1;
        const double y = t, z = 1.0 - t;
        w[1] = ((((y * y) * (y - 2.0)) * 3.0) + 4.0) / 6.0;
        w[2] = ((((z * z) * (z - 2.0)) * 3.0) + 4.0) / 6.0;
        w[0] = ((z * z) * z) / 6.0;
        w[3] = ((1.0 - w[0]) - w[1]) - w[2];
      }
    }
    for (int j = 0; j < m.taps; ++j) idx[j] = clamp_index(start + j, m.n_src);
  }
  m.abs_weight_sum = 0.0;
  for (int64_t k = 0; k < n_out; ++k) {
    double sum = 0.0;
    for (int j = 0; j < m.taps; ++j) sum += std::fabs(m.w_at(k)[j]);
    m.abs_weight_sum = std::max(m.abs_weight_sum, sum);
  }
  return m;
}

void check_order(int order) {
  if (order != 0 && order != 1 && order != 3)
    throw UsageError("resampling order " + std::to_string(order) + " is not supported (0, 1 or 3)");
}

// ---- the cubic prefilter (scipy 1.10 apply_filter with the 'nearest'/'reflect' initialisation) --------------

// Prefilters lines stored interleaved, c[i * lanes + l] for i in [0, len). The lines are the window
// [lo, lo + len) of lines of full length n; at_start / at_end say whether the window reaches the line's ends.
// A window that covers the whole line gives scipy's result bit for bit. Otherwise the line outside the window is
// taken as zero, which is exact up to ~z^(distance to the window edge).
template <int kLanes>
void prefilter_tile(double* c, int64_t len, int lanes_rt, int64_t n, bool at_start, bool at_end) {
  const int64_t lanes = kLanes > 0 ? kLanes : lanes_rt;
  if (n <= 1 || len <= 0) return;
  const double z = kPole;
  const double gain = (1.0 - z) * (1.0 - 1.0 / z);
  for (int64_t i = 0; i < len * lanes; ++i) c[i] *= gain;

  if (at_start) {
    const double zn = std::pow(z, static_cast<double>(n));
    double acc[kLanes > 0 ? kLanes : kTileLanes];
    double c0[kLanes > 0 ? kLanes : kTileLanes];
    auto line_at = [&](int64_t i) -> const double* { return i < len ? c + i * lanes : nullptr; };
    const double* last = line_at(n - 1);
    for (int64_t l = 0; l < lanes; ++l) {
      c0[l] = c[l];
      acc[l] = c[l] + zn * (last ? last[l] : 0.0);
    }
    double zi = z;
    for (int64_t i = 1; i < n - 1; ++i) {
      const double* a = line_at(i);
      const double* b = line_at(n - 1 - i);
      if (a && b) {
        for (int64_t l = 0; l < lanes; ++l) acc[l] += zi * (a[l] + zn * b[l]);
      } else if (a) {
        for (int64_t l = 0; l < lanes; ++l) acc[l] += zi * (a[l] + zn * 0.0);
      } else if (b) {
        for (int64_t l = 0; l < lanes; ++l) acc[l] += zi * (0.0 + zn * b[l]);
      } else {
        for (int64_t l = 0; l < lanes; ++l) acc[l] += zi * (0.0 + zn * 0.0);
      }
      zi *= z;
    }
    // i = n - 1: scipy reads c[n - 1 - i] = c[0], i.e. the running sum itself.
    for (int64_t l = 0; l < lanes; ++l) acc[l] += zi * ((last ? last[l] : 0.0) + zn * acc[l]);
    const double f = z / (1.0 - zn * zn);
    for (int64_t l = 0; l < lanes; ++l) {
      acc[l] *= f;
      acc[l] += c0[l];
      c[l] = acc[l];
    }
  }
  for (int64_t i = 1; i < len; ++i) {
    double* cur = c + i * lanes;
    const double* prev = cur - lanes;
    for (int64_t l = 0; l < lanes; ++l) cur[l] += z * prev[l];
  }
  double* lastc = c + (len - 1) * lanes;
  if (at_end) {
    const double f = z / (z - 1.0);
    for (int64_t l = 0; l < lanes; ++l) lastc[l] *= f;
  } else {
    for (int64_t l = 0; l < lanes; ++l) lastc[l] = z * (0.0 - lastc[l]);
  }
  for (int64_t i = len - 2; i >= 0; --i) {
    double* cur = c + i * lanes;
    const double* next = cur + lanes;
    for (int64_t l = 0; l < lanes; ++l) cur[l] = z * (next[l] - cur[l]);
  }
}

// ---- one zoom over a box ---------------------------------------------------------------------------------------

// What one zoom computes: output box `out`, the source box `need` it reads (padded coordinates) and, for
// prefiltered axes, the prefilter window `win` (padded coordinates, contains `need`).
struct Region {
  Range out[3], need[3], win[3];
};

Range need_of(const AxisMap& m, Range out) {
  if (out.empty()) return {};
  return {m.idx_at(out.lo)[0], m.idx_at(out.hi - 1)[m.taps - 1] + 1};
}

Region full_region(const AxisMap* const maps[3]) {
  Region r;
  for (int a = 0; a < 3; ++a) {
    r.out[a] = {0, maps[a]->n_out};
    r.need[a] = need_of(*maps[a], r.out[a]);
    r.win[a] = {0, maps[a]->n_src};
  }
  return r;
}

// Runs the separable passes of one zoom of `src` (values mapped through `value`, e.g. a one-hot) over a region,
// and evaluates single voxels in scipy's tensor order.
template <class T, class Value>
class Zoom {
 public:
  // share: a whole-volume zoom whose prefiltered coefficients the next shareable zoom of the same input may reuse
  // (its sampled ranges are widened to what any output size needs, so both use one layout).
  Zoom(const Array3<T>& src, Value value, const AxisMap* const maps[3], const Region& reg, bool want_bound,
       bool share = false)
      : src_(src), value_(value), reg_(reg), bound_(want_bound) {
    for (int a = 0; a < 3; ++a) m_[a] = maps[a];
    prefiltered_ = m_[2]->prefilter;  // order 3: every active axis; axis 2 is always active
    share_ = share && prefiltered_;
    for (int a = 0; a < 3 && share_; ++a)
      share_ = m_[a]->prefilter && reg_.win[a].lo == 0 && reg_.win[a].hi == m_[a]->n_src;
    for (int a = 0; a < 3 && share_; ++a) {  // cubic taps of any output size lie in [-2, n_in + 2) before padding
      const int64_t pad = m_[a]->pad;
      reg_.need[a] = {std::max<int64_t>(0, std::min(reg_.need[a].lo, pad - 2)),
                      std::min(m_[a]->n_src, std::max(reg_.need[a].hi, pad + m_[a]->n_in + 2))};
    }
    for (int a = 0; a < 3; ++a) {
      if (m_[a]->prefilter) {
        AMOSPREP_VERIFY(reg_.win[a].lo <= reg_.need[a].lo && reg_.need[a].hi <= reg_.win[a].hi,
                        "prefilter window must contain the sampled range");
        const int64_t pad = m_[a]->pad;
        unp_[a] = {clamp_index(reg_.win[a].lo - pad, m_[a]->n_in),
                   clamp_index(reg_.win[a].hi - 1 - pad, m_[a]->n_in) + 1};
      } else {
        unp_[a] = reg_.need[a];
      }
    }
    ny_ = std::max(unp_[1].size(), reg_.need[1].size());
    nx_ = std::max(unp_[2].size(), reg_.need[2].size());
    r1_ = reg_.out[1].size();
    r2_ = reg_.out[2].size();
  }

  // Runs the zoom and calls sink(k0, k1, line, bound) once for every output row of the region: line[k2 - out[2].lo]
  // is the separable value, bound (-1 without want_bound) an upper bound of every voxel's sum of |coefficient| *
  // |weights| in that row. The sink runs inside the OpenMP team (distinct rows on distinct threads).
  //
  // Order 3: the coefficients are prefiltered along axis 0 for the whole region first. Then batches of z slabs are
  // streamed: each slab is prefiltered along axes 1 and 2 and interpolated along axes 2 and 1 into a ring of slabs,
  // and every output plane whose axis-0 taps are complete is emitted.
  // The most output planes one batch of slabs completes (sizes the window of a streamed zoom).
  int64_t max_planes_per_batch() const {
    const AxisMap& m0 = *m_[0];
    const int64_t nz = reg_.need[0].size(), z0 = reg_.need[0].lo;
    int64_t next = reg_.out[0].lo, most = 0;
    for (int64_t zb = 0; zb < nz; zb += kSlabBatch) {
      const int64_t ze = std::min(nz, zb + kSlabBatch);
      int64_t end = next;
      while (end < reg_.out[0].hi && m0.idx_at(end)[m0.taps - 1] - z0 < ze) ++end;
      most = std::max(most, end - next);
      next = end;
    }
    return most;
  }

  // after_batch(first, end) runs on the calling thread, outside any parallel region, once output planes
  // [first, end) have all been passed to the sink (and before any later plane is), e.g. to hand them on.
  template <class Sink, class AfterBatch = NoBatchHook>
  void run(Workspace& ws, Sink&& sink, AfterBatch&& after_batch = AfterBatch{}) {
    const AxisMap& m0 = *m_[0];
    const int64_t nz = reg_.need[0].size(), z0 = reg_.need[0].lo;
    const Range o0 = reg_.out[0];
    used_.assign(static_cast<size_t>(nz), 0);
    for (int64_t k0 = o0.lo; k0 < o0.hi; ++k0)
      for (int j = 0; j < m0.taps; ++j) used_[static_cast<size_t>(m0.idx_at(k0)[j] - z0)] = 1;
    threads_ = team_size();
    if (prefiltered_) {
      CoefKey key;
      if (share_) key = coef_key();
      const bool reuse = share_ && ws.coef_shared && ws.coef_key == key;
      ws.coef_shared = false;  // valid again only once this zoom has completed
      coef_ = ws.coef.get(static_cast<size_t>(nz * ny_ * nx_));
      if (reuse) {
        state_.swap(ws.coef_state);
      } else {
        fill_and_prefilter_axis0();
        state_.assign(static_cast<size_t>(nz), 0);
      }
      // an inactive axis 1 keeps the rows of stage 1; else compute_slab prefilters each slab along axis 1 first
      if (!m_[1]->prefilter) std::fill(state_.begin(), state_.end(), uint8_t{1});
      run_slabs(ws, sink, after_batch);
      if (share_) {
        ws.coef_key = key;
        ws.coef_state.swap(state_);
        ws.coef_shared = true;
      }
      return;
    }
    run_slabs(ws, sink, after_batch);
  }

 private:
  template <class Sink, class AfterBatch>
  void run_slabs(Workspace& ws, Sink& sink, AfterBatch& after_batch) {
    const AxisMap& m0 = *m_[0];
    const int64_t nz = reg_.need[0].size(), z0 = reg_.need[0].lo;
    const Range o0 = reg_.out[0];
    const int64_t slab = r1_ * r2_, nring = kSlabBatch + m0.taps - 1;
    double* ring = ws.ring.get(static_cast<size_t>(nring * slab));
    const Range nyr = reg_.need[1];
    double* row_max = bound_ ? ws.row_max.get(static_cast<size_t>(nring * nyr.size())) : nullptr;
    // bound of an output row = weight sums times the largest |coefficient| of the source rows its kernel reads
    const double weight_sums = m_[0]->abs_weight_sum * m_[1]->abs_weight_sum * m_[2]->abs_weight_sum;
    const size_t t1n = static_cast<size_t>(reg_.need[1].size() * r2_);
    size_t tile_n = static_cast<size_t>(prefiltered_ ? reg_.win[2].size() * kRowLanes : reg_.need[2].size());
    if (prefiltered_ && m_[1]->prefilter) tile_n = std::max(tile_n, static_cast<size_t>(reg_.win[1].size() * kTileLanes));
    // One parallel region per batch of slabs, and after_batch between them on the calling thread: the hook's own
    // parallel loops (compression, normalisation) get the whole team, and each batch sizes its team anew.
    int64_t next = o0.lo;  // first output plane not emitted yet
    for (int64_t zb = 0; zb < nz; zb += kSlabBatch) {
      const int64_t ze = std::min(nz, zb + kSlabBatch);
      // axis 0: every output plane whose last tap lies in the slabs done so far
      int64_t end = next;
      while (end < o0.hi && m0.idx_at(end)[m0.taps - 1] - z0 < ze) ++end;
      threads_ = team_size();
#pragma omp parallel num_threads(threads_)
      {
        Scratch& sc = scratch();
        if (sc.t1.size() < t1n) sc.t1.resize(t1n);
        if (sc.tile.size() < tile_n) sc.tile.resize(tile_n);
        if (sc.line.size() < static_cast<size_t>(r2_)) sc.line.resize(static_cast<size_t>(r2_));
#pragma omp for schedule(dynamic, 1)
        for (int64_t zs = zb; zs < ze; ++zs) {
          if (!used_[static_cast<size_t>(zs)]) continue;
          compute_slab(zs, sc, ring + (zs % nring) * slab, bound_ ? row_max + (zs % nring) * nyr.size() : nullptr);
        }
        double* line = sc.line.data();
#pragma omp for schedule(static)
        for (int64_t r = 0; r < (end - next) * r1_; ++r) {
          const int64_t k0 = next + r / r1_, k1r = r % r1_;
          const int64_t* idx = m0.idx_at(k0);
          const double* src[4];
          for (int j = 0; j < m0.taps; ++j) src[j] = ring + ((idx[j] - z0) % nring) * slab + k1r * r2_;
          weighted_sum(line, src, m0.w_at(k0), m0.taps, r2_);
          double bound = -1.0;
          if (bound_) {
            const AxisMap& m1 = *m_[1];
            const int64_t* idx1 = m1.idx_at(reg_.out[1].lo + k1r);
            double largest = 0.0;
            for (int j = 0; j < m0.taps; ++j) {
              const double* rm = row_max + ((idx[j] - z0) % nring) * nyr.size() - nyr.lo;
              for (int j1 = 0; j1 < m1.taps; ++j1) largest = std::max(largest, rm[idx1[j1]]);
            }
            bound = largest * weight_sums;
          }
          sink(k0, reg_.out[1].lo + k1r, static_cast<const double*>(line), bound);
        }
      }
      if (end > next) after_batch(next, end);
      next = end;
    }
  }

 public:
  // scipy's evaluation of output voxel (k0, k1, k2): coefficients times the axis weights in axis order, summed
  // over the kernel in C order.
  double exact(int64_t k0, int64_t k1, int64_t k2) const {
    const int64_t* i0 = m_[0]->idx_at(k0);
    const int64_t* i1 = m_[1]->idx_at(k1);
    const int64_t* i2 = m_[2]->idx_at(k2);
    const double* w0 = m_[0]->w_at(k0);
    const double* w1 = m_[1]->w_at(k1);
    const double* w2 = m_[2]->w_at(k2);
    double t = 0.0;
    for (int j0 = 0; j0 < m_[0]->taps; ++j0)
      for (int j1 = 0; j1 < m_[1]->taps; ++j1)
        for (int j2 = 0; j2 < m_[2]->taps; ++j2) t += ((coef(i0[j0], i1[j1], i2[j2]) * w0[j0]) * w1[j1]) * w2[j2];
    return t;
  }

 private:
  // Identity of this zoom's input and coefficient layout (the source bytes hashed 8 at a time).
  CoefKey coef_key() const {
    CoefKey k;
    k.src = src_.data();
    k.shape = src_.shape;
    k.elem = sizeof(T);
    const auto* b = reinterpret_cast<const unsigned char*>(src_.data());
    const size_t n = src_.size() * sizeof(T);
    // four independent chains over interleaved words (one chain is latency-bound), then combined
    uint64_t lane[4] = {0x243F6A8885A308D3ull ^ n, 0x13198A2E03707344ull, 0xA4093822299F31D0ull, 0x082EFA98EC4E6C89ull};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
      for (int l = 0; l < 4; ++l) {
        uint64_t w;
        std::memcpy(&w, b + i + 8 * l, 8);
        lane[l] = (lane[l] ^ w) * 0x9E3779B97F4A7C15ull;
        lane[l] ^= lane[l] >> 29;
      }
    uint64_t h = lane[0];
    for (int l = 1; l < 4; ++l) h = (h ^ lane[l]) * 0x9E3779B97F4A7C15ull;
    for (; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
    k.hash = h;
    for (int a = 0; a < 3; ++a) {
      k.need[a] = reg_.need[a];
      k.pad[a] = m_[a]->pad;
    }
    k.ny = ny_;
    k.nx = nx_;
    return k;
  }

  double coef(int64_t i0, int64_t i1, int64_t i2) const {
    if (prefiltered_)
      return coef_[((i0 - reg_.need[0].lo) * ny_ + (i1 - reg_.need[1].lo)) * nx_ + (i2 - reg_.need[2].lo)];
    return value_(src_(i0, i1, i2));
  }

  // Stage 1: source values (one-hot or widened data, edge padding by clamping) prefiltered along axis 0 over the
  // window, kept for the sampled z range. Only distinct (y, x) lines are computed: the padding replicates them.
  void fill_and_prefilter_axis0() {
    const Range uy = unp_[1], ux = unp_[2], wz = reg_.win[0], nzr = reg_.need[0];
    const AxisMap& m0 = *m_[0];
    const int64_t nxb = (ux.size() + kTileLanes - 1) / kTileLanes;
    if (!m0.prefilter) {  // inactive axis 0 (2-D or 1-D images): plain copy
#pragma omp parallel for schedule(static) num_threads(threads_)
      for (int64_t zy = 0; zy < nzr.size() * uy.size(); ++zy) {
        const int64_t zs = zy / uy.size(), y = uy.lo + zy % uy.size();
        const T* s = &src_(nzr.lo + zs, y, ux.lo);
        double* d = coef_ + (zs * ny_ + (y - uy.lo)) * nx_;
        for (int64_t x = 0; x < ux.size(); ++x) d[x] = value_(s[x]);
      }
      return;
    }
#pragma omp parallel num_threads(threads_)
    {
      std::vector<double>& tile = scratch().tile;
      if (tile.size() < static_cast<size_t>(wz.size() * kTileLanes))
        tile.resize(static_cast<size_t>(wz.size() * kTileLanes));
#pragma omp for schedule(dynamic, 4)
      for (int64_t job = 0; job < uy.size() * nxb; ++job) {
        const int64_t y = uy.lo + job / nxb, x0 = ux.lo + (job % nxb) * kTileLanes;
        const int lanes = static_cast<int>(std::min<int64_t>(kTileLanes, ux.hi - x0));
        double* c = tile.data();
        for (int64_t zp = wz.lo; zp < wz.hi; ++zp) {
          const T* s = &src_(clamp_index(zp - m0.pad, m0.n_in), y, x0);
          double* d = c + (zp - wz.lo) * lanes;
          for (int l = 0; l < lanes; ++l) d[l] = value_(s[l]);
        }
        prefilter_tile<0>(c, wz.size(), lanes, m0.n_src, wz.lo == 0, wz.hi == m0.n_src);
        for (int64_t zp = nzr.lo; zp < nzr.hi; ++zp) {
          const double* s = c + (zp - wz.lo) * lanes;
          double* d = coef_ + ((zp - nzr.lo) * ny_ + (y - uy.lo)) * nx_ + (x0 - ux.lo);
          for (int l = 0; l < lanes; ++l) d[l] = s[l];
        }
      }
    }
  }

  // Stage 2, one slab: prefilter along axis 1 (lines over the y window, rows replicated by clamping), in place.
  // Done just before the slab's axis-2 pass, so the slab is still in cache for it.
  // tile: room for wy.size() * kTileLanes values.
  void prefilter_axis1(int64_t zs, double* tile) {
    const Range uy = unp_[1], ux = unp_[2], wy = reg_.win[1], nyr = reg_.need[1];
    const AxisMap& m1 = *m_[1];
    const int64_t nxb = (ux.size() + kTileLanes - 1) / kTileLanes;
    for (int64_t xb = 0; xb < nxb; ++xb) {
      const int64_t xs = xb * kTileLanes;
      const int lanes = static_cast<int>(std::min<int64_t>(kTileLanes, ux.size() - xs));
      double* c = tile;
      for (int64_t yp = wy.lo; yp < wy.hi; ++yp) {
        const double* s = coef_ + (zs * ny_ + (clamp_index(yp - m1.pad, m1.n_in) - uy.lo)) * nx_ + xs;
        double* d = c + (yp - wy.lo) * lanes;
        for (int l = 0; l < lanes; ++l) d[l] = s[l];
      }
      prefilter_tile<0>(c, wy.size(), lanes, m1.n_src, wy.lo == 0, wy.hi == m1.n_src);
      for (int64_t yp = nyr.lo; yp < nyr.hi; ++yp) {
        const double* s = c + (yp - wy.lo) * lanes;
        double* d = coef_ + (zs * ny_ + (yp - nyr.lo)) * nx_ + xs;
        for (int l = 0; l < lanes; ++l) d[l] = s[l];
      }
    }
  }

  // One z slab: its rows prefiltered along axis 2 (order 3; kept in coef_ for exact()) and interpolated along
  // axis 2 (into the thread's t1), then along axis 1 into ts; the largest |coefficient| of each row into row_max.
  void compute_slab(int64_t zs, Scratch& sc, double* ts, double* row_max) {
    const Range nyr = reg_.need[1], nxr = reg_.need[2];
    double* t1 = sc.t1.data();
    double* tile = sc.tile.data();
    if (!prefiltered_) {
      for (int64_t ys = 0; ys < nyr.size(); ++ys) {
        const T* s = &src_(reg_.need[0].lo + zs, nyr.lo + ys, nxr.lo);
        for (int64_t x = 0; x < nxr.size(); ++x) tile[x] = value_(s[x]);
        interpolate_row(tile, ys, t1, row_max);
      }
    } else if (state_[static_cast<size_t>(zs)] == 2) {  // prefiltered along every axis by an earlier zoom
      for (int64_t ys = 0; ys < nyr.size(); ++ys) interpolate_row(coef_ + (zs * ny_ + ys) * nx_, ys, t1, row_max);
    } else {
      if (state_[static_cast<size_t>(zs)] == 0) prefilter_axis1(zs, tile);
      state_[static_cast<size_t>(zs)] = 2;
      const Range ux = unp_[2], wx = reg_.win[2];
      const AxisMap& m2 = *m_[2];
      // window positions whose source column is not clamped (the edge padding replicates the first / last column)
      const int64_t in_lo = std::clamp<int64_t>(m2.pad, wx.lo, wx.hi);
      const int64_t in_hi = std::clamp<int64_t>(m2.pad + m2.n_in, in_lo, wx.hi);
      for (int64_t ys0 = 0; ys0 < nyr.size(); ys0 += kRowLanes) {
        const int lanes = static_cast<int>(std::min<int64_t>(kRowLanes, nyr.size() - ys0));
        if (lanes == kRowLanes) {  // interleave 4 rows: one 4-wide store per column
          const double* r[kRowLanes];
          for (int l = 0; l < kRowLanes; ++l) r[l] = coef_ + (zs * ny_ + ys0 + l) * nx_;
          auto put = [&](int64_t xp, int64_t col) {  // col: source column relative to ux.lo
            double* t = tile + (xp - wx.lo) * kRowLanes;
            t[0] = r[0][col];
            t[1] = r[1][col];
            t[2] = r[2][col];
            t[3] = r[3][col];
          };
          for (int64_t xp = wx.lo; xp < in_lo; ++xp) put(xp, clamp_index(xp - m2.pad, m2.n_in) - ux.lo);
          for (int64_t xp = in_lo; xp < in_hi; ++xp) put(xp, xp - m2.pad - ux.lo);
          for (int64_t xp = in_hi; xp < wx.hi; ++xp) put(xp, clamp_index(xp - m2.pad, m2.n_in) - ux.lo);
          prefilter_tile<kRowLanes>(tile, wx.size(), lanes, m2.n_src, wx.lo == 0, wx.hi == m2.n_src);
          double* d[kRowLanes];
          for (int l = 0; l < kRowLanes; ++l) d[l] = coef_ + (zs * ny_ + ys0 + l) * nx_;
          const double* t = tile + (nxr.lo - wx.lo) * kRowLanes;
          for (int64_t x = 0; x < nxr.size(); ++x, t += kRowLanes) {
            d[0][x] = t[0];
            d[1][x] = t[1];
            d[2][x] = t[2];
            d[3][x] = t[3];
          }
          interpolate_rows4(tile + (nxr.lo - wx.lo) * kRowLanes, ys0, t1, row_max);  // prefiltered: cubic, 4 taps
          continue;
        }
        for (int l = 0; l < lanes; ++l) {
          const double* s = coef_ + (zs * ny_ + ys0 + l) * nx_;
          for (int64_t xp = wx.lo; xp < wx.hi; ++xp)
            tile[(xp - wx.lo) * lanes + l] = s[clamp_index(xp - m2.pad, m2.n_in) - ux.lo];
        }
        prefilter_tile<0>(tile, wx.size(), lanes, m2.n_src, wx.lo == 0, wx.hi == m2.n_src);
        for (int l = 0; l < lanes; ++l) {
          double* d = coef_ + (zs * ny_ + ys0 + l) * nx_;
          for (int64_t xp = nxr.lo; xp < nxr.hi; ++xp) d[xp - nxr.lo] = tile[(xp - wx.lo) * lanes + l];
          interpolate_row(d, ys0 + l, t1, row_max);
        }
      }
    }
    const Range o1 = reg_.out[1];
    const AxisMap& m1 = *m_[1];
    for (int64_t k1 = o1.lo; k1 < o1.hi; ++k1) {
      const int64_t* idx = m1.idx_at(k1);
      const double* src[4];
      for (int j = 0; j < m1.taps; ++j) src[j] = t1 + (idx[j] - nyr.lo) * r2_;
      weighted_sum(ts + (k1 - o1.lo) * r2_, src, m1.w_at(k1), m1.taps, r2_);
    }
  }

  // Threads worth using for this region (small regions run on one thread: no barriers).
  int team_size() const {
    const int64_t work = reg_.need[0].size() * reg_.need[1].size() * std::max(reg_.win[2].size(), reg_.need[2].size()) +
                         reg_.out[0].size() * r1_ * r2_;
    return threads_for(work);
  }

  static void weighted_sum(double* d, const double* const* src, const double* w, int taps, int64_t n) {
    for (int64_t i = 0; i < n; ++i) d[i] = w[0] * src[0][i];
    for (int j = 1; j < taps; ++j) {
      const double* s = src[j];
      const double wj = w[j];
      for (int64_t i = 0; i < n; ++i) d[i] += wj * s[i];
    }
  }

  // m[l] = the largest |p[g * kRowLanes + l]| over groups g (lanes are independent, so this vectorises). NaN is
  // ignored: a NaN coefficient makes the value NaN, which is evaluated exactly anyway.
  static void lane_abs_maxima(const double* p, int64_t groups, double* m) {
    for (int l = 0; l < kRowLanes; ++l) m[l] = 0.0;
    for (int64_t g = 0; g < groups; ++g)
      for (int l = 0; l < kRowLanes; ++l) {
        const double a = std::fabs(p[g * kRowLanes + l]);
        m[l] = m[l] < a ? a : m[l];
      }
  }

  // interpolate_row for 4 cubic rows at once, read interleaved (row l's x is rows[(x - need[2].lo) * 4 + l]): the
  // same sums per row, one 4-wide operation per tap.
  void interpolate_rows4(const double* rows, int64_t ys0, double* t1, double* row_max) const {
    const AxisMap& m2 = *m_[2];
    const Range o2 = reg_.out[2];
    const int64_t base = reg_.need[2].lo;
    double* d[kRowLanes];
    for (int l = 0; l < kRowLanes; ++l) d[l] = t1 + (ys0 + l) * r2_;
    for (int64_t k = o2.lo; k < o2.hi; ++k) {
      const int64_t* idx = m2.idx_at(k);
      const double* w = m2.w_at(k);
      const double* a = rows + (idx[0] - base) * kRowLanes;
      const double* b = rows + (idx[1] - base) * kRowLanes;
      const double* c = rows + (idx[2] - base) * kRowLanes;
      const double* e = rows + (idx[3] - base) * kRowLanes;
      double v[kRowLanes];
      for (int l = 0; l < kRowLanes; ++l) v[l] = ((w[0] * a[l] + w[1] * b[l]) + w[2] * c[l]) + w[3] * e[l];
      for (int l = 0; l < kRowLanes; ++l) d[l][k - o2.lo] = v[l];
    }
    if (row_max) lane_abs_maxima(rows, reg_.need[2].size(), row_max + ys0);
  }

  // Axis-2 interpolation of one source row (row[x - need[2].lo]) into row ys of the slab buffer; with row_max,
  // also the row's largest |value|.
  void interpolate_row(const double* row, int64_t ys, double* t1, double* row_max) const {
    const AxisMap& m2 = *m_[2];
    const Range o2 = reg_.out[2];
    const int64_t base = reg_.need[2].lo;
    double* d = t1 + ys * r2_;
    if (m2.taps == 4) {
      for (int64_t k = o2.lo; k < o2.hi; ++k) {
        const int64_t* idx = m2.idx_at(k);
        const double* w = m2.w_at(k);
        d[k - o2.lo] = ((w[0] * row[idx[0] - base] + w[1] * row[idx[1] - base]) + w[2] * row[idx[2] - base]) +
                       w[3] * row[idx[3] - base];
      }
    } else {
      for (int64_t k = o2.lo; k < o2.hi; ++k) {
        const int64_t* idx = m2.idx_at(k);
        const double* w = m2.w_at(k);
        double acc = w[0] * row[idx[0] - base];
        for (int j = 1; j < m2.taps; ++j) acc += w[j] * row[idx[j] - base];
        d[k - o2.lo] = acc;
      }
    }
    if (row_max) {  // the row as groups of kRowLanes values, then the rest
      const int64_t n = reg_.need[2].size(), whole = n / kRowLanes * kRowLanes;
      double m[kRowLanes];
      lane_abs_maxima(row, whole / kRowLanes, m);
      for (int64_t x = whole; x < n; ++x) m[0] = std::max(m[0], std::fabs(row[x]));
      row_max[ys] = *std::max_element(m, m + kRowLanes);
    }
  }

  const Array3<T>& src_;
  Value value_;
  const AxisMap* m_[3];
  Region reg_;
  bool bound_;
  bool prefiltered_ = false;
  Range unp_[3];             // unpadded source range per axis feeding the windows (prefiltered axes)
  int64_t ny_ = 0, nx_ = 0;  // coefficient buffer row/plane strides
  int64_t r1_ = 0, r2_ = 0;
  double* coef_ = nullptr;
  std::vector<char> used_;  // slabs along axis 0 that some output plane reads
  std::vector<uint8_t> state_;  // per slab of coef_: prefilter steps done (see Workspace::coef_state)
  bool share_ = false;
  int threads_ = 1;
};

struct Widen {
  template <class U>
  double operator()(U v) const { return static_cast<double>(v); }
};
struct OneHot {
  float label;
  template <class U>
  double operator()(U v) const { return static_cast<float>(v) == label ? 1.0 : 0.0; }
};

void check_shapes(const Shape3& in, const Shape3& out) {
  for (int a = 0; a < 3; ++a)
    if (in[a] <= 0 || out[a] <= 0)
      throw InputError("", "",
                       "resampling needs non-empty shapes (got " + std::to_string(in[a]) + " -> " +
                           std::to_string(out[a]) + " on axis " + std::to_string(a) + ")");
}

// The value written for output voxel k2 of a row: the separable value when its float32 rounding (after the clip)
// is certain from the row's error bound, else scipy's tensor-order evaluation. With `norm` (the values' only
// consumer, monotone), an open rounding only needs scipy's evaluation where the two roundings normalise to
// different bits; otherwise the lower one is written, and every value between them normalises alike.
template <class ZoomT>
inline void finish_row(const ZoomT& zoom, int64_t k0, int64_t k1, const double* line, double bound, double clo,
                       double chi, int64_t n, float* d, const CtNormalization* norm = nullptr) {
  auto clip = [&](double v) { return std::min(std::max(v, clo), chi); };
  const double tol = kDataGuard * bound;
  // First every voxel's rounding of v - tol (vectorised), then scipy's evaluation where v + tol rounds otherwise.
  int uncertain = 0;  // an int: GCC 12 does not vectorise an |= reduction into a bool
  for (int64_t k2 = 0; k2 < n; ++k2) {
    const double v = line[k2] + 0.0;  // scipy's sum starts at +0.0, so it never yields -0.0
    const float r_lo = static_cast<float>(clip(v - tol)), r_hi = static_cast<float>(clip(v + tol));
    d[k2] = r_lo;
    uncertain |= !(r_lo == r_hi);
  }
  if (!uncertain) return;
  auto same_bits = [](float a, float b) {
    uint32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return x == y;
  };
  for (int64_t k2 = 0; k2 < n; ++k2) {
    const double v = line[k2] + 0.0;
    const float r_lo = static_cast<float>(clip(v - tol)), r_hi = static_cast<float>(clip(v + tol));
    if (r_lo == r_hi) continue;
    if (norm && !std::isnan(r_lo) && !std::isnan(r_hi) && same_bits((*norm)(r_lo), (*norm)(r_hi))) continue;
    d[k2] = static_cast<float>(clip(zoom.exact(k0, k1, k2)));
  }
}

// A 3-D zoom whose output planes go to `stream` through a window of planes instead of a whole output volume.
template <class ZoomT>
void resize_streamed(const Shape3& out_shape, ZoomT&& zoom, double clo, double chi, const PlaneStream& stream,
                     const CtNormalization* norm) {
  const int64_t plane = out_shape[1] * out_shape[2];
  const int64_t align = std::max<int64_t>(1, stream.align);
  const int64_t cap = std::min(out_shape[0], align + zoom.max_planes_per_batch());
  Workspace& ws = workspace();
  float* window = ws.window.get(static_cast<size_t>(cap * plane));
  int64_t w0 = 0;  // output plane held in window[0]
  std::exception_ptr failed;
  auto hand_on = [&](int64_t end) {  // passes on the whole multiples of `align` (all at the end of the volume)
    const int64_t n = end == out_shape[0] ? end - w0 : (end - w0) / align * align;
    if (n <= 0) return;
    if (!failed) {
      try {
        stream.take(w0, n, window);
      } catch (...) {
        failed = std::current_exception();
      }
    }
    std::memmove(window, window + n * plane, static_cast<size_t>((end - w0 - n) * plane) * sizeof(float));
    w0 += n;
  };
  zoom.run(
      ws,
      [&](int64_t k0, int64_t k1, const double* line, double bound) {
        finish_row(zoom, k0, k1, line, bound, clo, chi, out_shape[2], window + ((k0 - w0) * out_shape[1] + k1) * out_shape[2],
                   norm);
      },
      [&](int64_t, int64_t end) { hand_on(end); });
  if (failed) std::rethrow_exception(failed);
  AMOSPREP_VERIFY(w0 == out_shape[0], "streamed zoom did not hand on every output plane");
}

// skimage resize of a whole volume (all axes) or of every axis-0 slice as a 2-D image (per-slice clip). T: float32,
// or the int16 / int8 a CT and its labels are stored in (every value is exact in float32 and double).
template <class T>
void resize_data_impl(const Array3<T>& in, const Shape3& out_shape, int order, bool slices, Array3<float>& out,
                      const PlaneStream* stream = nullptr, const CtNormalization* norm = nullptr) {
  check_order(order);
  check_shapes(in.shape, out_shape);
  if (slices) AMOSPREP_VERIFY(in.shape[0] == out_shape[0], "slice-wise resize keeps axis 0");
  const AxisMap m0 = make_axis_map(in.shape[0], out_shape[0], order, !slices);
  const AxisMap m1 = make_axis_map(in.shape[1], out_shape[1], order, true);
  const AxisMap m2 = make_axis_map(in.shape[2], out_shape[2], order, true);
  const AxisMap* maps[3] = {&m0, &m1, &m2};

  // clip bounds: the whole input, or each slice
  const int64_t nb = slices ? in.shape[0] : 1;
  const int64_t per = static_cast<int64_t>(in.size()) / nb;
  std::vector<double> lo(static_cast<size_t>(nb)), hi(static_cast<size_t>(nb));
  {
    const int64_t chunks = slices ? 1 : std::max<int64_t>(1, std::min<int64_t>(256, per / 65536));
    const int64_t chunk_len = (per + chunks - 1) / chunks;
    std::vector<float> cmin(static_cast<size_t>(nb * chunks)), cmax(static_cast<size_t>(nb * chunks));
#pragma omp parallel for schedule(static) num_threads(threads_for(static_cast <int64_t>(in.size()) / 16))
    for (int64_t j = 0; j < nb * chunks; ++j) {
      const int64_t b = j / chunks, c = j % chunks;
      const T* p = in.data() + b * per;
      const int64_t s = c * chunk_len, e = std::min(per, s + chunk_len);
      float mn = std::numeric_limits<float>::infinity(), mx = -mn;
      if constexpr (std::is_integral_v<T>) {  // integer min / max vectorise; the float of the extremes is the same
        T imn = std::numeric_limits<T>::max(), imx = std::numeric_limits<T>::lowest();
        for (int64_t i = s; i < e; ++i) {
          imn = p[i] < imn ? p[i] : imn;
          imx = p[i] > imx ? p[i] : imx;
        }
        if (e > s) mn = static_cast<float>(imn), mx = static_cast<float>(imx);
      } else {
        for (int64_t i = s; i < e; ++i) {
          mn = std::min(mn, static_cast<float>(p[i]));
          mx = std::max(mx, static_cast<float>(p[i]));
        }
      }
      cmin[static_cast<size_t>(j)] = mn;
      cmax[static_cast<size_t>(j)] = mx;
    }
    for (int64_t b = 0; b < nb; ++b) {
      float mn = std::numeric_limits<float>::infinity(), mx = -mn;
      for (int64_t c = 0; c < chunks; ++c) {
        mn = std::min(mn, cmin[static_cast<size_t>(b * chunks + c)]);
        mx = std::max(mx, cmax[static_cast<size_t>(b * chunks + c)]);
      }
      lo[static_cast<size_t>(b)] = mn;
      hi[static_cast<size_t>(b)] = mx;
    }
  }

  if (stream) {
    AMOSPREP_VERIFY(order > 0 && !slices, "only 3-D zooms of order 1 or 3 are streamed");
    resize_streamed(out_shape, Zoom<T, Widen>(in, Widen{}, maps, full_region(maps), true, true), lo[0], hi[0],
                    *stream, norm);
    return;
  }
  size_array(out, out_shape);
  if (order == 0) {  // nearest: copies input values, which lie inside the clip range
#pragma omp parallel for schedule(static) num_threads(threads_for(voxel_count(out_shape) / 16))
    for (int64_t r = 0; r < out_shape[0] * out_shape[1]; ++r) {
      const int64_t k0 = r / out_shape[1], k1 = r % out_shape[1];
      const T* s = &in(m0.idx[static_cast<size_t>(k0)], m1.idx[static_cast<size_t>(k1)], 0);
      float* d = &out(k0, k1, 0);
      for (int64_t k2 = 0; k2 < out_shape[2]; ++k2) d[k2] = static_cast<float>(s[m2.idx[static_cast<size_t>(k2)]]);
    }
    return;
  }
  // A 3-D zoom is one region. Slices are independent: they go through in batches, so the coefficient buffer holds
  // one batch, not the volume.
  const Region whole = full_region(maps);
  std::vector<Region> regions;
  if (!slices) regions.push_back(whole);
  for (int64_t b0 = 0; slices && b0 < out_shape[0]; b0 += kSliceBatch) {
    Region reg = whole;
    reg.out[0] = reg.need[0] = reg.win[0] = {b0, std::min(out_shape[0], b0 + kSliceBatch)};
    regions.push_back(reg);
  }
  for (const Region& reg : regions) {
    Zoom<T, Widen> zoom(in, Widen{}, maps, reg, true, !slices);
    const int64_t m2n = out_shape[2];
    zoom.run(workspace(), [&](int64_t k0, int64_t k1, const double* line, double bound) {
      const size_t b = static_cast<size_t>(slices ? k0 : 0);
      finish_row(zoom, k0, k1, line, bound, lo[b], hi[b], m2n, &out(k0, k1, 0));
    });
  }
}

// One label's output box (and its sampled source range) for a label whose source bounding box is `bb`
// (unpadded, inclusive lo..hi-1). Empty when no output kernel reaches it.
// reach: coefficients beyond the box that still count (default: where a cubic one-hot can reach 0.5).
bool label_region(const AxisMap* const maps[3], const Range bb[3], const Range restrict_out[3], Region& reg,
                  int64_t cubic_reach = kCubicReach) {
  for (int a = 0; a < 3; ++a) {
    const AxisMap& m = *maps[a];
    // padded support: edge padding replicates a label touching the border into the pad
    const int64_t slo = bb[a].lo == 0 ? 0 : bb[a].lo + m.pad;
    const int64_t shi = bb[a].hi == m.n_in ? m.n_src - 1 : bb[a].hi - 1 + m.pad;
    const int64_t reach = m.prefilter ? cubic_reach : 0;
    int64_t lo = m.n_out, hi = 0;
    for (int64_t k = 0; k < m.n_out; ++k) {
      const int64_t* idx = m.idx_at(k);
      if (idx[m.taps - 1] >= slo - reach && idx[0] <= shi + reach) {
        lo = std::min(lo, k);
        hi = k + 1;
      }
    }
    lo = std::max(lo, restrict_out[a].lo);
    hi = std::min(hi, restrict_out[a].hi);
    if (hi <= lo) return false;
    reg.out[a] = {lo, hi};
    reg.need[a] = need_of(m, reg.out[a]);
    if (m.prefilter)
      reg.win[a] = {std::max<int64_t>(0, slo - kLabelWindowMargin), std::min(m.n_src, shi + kLabelWindowMargin + 1)};
    else
      reg.win[a] = reg.need[a];
  }
  return true;
}

struct LabelBox {
  float label;
  Range bb[3];
};

// Distinct label values (ascending, NaN ignored) with their bounding boxes.
template <class T>
std::vector<LabelBox> find_labels(const Array3<T>& seg) {
  const int64_t nz = seg.shape[0], ny = seg.shape[1], nx = seg.shape[2];
  auto merge = [](std::vector<LabelBox>& into, const LabelBox& b) {
    for (auto& e : into)
      if (e.label == b.label) {
        for (int a = 0; a < 3; ++a) e.bb[a] = {std::min(e.bb[a].lo, b.bb[a].lo), std::max(e.bb[a].hi, b.bb[a].hi)};
        return;
      }
    into.push_back(b);
  };
  std::vector<std::vector<LabelBox>> per_slice(static_cast<size_t>(nz));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_for(static_cast <int64_t>(seg.size()) / 8))
  for (int64_t z = 0; z < nz; ++z) {
    std::vector<LabelBox>& boxes = per_slice[static_cast<size_t>(z)];
    for (int64_t y = 0; y < ny; ++y) {
      const T* row = &seg(z, y, 0);
      int64_t x = 0;
      while (x < nx) {
        const T v = row[x];
        int64_t e = x + 1;
        if constexpr (sizeof(T) == 1) {  // 8 labels at a time through a run
          const uint64_t rep = 0x0101010101010101ull * static_cast<uint8_t>(v);
          for (; e + 8 <= nx; e += 8) {
            uint64_t w;
            std::memcpy(&w, row + e, 8);
            if (w != rep) break;
          }
        }
        while (e < nx && row[e] == v) ++e;
        if (v == v) merge(boxes, LabelBox{static_cast<float>(v), {{z, z + 1}, {y, y + 1}, {x, e}}});  // NaN: skipped
        x = e;
      }
    }
  }
  std::vector<LabelBox> all;
  for (const auto& boxes : per_slice)
    for (const auto& b : boxes) merge(all, b);
  std::sort(all.begin(), all.end(), [](const LabelBox& a, const LabelBox& b) { return a.label < b.label; });
  return all;
}

// Bounding box of the voxels of `within` holding a negative label; false if there are none.
template <class OutT>
bool negative_box(const Array3<OutT>& out, const Range within[3], Range box[3]) {
  const Shape3 s = out.shape;
  std::vector<Range> rows(static_cast<size_t>(s[0]), Range{s[1], 0}), cols(static_cast<size_t>(s[0]), Range{s[2], 0});
  const int64_t work = within[0].size() * within[1].size() * within[2].size();
#pragma omp parallel for schedule(static) num_threads(threads_for(work / 16))
  for (int64_t k0 = within[0].lo; k0 < within[0].hi; ++k0) {
    Range& r = rows[static_cast<size_t>(k0)];
    Range& c = cols[static_cast<size_t>(k0)];
    for (int64_t k1 = within[1].lo; k1 < within[1].hi; ++k1) {
      const OutT* o = &out(k0, k1, 0);
      for (int64_t k2 = within[2].lo; k2 < within[2].hi; ++k2)
        if (o[k2] < OutT(0)) {
          r = {std::min(r.lo, k1), std::max(r.hi, k1 + 1)};
          c = {std::min(c.lo, k2), std::max(c.hi, k2 + 1)};
        }
    }
  }
  box[0] = {s[0], 0};
  box[1] = {s[1], 0};
  box[2] = {s[2], 0};
  for (int64_t k0 = within[0].lo; k0 < within[0].hi; ++k0) {
    const Range r = rows[static_cast<size_t>(k0)], c = cols[static_cast<size_t>(k0)];
    if (r.empty()) continue;
    box[0] = {std::min(box[0].lo, k0), k0 + 1};
    box[1] = {std::min(box[1].lo, r.lo), std::max(box[1].hi, r.hi)};
    box[2] = {std::min(box[2].lo, c.lo), std::max(box[2].hi, c.hi)};
  }
  return !box[0].empty();
}

void extend_box(Range box[3], const Range add[3]) {
  for (int a = 0; a < 3; ++a)
    box[a] = box[a].empty() ? add[a] : Range{std::min(box[a].lo, add[a].lo), std::max(box[a].hi, add[a].hi)};
}

// Where label 0 still has to be evaluated after the single negative label (see kPartitionSlack): the voxels
// written with a value below 0.5 + kPartitionSlack (`near_tie`) and the negative voxels near a positive label.
// Narrows `box` (the negative box) to their bounding box; false if there are none.
template <class OutT>
bool background_candidates(const Array3<OutT>& out, const AxisMap* const maps[3], const std::vector<LabelBox>& labels,
                           const Range near_tie[3], Range box[3]) {
  Range hull[3] = {near_tie[0], near_tie[1], near_tie[2]};
  for (const LabelBox& lb : labels) {
    if (!(lb.label > 0.0f)) continue;
    Region near;
    Range found[3];
    if (label_region(maps, lb.bb, box, near, kPartitionReach) && negative_box(out, near.out, found))
      extend_box(hull, found);
  }
  for (int a = 0; a < 3; ++a) {
    box[a] = {std::max(box[a].lo, hull[a].lo), std::min(box[a].hi, hull[a].hi)};
    if (box[a].empty()) return false;
  }
  return true;
}

// OutT: float32, or int8 for labels that fit it.
template <class T, class OutT>
void resize_segmentation_impl(const Array3<T>& seg, const Shape3& out_shape, int order, bool slices,
                              Array3<OutT>& out) {
  check_order(order);
  check_shapes(seg.shape, out_shape);
  if (slices) AMOSPREP_VERIFY(seg.shape[0] == out_shape[0], "slice-wise resize keeps axis 0");
  if (order == 0) {  // batchgenerators: resize of the label values themselves (nearest), cast back
    if constexpr (std::is_same_v<OutT, float>) {
      resize_data_impl(seg, out_shape, 0, slices, out);
    } else {
      Array3<float> values;
      resize_data_impl(seg, out_shape, 0, slices, values);
      size_array(out, out_shape);
      for (size_t v = 0; v < values.v.size(); ++v) out.v[v] = static_cast<OutT>(values.v[v]);
    }
    return;
  }
  const AxisMap m0 = make_axis_map(seg.shape[0], out_shape[0], order, !slices);
  const AxisMap m1 = make_axis_map(seg.shape[1], out_shape[1], order, true);
  const AxisMap m2 = make_axis_map(seg.shape[2], out_shape[2], order, true);
  const AxisMap* maps[3] = {&m0, &m1, &m2};
  size_array(out, out_shape);
  OutT* zero = out.data();
  const int64_t n_out = static_cast<int64_t>(out.size());
#pragma omp parallel for schedule(static) num_threads(threads_for(n_out / 16))
  for (int64_t i = 0; i < n_out; ++i) zero[i] = OutT(0);

  const std::vector<LabelBox> labels = find_labels(seg);
  const Range everywhere[3] = {{0, out_shape[0]}, {0, out_shape[1]}, {0, out_shape[2]}};
  int64_t negatives = 0, positives = 0;
  for (const LabelBox& lb : labels) {
    if (lb.label < 0.0f) ++negatives;
    if (lb.label > 0.0f) ++positives;
  }
  const bool shortcut = ::amosprep::resample_detail::background_shortcut() && negatives == 1 &&
                        static_cast<double>(positives) * kPartitionTail < kPartitionSlack / 2;
  Range near_tie[3] = {{out_shape[0], 0}, {out_shape[1], 0}, {out_shape[2], 0}};
  std::mutex near_tie_mutex;
  bool any_negative = false;
  // Ascending order with overwriting = the largest label reaching 0.5 wins; 0 where none does. Label 0 itself
  // only matters where a negative label was written, so it is evaluated only there.
  for (const LabelBox& lb : labels) {
    const bool background = lb.label == 0.0f;
    if (background && !any_negative) continue;
    Range restrict_out[3] = {everywhere[0], everywhere[1], everywhere[2]};
    if (background) {
      if (!negative_box(out, everywhere, restrict_out)) continue;
      if (shortcut && !background_candidates(out, maps, labels, near_tie, restrict_out)) {
        ::amosprep::resample_detail::count_background_skipped();
        continue;
      }
    }
    Region reg;
    if (!label_region(maps, lb.bb, restrict_out, reg)) continue;
    if (lb.label < 0.0f) any_negative = true;
    const bool track_ties = shortcut && lb.label < 0.0f;
    Zoom<T, OneHot> zoom(seg, OneHot{lb.label}, maps, reg, false);
    const Range o2 = reg.out[2];
    const float label = lb.label;
    zoom.run(workspace(), [&](int64_t k0, int64_t k1, const double* line, double) {
      OutT* d = &out(k0, k1, 0);
      int64_t tie_lo = o2.hi, tie_hi = o2.lo;
      for (int64_t k2 = o2.lo; k2 < o2.hi; ++k2) {
        double v = line[k2 - o2.lo];
        if (std::fabs(v - 0.5) < kLabelTieBand) v = zoom.exact(k0, k1, k2);
        if (v >= 0.5 && (!background || d[k2] < OutT(0))) {
          d[k2] = static_cast<OutT>(label);
          if (track_ties && v < 0.5 + kPartitionSlack) {
            tie_lo = std::min(tie_lo, k2);
            tie_hi = k2 + 1;
          }
        }
      }
      if (tie_lo < tie_hi) {
        const Range row[3] = {{k0, k0 + 1}, {k1, k1 + 1}, {tie_lo, tie_hi}};
        std::lock_guard<std::mutex> lock(near_tie_mutex);
        extend_box(near_tie, row);
      }
    });
  }
}

// Output slice k along an axis of n_in -> n_out takes input slice src[k] (map_coordinates order 0, 'nearest').
std::vector<int64_t> nearest_slices(int64_t n_in, int64_t n_out) {
  std::vector<int64_t> src(static_cast<size_t>(n_out));
  const double s = static_cast<double>(n_in) / static_cast<double>(n_out);
  for (int64_t k = 0; k < n_out; ++k)
    src[static_cast<size_t>(k)] =
        clamp_index(static_cast<int64_t>(std::floor((s * (static_cast<double>(k) + 0.5) - 0.5) + 0.5)), n_in);
  return src;
}

// b = a with a's axis `axis` moved to the front, the other two kept in their order (axis 1 or 2).
template <class T>
void axis_first(const Array3<T>& a, int axis, Array3<T>& b) {
  const Shape3 s = a.shape;
  const Shape3 t = axis == 1 ? Shape3{s[1], s[0], s[2]} : Shape3{s[2], s[0], s[1]};
  size_array(b, t);
#pragma omp parallel for schedule(static) num_threads(threads_for(static_cast <int64_t>(a.size()) / 16))
  for (int64_t i = 0; i < t[0]; ++i)
    for (int64_t j = 0; j < t[1]; ++j)
      for (int64_t k = 0; k < t[2]; ++k) b(i, j, k) = axis == 1 ? a(j, i, k) : a(j, k, i);
}

template <class T, class OutT>
void copy_array(const Array3<T>& a, Array3<OutT>& b) {
  size_array(b, a.shape);
  const T* s = a.data();
  OutT* d = b.data();
  const int64_t n = static_cast<int64_t>(a.size());
#pragma omp parallel for schedule(static) num_threads(threads_for(n / 16))
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<OutT>(s[i]);
}

// Inverse of axis_first composed with the nearest-slice mapping along the moved axis.
template <class OutT>
void restore_axis_nearest(const Array3<OutT>& b, int axis, int64_t n_out, Array3<OutT>& out) {
  const std::vector<int64_t> src = nearest_slices(b.shape[0], n_out);
  const Shape3 t = b.shape;
  const Shape3 s =
      axis == 0 ? Shape3{n_out, t[1], t[2]} : (axis == 1 ? Shape3{t[1], n_out, t[2]} : Shape3{t[1], t[2], n_out});
  size_array(out, s);
#pragma omp parallel for schedule(static) num_threads(threads_for(voxel_count(s) / 16))
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t j = 0; j < s[1]; ++j) {
      OutT* d = &out(i, j, 0);
      if (axis == 0) {
        const OutT* p = &b(src[static_cast<size_t>(i)], j, 0);
        std::copy(p, p + s[2], d);
      } else if (axis == 1) {
        const OutT* p = &b(src[static_cast<size_t>(j)], i, 0);
        std::copy(p, p + s[2], d);
      } else {
        for (int64_t k = 0; k < s[2]; ++k) d[k] = b(src[static_cast<size_t>(k)], i, j);
      }
    }
}

// resample_data_or_seg for one channel (§6.4).
// A channel's resize: labels (is_seg) into float32 or int8, image data into float32.
template <class T, class OutT>
void resize_channel(const Array3<T>& in, const Shape3& out_shape, int order, bool slices, bool is_seg, Array3<OutT>& out) {
  if (is_seg)
    resize_segmentation_impl(in, out_shape, order, slices, out);
  else if constexpr (std::is_same_v<OutT, float>)
    resize_data_impl(in, out_shape, order, slices, out);
  else
    throw InternalError("image channels are resampled to float32 only");
}

template <class T, class OutT>
void resample_channel(const Array3<T>& in, const Shape3& new_shape, bool is_seg, int order, const SeparateZ& sz,
                      Array3<OutT>& out) {
  if (in.shape == new_shape) {
    copy_array(in, out);
    return;
  }
  if (!sz.separate) {
    resize_channel(in, new_shape, order, false, is_seg, out);
    return;
  }
  const int ax = sz.axis;
  Array3<T> moved_storage;
  if (ax != 0) axis_first(in, ax, moved_storage);
  const Array3<T>& moved = ax != 0 ? moved_storage : in;
  Shape3 plane_shape = moved.shape;  // slices along axis 0, resized in-plane
  int p = 1;
  for (int a = 0; a < 3; ++a)
    if (a != ax) plane_shape[p++] = new_shape[a];
  Array3<OutT> tmp;
  resize_channel(moved, plane_shape, order, true, is_seg, tmp);
  restore_axis_nearest(tmp, ax, new_shape[ax], out);
}

// resample_channel with repeated slices kept once where the separate-z path runs along axis 0.
template <class T, class OutT>
void resample_channel_mapped(const Array3<T>& in, const Shape3& new_shape, bool is_seg, int order,
                             const SeparateZ& sz, SliceMapped<OutT>& out) {
  if (!(sz.separate && sz.axis == 0 && in.shape[0] != new_shape[0])) {
    resample_channel(in, new_shape, is_seg, order, sz, out.planes);
    out.shape = new_shape;
    out.plane_of.resize(static_cast<size_t>(new_shape[0]));
    for (int64_t z = 0; z < new_shape[0]; ++z) out.plane_of[static_cast<size_t>(z)] = z;
    return;
  }
  const Shape3 plane_shape{in.shape[0], new_shape[1], new_shape[2]};
  resize_channel(in, plane_shape, order, true, is_seg, out.planes);
  out.shape = new_shape;
  out.plane_of = nearest_slices(in.shape[0], new_shape[0]);
}

// The checks and decisions shared by both forms of resample_patient.
struct PatientPlan {
  bool has_seg = false;
  Shape3 new_shape{};
  SeparateZ sz;
};

template <class TD, class TS>
PatientPlan plan_patient(const std::vector<Array3<TD>>& data, const Array3<TS>& seg,
                         const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                         const ResampleSettings& settings) {
  PatientPlan p;
  p.has_seg = seg.size() > 0;
  if (data.empty() && !p.has_seg) throw UsageError("resample_patient needs data or a segmentation");
  const Shape3 shape = data.empty() ? seg.shape : data[0].shape;
  for (const auto& c : data)
    if (c.shape != shape) throw InputError("", "", "data channels differ in shape");
  if (p.has_seg && seg.shape != shape) throw InputError("", "", "segmentation and data differ in shape");
  p.new_shape = resampled_shape(spacing, target, shape);
  p.sz = decide_separate_z(spacing, target, settings.force_separate_z);
  if (p.sz.separate && shape[p.sz.axis] != p.new_shape[p.sz.axis] &&
      (settings.order_z_data != 0 || settings.order_z_seg != 0))
    throw UsageError("separate-z resampling with order_z > 0 is not supported");
  return p;
}

// Both forms of resample_patient: Out is Array3<float> (full volumes) or SliceMappedVolume.
template <class TD, class TS, class Out>
void resample_patient_impl(const std::vector<Array3<TD>>& data, const Array3<TS>& seg,
                           const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                           const ResampleSettings& settings, std::vector<Out>& data_out, Out& seg_out) {
  const PatientPlan p = plan_patient(data, seg, spacing, target, settings);
  auto one = [&](const auto& in, bool is_seg, int order, Out& out) {
    if constexpr (std::is_same_v<Out, SliceMappedVolume>)
      resample_channel_mapped(in, p.new_shape, is_seg, order, p.sz, out);
    else
      resample_channel(in, p.new_shape, is_seg, order, p.sz, out);
  };
  data_out.resize(data.size());
  for (size_t c = 0; c < data.size(); ++c) one(data[c], false, settings.order_data, data_out[c]);
  if (p.has_seg)
    one(seg, true, settings.order_seg, seg_out);
  else
    seg_out = Out();
}

template <class TD>
bool resample_data_streamed_impl(const std::vector<Array3<TD>>& data, const std::array<double, 3>& spacing,
                                 const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                                 const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized) {
  if (data.empty()) return false;
  AMOSPREP_VERIFY(!normalized || normalized->size() == data.size(), "one CT normalisation per channel");
  const PatientPlan p = plan_patient(data, Array3<int8_t>(), spacing, target, settings);
  if (p.sz.separate || settings.order_data == 0 || data[0].shape == p.new_shape) return false;
  for (size_t c = 0; c < data.size(); ++c) {
    PlaneStream stream{align, [&](int64_t first, int64_t count, float* planes) { take(c, first, count, planes); }};
    Array3<float> unused;
    const CtNormalization* norm = normalized && (*normalized)[c].monotone() ? &(*normalized)[c] : nullptr;
    resize_data_impl(data[c], p.new_shape, settings.order_data, false, unused, &stream, norm);
  }
  return true;
}

}  // namespace

void resample_seg_mapped(const Array3<int8_t>& seg, const std::array<double, 3>& spacing,
                         const std::array<double, 3>& target, const ResampleSettings& settings, SliceMappedLabels& out) {
  const PatientPlan p = plan_patient(std::vector<Array3<int16_t>>(), seg, spacing, target, settings);
  resample_channel_mapped(seg, p.new_shape, true, settings.order_seg, p.sz, out);
}

bool resample_data_streamed(const std::vector<Array3<int16_t>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized) {
  return resample_data_streamed_impl(data, spacing, target, settings, align, take, normalized);
}
bool resample_data_streamed(const std::vector<Array3<float>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized) {
  return resample_data_streamed_impl(data, spacing, target, settings, align, take, normalized);
}

void resample_patient(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                      const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                      const ResampleSettings& settings, std::vector<Array3<float>>& data_out, Array3<float>& seg_out) {
  resample_patient_impl(data, seg, spacing, target, settings, data_out, seg_out);
}

void resample_patient_mapped(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out) {
  resample_patient_impl(data, seg, spacing, target, settings, data_out, seg_out);
}
void resample_patient_mapped(const std::vector<Array3<int16_t>>& data, const Array3<int8_t>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out) {
  resample_patient_impl(data, seg, spacing, target, settings, data_out, seg_out);
}

void resize_data(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out) {
  resize_data_impl(in, out_shape, order, false, out);
}
void resize_segmentation(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out) {
  resize_segmentation_impl(seg, out_shape, order, false, out);
}
void resize_data_slices(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out) {
  resize_data_impl(in, out_shape, order, true, out);
}
void resize_segmentation_slices(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out) {
  resize_segmentation_impl(seg, out_shape, order, true, out);
}

void release_resample_buffers() { workspace().release(); }

namespace resample_detail {

Array3<double> resize_f64(const Array3<double>& in, const Shape3& out_shape, int order, int ndim, bool exact) {
  check_order(order);
  check_shapes(in.shape, out_shape);
  AMOSPREP_VERIFY(ndim >= 1 && ndim <= 3, "ndim must be 1, 2 or 3");
  AxisMap m[3];
  for (int a = 0; a < 3; ++a) m[a] = make_axis_map(in.shape[a], out_shape[a], order, a >= 3 - ndim);
  const AxisMap* maps[3] = {&m[0], &m[1], &m[2]};
  const double lo = *std::min_element(in.v.begin(), in.v.end());
  const double hi = *std::max_element(in.v.begin(), in.v.end());
  Array3<double> out(out_shape);
  auto clip = [&](double v) { return std::min(std::max(v, lo), hi); };
  if (order == 0) {
    for (int64_t k0 = 0; k0 < out_shape[0]; ++k0)
      for (int64_t k1 = 0; k1 < out_shape[1]; ++k1)
        for (int64_t k2 = 0; k2 < out_shape[2]; ++k2)
          out(k0, k1, k2) = in(m[0].idx_at(k0)[0], m[1].idx_at(k1)[0], m[2].idx_at(k2)[0]);
    return out;
  }
  Zoom<double, Widen> zoom(in, Widen{}, maps, full_region(maps), false);
  zoom.run(workspace(), [&](int64_t k0, int64_t k1, const double* line, double) {
    for (int64_t k2 = 0; k2 < out_shape[2]; ++k2)
      out(k0, k1, k2) = clip(exact ? zoom.exact(k0, k1, k2) : line[k2] + 0.0);
  });
  return out;
}

std::vector<double> spline_filter_line(std::vector<double> line) {
  const int64_t n = static_cast<int64_t>(line.size());
  prefilter_tile<1>(line.data(), n, 1, n, true, true);
  return line;
}

}  // namespace resample_detail

}  // namespace AMOSPREP_ISA_NS

#if !defined(AMOSPREP_ISA_V3)  // shared parts and the public entry points: compiled once

namespace {
// Voxels of work below which another thread does not pay (barriers cost milliseconds on a loaded machine).
int64_t g_parallel_grain = int64_t{1} << 19;
bool g_background_shortcut = true;
std::atomic<int64_t> g_background_skipped{0};
}  // namespace

#if defined(AMOSPREP_HAVE_ISA_V3)
namespace isa_v3 {
void resample_patient(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                      const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                      const ResampleSettings& settings, std::vector<Array3<float>>& data_out, Array3<float>& seg_out);
void resample_patient_mapped(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out);
void resample_patient_mapped(const std::vector<Array3<int16_t>>& data, const Array3<int8_t>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out);
bool resample_data_streamed(const std::vector<Array3<int16_t>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized);
bool resample_data_streamed(const std::vector<Array3<float>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized);
void resample_seg_mapped(const Array3<int8_t>& seg, const std::array<double, 3>& spacing,
                         const std::array<double, 3>& target, const ResampleSettings& settings, SliceMappedLabels& out);
void resize_data(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out);
void resize_segmentation(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out);
void resize_data_slices(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out);
void resize_segmentation_slices(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out);
void release_resample_buffers();
namespace resample_detail {
Array3<double> resize_f64(const Array3<double>& in, const Shape3& out_shape, int order, int ndim, bool exact);
std::vector<double> spline_filter_line(std::vector<double> line);
}  // namespace resample_detail
}  // namespace isa_v3
#endif

SeparateZ decide_separate_z(const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                            std::optional<bool> force_separate_z) {
  auto lowres = [](const std::array<double, 3>& s) {
    const double mx = std::max({s[0], s[1], s[2]});
    std::vector<int> axes;
    for (int a = 0; a < 3; ++a)
      if (mx / s[a] == 1.0) axes.push_back(a);
    return axes;
  };
  auto anisotropic = [](const std::array<double, 3>& s) {
    return std::max({s[0], s[1], s[2]}) / std::min({s[0], s[1], s[2]}) > 3.0;
  };
  SeparateZ r;
  std::vector<int> axes;
  bool has_axis = false;
  if (force_separate_z.has_value()) {
    r.separate = *force_separate_z;
    if (r.separate) {
      axes = lowres(spacing);
      has_axis = true;
    }
  } else if (anisotropic(spacing)) {
    r.separate = true;
    axes = lowres(spacing);
    has_axis = true;
  } else if (anisotropic(target)) {
    r.separate = true;
    axes = lowres(target);
    has_axis = true;
  }
  if (has_axis && axes.size() != 1) r.separate = false;
  r.axis = r.separate ? axes[0] : -1;
  return r;
}

Shape3 resampled_shape(const std::array<double, 3>& spacing, const std::array<double, 3>& target, const Shape3& shape) {
  Shape3 s{};
  for (int a = 0; a < 3; ++a)
    s[a] = static_cast<int64_t>(std::nearbyint((spacing[a] / target[a]) * static_cast<double>(shape[a])));
  return s;
}

void resample_patient(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                      const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                      const ResampleSettings& settings, std::vector<Array3<float>>& data_out, Array3<float>& seg_out) {
  AMOSPREP_ISA_DISPATCH(resample_patient, data, seg, spacing, target, settings, data_out, seg_out);
}
void resample_patient_mapped(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out) {
  AMOSPREP_ISA_DISPATCH(resample_patient_mapped, data, seg, spacing, target, settings, data_out, seg_out);
}
void resample_patient_mapped(const std::vector<Array3<int16_t>>& data, const Array3<int8_t>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out) {
  AMOSPREP_ISA_DISPATCH(resample_patient_mapped, data, seg, spacing, target, settings, data_out, seg_out);
}
void resample_seg_mapped(const Array3<int8_t>& seg, const std::array<double, 3>& spacing,
                         const std::array<double, 3>& target, const ResampleSettings& settings, SliceMappedLabels& out) {
  AMOSPREP_ISA_DISPATCH(resample_seg_mapped, seg, spacing, target, settings, out);
}
bool resample_data_streamed(const std::vector<Array3<int16_t>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized) {
  return AMOSPREP_ISA_DISPATCH(resample_data_streamed, data, spacing, target, settings, align, take, normalized);
}
bool resample_data_streamed(const std::vector<Array3<float>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized) {
  return AMOSPREP_ISA_DISPATCH(resample_data_streamed, data, spacing, target, settings, align, take, normalized);
}
void resize_data(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out) {
  AMOSPREP_ISA_DISPATCH(resize_data, in, out_shape, order, out);
}
void resize_segmentation(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out) {
  AMOSPREP_ISA_DISPATCH(resize_segmentation, seg, out_shape, order, out);
}
void resize_data_slices(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out) {
  AMOSPREP_ISA_DISPATCH(resize_data_slices, in, out_shape, order, out);
}
void resize_segmentation_slices(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out) {
  AMOSPREP_ISA_DISPATCH(resize_segmentation_slices, seg, out_shape, order, out);
}
void release_resample_buffers() { AMOSPREP_ISA_DISPATCH(release_resample_buffers); }

namespace resample_detail {
Array3<double> resize_f64(const Array3<double>& in, const Shape3& out_shape, int order, int ndim, bool exact) {
  return AMOSPREP_ISA_DISPATCH(resample_detail::resize_f64, in, out_shape, order, ndim, exact);
}
std::vector<double> spline_filter_line(std::vector<double> line) {
  return AMOSPREP_ISA_DISPATCH(resample_detail::spline_filter_line, std::move(line));
}
void set_background_shortcut(bool on) { g_background_shortcut = on; }
bool background_shortcut() { return g_background_shortcut; }
void count_background_skipped() { ++g_background_skipped; }
int64_t background_passes_skipped() { return g_background_skipped.load(); }
void set_parallel_grain(int64_t voxels) { g_parallel_grain = std::max<int64_t>(1, voxels); }
int64_t parallel_grain() { return g_parallel_grain; }
}  // namespace resample_detail

#endif  // !AMOSPREP_ISA_V3

}  // namespace amosprep
