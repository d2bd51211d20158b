// XXH3-128 (64-bit seed), bit-exact with the reference xxHash XXH3_128bits_withSeed().
#pragma once

#include <cstddef>
#include <cstdint>

#include "magray/cpu.hpp"

namespace magray {

struct Hash128 {
    uint64_t lo;
    uint64_t hi;
};

// XXH3-128 of len bytes; isa selects the implementation of the long-input (>240 bytes) inner loop.
// The caller is responsible for passing an isa the running CPU supports.
Hash128 xxh3_128(const void* data, size_t len, uint64_t seed, Isa isa) noexcept;

// The canonical 16-byte digest, identical to xxhash's xxh3_128_digest(): hi big-endian then lo big-endian.
void hash128_canonical(Hash128 h, uint8_t out[16]) noexcept;

namespace xxh3_detail {

// Geometry of the long-input path. Only 192-byte secrets (the default one, or one derived
// from a seed) are used, so every block is 16 stripes of 64 bytes.
constexpr size_t kSecretSize = 192;
constexpr size_t kStripeLen = 64;
constexpr size_t kSecretConsumeRate = 8;  // secret advance per stripe
constexpr size_t kStripesPerBlock = (kSecretSize - kStripeLen) / kSecretConsumeRate;  // 16
constexpr size_t kBlockLen = kStripeLen * kStripesPerBlock;                           // 1024
constexpr size_t kScrambleSecretOffset = kSecretSize - kStripeLen;                    // 128
constexpr size_t kLastStripeSecretOffset = kSecretSize - kStripeLen - 7;              // 121
constexpr uint32_t kPrime32_1 = 0x9E3779B1u;

// The long-input inner loop: every full block except the last one (accumulate 16 stripes, then
// scramble), then the full stripes of the last block, then the final 64 bytes of the input as
// one more stripe. On return acc[] holds the accumulators ready for the final merge.
// Preconditions: len >= kStripeLen (callers use it for len > 240 only), secret is kSecretSize
// bytes. No alignment requirement on any pointer.
void long_loop_scalar(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept;
void long_loop_avx2(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept;
void long_loop_avx512(uint64_t acc[8], const uint8_t* input, size_t len, const uint8_t* secret) noexcept;

}  // namespace xxh3_detail

}  // namespace magray
