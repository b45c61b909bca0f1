// jaxnet's single-pass CPU kernels: the seed's delta recursion over blocks of
// examples, written once and compiled per instruction set.
//
// Included by one translation unit per instruction set (kernels_*.cc) with
// JAXNET_ISA set to a namespace name and JAXNET_VECTOR_BYTES to its vector
// width, after a `#pragma GCC target`, so every function here is compiled
// for that set.
//
// Layout: a block is one SIMD vector of examples (8 float32 with AVX2). Every
// unit of every layer is one vector variable, every weight a scalar
// broadcast, so each line of the recursion is one vector instruction (GCC
// vector extensions, no intrinsics). For the seed sizes all widths are
// compile-time constants: the loops over units unroll completely (setup.py
// raises GCC's complete-peeling limits for that) and the block's
// activations, deltas and the 26 gradient accumulators stay in registers
// or L1. Measured on 2 AMD EPYC cores with AVX2: 167 M examples/s per core
// for the seed net's mean gradient, against 35 M/s with the loops rolled.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "common.h"

namespace jaxnet_native {
namespace JAXNET_ISA {

// ---------------------------------------------------------------- vectors

template <class T> struct Simd;
template <> struct Simd<float> {
  static constexpr int W = JAXNET_VECTOR_BYTES / 4;
  typedef float V __attribute__((vector_size(JAXNET_VECTOR_BYTES)));
  typedef int32_t I __attribute__((vector_size(JAXNET_VECTOR_BYTES)));
  typedef int32_t S;
  typedef int32_t I32 __attribute__((vector_size(JAXNET_VECTOR_BYTES)));
  static constexpr int mant = 23, bias = 127;
};
template <> struct Simd<double> {
  static constexpr int W = JAXNET_VECTOR_BYTES / 8;
  typedef double V __attribute__((vector_size(JAXNET_VECTOR_BYTES)));
  typedef int64_t I __attribute__((vector_size(JAXNET_VECTOR_BYTES)));
  typedef int64_t S;
  typedef int32_t I32 __attribute__((vector_size(JAXNET_VECTOR_BYTES / 2)));
  static constexpr int mant = 52, bias = 1023;
};

template <class T> using VecT = typename Simd<T>::V;

template <class T> inline VecT<T> splat(T t) { return VecT<T>{} + t; }

template <class T> inline VecT<T> load(const T* p) {
  VecT<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ---------------------------------------------------------------- loads

template <class V, std::size_t... k>
inline V even_lanes(V a, V b, std::index_sequence<k...>) { return __builtin_shufflevector(a, b, (2 * k)...); }
template <class V, std::size_t... k>
inline V odd_lanes(V a, V b, std::index_sequence<k...>) { return __builtin_shufflevector(a, b, (2 * k + 1)...); }

// Rows n0 .. n0 + W of batch-major x (W, d0) as d0 lane vectors, zero past nv.
template <class T, bool FULL>
inline void load_inputs(int d0, const T* x, int nv, VecT<T>* h) {
  constexpr int W = Simd<T>::W;
  if (FULL && d0 == 2) {  // the common case: 2 features, a two-vector deinterleave
    const VecT<T> a = load(x), b = load(x + W);
    h[0] = even_lanes(a, b, std::make_index_sequence<W>{});
    h[1] = odd_lanes(a, b, std::make_index_sequence<W>{});
    return;
  }
  alignas(64) T xt[MAXW][W];
  for (int v = 0; v < W; ++v)
    for (int i = 0; i < d0; ++i) xt[i][v] = (FULL || v < nv) ? x[v * d0 + i] : T(0);
  for (int i = 0; i < d0; ++i) h[i] = load(xt[i]);
}

// Labels n0 .. n0 + W as a lane vector of T's integer width, 0 past nv.
template <class T, bool FULL>
inline typename Simd<T>::I load_labels(const int32_t* y, int nv) {
  constexpr int W = Simd<T>::W;
  typename Simd<T>::I32 c;
  if (FULL) {
    std::memcpy(&c, y, sizeof c);
  } else {
    for (int v = 0; v < W; ++v) c[v] = v < nv ? y[v] : 0;
  }
  return __builtin_convertvector(c, typename Simd<T>::I);
}

// ---------------------------------------------------------------- exp, log

// exp(t) for t <= 0 (softmax arguments z - max z). Relative error ~1 ulp.
// Below the smallest normal it returns the value at the clamp (~1e-38 /
// 1e-308) instead of a denormal or 0: against a softmax sum >= 1 that is
// below rounding. NaN stays NaN.
template <class T> inline VecT<T> exp_nonpositive(VecT<T> t) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr bool f32 = sizeof(T) == 4;
  const V lo = splat<T>(f32 ? T(-87.0) : T(-708.0));
  t = t < lo ? lo : t;
  // Round t / ln2 to the nearest integer n by adding 1.5 * 2^mant: n then
  // sits in the low bits of the sum, so no float-to-int conversion is needed.
  const V magic = splat<T>(f32 ? T(12582912.0) : T(6755399441055744.0));
  const V shifted = t * T(1.4426950408889634) + magic;
  const V n = shifted - magic;
  // ln 2 split in two so that n * ln2 is exact to the precision of T.
  const V r = (t - n * (f32 ? T(0.693145751953125) : T(0.6931471803691238))) -
              n * (f32 ? T(1.428606765330187e-06) : T(1.9082149292705877e-10));
  // Taylor series on |r| <= ln2 / 2: degree 7 (float) or 13 (double).
  V p;
  if constexpr (f32) {
    p = splat<T>(T(1.0 / 5040));
    p = p * r + T(1.0 / 720); p = p * r + T(1.0 / 120); p = p * r + T(1.0 / 24);
    p = p * r + T(1.0 / 6);   p = p * r + T(0.5);       p = p * r + T(1);  p = p * r + T(1);
  } else {
    p = splat<T>(T(1.0 / 6227020800.0));
    p = p * r + T(1.0 / 479001600.0); p = p * r + T(1.0 / 39916800.0); p = p * r + T(1.0 / 3628800.0);
    p = p * r + T(1.0 / 362880.0);    p = p * r + T(1.0 / 40320.0);    p = p * r + T(1.0 / 5040.0);
    p = p * r + T(1.0 / 720.0);       p = p * r + T(1.0 / 120.0);      p = p * r + T(1.0 / 24.0);
    p = p * r + T(1.0 / 6.0);         p = p * r + T(0.5);              p = p * r + T(1);
    p = p * r + T(1);
  }
  // 2^n from the exponent bits; n is in [lo / ln2, 0], a normal exponent.
  const I k = (I)shifted - (I)magic;
  return p * (V)((k + typename S::S(S::bias)) << S::mant);
}

// log(t) for the softmax sum t >= 1. NaN and inf pass through.
template <class T> inline VecT<T> log_of_sum(VecT<T> t) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  using SI = typename S::S;
  const I bits = (I)t;
  const I e_raw = (bits >> S::mant) - SI(S::bias);
  V m = (V)((bits & ((SI(1) << S::mant) - 1)) | (SI(S::bias) << S::mant));  // [1, 2)
  const auto big = m > T(1.4142135623730951);
  m = big ? m * T(0.5) : m;
  const I e = big ? e_raw + SI(1) : e_raw;
  // log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172.
  const V s = (m - T(1)) / (m + T(1));
  const V s2 = s * s;
  V p;
  if constexpr (sizeof(T) == 4) {
    p = splat<T>(T(1.0 / 9));
    p = p * s2 + T(1.0 / 7); p = p * s2 + T(1.0 / 5); p = p * s2 + T(1.0 / 3); p = p * s2 + T(1);
  } else {
    p = splat<T>(T(1.0 / 21));
    p = p * s2 + T(1.0 / 19); p = p * s2 + T(1.0 / 17); p = p * s2 + T(1.0 / 15); p = p * s2 + T(1.0 / 13);
    p = p * s2 + T(1.0 / 11); p = p * s2 + T(1.0 / 9);  p = p * s2 + T(1.0 / 7);  p = p * s2 + T(1.0 / 5);
    p = p * s2 + T(1.0 / 3);  p = p * s2 + T(1);
  }
  V ef;
  for (int v = 0; v < S::W; ++v) ef[v] = T(e[v]);
  const V out = ef * T(0.6931471805599453) + T(2) * s * p;
  return t < std::numeric_limits<T>::infinity() ? out : t;  // NaN, inf
}

// ---------------------------------------------------------------- sizes

// The seed net, 2-3-2-3: every width known to the compiler.
struct SeedDims {
  static constexpr int L = 3, max_l = 3, max_w = 3;
  static constexpr int w(int l) { return l == 0 ? 2 : l == 1 ? 3 : l == 2 ? 2 : 3; }
};

// Any other net within (MAXL, MAXW): widths at run time.
struct Dims {
  static constexpr int max_l = MAXL, max_w = MAXW;
  int L;
  int s[MAXL + 1];
  int w(int l) const { return s[l]; }
};

inline Dims dims_of(const RunDims& r) {
  Dims d{r.L, {}};
  for (int l = 0; l <= r.L; ++l) d.s[l] = r.s[l];
  return d;
}

// ---------------------------------------------------------------- one block

// A block's state: h[l][i] the inputs of layer l, d[l][j] its deltas.
// Sized by the dims' bounds, so that for the seed sizes it is small enough
// for the compiler to keep in registers.
template <class T, class D> struct Block {
  VecT<T> h[D::max_l][D::max_w];
  VecT<T> d[D::max_l][D::max_w];
  VecT<T> loss;
};

// Forward and backward pass of one block of W examples starting at n0, of
// which the first nv are real (the rest get zero inputs and weight 0).
template <class T, bool FULL, class D>
__attribute__((always_inline)) inline void block_pass(const D& dm, const T* params, const T* x, Labels<T> y, const T* weight, int64_t n0, int nv,
                       bool with_loss, Block<T, D>& b) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int L = dm.L;
  const int d0 = dm.w(0);
  V wt;
  if (FULL && !weight) {
    wt = splat<T>(T(1));
  } else {
    for (int v = 0; v < W; ++v) wt[v] = (FULL || v < nv) ? (weight ? weight[n0 + v] : T(1)) : T(0);
  }
  load_inputs<T, FULL>(d0, x + n0 * d0, nv, b.h[0]);
  // forward: a_j = sum_i h_i w_ij + b_j; h' = relu(a), with relu(NaN) = NaN as jnp.maximum
  V z[D::max_w];
  const T* p = params;
  for (int l = 0; l < L; ++l) {
    const int din = dm.w(l), dout = dm.w(l + 1);
    const T* w = p;
    const T* bias = p + din * dout;
    p = bias + dout;
    for (int j = 0; j < dout; ++j) {
      V a = b.h[l][0] * w[j];
      for (int i = 1; i < din; ++i) a += b.h[l][i] * w[i * dout + j];
      a += bias[j];
      if (l + 1 < L)
        b.h[l + 1][j] = a < T(0) ? splat<T>(T(0)) : a;
      else
        z[j] = a;
    }
  }
  // softmax cross-entropy: delta_s = yhat_s * sum_t y_t - y_s
  const int C = dm.w(L);
  V* dl = b.d[L - 1];
  V top = z[0];
  for (int s = 1; s < C; ++s) top = z[s] > top ? z[s] : top;
  V total = splat<T>(T(0));
  for (int s = 0; s < C; ++s) {
    dl[s] = exp_nonpositive<T>(z[s] - top);
    total += dl[s];
  }
  if (y.cls) {
    const typename S::I c = load_labels<T, FULL>(y.cls + n0, nv);
    const V inv = T(1) / total;
    V picked = splat<T>(T(0));
    for (int s = 0; s < C; ++s) {
      const auto hit = c == typename S::S(s);
      dl[s] = (dl[s] * inv - (hit ? splat<T>(T(1)) : splat<T>(T(0)))) * wt;
      picked += hit ? z[s] : splat<T>(T(0));
    }
    if (with_loss) b.loss = (top + log_of_sum<T>(total) - picked) * wt;
  } else {
    alignas(64) T yt[MAXW][W];
    for (int v = 0; v < W; ++v)
      for (int s = 0; s < C; ++s) yt[s][v] = (FULL || v < nv) ? y.prob[(n0 + v) * C + s] : T(0);
    V mass = splat<T>(T(0)), dot = splat<T>(T(0));
    for (int s = 0; s < C; ++s) {
      const V ys = load(yt[s]);
      mass += ys;
      dot += ys * z[s];
    }
    const V scale = mass / total;
    for (int s = 0; s < C; ++s) dl[s] = (dl[s] * scale - load(yt[s])) * wt;
    if (with_loss) b.loss = ((top + log_of_sum<T>(total)) * mass - dot) * wt;
  }
  // backward: delta_prev_j = 1(a_j > 0) * sum_k w_jk delta_k  (a > 0 iff h > 0)
  const T* w_l = params;
  const T* w_of[D::max_l];
  for (int l = 0; l < L; ++l) {
    w_of[l] = w_l;
    w_l += dm.w(l) * dm.w(l + 1) + dm.w(l + 1);
  }
  for (int l = L - 1; l > 0; --l) {
    const int din = dm.w(l), dout = dm.w(l + 1);
    const T* w = w_of[l];
    for (int j = 0; j < din; ++j) {
      V s = b.d[l][0] * w[j * dout];
      for (int k = 1; k < dout; ++k) s += b.d[l][k] * w[j * dout + k];
      b.d[l - 1][j] = b.h[l][j] > T(0) ? s : splat<T>(T(0));
    }
  }
}

