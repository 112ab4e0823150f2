#include "amosprep/deflate_runs.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <queue>

#include "amosprep/isa.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace amosprep {
namespace {
constexpr size_t kSegmentBytes = size_t(1) << 20;  // fixed, so the output is the same for any thread count
}  // namespace

namespace AMOSPREP_ISA_NS {  // compiled once per instruction-set variant (isa.hpp)

namespace {

constexpr int kLitLenSymbols = 286, kMaxBits = 15, kMaxCodeLengthBits = 7;
constexpr int kMinMatch = 3, kMaxMatch = 258, kDistance = 4, kDistanceSymbol = 3;

// RFC 1951 §3.2.5: length symbols 257..285.
constexpr std::array<int, 29> kLengthBase = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                             31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<int, 29> kLengthExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                              2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::array<int, 19> kCodeLengthOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

struct LengthCode {
  uint16_t symbol;  // 257..285
  uint8_t extra_bits;
  uint16_t extra_value;
};

const std::array<LengthCode, kMaxMatch + 1>& length_codes() {
  static const auto table = [] {
    std::array<LengthCode, kMaxMatch + 1> t{};
    for (int len = kMinMatch; len <= kMaxMatch; ++len) {
      int i = 28;
      while (kLengthBase[static_cast<size_t>(i)] > len) --i;
      if (len == 258) i = 28;
      t[static_cast<size_t>(len)] = {static_cast<uint16_t>(257 + i), static_cast<uint8_t>(kLengthExtra[static_cast<size_t>(i)]),
                                     static_cast<uint16_t>(len - kLengthBase[static_cast<size_t>(i)])};
    }
    return t;
  }();
  return table;
}

// Writes into `out` beyond its current size; the caller reserves room first (reserve_bits).
class BitWriter {
 public:
  explicit BitWriter(DeflateBuffer& out) : out_(out), pos_(out.size) {}
  ~BitWriter() { out_.size = pos_; }
  /// Makes room for at least `bits` more bits (plus slack for the 8-byte stores).
  void reserve_bits(size_t bits) {
    const size_t need = pos_ + bits / 8 + 16;
    if (out_.capacity < need) out_.grow(std::max(need, out_.capacity + out_.capacity / 2), pos_);
  }
  void put(uint64_t bits, int count) {
    acc_ |= bits << fill_;
    fill_ += count;
    if (fill_ >= 32) {
      const uint32_t word = static_cast<uint32_t>(acc_);
      std::memcpy(out_.data.get() + pos_, &word, 4);  // little-endian host (x86-64, aarch64)
      pos_ += 4;
      acc_ >>= 32;
      fill_ -= 32;
    }
  }
  /// put() for codes of at most 32 bits: stores 8 bytes unconditionally and keeps at most 7 bits pending.
  void put_flush(uint64_t bits, int count) {
    acc_ |= bits << fill_;
    fill_ += count;
    std::memcpy(out_.data.get() + pos_, &acc_, 8);
    const int whole = fill_ & ~7;  // < 64: fill_ was below 32 before
    pos_ += static_cast<size_t>(whole >> 3);
    acc_ >>= whole;
    fill_ -= whole;
  }
  void align_to_byte() {
    reserve_bits(64);
    while (fill_ > 0) {
      out_.data[pos_++] = static_cast<unsigned char>(acc_ & 0xff);
      acc_ >>= 8;
      fill_ = std::max(0, fill_ - 8);
    }
    acc_ = 0;
  }
  void bytes(const unsigned char* p, size_t n) {  // only when byte-aligned
    reserve_bits(8 * n);
    if (n) std::memcpy(out_.data.get() + pos_, p, n);
    pos_ += n;
  }
  size_t size() const { return pos_; }
  void rewind(size_t pos) {
    pos_ = pos;
    acc_ = 0;
    fill_ = 0;
  }

