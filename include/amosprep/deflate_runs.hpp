#pragma once
// A fast raw-deflate (RFC 1951) encoder for arrays of 4-byte values (the float32 volumes of the .npz exports).
// It looks for one kind of match only, a repeat of the previous 4 bytes (distance 4: runs of equal float32 or int32
// values, e.g. background and label maps), and codes everything else as literals with a dynamic Huffman code per
// block. Any inflater (zlib, numpy) reads the output. Several times faster than general LZ77 matchfinding at level
// 1 on these volumes, at a similar size.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace amosprep {

/// A growable byte buffer that never zero-fills (fresh pages cost more than the compression on our VMs).
struct DeflateBuffer {
  std::unique_ptr<unsigned char[]> data;
  size_t size = 0, capacity = 0;
  /// Reallocates to `new_capacity`, keeping the first `keep` bytes.
  void grow(size_t new_capacity, size_t keep);
};

/// Reusable compressor: keeps its buffers between calls, so compressing case after case touches no fresh memory.
class DeflateRuns {
 public:
  /// Compresses `n` bytes into a complete raw deflate stream, returned as pieces to be written in order (valid
  /// until the next call). The input is cut into fixed 1 MiB segments compressed independently (OpenMP threads);
  /// the output does not depend on the number of threads.
  std::span<const DeflateBuffer> compress(const unsigned char* data, size_t n);
  /// Same for data given as consecutive pieces (each piece is segmented on its own).
  std::span<const DeflateBuffer> compress(std::span<const std::span<const unsigned char>> pieces);

  /// The same stream built piece by piece: begin, append each piece (compressed at once, so the caller may free it),
  /// then finish returns what compress would have.
  void begin();
  void append(std::span<const unsigned char> piece);
  std::span<const DeflateBuffer> finish();

  /// Streaming use: compresses one piece on its own and returns its segments (byte-aligned, non-final), valid
  /// until the next call. Written one after the other and ended by kDeflateFinalEmptyBlock, the pieces' segments
  /// form one deflate stream; a repeated piece's segments may simply be written again.
  std::span<const DeflateBuffer> compress_piece(std::span<const unsigned char> piece);

 private:
  std::vector<DeflateBuffer> parts_;
  size_t used_ = 0;  // parts_[0, used_) hold the stream so far
};

/// One-shot form of DeflateRuns::compress, concatenated (tests).
std::vector<unsigned char> deflate_runs(const unsigned char* data, size_t n);

/// Compresses one segment, appending byte-aligned, non-final deflate blocks to `out`. Matches never reach before
/// `data`.
void deflate_runs_segment(const unsigned char* data, size_t n, DeflateBuffer& out);

/// The two bytes of an empty final fixed-Huffman block; appended after the last segment.
inline constexpr unsigned char kDeflateFinalEmptyBlock[2] = {0x03, 0x00};

}  // namespace amosprep
