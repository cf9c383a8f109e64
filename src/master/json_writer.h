// A minimal JSON writer for the status API: objects, arrays, strings (escaped, UTF-8 passed
// through), integers, finite doubles (others become null), booleans. Commas are placed for the
// caller; key() must precede every value inside an object.
#pragma once
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace pccl::master {

class JsonWriter {
public:
    JsonWriter &beginObject() { return open('{'); }
    JsonWriter &endObject() { return close('}'); }
    JsonWriter &beginArray() { return open('['); }
    JsonWriter &endArray() { return close(']'); }
    JsonWriter &key(const std::string &k) {
        comma();
        quote(k);
        out_ += ':';
        afterKey_ = true;
        return *this;
    }
    JsonWriter &value(const std::string &s) { return raw([&] { quote(s); }); }
    JsonWriter &value(const char *s) { return value(std::string(s)); }
    JsonWriter &value(bool b) { return raw([&] { out_ += b ? "true" : "false"; }); }
    JsonWriter &value(uint64_t v) { return raw([&] { out_ += std::to_string(v); }); }
    JsonWriter &value(int64_t v) { return raw([&] { out_ += std::to_string(v); }); }
    JsonWriter &value(uint32_t v) { return value(static_cast<uint64_t>(v)); }
    JsonWriter &value(double v) {
        return raw([&] {
            if (!std::isfinite(v)) {
                out_ += "null";
                return;
            }
            char buf[32];
            auto r = std::to_chars(buf, buf + sizeof buf, v);
            out_.append(buf, r.ptr);
        });
    }
    JsonWriter &null() { return raw([&] { out_ += "null"; }); }
    const std::string &str() const { return out_; }

private:
    template <class F>
    JsonWriter &raw(F write) {
        comma();
        write();
        return *this;
    }
    JsonWriter &open(char c) {
        comma();
        out_ += c;
        first_.push_back(true);
        return *this;
    }
    JsonWriter &close(char c) {
        out_ += c;
        first_.pop_back();
        return *this;
    }
    void comma() {
        if (afterKey_) {
            afterKey_ = false;
            return;
        }
        if (!first_.empty()) {
            if (!first_.back()) out_ += ',';
            first_.back() = false;
        }
    }
    // Length of the valid UTF-8 sequence at s[i], or 0 (peers' error texts may hold any bytes).
    static size_t utf8Length(const std::string &s, size_t i) {
        const unsigned char c = s[i];
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return 0;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
        return n;
    }
    void quote(const std::string &s) {
        out_ += '"';
        for (size_t i = 0; i < s.size(); ++i) {
            const unsigned char c = s[i];
            if (c >= 0x80) {
                const size_t n = utf8Length(s, i);
                if (n == 0) out_ += "\\ufffd";
                else out_.append(s, i, n);
                i += n ? n - 1 : 0;
            } else if (c == '"' || c == '\\') {
                out_ += '\\';
                out_ += static_cast<char>(c);
            } else if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out_ += buf;
            } else {
                out_ += static_cast<char>(c);
            }
        }
        out_ += '"';
    }

    std::string out_;
    std::vector<bool> first_;
    bool afterKey_ = false;
};

} // namespace pccl::master
