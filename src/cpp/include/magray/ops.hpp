// Whole operations built on the per-ISA kernel table: normalisation, exact top-k, pooling.
// All of them run without the GIL, allocate only scratch, and report bad input by throwing
// std::invalid_argument with a message that names the problem and the fix.
#pragma once

#include <cstddef>
#include <cstdint>

namespace magray {

// Row-wise L2 normalisation of x (n, d) into out (n, d); out may equal x. A zero row stays
// zero. Throws on NaN or Inf, naming the first bad row; when out == x nothing is written then.
void l2_normalize(const float* x, float* out, size_t n, size_t d);

enum class Metric { dot, cosine, l2 };

// Exact top-k of nq queries (nq, d) against base (nb, d), or against the rows named by ids
// (nids of them) when ids is not null. Writes k_out = min(k, rows searched) results per
// query, best first (similarity: highest; l2: smallest), ties broken by lower row index.
void topk(const float* Q, size_t nq, const float* B, size_t nb, size_t d, const int64_t* ids,
          size_t nids, size_t k_out, Metric metric, int64_t* out_idx, float* out_scores);

// The scale s at which topk_i8 rounds a query of d floats to int16 (round(s * q)): the
// largest for which no int32 sum of d products with int8 values can overflow; 0 for a zero
// query. Throws on NaN or Inf.
double i8_query_scale(const float* q, size_t d);

// Candidates of a one-query top-k over int8 rows: the query (d floats) is rounded to int16
// at the largest scale s for which no int32 sum over d products with int8 values can
// overflow (q16 = round(s * q)), every row's dot product with it is computed exactly, and
// the indices of the k_out highest (ties to the lower row) are written best first with
// their integer dot products (as float). Returns s. Throws on NaN or Inf in q. Rows are a
// quantised copy of float vectors; the caller rescores the candidates from the floats.
double topk_i8(const float* q, const int8_t* B, size_t nb, size_t d, size_t k_out, int64_t* out_idx,
               float* out_scores);

// Attention-masked mean over the token axis: hidden (b, s, d), mask (b, s) as int32 or int64
// weights. An all-zero mask row gives a zero vector. Optionally L2-normalised.
void mean_pool(const float* hidden, const void* mask, bool mask_is_int64, size_t b, size_t s,
               size_t d, bool normalize, float* out);

}  // namespace magray