// ---------------------------------------------------------------- ranges

// Adds one block's gradient terms (and loss) to the per-lane sums acc. With
// clip >= 0, first scales each example's deltas by min(1, clip / norm) and
// writes its norm to norms[n0 + v].
template <class T, class D, int N>
__attribute__((always_inline)) inline void accumulate(const D& dm, Block<T, D>& b, VecT<T> (&acc)[N], T clip, T* norms,
                                                      int64_t n0, int nv, bool with_loss) {
  using V = VecT<T>;
  constexpr int W = Simd<T>::W;
  if (clip >= T(0)) {
    // |dW_l|^2 + |db_l|^2 = (|h_l|^2 + 1) |delta_l|^2, summed over layers
    V sq = splat<T>(T(0));
    for (int l = 0; l < dm.L; ++l) {
      V hh = splat<T>(T(1)), dd = splat<T>(T(0));
      for (int i = 0; i < dm.w(l); ++i) hh += b.h[l][i] * b.h[l][i];
      for (int j = 0; j < dm.w(l + 1); ++j) dd += b.d[l][j] * b.d[l][j];
      sq += hh * dd;
    }
    V norm, scale;
    for (int v = 0; v < W; ++v) norm[v] = std::sqrt(sq[v]);
    scale = norm > clip ? clip / norm : splat<T>(T(1));
    for (int v = 0; v < nv; ++v) norms[n0 + v] = norm[v];
    for (int l = 0; l < dm.L; ++l)
      for (int j = 0; j < dm.w(l + 1); ++j) b.d[l][j] *= scale;
  }
  int k = 0;
  for (int l = 0; l < dm.L; ++l) {
    for (int i = 0; i < dm.w(l); ++i)
      for (int j = 0; j < dm.w(l + 1); ++j, ++k) acc[k] += b.h[l][i] * b.d[l][j];
    for (int j = 0; j < dm.w(l + 1); ++j, ++k) acc[k] += b.d[l][j];
  }
  if (with_loss) acc[k] += b.loss;
}


