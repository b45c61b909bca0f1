// Types shared by jaxnet's FFI handlers (jaxnet_cpu.cc) and the kernels
// compiled per instruction set (kernels.h).
#ifndef JAXNET_NATIVE_COMMON_H_
#define JAXNET_NATIVE_COMMON_H_

#include <cstdint>

namespace jaxnet_native {

constexpr int MAXL = 6;   // layers
constexpr int MAXW = 16;  // units per layer

// Layer widths at run time: s[0] inputs, s[L] classes.
struct RunDims {
  int L;
  int s[MAXL + 1];
};

// Labels: int32 classes, or (B, C) probabilities of type T; one is null.
template <class T>
struct Labels {
  const int32_t* cls;
  const T* prob;
};

// The kernels of one instruction set (see kernels.h).
#define JAXNET_DECLARE_KERNELS(ISA)                                                                              \
  namespace ISA {                                                                                                \
  template <class T>                                                                                             \
  void sums(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight,            \
            int64_t begin, int64_t end, bool with_loss, T clip, T* norms, double* out);                          \
  template <class T>                                                                                             \
  void per_example(const RunDims& dm, bool seed, const T* params, const T* x, Labels<T> y, const T* weight,     \
                   int64_t begin, int64_t end, T* const* gw, T* const* gb);                                      \
  }

}  // namespace jaxnet_native

#endif  // JAXNET_NATIVE_COMMON_H_
