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
    static constexpr size_t kRegisters = 16;
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
    static inline void reduce_many(const V* v, size_t n, float* out) {
        for (size_t i = 0; i < n; ++i) out[i] = reduce(v[i]);
    }
    static inline float reduce(V v) {
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        x = _mm_add_ss(x, _mm_movehdup_ps(x));
        return _mm_cvtss_f32(x);
    }
};

#include "vec_simd.inc"

}  // namespace

const VecKernels& vec_kernels_avx2() { return kTable; }

}  // namespace magray