// Sums over examples [begin, end) of every gradient entry (params order: w
// then b per layer) and, last, the loss, into out[0 .. P]. Accumulates per
// lane in T over at most one chunk, and reduces the lanes in double. With
// clip >= 0, each example's deltas are first scaled by min(1, clip / norm)
// and its norm is written to norms[n].
template <class T, class D>
void sums_range(const D& dm, const T* params, const T* x, Labels<T> y, const T* weight, int64_t begin, int64_t end,
                bool with_loss, T clip, T* norms, double* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int P_MAX = D::max_l * (D::max_w * D::max_w + D::max_w) + 1;
  int P = 0;
  for (int l = 0; l < dm.L; ++l) P += dm.w(l) * dm.w(l + 1) + dm.w(l + 1);
  V acc[P_MAX];
  for (int k = 0; k <= P; ++k) acc[k] = splat<T>(T(0));
  Block<T, D> b;
  int64_t n0 = begin;
  for (; n0 + W <= end; n0 += W) {
    if (weight)
      block_pass<T, true>(dm, params, x, y, weight, n0, W, with_loss, b);
    else
      block_pass<T, true>(dm, params, x, y, nullptr, n0, W, with_loss, b);
    accumulate(dm, b, acc, clip, norms, n0, W, with_loss);
  }
  if (n0 < end) {
    block_pass<T, false>(dm, params, x, y, weight, n0, int(end - n0), with_loss, b);
    accumulate(dm, b, acc, clip, norms, n0, int(end - n0), with_loss);
  }
  for (int k = 0; k <= P; ++k) {
    double s = 0;
    for (int v = 0; v < W; ++v) s += double(acc[k][v]);
    out[k] = s;
  }
}

