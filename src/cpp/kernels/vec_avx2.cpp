// AVX2 + FMA float32 kernels (compiled with -mavx2 -mfma; chosen at run time).
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr Isa kIsa = Isa::avx2;

// Sliding window of lane masks: loading 8 ints at kMaskWindow + 8 - n enables the first n lanes.
alignas(32) const int32_t kMaskWindow[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

struct S {
    using V = __m256;
    static constexpr size_t W = 8;
    static constexpr size_t NR = 4;  // rows per step of the one-query kernels
    static constexpr size_t R = 6;  // 12 accumulators + 2 query vectors + 1 broadcast <= 16
    static inline __m256i mask(size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskWindow + 8 - n));
    }
    static inline V zero() { return _mm256_setzero_ps(); }
    static inline V load(const float* p) { return _mm256_loadu_ps(p); }
    static inline V load_tail(const float* p, size_t n) { return _mm256_maskload_ps(p, mask(n)); }
    static inline V set1(float x) { return _mm256_set1_ps(x); }
    static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
    static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static inline void store_tail(float* p, V v, size_t n) { _mm256_maskstore_ps(p, mask(n), v); }
    static inline V neg(V v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f)); }
    static inline uint64_t candidates(V key, V thr) {
        const V mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), key);
        const V m = _mm256_or_ps(_mm256_cmp_ps(key, thr, _CMP_NLT_UQ),
                                 _mm256_cmp_ps(mag, _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ));
        return static_cast<uint64_t>(_mm256_movemask_ps(m));
    }
    // Eight horizontal sums at once: element i of the result is the sum of v[i].
    static inline V reduce8(const V* v) {
        const V s0123 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        const V s4567 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
        return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                             _mm256_permute2f128_ps(s0123, s4567, 0x31));
    }
    static inline void reduce_many(const V* v, size_t n, float* out) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, reduce8(v + i));
        for (; i < n; ++i) out[i] = reduce(v[i]);
    }
    static inline float reduce(V v) {
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        x = _mm_add_ss(x, _mm_movehdup_ps(x));
        return _mm_cvtss_f32(x);
    }
};

#include "vec_simd.inc"

// The one-query scan, which the AVX-512 table uses too: it is bound by memory, and with
// 256-bit vectors it reads the rows as fast as a bare read loop does, while the same
// code with 512-bit vectors did not (cosine over 100k x 384, one thread: about 3.4 ms
// against 3.7-3.8 ms; bench/compare_kernels.py with MAGRAY_FORCE_ISA=avx2 and avx512).
//
// Rows are read strictly in order, each line prefetched kPrefetchBytes ahead of the
// loads that consume it: the hardware prefetchers alone leave one core well short of its
// memory bandwidth, and a whole row prefetched a few rows ahead in one burst did worse.
// Each row keeps four accumulators (eight with NORM, which adds |row|^2 from the same
// loads); their per-row sums are taken kGroup rows at a time, then scored and filtered
// against the caller's threshold while the next rows are still arriving.
constexpr size_t kGroup = 16;

template <bool L2, bool NORM>
inline void row_partials(const float* q, const float* b, size_t d, typename S::V& dot,
                         typename S::V& norm) {
    const size_t W = S::W;
    typename S::V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
    typename S::V n0 = S::zero(), n1 = S::zero(), n2 = S::zero(), n3 = S::zero();
    auto step = [&](typename S::V qv, typename S::V x, typename S::V& a, typename S::V& nrm) {
        if (L2) {
            const typename S::V t = S::sub(qv, x);
            a = S::fma(t, t, a);
        } else {
            if (NORM) __asm__("" : "+v"(x));  // one load feeds both FMAs (GCC would load twice)
            a = S::fma(qv, x, a);
            if (NORM) nrm = S::fma(x, x, nrm);
        }
    };
    size_t k = 0;
    for (; k + 4 * W <= d; k += 4 * W) {
        prefetch_ahead(b + k, 4 * W * sizeof(float));
        step(S::load(q + k), S::load(b + k), a0, n0);
        step(S::load(q + k + W), S::load(b + k + W), a1, n1);
        step(S::load(q + k + 2 * W), S::load(b + k + 2 * W), a2, n2);
        step(S::load(q + k + 3 * W), S::load(b + k + 3 * W), a3, n3);
    }
    if (k < d) prefetch_ahead(b + k, (d - k) * sizeof(float));
    for (; k + W <= d; k += W) step(S::load(q + k), S::load(b + k), a0, n0);
    if (k < d) step(S::load_tail(q + k, d - k), S::load_tail(b + k, d - k), a1, n1);
    dot = S::add(S::add(a0, a1), S::add(a2, a3));
    if (NORM) norm = S::add(S::add(n0, n1), S::add(n2, n3));
}

