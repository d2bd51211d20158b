// AVX-512 float32 kernels (compiled with -mavx512f/bw/vl/dq; chosen at run time).
#include <immintrin.h>

#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr Isa kIsa = Isa::avx512;

struct S {
    using V = __m512;
    static constexpr size_t W = 16;
    static constexpr size_t QR = 12;  // 24 accumulators + 2 panel vectors + 1 broadcast <= 32
    static constexpr size_t PR = 32;
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
