// XXH3 long-input inner loop, AVX2 version (compiled with -mavx2 -mfma).
// Helpers are static inline so that no AVX2-compiled code can be picked by the linker for
// callers in other translation units.
#include "magray/hash.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace magray {
namespace xxh3_detail {

#if defined(__AVX2__)

namespace {

constexpr size_t kPrefetchDist = 256;

static inline __attribute__((always_inline)) __m256i load(const uint8_t* p) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Moves the high 32 bits of each 64-bit lane into its low 32 bits.
static inline __attribute__((always_inline)) __m256i hi_to_lo(__m256i v) noexcept {
    return _mm256_shuffle_epi32(v, _MM_SHUFFLE(0, 3, 0, 1));
}

// Swaps the two 64-bit lanes inside each 128-bit half: data lane i feeds accumulator i ^ 1.
static inline __attribute__((always_inline)) __m256i swap_lane_pairs(__m256i v) noexcept {
    return _mm256_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2));
}

// Half a stripe (4 lanes) into 4 accumulators.
static inline __attribute__((always_inline)) __m256i stripe_half(__m256i acc, const uint8_t* in,
                                                                   const uint8_t* secret) noexcept {
    const __m256i d = load(in);
    const __m256i k = _mm256_xor_si256(d, load(secret));
    const __m256i prod = _mm256_mul_epu32(k, hi_to_lo(k));
    return _mm256_add_epi64(acc, _mm256_add_epi64(prod, swap_lane_pairs(d)));
}

static inline __attribute__((always_inline)) __m256i scramble_half(__m256i a, const uint8_t* secret,
                                                                     __m256i prime) noexcept {
    a = _mm256_xor_si256(a, _mm256_srli_epi64(a, 47));
    a = _mm256_xor_si256(a, load(secret));
    // 64-bit lanes times a 32-bit constant: lo32(a)*p + (hi32(a)*p << 32).
    const __m256i lo = _mm256_mul_epu32(a, prime);
    const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), prime);
    return _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
}

}  // namespace

void long_loop_avx2(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept {
    // Accumulator lanes 0..3 in a0, 4..7 in a1.
    __m256i a0 = load(reinterpret_cast<const uint8_t*>(acc));
    __m256i a1 = load(reinterpret_cast<const uint8_t*>(acc + 4));
    const __m256i prime = _mm256_set1_epi32(static_cast<int>(kPrime32_1));
    const uint8_t* scr = secret + kScrambleSecretOffset;

    const size_t nblocks = (len - 1) / kBlockLen;

    // The 16 per-stripe secret windows (overlapping, 8 bytes apart) copied once into an aligned
    // table, so the hot loop reads them with aligned loads that never straddle cache lines.
    alignas(64) uint8_t keys[kStripesPerBlock][kStripeLen];
    if (nblocks != 0) {
        for (size_t n = 0; n < kStripesPerBlock; ++n) {
            _mm256_store_si256(reinterpret_cast<__m256i*>(keys[n]), load(secret + n * kSecretConsumeRate));
            _mm256_store_si256(reinterpret_cast<__m256i*>(keys[n] + 32), load(secret + n * kSecretConsumeRate + 32));
        }
    }

    const uint8_t* p = input;
    for (size_t b = 0; b < nblocks; ++b, p += kBlockLen) {
        // Within a block every update is an addition mod 2^64: products and raw data are summed
        // separately and the data sum gets its lane swap once per block.
        __m256i prod0 = a0, prod1 = a1;
        __m256i data0 = _mm256_setzero_si256(), data1 = _mm256_setzero_si256();
        for (size_t n = 0; n < kStripesPerBlock; ++n) {
            const uint8_t* s = p + n * kStripeLen;
            const __m256i* key = reinterpret_cast<const __m256i*>(keys[n]);
            _mm_prefetch(reinterpret_cast<const char*>(s + kPrefetchDist), _MM_HINT_T0);
            const __m256i d0 = load(s);
            const __m256i d1 = load(s + 32);
            const __m256i k0 = _mm256_xor_si256(d0, _mm256_load_si256(key));
            const __m256i k1 = _mm256_xor_si256(d1, _mm256_load_si256(key + 1));
            prod0 = _mm256_add_epi64(prod0, _mm256_mul_epu32(k0, hi_to_lo(k0)));
            prod1 = _mm256_add_epi64(prod1, _mm256_mul_epu32(k1, hi_to_lo(k1)));
            data0 = _mm256_add_epi64(data0, d0);
            data1 = _mm256_add_epi64(data1, d1);
        }
        a0 = scramble_half(_mm256_add_epi64(prod0, swap_lane_pairs(data0)), scr, prime);
        a1 = scramble_half(_mm256_add_epi64(prod1, swap_lane_pairs(data1)), scr + 32, prime);
    }
    const size_t tail_stripes = ((len - 1) - nblocks * kBlockLen) / kStripeLen;
    for (size_t n = 0; n < tail_stripes; ++n) {
        a0 = stripe_half(a0, p + n * kStripeLen, secret + n * kSecretConsumeRate);
        a1 = stripe_half(a1, p + n * kStripeLen + 32, secret + n * kSecretConsumeRate + 32);
    }
    a0 = stripe_half(a0, input + len - kStripeLen, secret + kLastStripeSecretOffset);
    a1 = stripe_half(a1, input + len - kStripeLen + 32, secret + kLastStripeSecretOffset + 32);

    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), a0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + 4), a1);
}

#else  // !__AVX2__: built without the AVX2 flags (e.g. another architecture); never faster, still correct.

void long_loop_avx2(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept {
    long_loop_scalar(acc, input, len, secret);
}

#endif

}  // namespace xxh3_detail
}  // namespace magray
