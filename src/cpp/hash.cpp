// XXH3-128 with a 64-bit seed: the short and medium length paths, secret derivation, the
// long-input orchestration and final merge. The long-input inner loop lives in the per-ISA
// kernels (kernels/hash_*.cpp).
#include "magray/hash.hpp"

#include <cstring>

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__)
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "magray hash: only little-endian targets are supported"
#endif
#endif

namespace magray {

namespace {

using namespace xxh3_detail;

constexpr uint64_t kP32_1 = 0x9E3779B1u;
constexpr uint64_t kP32_2 = 0x85EBCA77u;
constexpr uint64_t kP32_3 = 0xC2B2AE3Du;
constexpr uint64_t kP64_1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP64_2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP64_3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP64_4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP64_5 = 0x27D4EB2F165667C5ull;
constexpr uint64_t kPMx1 = 0x165667919E3779F9ull;
constexpr uint64_t kPMx2 = 0x9FB21C651E98DF25ull;

// The published default secret (192 bytes).
alignas(64) const uint8_t kDefaultSecret[kSecretSize] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

constexpr size_t kMidSizeMax = 240;

inline uint32_t rd32(const uint8_t* p) noexcept {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline uint64_t rd64(const uint8_t* p) noexcept {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void wr64(uint8_t* p, uint64_t v) noexcept { std::memcpy(p, &v, sizeof v); }

inline uint32_t bswap32(uint32_t x) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_bswap32(x);
#else
    return ((x << 24) & 0xff000000u) | ((x << 8) & 0x00ff0000u) | ((x >> 8) & 0x0000ff00u) |
           ((x >> 24) & 0x000000ffu);
#endif
}

inline uint64_t bswap64(uint64_t x) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_bswap64(x);
#else
    return (static_cast<uint64_t>(bswap32(static_cast<uint32_t>(x))) << 32) |
           bswap32(static_cast<uint32_t>(x >> 32));
#endif
}

inline uint32_t rotl32(uint32_t x, unsigned r) noexcept { return (x << r) | (x >> (32u - r)); }

struct U128 {
    uint64_t lo;
    uint64_t hi;
};

// Full 64x64 -> 128-bit product.
inline U128 mul_full(uint64_t a, uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;
    const u128 p = static_cast<u128>(a) * b;
    return {static_cast<uint64_t>(p), static_cast<uint64_t>(p >> 64)};
#else
    const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    const uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    const uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    const uint64_t cross = (ll >> 32) + (hl & 0xffffffffu) + lh;
    return {(cross << 32) | (ll & 0xffffffffu), hh + (hl >> 32) + (cross >> 32)};
#endif
}

// 64x64 multiply, folded to 64 bits by xoring the two halves.
inline uint64_t mul_fold(uint64_t a, uint64_t b) noexcept {
    const U128 p = mul_full(a, b);
    return p.lo ^ p.hi;
}

inline uint64_t avalanche_xxh64(uint64_t h) noexcept {
    h ^= h >> 33;
    h *= kP64_2;
    h ^= h >> 29;
    h *= kP64_3;
    h ^= h >> 32;
    return h;
}

inline uint64_t avalanche_xxh3(uint64_t h) noexcept {
    h ^= h >> 37;
    h *= kPMx1;
    h ^= h >> 32;
    return h;
}

// ---- 0..16 bytes -------------------------------------------------------------------------

Hash128 len_0(const uint8_t* secret, uint64_t seed) noexcept {
    const uint64_t lo = seed ^ rd64(secret + 64) ^ rd64(secret + 72);
    const uint64_t hi = seed ^ rd64(secret + 80) ^ rd64(secret + 88);
    return {avalanche_xxh64(lo), avalanche_xxh64(hi)};
}

Hash128 len_1to3(const uint8_t* in, size_t len, const uint8_t* secret, uint64_t seed) noexcept {
    const uint32_t b_first = in[0];
    const uint32_t b_mid = in[len >> 1];
    const uint32_t b_last = in[len - 1];
    const uint32_t combined =
        b_last | (static_cast<uint32_t>(len) << 8) | (b_first << 16) | (b_mid << 24);
    const uint64_t lo = (static_cast<uint64_t>(rd32(secret) ^ rd32(secret + 4)) + seed) ^
                        static_cast<uint64_t>(combined);
    const uint64_t hi = (static_cast<uint64_t>(rd32(secret + 8) ^ rd32(secret + 12)) - seed) ^
                        static_cast<uint64_t>(rotl32(bswap32(combined), 13));
    return {avalanche_xxh64(lo), avalanche_xxh64(hi)};
}

Hash128 len_4to8(const uint8_t* in, size_t len, const uint8_t* secret, uint64_t seed) noexcept {
    const uint64_t first = rd32(in);
    const uint64_t last = rd32(in + len - 4);
    const uint64_t mseed = seed ^ (static_cast<uint64_t>(bswap32(static_cast<uint32_t>(seed))) << 32);
    const uint64_t combined = first | (last << 32);
    const uint64_t v = ((rd64(secret + 16) ^ rd64(secret + 24)) + mseed) ^ combined;
    const U128 m = mul_full(v, kP64_1 + (static_cast<uint64_t>(len) << 2));
    uint64_t hi = m.hi + (m.lo << 1);
    uint64_t lo = m.lo ^ (hi >> 3);
    lo ^= lo >> 35;
    lo *= kPMx2;
    lo ^= lo >> 28;
    hi = avalanche_xxh3(hi);
    return {lo, hi};
}

Hash128 len_9to16(const uint8_t* in, size_t len, const uint8_t* secret, uint64_t seed) noexcept {
    const uint64_t first = rd64(in);
    const uint64_t last = rd64(in + len - 8);
    const uint64_t v1 = ((rd64(secret + 32) ^ rd64(secret + 40)) - seed) ^ first ^ last;
    const uint64_t v2 = ((rd64(secret + 48) ^ rd64(secret + 56)) + seed) ^ last;
    const U128 m = mul_full(v1, kP64_1);
    uint64_t lo = m.lo + (static_cast<uint64_t>(len - 1) << 54);
    uint64_t hi = m.hi + v2 + (v2 & 0xffffffffu) * (kP32_2 - 1);
    lo ^= bswap64(hi);
    // {lo, hi} := {lo, hi} * P64_2 (128 x 64 -> 128 bits)
    const U128 m2 = mul_full(lo, kP64_2);
    lo = m2.lo;
    hi = m2.hi + hi * kP64_2;
    return {avalanche_xxh3(lo), avalanche_xxh3(hi)};
}

// ---- 17..240 bytes -----------------------------------------------------------------------

inline uint64_t mix16(const uint8_t* in, const uint8_t* secret, uint64_t seed) noexcept {
    return mul_fold(rd64(in) ^ (rd64(secret) + seed), rd64(in + 8) ^ (rd64(secret + 8) - seed));
}

inline void mix32(uint64_t acc[2], const uint8_t* in1, const uint8_t* in2, const uint8_t* secret,
                  uint64_t seed) noexcept {
    acc[0] += mix16(in1, secret, seed);
    acc[1] += mix16(in2, secret + 16, seed);
    acc[0] ^= rd64(in2) + rd64(in2 + 8);
    acc[1] ^= rd64(in1) + rd64(in1 + 8);
}

Hash128 mid_finalize(const uint64_t acc[2], size_t len, uint64_t seed) noexcept {
    const uint64_t lo = acc[0] + acc[1];
    const uint64_t hi = acc[0] * kP64_1 + acc[1] * kP64_4 + (static_cast<uint64_t>(len) - seed) * kP64_2;
    return {avalanche_xxh3(lo), uint64_t{0} - avalanche_xxh3(hi)};
}

Hash128 len_17to128(const uint8_t* in, size_t len, const uint8_t* secret, uint64_t seed) noexcept {
    uint64_t acc[2] = {static_cast<uint64_t>(len) * kP64_1, 0};
    const size_t rounds = ((len - 1) >> 5) + 1;
    for (size_t r = rounds; r-- > 0;) {
        mix32(acc, in + r * 16, in + len - r * 16 - 16, secret + r * 32, seed);
    }
    return mid_finalize(acc, len, seed);
}

Hash128 len_129to240(const uint8_t* in, size_t len, const uint8_t* secret, uint64_t seed) noexcept {
    uint64_t acc[2] = {static_cast<uint64_t>(len) * kP64_1, 0};
    const size_t chunks = len >> 5;
    for (size_t i = 0; i < 4; ++i) {
        mix32(acc, in + i * 32, in + i * 32 + 16, secret + i * 32, seed);
    }
    acc[0] = avalanche_xxh3(acc[0]);
    acc[1] = avalanche_xxh3(acc[1]);
    for (size_t i = 4; i < chunks; ++i) {
        mix32(acc, in + i * 32, in + i * 32 + 16, secret + (i - 4) * 32 + 3, seed);
    }
    // Last 32 bytes: halves swapped, secret at 136 - 17 - 16, negated seed.
    mix32(acc, in + len - 16, in + len - 32, secret + 103, uint64_t{0} - seed);
    return mid_finalize(acc, len, seed);
}

// ---- > 240 bytes -------------------------------------------------------------------------

constexpr size_t kAvx512MinLen = 1280;

using LongLoopFn = void (*)(uint64_t*, const uint8_t*, size_t, const uint8_t*) noexcept;

LongLoopFn long_loop_for(Isa isa) noexcept {
    switch (isa) {
#if defined(MAGRAY_X86)  // the wide kernels exist only in an x86-64 build
        case Isa::avx512: return &long_loop_avx512;
        case Isa::avx2: return &long_loop_avx2;
#endif
        case Isa::scalar:
        default: return &long_loop_scalar;
    }
}

uint64_t merge_accs(const uint64_t acc[8], const uint8_t* secret, uint64_t start) noexcept {
    uint64_t r = start;
    for (size_t i = 0; i < 4; ++i) {
        r += mul_fold(acc[2 * i] ^ rd64(secret + 16 * i), acc[2 * i + 1] ^ rd64(secret + 16 * i + 8));
    }
    return avalanche_xxh3(r);
}

Hash128 hash_long(const uint8_t* in, size_t len, uint64_t seed, Isa isa) noexcept {
    alignas(64) uint8_t derived[kSecretSize];
    const uint8_t* secret = kDefaultSecret;
    if (seed != 0) {
        // Treat the default secret as 24 little-endian words: even ones +seed, odd ones -seed.
        for (size_t i = 0; i < kSecretSize / 16; ++i) {
            wr64(derived + 16 * i, rd64(kDefaultSecret + 16 * i) + seed);
            wr64(derived + 16 * i + 8, rd64(kDefaultSecret + 16 * i + 8) - seed);
        }
        secret = derived;
    }
    alignas(64) uint64_t acc[8] = {kP32_3, kP64_1, kP64_2, kP64_3, kP64_4, kP32_2, kP64_5, kP32_1};
    // The AVX-512 loop keeps the whole secret in registers; loading it costs more than it
    // saves until about the second block, so shorter inputs take the AVX2 loop (measured).
    if (isa == Isa::avx512 && len < kAvx512MinLen) isa = Isa::avx2;
    long_loop_for(isa)(acc, in, len, secret);
    const uint64_t n = static_cast<uint64_t>(len);
    const uint64_t lo = merge_accs(acc, secret + 11, n * kP64_1);
    const uint64_t hi = merge_accs(acc, secret + kSecretSize - kStripeLen - 11, ~(n * kP64_2));
    return {lo, hi};
}

}  // namespace

Hash128 xxh3_128(const void* data, size_t len, uint64_t seed, Isa isa) noexcept {
    const uint8_t* in = static_cast<const uint8_t*>(data);
    if (len <= 16) {
        if (len > 8) return len_9to16(in, len, kDefaultSecret, seed);
        if (len >= 4) return len_4to8(in, len, kDefaultSecret, seed);
        if (len > 0) return len_1to3(in, len, kDefaultSecret, seed);
        return len_0(kDefaultSecret, seed);
    }
    if (len <= 128) return len_17to128(in, len, kDefaultSecret, seed);
    if (len <= kMidSizeMax) return len_129to240(in, len, kDefaultSecret, seed);
    return hash_long(in, len, seed, isa);
}

void hash128_canonical(Hash128 h, uint8_t out[16]) noexcept {
    wr64(out, bswap64(h.hi));
    wr64(out + 8, bswap64(h.lo));
}

}  // namespace magray