// Keys for the rows of one group and their candidate bits, as VecKernels::one_query_keys
// defines them. The loops run over the whole group (lanes past g hold stale values and are
// dropped), so that the compiler vectorises the square roots and divisions.
template <bool L2, bool NORM>
inline uint64_t group_keys(const float* dots, const float* sqs, size_t g, float qs, float thr,
                           float* keys) {
    alignas(64) float key[kGroup];
    for (size_t r = 0; r < kGroup; ++r) {
        if (L2) {
            key[r] = -dots[r];
        } else if (NORM) {
            const float v = sqs[r];
            const float scaled = dots[r] * qs * (1.0f / std::sqrt(v));
            key[r] = (v >= kNormalSquares && v <= FLT_MAX) ? scaled : NAN;
        } else {
            key[r] = dots[r];
        }
    }
    uint64_t bits = 0;
    for (size_t r = 0; r < kGroup; ++r)
        bits |= static_cast<uint64_t>(!(key[r] < thr) || !(std::fabs(key[r]) <= FLT_MAX)) << r;
    for (size_t r = 0; r < g; ++r) keys[r] = key[r];
    return g == kGroup ? bits : bits & ((uint64_t{1} << g) - 1);
}

template <bool L2, bool NORM>
uint64_t one_query_impl(const float* q, const float* B, size_t nb, size_t d, float qs, float thr,
                        float* keys, uint64_t* masks) {
    static_assert(64 % kGroup == 0, "a group must not straddle two mask words");
    typename S::V part[kGroup], partn[kGroup];
    alignas(64) float dots[kGroup], sqs[kGroup];
    uint64_t any = 0;
    for (size_t j0 = 0; j0 < nb; j0 += kGroup) {
        const size_t g = nb - j0 < kGroup ? nb - j0 : kGroup;
        for (size_t r = 0; r < g; ++r)
            row_partials<L2, NORM>(q, B + (j0 + r) * d, d, part[r], partn[r]);
        S::reduce_many(part, g, dots);
        if (NORM) S::reduce_many(partn, g, sqs);
        // Scoring and filtering ride along while the next rows are still on their way.
        const uint64_t bits = group_keys<L2, NORM>(dots, sqs, g, qs, thr, keys + j0);
        uint64_t& word = masks[j0 / 64];
        if (j0 % 64 == 0) word = 0;
        word |= bits << (j0 % 64);
        any |= bits;
    }
    return any;
}

}  // namespace

uint64_t one_query_keys_256(const float* q, const float* B, size_t nb, size_t d, Metric metric,
                            float qs, float thr, float* keys, uint64_t* masks) {
    switch (metric) {
        case Metric::l2: return one_query_impl<true, false>(q, B, nb, d, qs, thr, keys, masks);
        case Metric::cosine: return one_query_impl<false, true>(q, B, nb, d, qs, thr, keys, masks);
        case Metric::dot:
        default: return one_query_impl<false, false>(q, B, nb, d, qs, thr, keys, masks);
    }
}

namespace {

inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

inline int32_t dot_i8_tail(const int8_t* r, const int16_t* q, size_t k0, size_t d) {
    int32_t s = 0;
    for (size_t k = k0; k < d; ++k) s += static_cast<int32_t>(r[k]) * static_cast<int32_t>(q[k]);
    return s;
}

}  // namespace

// Two rows per step share each load of the query; sixteen int8 values are widened to
// int16 and multiplied-and-added in pairs into eight int32 lanes (exact: the caller
// bounds the query so that no sum overflows).
void dot_i8_rows_256(const int8_t* B, size_t nb, size_t d, const int16_t* q, int32_t* out) {
    const size_t d16 = d / 16 * 16;
    size_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const int8_t* r0 = B + i * d;
        const int8_t* r1 = r0 + d;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (size_t k = 0; k < d16; k += 16) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k));
            const __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + k)));
            const __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + k)));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, qv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x1, qv));
        }
        out[i] = hsum_epi32(a0) + dot_i8_tail(r0, q, d16, d);
        out[i + 1] = hsum_epi32(a1) + dot_i8_tail(r1, q, d16, d);
    }
    for (; i < nb; ++i) {
        const int8_t* r = B + i * d;
        __m256i a = _mm256_setzero_si256();
        for (size_t k = 0; k < d16; k += 16) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k));
            const __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + k)));
            a = _mm256_add_epi32(a, _mm256_madd_epi16(x, qv));
        }
        out[i] = hsum_epi32(a) + dot_i8_tail(r, q, d16, d);
    }
}

const VecKernels& vec_kernels_avx2() { return kTable; }

}  // namespace magray