 private:
  DeflateBuffer& out_;
  size_t pos_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

uint32_t reverse_bits(uint32_t code, int len) {
  uint32_t r = 0;
  for (int i = 0; i < len; ++i) r |= ((code >> i) & 1u) << (len - 1 - i);
  return r;
}

// Huffman code lengths no longer than max_bits for the symbols with nonzero frequency. At least two symbols get a
// code (deflate's inflaters reject a lone code of a literal/length or code-length alphabet).
std::vector<uint8_t> huffman_lengths(std::vector<uint64_t> freq, int max_bits) {
  const size_t n = freq.size();
  std::vector<uint8_t> lens(n, 0);
  size_t used = 0;
  for (uint64_t f : freq) used += f > 0;
  for (size_t s = 0; used < 2 && s < n; ++s)
    if (freq[s] == 0) {
      freq[s] = 1;
      ++used;
    }
  for (;;) {
    // Standard Huffman tree over (frequency, node); ties broken by node index for determinism.
    struct Node {
      uint64_t f;
      int left, right;
    };
    std::vector<Node> nodes;
    using Item = std::pair<uint64_t, int>;
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
    for (size_t s = 0; s < n; ++s)
      if (freq[s] > 0) {
        nodes.push_back({freq[s], -1, static_cast<int>(s)});
        heap.push({freq[s], static_cast<int>(nodes.size() - 1)});
      }
    while (heap.size() > 1) {
      const Item a = heap.top();
      heap.pop();
      const Item b = heap.top();
      heap.pop();
      nodes.push_back({a.first + b.first, a.second, b.second});
      heap.push({a.first + b.first, static_cast<int>(nodes.size() - 1)});
    }
    // Depths by walking from the root (last node).
    std::vector<int> depth(nodes.size(), 0);
    int deepest = 0;
    for (size_t k = nodes.size(); k-- > 0;) {
      const Node& nd = nodes[k];
      if (nd.left >= 0) {
        depth[static_cast<size_t>(nd.left)] = depth[k] + 1;
        depth[static_cast<size_t>(nd.right)] = depth[k] + 1;
      } else {
        lens[static_cast<size_t>(nd.right)] = static_cast<uint8_t>(depth[k]);
        deepest = std::max(deepest, depth[k]);
      }
    }
    if (deepest <= max_bits) return lens;
    for (auto& f : freq)
      if (f > 0) f = (f + 1) / 2;  // flatten and retry
  }
}

// Canonical codes (RFC 1951 §3.2.2), bit-reversed for LSB-first output.
std::vector<uint32_t> canonical_codes(const std::vector<uint8_t>& lens) {
  std::array<uint32_t, kMaxBits + 2> count{}, next{};
  for (uint8_t l : lens) ++count[l];
  count[0] = 0;
  uint32_t code = 0;
  for (int b = 1; b <= kMaxBits; ++b) {
    code = (code + count[static_cast<size_t>(b - 1)]) << 1;
    next[static_cast<size_t>(b)] = code;
  }
  std::vector<uint32_t> codes(lens.size(), 0);
  for (size_t s = 0; s < lens.size(); ++s)
    if (lens[s]) codes[s] = reverse_bits(next[lens[s]]++, lens[s]);
  return codes;
}

// Tokens: 0..255 literal bytes, 256 + (length - 3) a match at distance 4. Returns the token count; `tokens` holds
// at least n entries.
size_t tokenize(const unsigned char* d, size_t n, uint16_t* tokens) {
  size_t p = 0, t = 0;
  const size_t head = std::min<size_t>(kDistance, n);
  for (; p < head; ++p) tokens[t++] = d[p];
  while (p < n) {
#if defined(__AVX2__)
    // Literal stretches in bulk: bit j of `eq` says d[p+j] == d[p+j-4]; a match (length >= 3) can start at j only
    // where bits j..j+2 are all set. Bytes before the first such j are literals, exactly as the loop below finds.
    if (p + 32 <= n) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + p));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + p - kDistance));
      const auto eq = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, b)));
      const uint32_t starts = eq & (eq >> 1) & (eq >> 2) & ((1u << 30) - 1);
      const size_t literals = starts ? static_cast<size_t>(__builtin_ctz(starts)) : 30;
      if (literals > 0) {
        // t <= p, so the 32 widened bytes stay inside the n-entry token buffer
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tokens + t), _mm256_cvtepu8_epi16(_mm256_castsi256_si128(a)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tokens + t + 16),
                            _mm256_cvtepu8_epi16(_mm256_extracti128_si256(a, 1)));
        t += literals;
        p += literals;
        continue;
      }
    }
