// jaxnet's CPU backend: XLA FFI handlers around the single-pass kernels.
//
// Two handlers, registered for the CPU platform by jaxnet/_native.py:
//
// - jaxnet_sums: one pass over x and y that sums every gradient entry and
//   the loss (or, with a clip, the clipped per-example gradients and each
//   example's norm). Output: (P + 1,) sums, and (B,) norms when clipping.
// - jaxnet_per_example: each example's gradient, written straight into the
//   batch-leading leaves (B, d_l, d_{l+1}) and (B, d_{l+1}) of every layer.
//
// The batch is split into chunks of CHUNK examples, run on XLA's intra-op
// thread pool. Partial sums are kept per chunk and added in chunk order, so
// the result does not depend on which thread ran which chunk: repeated calls
// are bitwise identical.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxnet_native {

JAXNET_DECLARE_KERNELS(base)
#if defined(__x86_64__)
JAXNET_DECLARE_KERNELS(avx2)
JAXNET_DECLARE_KERNELS(avx512)
#endif

namespace {

constexpr int64_t CHUNK = 16384;  // examples per task

enum class Isa { kBase, kAvx2, kAvx512 };

Isa best_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kBase;
}

const Isa kIsa = best_isa();

template <class T>
void run_sums(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight, int64_t begin,
              int64_t end, bool with_loss, T clip, T* norms, double* out) {
#if defined(__x86_64__)
  if (kIsa == Isa::kAvx512) return avx512::sums<T>(dm, seed, params, x, y, weight, begin, end, with_loss, clip, norms, out);
  if (kIsa == Isa::kAvx2) return avx2::sums<T>(dm, seed, params, x, y, weight, begin, end, with_loss, clip, norms, out);
#endif
  base::sums<T>(dm, seed, params, x, y, weight, begin, end, with_loss, clip, norms, out);
}

template <class T>
void run_per_example(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight,
                     int64_t begin, int64_t end, T* const* gw, T* const* gb) {
#if defined(__x86_64__)
  if (kIsa == Isa::kAvx512) return avx512::per_example<T>(dm, seed, params, x, y, weight, begin, end, gw, gb);
  if (kIsa == Isa::kAvx2) return avx2::per_example<T>(dm, seed, params, x, y, weight, begin, end, gw, gb);
#endif
  base::per_example<T>(dm, seed, params, x, y, weight, begin, end, gw, gb);
}

// Runs fn(c) for c in [0, n) on the calling thread and on up to
// num_threads pool threads. Threads claim chunks from a shared counter, and
// the caller waits only for chunks that were claimed, so a pool busy with
// other work cannot deadlock it; a pool task that starts late finds no chunk
// left and returns without touching the caller's (by then gone) state.
void parallel_for(ffi::ThreadPool& pool, int64_t n, const std::function<void(int64_t)>& fn) {
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
  if (helpers <= 0) {
    for (int64_t c = 0; c < n; ++c) fn(c);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    int64_t n = 0;
    const std::function<void(int64_t)>* fn = nullptr;
    std::mutex mu;
    std::condition_variable cv;
  };
  auto shared = std::make_shared<Shared>();
  shared->n = n;
  shared->fn = &fn;
  auto work = [](Shared& s) {
    for (;;) {
      const int64_t c = s.next.fetch_add(1);
      if (c >= s.n) return;
      (*s.fn)(c);
      if (s.done.fetch_add(1) + 1 == s.n) {
        std::lock_guard<std::mutex> lock(s.mu);
        s.cv.notify_all();
      }
    }
  };
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([shared, work] { work(*shared); });
  work(*shared);
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done.load() == shared->n; });
}

ffi::Error invalid(const std::string& what) { return ffi::Error::InvalidArgument("jaxnet native kernel: " + what); }

