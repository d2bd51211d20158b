// XXH3 long-input inner loop, portable scalar version.
// Helpers are internal to this translation unit (see the note in hash_avx512.cpp).
#include <cstring>

#include "magray/hash.hpp"

namespace magray {
namespace xxh3_detail {

namespace {

inline uint64_t ld64(const uint8_t* p) noexcept {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// One stripe: for each lane i, acc[i ^ 1] += data[i]; acc[i] += lo32(k) * hi32(k), k = data[i] ^ key[i].
inline void accumulate_stripe(uint64_t acc[8], const uint8_t* in, const uint8_t* secret) noexcept {
    // Fully unrolled so that the accumulators stay in registers.
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; ++i) {
        const uint64_t d = ld64(in + 8 * i);
        const uint64_t k = d ^ ld64(secret + 8 * i);
        acc[i ^ 1] += d;
        acc[i] += (k & 0xffffffffu) * (k >> 32);
    }
}

inline void accumulate_stripes(uint64_t acc[8], const uint8_t* in, size_t nstripes,
                               const uint8_t* secret) noexcept {
    for (size_t n = 0; n < nstripes; ++n) {
        accumulate_stripe(acc, in + n * kStripeLen, secret + n * kSecretConsumeRate);
    }
}

inline void scramble(uint64_t acc[8], const uint8_t* secret) noexcept {
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; ++i) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= ld64(secret + 8 * i);
        a *= kPrime32_1;
        acc[i] = a;
    }
}

}  // namespace

void long_loop_scalar(uint64_t acc_out[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept {
    uint64_t acc[8];
    for (size_t i = 0; i < 8; ++i) acc[i] = acc_out[i];

    const size_t nblocks = (len - 1) / kBlockLen;
    for (size_t b = 0; b < nblocks; ++b) {
        accumulate_stripes(acc, input + b * kBlockLen, kStripesPerBlock, secret);
        scramble(acc, secret + kScrambleSecretOffset);
    }
    const size_t tail_stripes = ((len - 1) - nblocks * kBlockLen) / kStripeLen;
    accumulate_stripes(acc, input + nblocks * kBlockLen, tail_stripes, secret);
    accumulate_stripe(acc, input + len - kStripeLen, secret + kLastStripeSecretOffset);

    for (size_t i = 0; i < 8; ++i) acc_out[i] = acc[i];
}

}  // namespace xxh3_detail
}  // namespace magray