// Writes one block's per-example gradients into the batch-leading leaves.
template <class T, class D>
__attribute__((always_inline)) inline void write_block(const D& dm, Block<T, D>& b, T* const* gw, T* const* gb,
                                                       int64_t n0, int nv) {
  constexpr int W = Simd<T>::W;
  for (int l = 0; l < dm.L; ++l) {
    const int din = dm.w(l), dout = dm.w(l + 1);
    // products lane-major, then transposed to example-major on the way out
    alignas(64) T prod[D::max_w * D::max_w + D::max_w][W];
    for (int i = 0; i < din; ++i)
      for (int j = 0; j < dout; ++j) {
        const VecT<T> g = b.h[l][i] * b.d[l][j];
        std::memcpy(prod[i * dout + j], &g, sizeof g);
      }
    for (int j = 0; j < dout; ++j) std::memcpy(prod[din * dout + j], &b.d[l][j], sizeof(b.d[l][j]));
    T* w_out = gw[l] + n0 * din * dout;
    T* b_out = gb[l] + n0 * dout;
    for (int v = 0; v < nv; ++v) {
      for (int k = 0; k < din * dout; ++k) w_out[v * din * dout + k] = prod[k][v];
      for (int j = 0; j < dout; ++j) b_out[v * dout + j] = prod[din * dout + j][v];
    }
  }
}

