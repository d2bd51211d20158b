// XXH3 long-input inner loop, AVX-512 version (compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx2 -mfma).
// Every helper here is static inline / internal: a non-static inline function or template
// instantiation shared with other translation units could let the linker hand this
// AVX-512-compiled copy to callers running on CPUs without AVX-512.
#include "magray/hash.hpp"

#if defined(__AVX512F__)
#include "avx512_intrin.hpp"
#endif

namespace magray {
namespace xxh3_detail {

#if defined(__AVX512F__)

namespace {

constexpr size_t kPrefetchDist = 256;

// Moves the high 32 bits of each 64-bit lane into its low 32 bits (a shuffle, which keeps the
// shift/multiply units free for the multiply).
static inline __attribute__((always_inline)) __m512i hi_to_lo(__m512i v) noexcept {
    return _mm512_shuffle_epi32(v, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(0, 3, 0, 1)));
}

// Swaps the two 64-bit lanes inside each 128-bit block: data lane i feeds accumulator i ^ 1.
static inline __attribute__((always_inline)) __m512i swap_lane_pairs(__m512i v) noexcept {
    return _mm512_shuffle_epi32(v, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(1, 0, 3, 2)));
}

// One stripe into the 8 accumulators (all in one register).
static inline __attribute__((always_inline)) __m512i accumulate_stripe(__m512i acc, const uint8_t* in,
                                                                         __m512i key) noexcept {
    const __m512i d = _mm512_loadu_si512(in);
    const __m512i k = _mm512_xor_si512(d, key);
    const __m512i prod = _mm512_mul_epu32(k, hi_to_lo(k));
    return _mm512_add_epi64(acc, _mm512_add_epi64(prod, swap_lane_pairs(d)));
}

static inline __attribute__((always_inline)) __m512i scramble(__m512i a, __m512i key, __m512i prime) noexcept {
    // a ^ (a >> 47) ^ key in one ternary-logic op (0x96 = three-way xor).
    a = _mm512_ternarylogic_epi64(a, _mm512_srli_epi64(a, 47), key, 0x96);
    const __m512i lo = _mm512_mul_epu32(a, prime);
    const __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), prime);
    return _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32));
}

}  // namespace

void long_loop_avx512(uint64_t acc_io[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept {
    __m512i acc = _mm512_loadu_si512(acc_io);
    const __m512i prime = _mm512_set1_epi32(static_cast<int>(kPrime32_1));
    const __m512i scr_key = _mm512_loadu_si512(secret + kScrambleSecretOffset);

    // The 16 per-stripe secret windows of a block are the same for every block: keep them in
    // registers (16 zmm) instead of reloading them for each block.
    __m512i key[kStripesPerBlock];
#pragma GCC unroll 16
    for (size_t n = 0; n < kStripesPerBlock; ++n) key[n] = _mm512_loadu_si512(secret + n * kSecretConsumeRate);

    const size_t nblocks = (len - 1) / kBlockLen;
    const uint8_t* p = input;
    for (size_t b = 0; b < nblocks; ++b, p += kBlockLen) {
        // Within a block every update is an addition mod 2^64, so the products and the raw data
        // are summed separately, and the data sum gets its lane swap once per block instead of
        // once per stripe. Two sets of partial sums keep the dependency chains short.
        __m512i prod0 = acc, prod1 = _mm512_setzero_si512();
        __m512i data0 = _mm512_setzero_si512(), data1 = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (size_t n = 0; n < kStripesPerBlock; n += 2) {
            const uint8_t* s0 = p + n * kStripeLen;
            const uint8_t* s1 = s0 + kStripeLen;
            _mm_prefetch(reinterpret_cast<const char*>(s0 + kPrefetchDist), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(s1 + kPrefetchDist), _MM_HINT_T0);
            const __m512i d0 = _mm512_loadu_si512(s0);
            const __m512i d1 = _mm512_loadu_si512(s1);
            const __m512i k0 = _mm512_xor_si512(d0, key[n]);
            const __m512i k1 = _mm512_xor_si512(d1, key[n + 1]);
            prod0 = _mm512_add_epi64(prod0, _mm512_mul_epu32(k0, hi_to_lo(k0)));
            prod1 = _mm512_add_epi64(prod1, _mm512_mul_epu32(k1, hi_to_lo(k1)));
            data0 = _mm512_add_epi64(data0, d0);
            data1 = _mm512_add_epi64(data1, d1);
        }
        const __m512i data = swap_lane_pairs(_mm512_add_epi64(data0, data1));
        acc = scramble(_mm512_add_epi64(_mm512_add_epi64(prod0, prod1), data), scr_key, prime);
    }
    const size_t tail_stripes = ((len - 1) - nblocks * kBlockLen) / kStripeLen;
    for (size_t n = 0; n < tail_stripes; ++n) {
        acc = accumulate_stripe(acc, p + n * kStripeLen, _mm512_loadu_si512(secret + n * kSecretConsumeRate));
    }
    acc = accumulate_stripe(acc, input + len - kStripeLen, _mm512_loadu_si512(secret + kLastStripeSecretOffset));

    _mm512_storeu_si512(acc_io, acc);
}

#else  // !__AVX512F__: built without the AVX-512 flags (e.g. another architecture); still correct.

void long_loop_avx512(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept {
    long_loop_scalar(acc, input, len, secret);
}

#endif

}  // namespace xxh3_detail
}  // namespace magray
