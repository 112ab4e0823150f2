#include "amosprep/pyjson.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <vector>

#include "amosprep/error.hpp"

namespace amosprep {

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: "d[.ddd]e[+-]xx".
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string s(buf, res.ptr);
  std::string out;
  size_t i = 0;
  if (s[0] == '-') {
    out += '-';
    i = 1;
  }
  const size_t e_pos = s.find('e');
  std::string digits;
  for (size_t k = i; k < e_pos; ++k)
    if (s[k] != '.') digits += s[k];
  const int exp10 = std::stoi(s.substr(e_pos + 1));
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  const int nd = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {  // Python's repr switches to exponent notation here
    out += digits[0];
    if (nd > 1) out += '.' + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += ebuf;
  } else if (decpt <= 0) {
    out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (decpt < nd) {
    out += digits.substr(0, static_cast<size_t>(decpt)) + '.' + digits.substr(static_cast<size_t>(decpt));
  } else {
    out += digits + std::string(static_cast<size_t>(decpt - nd), '0') + ".0";
  }
  return out;
}

namespace {

void append_u_escape(std::string& out, unsigned cp) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\u%04x", cp);
  out += buf;
}

/// A JSON string literal with Python's ensure_ascii escaping.
void append_string(std::string& out, const std::string& s) {
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7f) append_u_escape(out, c);
          else out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    int len = 0;
    unsigned cp = 0;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else throw InternalError("python_json_dumps: invalid UTF-8 in string");
    if (i + static_cast<size_t>(len) > n) throw InternalError("python_json_dumps: truncated UTF-8 in string");
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = p[i + static_cast<size_t>(k)];
      if ((cc & 0xC0) != 0x80) throw InternalError("python_json_dumps: invalid UTF-8 in string");
      cp = (cp << 6) | (cc & 0x3F);
    }
    i += static_cast<size_t>(len);
    if (cp >= 0x10000) {
      const unsigned v = cp - 0x10000;
      append_u_escape(out, 0xD800 + (v >> 10));
      append_u_escape(out, 0xDC00 + (v & 0x3FF));
    } else {
      append_u_escape(out, cp);
    }
  }
  out += '"';
}

void dump(std::string& out, const nlohmann::ordered_json& j, int indent, bool sort_keys, int level) {
  using V = nlohmann::ordered_json::value_t;
  const bool pretty = indent >= 0;
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (j.type()) {
    case V::null: out += "null"; return;
    case V::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case V::number_integer: out += std::to_string(j.get<int64_t>()); return;
    case V::number_unsigned: out += std::to_string(j.get<uint64_t>()); return;
    case V::number_float: out += python_float_repr(j.get<double>()); return;
    case V::string: append_string(out, j.get_ref<const std::string&>()); return;
    case V::array: {
      if (j.empty()) { out += "[]"; return; }
      out += '[';
      bool first = true;
      for (const auto& e : j) {
        if (!first) out += pretty ? "," : ", ";
        first = false;
        if (pretty) newline(level + 1);
        dump(out, e, indent, sort_keys, level + 1);
      }
      if (pretty) newline(level);
      out += ']';
      return;
    }
    case V::object: {
      if (j.empty()) { out += "{}"; return; }
      std::vector<std::pair<const std::string*, const nlohmann::ordered_json*>> items;
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(&it.key(), &it.value());
      // UTF-8 byte order equals code-point order, which is Python's str order.
      if (sort_keys)
        std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
      out += '{';
      bool first = true;
      for (const auto& [k, v] : items) {
        if (!first) out += pretty ? "," : ", ";
        first = false;
        if (pretty) newline(level + 1);
        append_string(out, *k);
        out += ": ";
        dump(out, *v, indent, sort_keys, level + 1);
      }
      if (pretty) newline(level);
      out += '}';
      return;
    }
    case V::binary:
    case V::discarded: throw InternalError("python_json_dumps: value has no JSON form");
  }
}

}  // namespace

std::string python_json_dumps(const nlohmann::ordered_json& j, int indent, bool sort_keys) {
  std::string out;
  dump(out, j, indent, sort_keys, 0);
  return out;
}

}  // namespace amosprep