// Per-example gradients of examples [begin, end), written straight into the
// batch-leading leaves: gw[l] is (B, d_l, d_{l+1}), gb[l] is (B, d_{l+1}).
template <class T, class D>
void per_example_range(const D& dm, const T* params, const T* x, Labels<T> y, const T* weight, int64_t begin,
                       int64_t end, T* const* gw, T* const* gb) {
  constexpr int W = Simd<T>::W;
  Block<T, D> b;
  int64_t n0 = begin;
  for (; n0 + W <= end; n0 += W) {
    if (weight)
      block_pass<T, true>(dm, params, x, y, weight, n0, W, false, b);
    else
      block_pass<T, true>(dm, params, x, y, nullptr, n0, W, false, b);
    write_block(dm, b, gw, gb, n0, W);
  }
  if (n0 < end) {
    block_pass<T, false>(dm, params, x, y, weight, n0, int(end - n0), false, b);
    write_block(dm, b, gw, gb, n0, int(end - n0));
  }
}

// Entry points of this instruction set, for seed and run-time sizes.
template <class T>
void sums(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight, int64_t begin,
          int64_t end, bool with_loss, T clip, T* norms, double* out) {
  if (seed)
    sums_range(SeedDims{}, params, x, y, weight, begin, end, with_loss, clip, norms, out);
  else
    sums_range(dims_of(dm), params, x, y, weight, begin, end, with_loss, clip, norms, out);
}

template <class T>
void per_example(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight,
                 int64_t begin, int64_t end, T* const* gw, T* const* gb) {
  if (seed)
    per_example_range(SeedDims{}, params, x, y, weight, begin, end, gw, gb);
  else
    per_example_range(dims_of(dm), params, x, y, weight, begin, end, gw, gb);
}

template void sums<float>(const RunDims&, bool, const float*, const float*, Labels<float>, const float*, int64_t,
                          int64_t, bool, float, float*, double*);
template void sums<double>(const RunDims&, bool, const double*, const double*, Labels<double>, const double*, int64_t,
                           int64_t, bool, double, double*, double*);
template void per_example<float>(const RunDims&, bool, const float*, const float*, Labels<float>, const float*,
                                 int64_t, int64_t, float* const*, float* const*);
template void per_example<double>(const RunDims&, bool, const double*, const double*, Labels<double>, const double*,
                                  int64_t, int64_t, double* const*, double* const*);

}  // namespace JAXNET_ISA
}  // namespace jaxnet_native
