#include "amosprep/pickle_writer.hpp"

#include <cstring>
#include <map>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"

namespace amosprep {

namespace {

// Opcodes (Lib/pickle.py names).
constexpr char MARK = '(', STOP = '.', BINFLOAT = 'G', BININT = 'J', BININT1 = 'K', BININT2 = 'M', NONE = 'N',
               REDUCE = 'R', BUILD = 'b', APPEND = 'a', APPENDS = 'e', EMPTY_DICT = '}', EMPTY_LIST = ']',
               EMPTY_TUPLE = ')', SETITEM = 's', SETITEMS = 'u', TUPLE = 't', BINGET = 'h', LONG_BINGET = 'j',
               BINBYTES = 'B', SHORT_BINBYTES = 'C', BINUNICODE = 'X';
constexpr unsigned char PROTO = 0x80, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89,
                        LONG1 = 0x8a, SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e,
                        STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95;
constexpr size_t kFrameTarget = 64 * 1024;  // pickle's _FRAME_SIZE_TARGET
constexpr size_t kFrameMin = 4;             // smaller frames are written without a FRAME opcode
constexpr size_t kBatchSize = 1000;         // pickle's _BATCHSIZE for APPENDS / SETITEMS

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

class Pickler {
 public:
  std::string dump(const py::Value& v) {
    out_.push_back(static_cast<char>(PROTO));
    out_.push_back(4);
    save(v);
    op(STOP);
    commit_frame(true);
    return std::move(out_);
  }

 private:
  // ---- framing (pickle._Framer) ----
  void commit_frame(bool force) {
    if (frame_.empty() || (!force && frame_.size() < kFrameTarget)) return;
    if (frame_.size() >= kFrameMin) {
      out_.push_back(static_cast<char>(FRAME));
      raw64(out_, frame_.size());
    }
    out_ += frame_;
    frame_.clear();
  }
  // Payloads of a frame's size or more go outside frames, like pickle's write_large_bytes.
  void write_large(const std::string& header, const char* payload, size_t n) {
    if (n < kFrameTarget) {
      frame_ += header;
      frame_.append(payload, n);
      return;
    }
    commit_frame(true);
    out_ += header;
    out_.append(payload, n);
  }

