// Straight UTF-8 encoding (RFC 3629) with vector ASCII runs: text is mostly ASCII even
// when one character is not, and those runs move 16 code units a step.
#include "magray/utf8.hpp"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace magray {
namespace {

// Copies the leading ASCII run of s[i..n) to o, 16 code units per step with SSE2 (the
// x86-64 baseline); returns the new i. The caller advances o by the same count.
template <typename Unit>
size_t ascii_run(const Unit* s, size_t i, size_t n, char* o) noexcept {
    const size_t start = i;
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        const Unit* p = s + i;
        __m128i bytes;
        if (sizeof(Unit) == 1) {
            bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            if (_mm_movemask_epi8(bytes) != 0) break;
        } else if (sizeof(Unit) == 2) {
            const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8));
            // Any bit above the low seven of a unit means not ASCII.
            const __m128i high = _mm_or_si128(a, b);
            if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_srli_epi16(high, 7), _mm_setzero_si128())) != 0xFFFF)
                break;
            bytes = _mm_packus_epi16(a, b);
        } else {
            const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4));
            const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8));
            const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 12));
            const __m128i high = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
            if (_mm_movemask_epi8(_mm_cmpeq_epi32(_mm_srli_epi32(high, 7), _mm_setzero_si128())) != 0xFFFF)
                break;
            // Values are < 0x80, so the signed 32->16 and unsigned 16->8 packs are exact.
            bytes = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (i - start)), bytes);
    }
#endif
    for (; i < n && static_cast<uint32_t>(s[i]) < 0x80; ++i) o[i - start] = static_cast<char>(s[i]);
    return i;
}

template <typename Unit>
size_t encode_units(const Unit* s, size_t n, char* out) noexcept {
    char* o = out;
    size_t i = 0;
    while (i < n) {
        const size_t j = ascii_run(s, i, n, o);
        o += j - i;
        i = j;
        if (i >= n) break;
        const uint32_t c = static_cast<uint32_t>(s[i++]);
        if (c < 0x800) {
            *o++ = static_cast<char>(0xC0 | (c >> 6));
            *o++ = static_cast<char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) return SIZE_MAX;
            *o++ = static_cast<char>(0xE0 | (c >> 12));
            *o++ = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            *o++ = static_cast<char>(0x80 | (c & 0x3F));
        } else {
            *o++ = static_cast<char>(0xF0 | (c >> 18));
            *o++ = static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            *o++ = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            *o++ = static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    return static_cast<size_t>(o - out);
}

}  // namespace

size_t utf8_encode(const void* data, size_t n, int width, char* out) noexcept {
    switch (width) {
        case 1: return encode_units(static_cast<const uint8_t*>(data), n, out);
        case 2: return encode_units(static_cast<const uint16_t*>(data), n, out);
        default: return encode_units(static_cast<const uint32_t*>(data), n, out);
    }
}

}  // namespace magray
