// AVX-512 float32 kernels (compiled with -mavx512f/bw/vl/dq; chosen at run time). The
// one-query top-k scan is the 256-bit one from vec_avx2.cpp (see there for why).
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "avx512_intrin.hpp"
#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr Isa kIsa = Isa::avx512;

struct S {
    using V = __m512;
    static constexpr size_t W = 16;
    static constexpr size_t NR = 8;  // rows per step of the one-query kernels
    static constexpr size_t R = 12;  // 24 accumulators + 2 query vectors + 1 broadcast <= 32
    static inline __mmask16 mask(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
    static inline V zero() { return _mm512_setzero_ps(); }
    static inline V load(const float* p) { return _mm512_loadu_ps(p); }
    static inline V load_tail(const float* p, size_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
    static inline V set1(float x) { return _mm512_set1_ps(x); }
    static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
    static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    static inline void store_tail(float* p, V v, size_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
    static inline V neg(V v) { return _mm512_xor_ps(v, _mm512_set1_ps(-0.0f)); }
    static inline uint64_t candidates(V key, V thr) {
        const V mag = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), key);
        return static_cast<uint64_t>(_mm512_cmp_ps_mask(key, thr, _CMP_NLT_UQ) |
                                     _mm512_cmp_ps_mask(mag, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ));
    }
    // Sixteen horizontal sums in 45 instructions: add pairs inside 128-bit lanes, then
    // across lanes, so that element i of the result is the sum of v[i].
    static inline V reduce16(const V* v) {
        V p[8];
        for (int j = 0; j < 8; ++j)
            p[j] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * j], v[2 * j + 1]),
                                 _mm512_unpackhi_ps(v[2 * j], v[2 * j + 1]));
        V q[4];
        for (int j = 0; j < 4; ++j) {
            const __m512d x = _mm512_castps_pd(p[2 * j]), y = _mm512_castps_pd(p[2 * j + 1]);
            q[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
        }
        const V t01 = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], 0x88), _mm512_shuffle_f32x4(q[0], q[1], 0xDD));
        const V t23 = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], 0x88), _mm512_shuffle_f32x4(q[2], q[3], 0xDD));
        return _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    }
    static inline void reduce_many(const V* v, size_t n, float* out) {
        size_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, reduce16(v + i));
        for (; i < n; ++i) out[i] = reduce(v[i]);
    }
    static inline float reduce(V v) {
        const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        x = _mm_add_ss(x, _mm_movehdup_ps(x));
        return _mm_cvtss_f32(x);
    }
};

#include "vec_simd.inc"

}  // namespace

const VecKernels& vec_kernels_avx512() { return kTable; }

}  // namespace magray
