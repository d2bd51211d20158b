// Normalisation, exact top-k and pooling, written once over the active kernel table.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "magray/kernels.hpp"
#include "magray/ops.hpp"

namespace magray {
namespace {

// 1/|x| for one row whose float32 sum of squares is sq; 0 for a zero row; -1 for NaN/Inf.
double inverse_norm(const float* x, size_t d, float sq) {
    if (std::isfinite(sq) && sq >= kNormalSquares) return 1.0 / std::sqrt(static_cast<double>(sq));
    const double norm = careful_norm(x, d);
    if (norm < 0.0) return -1.0;
    return norm > 0.0 ? 1.0 / norm : 0.0;
}

// what names the place, e.g. "row" or "batch item"; where names the array.
// out = x * r. A subnormal row's inverse norm exceeds float32, so such rows scale in double.
void apply_scale(const VecKernels& K, const float* x, float* out, size_t d, double r) {
    if (r < 1e38) {
        K.scale(x, out, d, static_cast<float>(r));
        return;
    }
    for (size_t j = 0; j < d; ++j) out[j] = static_cast<float>(static_cast<double>(x[j]) * r);
}

[[noreturn]] void bad_row(const char* what, size_t row, const char* where) {
    throw std::invalid_argument(std::string(what) + " " + std::to_string(row) + " of " + where +
                                " contains NaN or Inf; clean it (for example np.nan_to_num) or drop it");
}

// ---------------------------------------------------------------------------------------
// Top-k selection: one bounded heap per query whose top is the worst kept entry. Keys are
// "higher is better" (l2 distances are negated), ties go to the lower row index.

struct Entry {
    float key;
    int64_t idx;
};

// a is better than b.
inline bool better(const Entry& a, const Entry& b) {
    return a.key > b.key || (a.key == b.key && a.idx < b.idx);
}

struct WorstOnTop {
    bool operator()(const Entry& a, const Entry& b) const { return better(a, b); }
};

class Selector {
public:
    explicit Selector(size_t k) : k_(k) { heap_.reserve(k); }

    inline void push(float key, int64_t idx) {
        if (heap_.size() < k_) {
            heap_.push_back({key, idx});
            std::push_heap(heap_.begin(), heap_.end(), WorstOnTop());
            if (heap_.size() == k_) worst_ = heap_.front();
            return;
        }
        if (key < worst_.key || (key == worst_.key && idx > worst_.idx)) return;
        std::pop_heap(heap_.begin(), heap_.end(), WorstOnTop());
        heap_.back() = {key, idx};
        std::push_heap(heap_.begin(), heap_.end(), WorstOnTop());
        worst_ = heap_.front();
    }

    bool full() const { return heap_.size() == k_; }
    float worst_key() const { return worst_.key; }

    // Fast reject: true when no entry with this key can enter.
    inline bool full_and_below(float key) const { return heap_.size() == k_ && key < worst_.key; }

