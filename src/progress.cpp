#include "amosprep/progress.hpp"

#include <mpi.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "amosprep/distributed.hpp"

namespace amosprep {

namespace {
constexpr int kTagItem = 7301, kTagFinished = 7302;

struct ItemMessage {
  double units;
  int32_t skipped;
  char item[116];
};

std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                               static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}
}  // namespace

Progress::Progress(std::string phase, double total, int64_t count, bool quiet)
    : phase_(std::move(phase)), total_(total), count_(count), quiet_(quiet), tty_(::isatty(2) != 0),
      t0_(std::chrono::steady_clock::now()), last_draw_(t0_) {}

void Progress::record(double units, bool skipped, int /*from_rank*/, const std::string& item) {
  done_units_ += units;
  ++done_items_;
  if (skipped) ++skipped_items_;
  last_item_ = item;
}

void Progress::item_done(const std::string& item, double units, bool skipped) {
  if (mpi_rank() == 0) {
    record(units, skipped, 0, item);
    poll();
    draw(false);
    return;
  }
  ItemMessage m{};
  m.units = units;
  m.skipped = skipped ? 1 : 0;
  std::strncpy(m.item, item.c_str(), sizeof m.item - 1);
  MPI_Send(&m, sizeof m, MPI_BYTE, 0, kTagItem, MPI_COMM_WORLD);
}

void Progress::poll() {
  if (mpi_rank() != 0 || mpi_size() == 1) return;
  bool any = false;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagItem, MPI_COMM_WORLD, &flag, &st);
    if (!flag) break;
    ItemMessage m{};
    MPI_Recv(&m, sizeof m, MPI_BYTE, st.MPI_SOURCE, kTagItem, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    record(m.units, m.skipped != 0, st.MPI_SOURCE, std::string(m.item, strnlen(m.item, sizeof m.item)));
    any = true;
  }
  if (any) draw(false);
}

void Progress::finish() {
  if (mpi_size() > 1) {
    if (mpi_rank() == 0) {
      // Poll with short sleeps rather than a blocking probe, which spins a core for as long as others work.
      int finished = 0;
      long sleep_ns = 50'000;
      while (finished < mpi_size() - 1) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, kTagFinished, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
          int dummy = 0;
          MPI_Recv(&dummy, 1, MPI_INT, st.MPI_SOURCE, kTagFinished, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          ++finished;
          continue;
        }
        poll();
        const timespec ts{0, sleep_ns};
        nanosleep(&ts, nullptr);
        sleep_ns = std::min<long>(sleep_ns * 2, 2'000'000);
      }
      poll();
    } else {
      // Sent after all item messages: MPI keeps the order of messages between one pair of ranks.
      int dummy = 0;
      MPI_Send(&dummy, 1, MPI_INT, 0, kTagFinished, MPI_COMM_WORLD);
    }
  }
  if (mpi_rank() == 0) draw(true);
  barrier();  // the others wait here (asleep) while rank 0 still works or drains
}

void Progress::draw(bool final_line) {
  if (quiet_ || mpi_rank() != 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (!tty_ && drawn_complete_) return;  // the 100% line is printed once
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  if (!final_line && !tty_ && done_items_ != count_ &&
      std::chrono::duration<double>(now - last_draw_).count() < 10.0 && done_items_ > 1)
    return;  // batch logs: at most one line per 10 s
  last_draw_ = now;
  drawn_complete_ = done_items_ == count_;
  const double frac = total_ > 0 ? done_units_ / total_ : (count_ ? double(done_items_) / double(count_) : 1.0);
  // Throughput and ETA from the work really done in this run (skipped items cost nothing).
  const double eta = frac > 0 && frac < 1 ? elapsed * (1 - frac) / frac : 0;
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(1);
  if (tty_) {
    const int width = 30;
    const int fill = static_cast<int>(frac * width + 0.5);
    o << "\r[amos-prep] " << phase_ << " [" << std::string(static_cast<size_t>(fill), '#')
      << std::string(static_cast<size_t>(width - fill), '.') << "] " << done_items_ << "/" << count_ << " "
      << 100 * frac << "% elapsed " << hms(elapsed) << " eta " << hms(eta) << "   ";
    if (final_line) o << "\n";
  } else {
    o << "[amos-prep] " << phase_ << ": " << done_items_ << "/" << count_ << " (" << 100 * frac << "%, "
      << skipped_items_ << " already complete) elapsed " << hms(elapsed) << " eta " << hms(eta);
    if (elapsed > 0 && total_ > 0) o << " throughput " << (done_units_ / 1e6) / elapsed << " Mvox/s";
    if (!last_item_.empty()) o << " last " << last_item_;
    o << "\n";
  }
  std::cerr << o.str() << std::flush;
}

}  // namespace amosprep