#endif
    size_t len = 0;
    const size_t limit = std::min<size_t>(kMaxMatch, n - p);
    while (len + 8 <= limit) {
      uint64_t a, b;
      std::memcpy(&a, d + p + len, 8);
      std::memcpy(&b, d + p + len - kDistance, 8);
      const uint64_t x = a ^ b;
      if (x) {
        len += static_cast<size_t>(__builtin_ctzll(x) >> 3);
        goto measured;
      }
      len += 8;
    }
    while (len < limit && d[p + len] == d[p + len - kDistance]) ++len;
  measured:
    if (len >= kMinMatch) {
      tokens[t++] = static_cast<uint16_t>(256 + len - kMinMatch);
      p += len;
    } else {
      tokens[t++] = d[p];
      ++p;
    }
  }
  return t;
}

void write_stored(const unsigned char* d, size_t n, BitWriter& bw) {
  size_t p = 0;
  do {
    const size_t len = std::min<size_t>(65535, n - p);
    bw.reserve_bits(64);
    bw.put(0, 3);  // BFINAL=0, BTYPE=00
    bw.align_to_byte();
    const unsigned char hdr[4] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8),
                                  static_cast<unsigned char>(~len & 0xff), static_cast<unsigned char>((~len >> 8) & 0xff)};
    bw.bytes(hdr, 4);
    bw.bytes(d + p, len);
    p += len;
  } while (p < n);
}

}  // namespace