    void write(bool negate, int64_t* idx, float* scores) {
        std::sort(heap_.begin(), heap_.end(), better);
        for (size_t i = 0; i < heap_.size(); ++i) {
            idx[i] = heap_[i].idx;
            scores[i] = negate ? -heap_[i].key : heap_[i].key;
        }
    }

private:
    size_t k_;
    std::vector<Entry> heap_;
    Entry worst_{0.0f, 0};
};

size_t tile_rows(size_t d, size_t multiple) {
    // About 256 KiB of base rows per tile: it stays in L2 while every query visits it.
    size_t rows = (256u * 1024u) / (4u * std::max<size_t>(d, 1));
    rows = std::max<size_t>(rows, multiple);
    rows = std::min<size_t>(rows, 4096);
    return (rows + multiple - 1) / multiple * multiple;
}

}  // namespace

void l2_normalize(const float* x, float* out, size_t n, size_t d) {
    const VecKernels& K = active_kernels();
    // Rows the fast kernel leaves alone (zero, tiny or huge sums, NaN/Inf) take the careful
    // path here, and the kernel resumes after them.
    auto careful = [&](size_t i, float* dst) {
        const double inv = inverse_norm(x + i * d, d, std::numeric_limits<float>::infinity());
        if (inv < 0.0) bad_row("row", i, "x");
        if (dst != nullptr) apply_scale(K, x + i * d, dst + i * d, d, inv);
    };
    if (x == out) {
        // In place: check every row before the first write, so bad input changes nothing.
        for (size_t i = K.normalize_rows(x, nullptr, n, d); i < n;
             i = i + 1 + K.normalize_rows(x + (i + 1) * d, nullptr, n - i - 1, d))
            careful(i, nullptr);
    }
    for (size_t i = K.normalize_rows(x, out, n, d); i < n;
         i = i + 1 + K.normalize_rows(x + (i + 1) * d, out + (i + 1) * d, n - i - 1, d))
        careful(i, out);
}

double i8_query_scale(const float* q, size_t d) {
    float amax = 0.0f;
    for (size_t j = 0; j < d; ++j) {
        if (!std::isfinite(q[j]))
            throw std::invalid_argument("query contains NaN or Inf; clean it (for example np.nan_to_num)");
        amax = std::max(amax, std::fabs(q[j]));
    }
    // |sum| <= d * 128 * max|q16| must stay below 2^31 (int8 reaches -128).
    const double bound = std::min(32767.0, std::floor(2147483647.0 / (128.0 * static_cast<double>(d))));
    return amax > 0.0f ? bound / amax : 0.0;
}

double topk_i8(const float* q, const int8_t* B, size_t nb, size_t d, size_t k_out, int64_t* out_idx,
               float* out_scores) {
    const VecKernels& K = active_kernels();
    const double s = i8_query_scale(q, d);
    std::vector<int16_t> q16(d);
    for (size_t j = 0; j < d; ++j) q16[j] = static_cast<int16_t>(std::lrint(q[j] * s));
    constexpr size_t kBlock = 4096;
    std::vector<int32_t> dots(std::min(nb, kBlock));
    Selector sel(k_out);
    for (size_t i0 = 0; i0 < nb; i0 += kBlock) {
        const size_t n = std::min(kBlock, nb - i0);
        K.dot_i8_rows(B + i0 * d, n, d, q16.data(), dots.data());
        for (size_t j = 0; j < n; ++j) {
            const float key = static_cast<float>(dots[j]);
            if (!sel.full_and_below(key)) sel.push(key, static_cast<int64_t>(i0 + j));
        }
    }
    sel.write(false, out_idx, out_scores);
    return s;
}

void topk(const float* Q, size_t nq, const float* B, size_t nb, size_t d, const int64_t* ids,
          size_t nids, size_t k_out, Metric metric, int64_t* out_idx, float* out_scores) {
    const VecKernels& K = active_kernels();
    const size_t n = ids ? nids : nb;
    if (nq == 0 || k_out == 0) return;

    if (ids) {
        std::vector<bool> seen(nb, false);
        for (size_t j = 0; j < nids; ++j) {
            const int64_t id = ids[j];
            if (id < 0 || static_cast<uint64_t>(id) >= nb)
                throw std::invalid_argument("ids[" + std::to_string(j) + "] = " + std::to_string(id) +
                                            " is outside base's rows [0, " + std::to_string(nb) +
                                            "); pass row indices of base");
            if (seen[static_cast<size_t>(id)])
                throw std::invalid_argument("ids holds row " + std::to_string(id) +
                                            " twice; pass each row once (np.unique(ids))");
            seen[static_cast<size_t>(id)] = true;
        }
    }

    const bool is_l2 = metric == Metric::l2;
    const bool is_cos = metric == Metric::cosine;

    // Query norms (cosine) and the finite-input check on the queries.
    std::vector<float> qscale(nq, 1.0f);
    {
        std::vector<float> sq(nq);
        K.sqnorm_rows(Q, nq, d, sq.data());
        for (size_t i = 0; i < nq; ++i) {
            const double r = inverse_norm(Q + i * d, d, sq[i]);
            if (r < 0.0) bad_row("row", i, "queries");
            if (is_cos) qscale[i] = static_cast<float>(r);
        }
    }

    std::vector<Selector> sel;
    sel.reserve(nq);
    for (size_t i = 0; i < nq; ++i) sel.emplace_back(k_out);

    const size_t QB = K.query_block;
    const bool blocked = nq >= std::max<size_t>(2, QB / 4);
    // The many-query path keeps a tile in L2 while every query block visits it; one query
    // just streams, so its tiles only bound the scratch buffers.
    // Never more than the rows searched: a filtered search of a few hundred rows must not
    // allocate (and zero) scratch for a whole tile. One query over gathered rows uses
    // tiles small enough that the copy is still in L2 when it is scored.
    const size_t one_query_tile = ids ? std::max<size_t>(16, (256 * 1024) / (d * sizeof(float))) : 4096;
    const size_t NB = std::max<size_t>(1, std::min(n, blocked ? tile_rows(d, 16) : one_query_tile));
    const size_t n_qblocks = (nq + QB - 1) / QB;

    std::vector<float> gathered(ids ? NB * d : 0);
    std::vector<float> binv(NB), sqn(NB);
    std::vector<float> scores(blocked ? NB * QB : NB);
    std::vector<uint64_t> masks(blocked ? NB : (NB + 63) / 64);
    std::vector<float> thr(blocked ? n_qblocks * QB : 0, -INFINITY);
    std::vector<float> packed_q(blocked ? n_qblocks * QB * d : 0, 0.0f);
    if (blocked) {
        // Pack the queries k-major (cosine: pre-scaled to unit length); padding lanes never qualify.
        for (size_t i = 0; i < nq; ++i) {
            float* qp = packed_q.data() + (i / QB) * QB * d;
            const size_t lane = i % QB;
            const float* q = Q + i * d;
            for (size_t k = 0; k < d; ++k) qp[k * QB + lane] = q[k] * qscale[i];
        }
        for (size_t i = nq; i < n_qblocks * QB; ++i) thr[i] = INFINITY;
    }

    for (size_t t0 = 0; t0 < n; t0 += NB) {
        const size_t m = std::min(NB, n - t0);
        const float* T = B + t0 * d;
        if (ids) {
            for (size_t r = 0; r < m; ++r)
                std::memcpy(gathered.data() + r * d, B + static_cast<size_t>(ids[t0 + r]) * d,
                            d * sizeof(float));
            T = gathered.data();
        }
        auto row_index = [&](size_t r) -> int64_t {
            return ids ? ids[t0 + r] : static_cast<int64_t>(t0 + r);
        };
        // A key that is not finite: NaN/Inf in the row, or a product that overflowed.
        auto not_finite = [&](size_t r) {
            if (careful_norm(T + r * d, d) < 0.0) bad_row("row", static_cast<size_t>(row_index(r)), "base");
            throw std::invalid_argument("the score of base row " + std::to_string(row_index(r)) +
                                        " overflows float32; scale the vectors down (for example normalise them)");
        };
        auto inverse_norms = [&](const float* sq) {
            // A branch-free loop the compiler vectorises; rows outside the safe range are
            // marked and redone carefully (zero rows, overflow, NaN/Inf).
            float* bi = binv.data();
            for (size_t r = 0; r < m; ++r) {
                const float v = sq[r];
                const bool ok = v >= kNormalSquares && v <= FLT_MAX;
                bi[r] = ok ? 1.0f / std::sqrt(ok ? v : 1.0f) : -1.0f;
            }
            for (size_t r = 0; r < m; ++r) {
                if (bi[r] >= 0.0f) continue;
                const double v = inverse_norm(T + r * d, d, sq[r]);
                if (v < 0.0) bad_row("row", static_cast<size_t>(row_index(r)), "base");
                bi[r] = static_cast<float>(v);
            }
        };

        if (!blocked) {
            for (size_t i = 0; i < nq; ++i) {
                const float* q = Q + i * d;
                Selector& S = sel[i];
                const float qs = qscale[i];
                // Rows that cannot beat the worst kept entry are filtered inside the kernel;
                // the threshold is the one at the start of this tile.
                const float th = S.full() ? S.worst_key() : -INFINITY;
                if (!K.one_query_keys(q, T, m, d, metric, qs, th, scores.data(), masks.data())) continue;
                for (size_t w = 0; w * 64 < m; ++w) {
                    uint64_t bits = masks[w];
                    while (bits) {
                        const size_t r = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
                        bits &= bits - 1;
                        float key = scores[r];
                        if (is_cos && std::isnan(key)) {
                            // A zero, tiny or huge row (or NaN/Inf): its norm, carefully.
                            const double inv = inverse_norm(T + r * d, d, INFINITY);
                            if (inv < 0.0) bad_row("row", static_cast<size_t>(row_index(r)), "base");
                            double dot = 0.0;
                            for (size_t c = 0; c < d; ++c)
                                dot += static_cast<double>(q[c]) * static_cast<double>(T[r * d + c]);
                            key = static_cast<float>(dot * qs * inv);
                        }
                        if (!std::isfinite(key)) not_finite(r);
                        if (S.full_and_below(key)) continue;
                        S.push(key, row_index(r));
                    }
                }
            }
            continue;
        }

        if (is_cos) {
            K.sqnorm_rows(T, m, d, sqn.data());
            inverse_norms(sqn.data());
        }
        for (size_t qb = 0; qb < n_qblocks; ++qb) {
            float* th = thr.data() + qb * QB;
            const uint64_t any = K.block_keys(packed_q.data() + qb * QB * d, T, m, d,
                                              is_cos ? binv.data() : nullptr, is_l2, th,
                                              scores.data(), masks.data());
            if (!any) continue;
            for (size_t r = 0; r < m; ++r) {
                uint64_t bits = masks[r];
                while (bits) {
                    const size_t lane = static_cast<size_t>(__builtin_ctzll(bits));
                    bits &= bits - 1;
                    const size_t i = qb * QB + lane;
                    const float key = scores[r * QB + lane];
                    if (!std::isfinite(key)) not_finite(r);
                    if (i >= nq) continue;
                    Selector& S = sel[i];
                    if (S.full_and_below(key)) continue;
                    S.push(key, row_index(r));
                    if (S.full()) th[lane] = S.worst_key();
                }
            }
        }
    }

    for (size_t i = 0; i < nq; ++i) sel[i].write(is_l2, out_idx + i * k_out, out_scores + i * k_out);
}

void mean_pool(const float* hidden, const void* mask, bool mask_is_int64, size_t b, size_t s,
               size_t d, bool normalize, float* out) {
    const VecKernels& K = active_kernels();
    const int64_t* m64 = static_cast<const int64_t*>(mask);
    const int32_t* m32 = static_cast<const int32_t*>(mask);
    for (size_t bi = 0; bi < b; ++bi) {
        float* acc = out + bi * d;
        std::fill(acc, acc + d, 0.0f);
        double wsum = 0.0;
        for (size_t si = 0; si < s; ++si) {
            const int64_t w = mask_is_int64 ? m64[bi * s + si] : m32[bi * s + si];
            if (w == 0) continue;  // padding: skipped, never read
            K.axpy(acc, hidden + (bi * s + si) * d, d, static_cast<float>(w));
            wsum += static_cast<double>(w);
        }
        if (wsum == 0.0) {
            std::fill(acc, acc + d, 0.0f);
            continue;
        }
        float sq;
        K.sqnorm_rows(acc, 1, d, &sq);
        double factor = 1.0 / wsum;
        if (normalize) {
            const double r = inverse_norm(acc, d, sq);
            if (r < 0.0) bad_row("batch item", bi, "hidden");
            // The mean points along the sum (against it for a negative weight sum): one scale does both.
            factor = wsum > 0.0 ? r : -r;
        } else if (!std::isfinite(sq) && careful_norm(acc, d) < 0.0) {
            bad_row("batch item", bi, "hidden");
        }
        apply_scale(K, acc, acc, d, factor);
    }
}

}  // namespace magray
