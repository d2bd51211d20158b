// UTF-8 encoding of CPython's compact str storage with AVX-512 VBMI2 (compiled with
// -mavx512f/bw/vl/dq/vbmi2; chosen at run time). Sixteen code points a step: each 32-bit
// lane builds its one to four UTF-8 bytes (RFC 3629) in place, and one byte compress packs
// the lanes together. The loop has no branch on the text itself (an "all ASCII" shortcut
// was tried): in a batch the text usually comes from L3 or memory, and a mispredicted
// branch waiting on such a load cost more than the shortcut saved (measured).
// Every helper is internal (see hash_avx512.cpp for why).
#include "magray/utf8.hpp"

#if defined(__AVX512VBMI2__)
#include "avx512_intrin.hpp"

namespace magray {
namespace {

template <int Width>
size_t encode(const uint8_t* s, size_t n, char* out) noexcept {
    const __m512i byte_index = _mm512_set1_epi32(0x03020100);
    const __m512i ones = _mm512_set1_epi32(1);
    const __m512i low6 = _mm512_set1_epi32(0x3F);
    const __m512i cont = _mm512_set1_epi32(0x80);
    char* o = out;
    size_t i = 0;
    while (i < n) {
        const size_t m = n - i < 16 ? n - i : 16;
        const __mmask16 lanes = static_cast<__mmask16>(m == 16 ? 0xFFFFu : (1u << m) - 1u);
        // Masked loads only for the tail: they are slow to fill from beyond L2.
        __m512i c;
        if (Width == 1)
            c = _mm512_cvtepu8_epi32(m == 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))
                                             : _mm_maskz_loadu_epi8(lanes, s + i));
        else if (Width == 2)
            c = _mm512_cvtepu16_epi32(m == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 2 * i))
                                              : _mm256_maskz_loadu_epi16(lanes, s + 2 * i));
        else
            c = m == 16 ? _mm512_loadu_si512(s + 4 * i) : _mm512_maskz_loadu_epi32(lanes, s + 4 * i);
        const __mmask16 ge80 = _mm512_cmpge_epu32_mask(c, cont);
        if (Width > 1) {
            // A lone surrogate has no UTF-8 form (str.encode refuses it too).
            const __m512i sur = _mm512_and_si512(c, _mm512_set1_epi32(static_cast<int>(0xFFFFF800u)));
            if (_mm512_cmpeq_epi32_mask(sur, _mm512_set1_epi32(0xD800)) != 0) return SIZE_MAX;
        }
        const __m512i t0 = _mm512_or_si512(_mm512_and_si512(c, low6), cont);
        const __m512i t1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 6), low6), cont);
        // Two bytes: 110xxxxx 10xxxxxx, first byte in the lowest byte of the lane.
        __m512i w = _mm512_mask_or_epi32(c, ge80,
                                         _mm512_or_si512(_mm512_srli_epi32(c, 6), _mm512_set1_epi32(0xC0)),
                                         _mm512_slli_epi32(t0, 8));
        __m512i count = _mm512_mask_add_epi32(ones, ge80, ones, ones);
        if (Width > 1) {
            const __mmask16 ge800 = _mm512_cmpge_epu32_mask(c, _mm512_set1_epi32(0x800));
            const __m512i w3 = _mm512_or_si512(
                _mm512_or_si512(_mm512_srli_epi32(c, 12), _mm512_set1_epi32(0xE0)),
                _mm512_or_si512(_mm512_slli_epi32(t1, 8), _mm512_slli_epi32(t0, 16)));
            w = _mm512_mask_mov_epi32(w, ge800, w3);
            count = _mm512_mask_add_epi32(count, ge800, count, ones);
            if (Width == 4) {
                const __mmask16 ge10000 = _mm512_cmpge_epu32_mask(c, _mm512_set1_epi32(0x10000));
                const __m512i t2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 12), low6), cont);
                const __m512i w4 = _mm512_or_si512(
                    _mm512_or_si512(_mm512_or_si512(_mm512_srli_epi32(c, 18), _mm512_set1_epi32(0xF0)),
                                    _mm512_slli_epi32(t2, 8)),
                    _mm512_or_si512(_mm512_slli_epi32(t1, 16), _mm512_slli_epi32(t0, 24)));
                w = _mm512_mask_mov_epi32(w, ge10000, w4);
                count = _mm512_mask_add_epi32(count, ge10000, count, ones);
            }
        }
        // Keep byte j of lane l when j < count[l]; lanes past m keep nothing.
        count = _mm512_maskz_mov_epi32(lanes, count);
        const __mmask64 keep =
            _mm512_cmplt_epu8_mask(byte_index, _mm512_mullo_epi32(count, _mm512_set1_epi32(0x01010101)));
        _mm512_storeu_si512(o, _mm512_maskz_compress_epi8(keep, w));
        o += _mm_popcnt_u64(keep);
        i += m;
    }
    return static_cast<size_t>(o - out);
}

}  // namespace

size_t utf8_encode_avx512(const void* data, size_t n, int width, char* out) noexcept {
    const uint8_t* s = static_cast<const uint8_t*>(data);
    switch (width) {
        case 1: return encode<1>(s, n, out);
        case 2: return encode<2>(s, n, out);
        default: return encode<4>(s, n, out);
    }
}

}  // namespace magray

#endif