void deflate_runs_segment(const unsigned char* data, size_t n, DeflateBuffer& out) {
  BitWriter bw(out);
  const size_t start = bw.size();
  if (n == 0) {
    write_stored(data, 0, bw);
    return;
  }
  thread_local std::vector<uint16_t> token_buffer;
  if (token_buffer.size() < n) token_buffer.resize(n);
  uint16_t* const tokens = token_buffer.data();
  const size_t ntokens = tokenize(data, n, tokens);

  const auto& lc = length_codes();
  // Token counts in four interleaved tables: runs of one byte value then do not wait on the previous increment.
  std::array<std::array<uint32_t, 512>, 4> token_count{};
  size_t next = 0;
  for (; next + 4 <= ntokens; next += 4) {
    ++token_count[0][tokens[next]];
    ++token_count[1][tokens[next + 1]];
    ++token_count[2][tokens[next + 2]];
    ++token_count[3][tokens[next + 3]];
  }
  for (; next < ntokens; ++next) ++token_count[0][tokens[next]];
  std::vector<uint64_t> lit_freq(kLitLenSymbols, 0);
  for (size_t t = 0; t < 512; ++t) {
    const uint64_t c = uint64_t{token_count[0][t]} + token_count[1][t] + token_count[2][t] + token_count[3][t];
    if (c == 0) continue;
    lit_freq[t < 256 ? t : lc[t - 256 + kMinMatch].symbol] += c;
  }
  lit_freq[256] = 1;  // end of block
  const std::vector<uint8_t> lit_len = huffman_lengths(lit_freq, kMaxBits);
  const std::vector<uint32_t> lit_code = canonical_codes(lit_len);
  // Distance alphabet: symbols 0 and 3 with one bit each (a complete code); only 3 (distance 4) is used.
  const std::vector<uint8_t> dist_len = {1, 0, 0, 1};
  const std::vector<uint32_t> dist_code = canonical_codes(dist_len);

  int hlit = kLitLenSymbols;
  while (hlit > 257 && lit_len[static_cast<size_t>(hlit - 1)] == 0) --hlit;
  const int hdist = static_cast<int>(dist_len.size());
  std::vector<uint8_t> all_lens(lit_len.begin(), lit_len.begin() + hlit);
  all_lens.insert(all_lens.end(), dist_len.begin(), dist_len.end());

  // Run-length code the code lengths (symbols 16, 17, 18).
  struct ClToken {
    uint8_t sym, extra_bits, extra;
  };
  std::vector<ClToken> cl;
  for (size_t i = 0; i < all_lens.size();) {
    const uint8_t v = all_lens[i];
    size_t run = 1;
    while (i + run < all_lens.size() && all_lens[i + run] == v) ++run;
    i += run;
    if (v == 0) {
      while (run >= 11) {
        const size_t k = std::min<size_t>(run, 138);
        cl.push_back({18, 7, static_cast<uint8_t>(k - 11)});
        run -= k;
      }
      if (run >= 3) {
        cl.push_back({17, 3, static_cast<uint8_t>(run - 3)});
        run = 0;
      }
    } else {
      cl.push_back({v, 0, 0});
      --run;
      while (run >= 3) {
        const size_t k = std::min<size_t>(run, 6);
        cl.push_back({16, 2, static_cast<uint8_t>(k - 3)});
        run -= k;
      }
    }
    for (; run > 0; --run) cl.push_back({v, 0, 0});
  }
  std::vector<uint64_t> cl_freq(19, 0);
  for (const ClToken& t : cl) ++cl_freq[t.sym];
  const std::vector<uint8_t> cl_len = huffman_lengths(cl_freq, kMaxCodeLengthBits);
  const std::vector<uint32_t> cl_code = canonical_codes(cl_len);
  int hclen = 19;
  while (hclen > 4 && cl_len[static_cast<size_t>(kCodeLengthOrder[static_cast<size_t>(hclen - 1)])] == 0) --hclen;

  // Per-token bit patterns: a match is length code + extra bits + the one distance bit, in one put.
  std::array<uint32_t, 512> tok_bits{};
  std::array<uint8_t, 512> tok_count{};
  for (int b = 0; b < 256; ++b) {
    tok_bits[static_cast<size_t>(b)] = lit_code[static_cast<size_t>(b)];
    tok_count[static_cast<size_t>(b)] = lit_len[static_cast<size_t>(b)];
  }
  for (int len = kMinMatch; len <= kMaxMatch; ++len) {
    const LengthCode& c = lc[static_cast<size_t>(len)];
    const int l = lit_len[c.symbol];
    if (l == 0) continue;  // this length does not occur in the block
    const size_t t = static_cast<size_t>(256 + len - kMinMatch);
    tok_bits[t] = lit_code[c.symbol] | (static_cast<uint32_t>(c.extra_value) << l) |
                  (dist_code[kDistanceSymbol] << (l + c.extra_bits));
    tok_count[t] = static_cast<uint8_t>(l + c.extra_bits + dist_len[kDistanceSymbol]);
  }

  bw.reserve_bits(17 + 3 * 19 + 14 * cl.size() + 21 * ntokens + 64);
  bw.put(0b100, 3);  // BFINAL=0, BTYPE=10 (dynamic)
  bw.put(static_cast<uint32_t>(hlit - 257), 5);
  bw.put(static_cast<uint32_t>(hdist - 1), 5);
  bw.put(static_cast<uint32_t>(hclen - 4), 4);
  for (int k = 0; k < hclen; ++k) bw.put(cl_len[static_cast<size_t>(kCodeLengthOrder[static_cast<size_t>(k)])], 3);
  for (const ClToken& t : cl) {
    bw.put(cl_code[t.sym], cl_len[t.sym]);
    if (t.extra_bits) bw.put(t.extra, t.extra_bits);
  }
  for (size_t k = 0; k < ntokens; ++k) bw.put_flush(tok_bits[tokens[k]], tok_count[tokens[k]]);
  bw.put(lit_code[256], lit_len[256]);
  // Byte-align with an empty stored block (a "sync flush"), so segments concatenate.
  bw.put(0, 3);
  bw.align_to_byte();
  const unsigned char sync[4] = {0x00, 0x00, 0xff, 0xff};
  bw.bytes(sync, 4);

  // Incompressible segment: stored blocks instead (n + 5 bytes per 64 KiB).
  const size_t stored_size = n + 5 * ((n + 65534) / 65535);
  if (bw.size() - start > stored_size) {
    bw.rewind(start);
    write_stored(data, n, bw);
  }
}

}  // namespace AMOSPREP_ISA_NS