// Checks the buffers against `sizes` (the Python side has validated the
// user's inputs; this guards the kernel's own memory accesses).
ffi::Error check_inputs(ffi::Span<const int64_t> sizes, const ffi::AnyBuffer& params, const ffi::AnyBuffer& x,
                        const ffi::AnyBuffer& y, const ffi::AnyBuffer& weight, RunDims* dm, bool* seed, int64_t* batch) {
  const int64_t L = static_cast<int64_t>(sizes.size()) - 1;
  if (L < 1 || L > MAXL) return invalid("between 1 and 6 layers supported");
  dm->L = static_cast<int>(L);
  int64_t P = 0;
  for (int64_t l = 0; l <= L; ++l) {
    if (sizes[l] < 1 || sizes[l] > MAXW) return invalid("layer widths must be in [1, 16]");
    dm->s[l] = static_cast<int>(sizes[l]);
    if (l < L) P += sizes[l] * sizes[l + 1] + sizes[l + 1];
  }
  *seed = L == 3 && sizes[0] == 2 && sizes[1] == 3 && sizes[2] == 2 && sizes[3] == 3;
  const ffi::DataType dt = x.element_type();
  if (dt != ffi::DataType::F32 && dt != ffi::DataType::F64) return invalid("x must be float32 or float64");
  if (params.element_type() != dt || static_cast<int64_t>(params.element_count()) != P)
    return invalid("params must be the flat parameters, in x's dtype");
  auto xd = x.dimensions();
  if (xd.size() != 2 || xd[1] != sizes[0]) return invalid("x must be (B, d_in)");
  *batch = xd[0];
  auto yd = y.dimensions();
  if (y.element_type() == ffi::DataType::S32) {
    if (yd.size() != 1 || yd[0] != *batch) return invalid("integer labels must be (B,)");
  } else if (y.element_type() == dt) {
    if (yd.size() != 2 || yd[0] != *batch || yd[1] != sizes[L]) return invalid("probabilities must be (B, C)");
  } else {
    return invalid("labels must be int32 or x's dtype");
  }
  if (weight.element_count() != 0 &&
      (weight.element_type() != dt || weight.dimensions().size() != 1 || weight.dimensions()[0] != *batch))
    return invalid("weight must be (B,) in x's dtype, or empty");
  return ffi::Error::Success();
}

template <class T>
Labels<T> labels_of(const ffi::AnyBuffer& y) {
  if (y.element_type() == ffi::DataType::S32) return {static_cast<const int32_t*>(y.untyped_data()), nullptr};
  return {nullptr, static_cast<const T*>(y.untyped_data())};
}

template <class T>
ffi::Error sums_impl(ffi::ThreadPool& pool, const RunDims& dm, bool seed, int64_t batch, ffi::AnyBuffer params,
                     ffi::AnyBuffer x, ffi::AnyBuffer y, ffi::AnyBuffer weight, ffi::AnyBuffer clip,
                     ffi::Result<ffi::AnyBuffer> out, ffi::Result<ffi::AnyBuffer> norms, bool with_loss) {
  int64_t P = 0;
  for (int l = 0; l < dm.L; ++l) P += dm.s[l] * dm.s[l + 1] + dm.s[l + 1];
  if (out->element_type() != x.element_type() || static_cast<int64_t>(out->element_count()) != P + 1)
    return invalid("sums output must be (P + 1,)");
  const bool clipping = clip.element_count() == 1;
  if (clipping && (clip.element_type() != x.element_type() ||
                   static_cast<int64_t>(norms->element_count()) != batch || norms->element_type() != x.element_type()))
    return invalid("clip must be a scalar and norms (B,), in x's dtype");
  const T clip_value = clipping ? *static_cast<const T*>(clip.untyped_data()) : T(-1);
  if (clipping && !(clip_value >= T(0))) return invalid("l2_norm_clip must be >= 0");
  const T* p = static_cast<const T*>(params.untyped_data());
  const T* xs = static_cast<const T*>(x.untyped_data());
  const T* w = weight.element_count() ? static_cast<const T*>(weight.untyped_data()) : nullptr;
  T* nrm = clipping ? static_cast<T*>(norms->untyped_data()) : nullptr;
  const Labels<T> ys = labels_of<T>(y);
  const int64_t n_chunks = std::max<int64_t>(1, (batch + CHUNK - 1) / CHUNK);
  std::vector<double> partial(static_cast<size_t>(n_chunks * (P + 1)), 0.0);
  parallel_for(pool, n_chunks, [&](int64_t c) {
    const int64_t begin = c * CHUNK, end = std::min(batch, begin + CHUNK);
    if (begin < end) run_sums<T>(dm, seed, p, xs, ys, w, begin, end, with_loss, clip_value, nrm, &partial[c * (P + 1)]);
  });
  T* o = static_cast<T*>(out->untyped_data());
  for (int64_t k = 0; k <= P; ++k) {
    double s = 0;
    for (int64_t c = 0; c < n_chunks; ++c) s += partial[c * (P + 1) + k];
    o[k] = static_cast<T>(s);
  }
  return ffi::Error::Success();
}

