#include "amosprep/json_mirror.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/pyjson.hpp"

namespace amosprep {

namespace {

using Json = nlohmann::ordered_json;

Json number(double d) {
  if (!std::isfinite(d)) return nullptr;
  return d;
}

// The double nearest to the float's shortest decimal form, so that 0.1f prints as 0.1 and parses back to 0.1f.
Json number(float f) {
  if (!std::isfinite(f)) return nullptr;
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

template <class T>
T load(const char* p) {
  T x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

Json element(py::DType t, const char* p) {
  switch (t) {
    case py::DType::f4: return number(load<float>(p));
    case py::DType::f8: return number(load<double>(p));
    case py::DType::i8: return load<int64_t>(p);
    case py::DType::i4: return load<int32_t>(p);
    case py::DType::i2: return load<int16_t>(p);
    case py::DType::u1: return load<uint8_t>(p);
    case py::DType::b1: return *p != 0;
  }
  return nullptr;
}

Json nested(const py::NdArray& a, size_t axis, const char*& p) {
  if (axis == a.shape.size()) {
    Json e = element(a.dtype, p);
    p += py::dtype_size(a.dtype);
    return e;
  }
  Json arr = Json::array();
  for (int64_t i = 0; i < a.shape[axis]; ++i) arr.push_back(nested(a, axis + 1, p));
  return arr;
}

// The array's bytes, after checking that they match its shape.
const char* checked_bytes(const py::NdArray& a) {
  uint64_t n = 1;
  for (int64_t s : a.shape) n *= static_cast<uint64_t>(s);
  if (n * py::dtype_size(a.dtype) != a.bytes.size()) throw InternalError("json mirror: ndarray bytes do not match shape");
  return a.bytes.data();
}

// Python's repr of simple key values, for tuple keys.
std::string py_repr(const py::Value& v) {
  if (v.is<py::None>()) return "None";
  if (v.is<bool>()) return v.as<bool>() ? "True" : "False";
  if (v.is<int64_t>()) return std::to_string(v.as<int64_t>());
  if (v.is<double>()) return python_float_repr(v.as<double>());
  if (v.is<std::string>()) return "'" + v.as<std::string>() + "'";
  if (v.is<py::Tuple>()) {
    const auto& items = v.as<py::Tuple>().items;
    std::string s = "(";
    for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + py_repr(items[i]);
    return s + (items.size() == 1 ? ",)" : ")");
  }
  return to_json(v).dump();
}

// json.dumps key conversion: str as is, True/False/None -> "true"/"false"/"null", numbers via repr.
std::string key_string(const py::Value& k) {
  if (k.is<std::string>()) return k.as<std::string>();
  if (k.is<bool>()) return k.as<bool>() ? "true" : "false";
  if (k.is<py::None>()) return "null";
  if (k.is<int64_t>()) return std::to_string(k.as<int64_t>());
  if (k.is<double>()) return python_float_repr(k.as<double>());
  if (k.is<py::NpScalar>()) {
    const Json j = to_json(k);
    return j.is_string() ? j.get<std::string>() : j.dump();
  }
  return py_repr(k);
}

}  // namespace

nlohmann::ordered_json to_json(const py::Value& v) {
  return std::visit(
      [&](const auto& x) -> Json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, py::None>) return nullptr;
        else if constexpr (std::is_same_v<T, bool>) return x;
        else if constexpr (std::is_same_v<T, int64_t>) return x;
        else if constexpr (std::is_same_v<T, double>) return number(x);
        else if constexpr (std::is_same_v<T, std::string>) return x;
        else if constexpr (std::is_same_v<T, py::List> || std::is_same_v<T, py::Tuple>) {
          Json arr = Json::array();
          for (const auto& item : x.items) arr.push_back(to_json(item));
          return arr;
        } else if constexpr (std::is_same_v<T, py::Dict>) {
          Json obj = Json::object();
          for (const auto& [k, val] : x.items) obj[key_string(k)] = to_json(val);
          return obj;
        } else if constexpr (std::is_same_v<T, py::NdArray>) {
          const char* p = checked_bytes(x);
          return nested(x, 0, p);
        } else {
          static_assert(std::is_same_v<T, py::NpScalar>);
          if (x.bytes.size() != py::dtype_size(x.dtype)) throw InternalError("json mirror: bad numpy scalar");
          return element(x.dtype, x.bytes.data());
        }
      },
      v.v);
}

namespace {

// to_json(v).dump(2) written directly: containers laid out here, every leaf printed by nlohmann itself (so numbers
// and strings look exactly the same), except integer ndarray elements, the bulk of a case's class locations.
class IndentedWriter {
 public:
  explicit IndentedWriter(std::string& out) : out_(out) {}

  void value(const py::Value& v, int level) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, py::List> || std::is_same_v<T, py::Tuple>) {
            sequence('[', ']', x.items.size(), level, [&](size_t i) { value(x.items[i], level + 1); });
          } else if constexpr (std::is_same_v<T, py::Dict>) {
            // keys equal as strings: the first position, the last value (as assigning into the ordered_json)
            std::vector<std::pair<std::string, const py::Value*>> items;
            std::unordered_map<std::string, size_t> slot;
            for (const auto& [k, val] : x.items) {
              std::string key = key_string(k);
              const auto [it, fresh] = slot.emplace(key, items.size());
              if (fresh) items.emplace_back(std::move(key), &val);
              else items[it->second].second = &val;
            }
            sequence('{', '}', items.size(), level, [&](size_t i) {
              out_ += Json(items[i].first).dump();
              out_ += ": ";
              value(*items[i].second, level + 1);
            });
          } else if constexpr (std::is_same_v<T, py::NdArray>) {
            const char* p = checked_bytes(x);
            array(x, 0, level, p);
          } else {
            out_ += to_json(v).dump();
          }
        },
        v.v);
  }

 private:
  // open, then n items each on its own line indented one level deeper, then close; "[]" / "{}" when empty.
  template <class Item>
  void sequence(char open, char close, size_t n, int level, Item&& item) {
    out_ += open;
    if (n == 0) {
      out_ += close;
      return;
    }
    for (size_t i = 0; i < n; ++i) {
      out_ += i ? ",\n" : "\n";
      out_.append(static_cast<size_t>(2 * (level + 1)), ' ');
      item(i);
    }
    out_ += '\n';
    out_.append(static_cast<size_t>(2 * level), ' ');
    out_ += close;
  }
  void array(const py::NdArray& a, size_t axis, int level, const char*& p) {
    if (axis == a.shape.size()) {
      element_text(a.dtype, p);
      p += py::dtype_size(a.dtype);
      return;
    }
    sequence('[', ']', static_cast<size_t>(a.shape[axis]), level, [&](size_t) { array(a, axis + 1, level + 1, p); });
  }
  void element_text(py::DType t, const char* p) {
    switch (t) {
      case py::DType::i8: return integer(load<int64_t>(p));
      case py::DType::i4: return integer(load<int32_t>(p));
      case py::DType::i2: return integer(load<int16_t>(p));
      case py::DType::u1: return integer(load<uint8_t>(p));
      default: out_ += element(t, p).dump();
    }
  }
  void integer(int64_t x) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, x);
    out_.append(buf, r.ptr);
  }

  std::string& out_;
};

}  // namespace

std::string json_mirror_text(const py::Value& v) {
  std::string out;
  IndentedWriter(out).value(v, 0);
  out += '\n';
  return out;
}

void write_json_mirror(const std::string& path, const py::Value& v) { write_file_atomic(path, json_mirror_text(v)); }

}  // namespace amosprep