  static void raw32(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  static void raw64(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void op(char c) { frame_.push_back(c); }
  void op(unsigned char c) { frame_.push_back(static_cast<char>(c)); }

  // ---- memo: only objects we know to be shared (globals, dtypes, numpy's constant reconstruct args) ----
  bool get_memo(const std::string& key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return false;
    if (it->second < 256) {
      op(BINGET);
      frame_.push_back(static_cast<char>(it->second));
    } else {
      op(LONG_BINGET);
      raw32(frame_, it->second);
    }
    return true;
  }
  void memoize(const std::string& key) {
    op(MEMOIZE);
    memo_.emplace(key, next_memo_++);
  }

  void global(const char* module, const char* name) {
    const std::string key = std::string("global:") + module + "." + name;
    if (get_memo(key)) return;
    save_str(module);
    save_str(name);
    op(STACK_GLOBAL);
    memoize(key);
  }

  // ---- scalars ----
  void save_int(int64_t x) {
    if (x >= 0 && x <= 0xff) {
      op(BININT1);
      frame_.push_back(static_cast<char>(x));
    } else if (x >= 0 && x <= 0xffff) {
      op(BININT2);
      frame_.push_back(static_cast<char>(x & 0xff));
      frame_.push_back(static_cast<char>((x >> 8) & 0xff));
    } else if (x >= -0x80000000LL && x <= 0x7fffffffLL) {
      op(BININT);
      raw32(frame_, static_cast<uint32_t>(static_cast<int32_t>(x)));
    } else {
      // LONG1: minimal little-endian two's complement, as pickle.encode_long.
      unsigned char b[8];
      const auto u = static_cast<uint64_t>(x);
      for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>((u >> (8 * i)) & 0xff);
      int n = 8;
      while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xff && (b[n - 2] & 0x80)))) --n;
      op(LONG1);
      frame_.push_back(static_cast<char>(n));
      frame_.append(reinterpret_cast<const char*>(b), static_cast<size_t>(n));
    }
  }
  void save_float(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    op(BINFLOAT);
    for (int i = 7; i >= 0; --i) frame_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));  // big-endian
  }
  void save_str(const std::string& s) {
    if (!valid_utf8(s)) throw InternalError("pickle: string is not valid UTF-8: " + s);
    std::string h;
    if (s.size() <= 0xff) {
      h.push_back(static_cast<char>(SHORT_BINUNICODE));
      h.push_back(static_cast<char>(s.size()));
    } else if (s.size() > 0xffffffffULL) {
      h.push_back(static_cast<char>(BINUNICODE8));
      raw64(h, s.size());
    } else {
      h.push_back(BINUNICODE);
      raw32(h, static_cast<uint32_t>(s.size()));
    }
    write_large(h, s.data(), s.size());
  }
  void save_bytes(const std::string& b) {
    std::string h;
    if (b.size() <= 0xff) {
      h.push_back(SHORT_BINBYTES);
      h.push_back(static_cast<char>(b.size()));
    } else if (b.size() > 0xffffffffULL) {
      h.push_back(static_cast<char>(BINBYTES8));
      raw64(h, b.size());
    } else {
      h.push_back(BINBYTES);
      raw32(h, static_cast<uint32_t>(b.size()));
    }
    write_large(h, b.data(), b.size());
  }

  // ---- numpy ----
  // np.dtype(...).__reduce__(): dtype('f8', False, True) then BUILD (3, '<', None, None, None, -1, -1, 0).
  void save_dtype(py::DType t) {
    const std::string descr = py::dtype_descr(t);
    const std::string key = "dtype:" + descr;
    if (get_memo(key)) return;
    global("numpy", "dtype");
    save_str(descr.substr(1));
    op(NEWFALSE);
    op(NEWTRUE);
    op(TUPLE3);
    op(REDUCE);
    op(MARK);
    save_int(3);
    if (!get_memo("str:" + descr.substr(0, 1))) {
      save_str(descr.substr(0, 1));
      memoize("str:" + descr.substr(0, 1));
    }
    op(NONE);
    op(NONE);
    op(NONE);
    save_int(-1);
    save_int(-1);
    save_int(0);
    op(TUPLE);
    op(BUILD);
    memoize(key);
  }
  void save_shape(const std::vector<int64_t>& shape) {
    save_tuple_of([&](size_t i) { save_int(shape[i]); }, shape.size());
  }
  // ndarray.__reduce__(): _reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, False, raw bytes).
  void save_ndarray(const py::NdArray& a) {
    uint64_t n = 1;
    for (int64_t s : a.shape) {
      if (s < 0) throw InternalError("pickle: negative ndarray dimension");
      n *= static_cast<uint64_t>(s);
    }
    if (n * py::dtype_size(a.dtype) != a.bytes.size()) throw InternalError("pickle: ndarray bytes do not match shape");
    global("numpy.core.multiarray", "_reconstruct");
    global("numpy", "ndarray");
    if (!get_memo("tuple:(0,)")) {
      save_int(0);
      op(TUPLE1);
      memoize("tuple:(0,)");
    }
    if (!get_memo("bytes:b")) {
      save_bytes("b");
      memoize("bytes:b");
    }
    op(TUPLE3);
    op(REDUCE);
    op(MARK);
    save_int(1);
    save_shape(a.shape);
    save_dtype(a.dtype);
    op(NEWFALSE);
    save_bytes(a.bytes);
    op(TUPLE);
    op(BUILD);
  }
  // numpy scalar.__reduce__(): numpy.core.multiarray.scalar(dtype, raw bytes).
  void save_npscalar(const py::NpScalar& s) {
    if (s.bytes.size() != py::dtype_size(s.dtype)) throw InternalError("pickle: numpy scalar has wrong byte count");
    global("numpy.core.multiarray", "scalar");
    save_dtype(s.dtype);
    save_bytes(s.bytes);
    op(TUPLE2);
    op(REDUCE);
  }

  // ---- containers ----
  template <class SaveItem>
  void save_tuple_of(SaveItem&& item, size_t n) {
    if (n == 0) {
      op(EMPTY_TUPLE);
      return;
    }
    if (n > 3) op(MARK);
    for (size_t i = 0; i < n; ++i) item(i);
    if (n == 1) op(TUPLE1);
    else if (n == 2) op(TUPLE2);
    else if (n == 3) op(TUPLE3);
    else op(TUPLE);
  }
  void save_list(const py::List& l) {
    op(EMPTY_LIST);
    for (size_t start = 0; start < l.items.size(); start += kBatchSize) {
      const size_t end = std::min(l.items.size(), start + kBatchSize);
      if (end - start == 1) {
        save(l.items[start]);
        op(APPEND);
        continue;
      }
      op(MARK);
      for (size_t i = start; i < end; ++i) save(l.items[i]);
      op(APPENDS);
    }
  }
  void save_dict(const py::Dict& d) {
    if (d.ordered) {
      global("collections", "OrderedDict");
      op(EMPTY_TUPLE);
      op(REDUCE);
    } else {
      op(EMPTY_DICT);
    }
    for (size_t start = 0; start < d.items.size(); start += kBatchSize) {
      const size_t end = std::min(d.items.size(), start + kBatchSize);
      if (end - start == 1) {
        save(d.items[start].first);
        save(d.items[start].second);
        op(SETITEM);
        continue;
      }
      op(MARK);
      for (size_t i = start; i < end; ++i) {
        save(d.items[i].first);
        save(d.items[i].second);
      }
      op(SETITEMS);
    }
  }

  void save(const py::Value& v) {
    commit_frame(false);
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, py::None>) op(NONE);
          else if constexpr (std::is_same_v<T, bool>) op(x ? NEWTRUE : NEWFALSE);
          else if constexpr (std::is_same_v<T, int64_t>) save_int(x);
          else if constexpr (std::is_same_v<T, double>) save_float(x);
          else if constexpr (std::is_same_v<T, std::string>) save_str(x);
          else if constexpr (std::is_same_v<T, py::List>) save_list(x);
          else if constexpr (std::is_same_v<T, py::Tuple>) save_tuple_of([&](size_t i) { save(x.items[i]); }, x.items.size());
          else if constexpr (std::is_same_v<T, py::Dict>) save_dict(x);
          else if constexpr (std::is_same_v<T, py::NdArray>) save_ndarray(x);
          else if constexpr (std::is_same_v<T, py::NpScalar>) save_npscalar(x);
        },
        v.v);
  }

  std::string out_, frame_;
  std::map<std::string, uint32_t> memo_;
  uint32_t next_memo_ = 0;
};

}  // namespace

std::string pickle_dumps(const py::Value& v) { return Pickler().dump(v); }

void write_pickle(const std::string& path, const py::Value& v) { write_file_atomic(path, pickle_dumps(v)); }

}  // namespace amosprep