#if !defined(AMOSPREP_ISA_V3)  // the public entry points: compiled once

#if defined(AMOSPREP_HAVE_ISA_V3)
namespace isa_v3 {
void deflate_runs_segment(const unsigned char* data, size_t n, DeflateBuffer& out);
}  // namespace isa_v3
#endif

void deflate_runs_segment(const unsigned char* data, size_t n, DeflateBuffer& out) {
  AMOSPREP_ISA_DISPATCH(deflate_runs_segment, data, n, out);
}

void DeflateBuffer::grow(size_t new_capacity, size_t keep) {
  std::unique_ptr<unsigned char[]> fresh(new unsigned char[new_capacity]);  // uninitialised on purpose
  if (keep) std::memcpy(fresh.get(), data.get(), keep);
  data = std::move(fresh);
  capacity = new_capacity;
}

std::span<const DeflateBuffer> DeflateRuns::compress(const unsigned char* data, size_t n) {
  const std::span<const unsigned char> one(data, n);
  return compress(std::span<const std::span<const unsigned char>>(&one, 1));
}

std::span<const DeflateBuffer> DeflateRuns::compress(std::span<const std::span<const unsigned char>> pieces) {
  begin();
  for (const auto& piece : pieces) append(piece);
  return finish();
}

void DeflateRuns::begin() { used_ = 0; }

std::span<const DeflateBuffer> DeflateRuns::compress_piece(std::span<const unsigned char> piece) {
  begin();
  append(piece);
  return {parts_.data(), used_};
}

void DeflateRuns::append(std::span<const unsigned char> piece) {
  const size_t count = (piece.size() + kSegmentBytes - 1) / kSegmentBytes;
  if (parts_.size() < used_ + count + 1) parts_.resize(used_ + count + 1);
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t s = 0; s < count; ++s) {
    const size_t begin = s * kSegmentBytes;
    DeflateBuffer& out = parts_[used_ + s];
    out.size = 0;
    deflate_runs_segment(piece.data() + begin, std::min(kSegmentBytes, piece.size() - begin), out);
  }
  used_ += count;
}

std::span<const DeflateBuffer> DeflateRuns::finish() {
  if (used_ == 0) {  // no data at all: one empty stored block keeps the stream well formed
    if (parts_.empty()) parts_.resize(1);
    parts_[0].size = 0;
    deflate_runs_segment(nullptr, 0, parts_[0]);
    used_ = 1;
  }
  if (parts_.size() < used_ + 1) parts_.resize(used_ + 1);
  DeflateBuffer& last = parts_[used_];
  if (last.capacity < sizeof kDeflateFinalEmptyBlock) last.grow(64, 0);
  std::memcpy(last.data.get(), kDeflateFinalEmptyBlock, sizeof kDeflateFinalEmptyBlock);
  last.size = sizeof kDeflateFinalEmptyBlock;
  return {parts_.data(), used_ + 1};
}

std::vector<unsigned char> deflate_runs(const unsigned char* data, size_t n) {
  DeflateRuns compressor;
  std::vector<unsigned char> out;
  for (const DeflateBuffer& part : compressor.compress(data, n))
    out.insert(out.end(), part.data.get(), part.data.get() + part.size);
  return out;
}

#endif  // !AMOSPREP_ISA_V3

}  // namespace amosprep