ffi::Error Sums(ffi::ThreadPool pool, ffi::AnyBuffer params, ffi::AnyBuffer x, ffi::AnyBuffer y, ffi::AnyBuffer weight,
                ffi::AnyBuffer clip, ffi::Result<ffi::AnyBuffer> out, ffi::Result<ffi::AnyBuffer> norms,
                ffi::Span<const int64_t> sizes, int64_t with_loss) {
  RunDims dm;
  bool seed;
  int64_t batch;
  if (ffi::Error e = check_inputs(sizes, params, x, y, weight, &dm, &seed, &batch); e.failure()) return e;
  if (x.element_type() == ffi::DataType::F32)
    return sums_impl<float>(pool, dm, seed, batch, params, x, y, weight, clip, out, norms, with_loss != 0);
  return sums_impl<double>(pool, dm, seed, batch, params, x, y, weight, clip, out, norms, with_loss != 0);
}

template <class T>
ffi::Error per_example_impl(ffi::ThreadPool& pool, const RunDims& dm, bool seed, int64_t batch, ffi::AnyBuffer params,
                            ffi::AnyBuffer x, ffi::AnyBuffer y, ffi::AnyBuffer weight, ffi::RemainingRets& outs) {
  if (static_cast<int>(outs.size()) != 2 * dm.L) return invalid("per-example outputs must be 2 per layer");
  T* gw[MAXL];
  T* gb[MAXL];
  for (int l = 0; l < dm.L; ++l) {
    auto w = outs.get<ffi::AnyBuffer>(2 * l);
    auto b = outs.get<ffi::AnyBuffer>(2 * l + 1);
    if (w.has_error()) return w.error();
    if (b.has_error()) return b.error();
    if ((*w)->element_type() != x.element_type() || (*b)->element_type() != x.element_type() ||
        static_cast<int64_t>((*w)->element_count()) != batch * dm.s[l] * dm.s[l + 1] ||
        static_cast<int64_t>((*b)->element_count()) != batch * dm.s[l + 1])
      return invalid("per-example outputs must be (B, d_l, d_l+1) and (B, d_l+1)");
    gw[l] = static_cast<T*>((*w)->untyped_data());
    gb[l] = static_cast<T*>((*b)->untyped_data());
  }
  const T* p = static_cast<const T*>(params.untyped_data());
  const T* xs = static_cast<const T*>(x.untyped_data());
  const T* w = weight.element_count() ? static_cast<const T*>(weight.untyped_data()) : nullptr;
  const Labels<T> ys = labels_of<T>(y);
  const int64_t n_chunks = std::max<int64_t>(1, (batch + CHUNK - 1) / CHUNK);
  parallel_for(pool, n_chunks, [&](int64_t c) {
    const int64_t begin = c * CHUNK, end = std::min(batch, begin + CHUNK);
    if (begin < end) run_per_example<T>(dm, seed, p, xs, ys, w, begin, end, gw, gb);
  });
  return ffi::Error::Success();
}

ffi::Error PerExample(ffi::ThreadPool pool, ffi::AnyBuffer params, ffi::AnyBuffer x, ffi::AnyBuffer y,
                      ffi::AnyBuffer weight, ffi::RemainingRets outs, ffi::Span<const int64_t> sizes) {
  RunDims dm;
  bool seed;
  int64_t batch;
  if (ffi::Error e = check_inputs(sizes, params, x, y, weight, &dm, &seed, &batch); e.failure()) return e;
  if (x.element_type() == ffi::DataType::F32) return per_example_impl<float>(pool, dm, seed, batch, params, x, y, weight, outs);
  return per_example_impl<double>(pool, dm, seed, batch, params, x, y, weight, outs);
}

}  // namespace
}  // namespace jaxnet_native

// The two symbols jaxnet/_native.py looks up; everything else stays hidden.
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* jaxnet_sums(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* jaxnet_per_example(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnet_sums, jaxnet_native::Sums,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // params, flat
                                  .Arg<ffi::AnyBuffer>()  // x (B, d_in)
                                  .Arg<ffi::AnyBuffer>()  // y (B,) int32 or (B, C)
                                  .Arg<ffi::AnyBuffer>()  // weight (B,) or (0,)
                                  .Arg<ffi::AnyBuffer>()  // l2_norm_clip () or (0,)
                                  .Ret<ffi::AnyBuffer>()  // sums (P + 1,)
                                  .Ret<ffi::AnyBuffer>()  // norms (B,) or (0,)
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<int64_t>("with_loss"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxnet_per_example, jaxnet_native::PerExample,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // params, flat
                                  .Arg<ffi::AnyBuffer>()  // x (B, d_in)
                                  .Arg<ffi::AnyBuffer>()  // y (B,) int32 or (B, C)
                                  .Arg<ffi::AnyBuffer>()  // weight (B,) or (0,)
                                  .RemainingRets()        // w, b of every layer, batch-leading
                                  .Attr<ffi::Span<const int64_t>>("sizes"));
