// jaxnet's kernels for x86-64 with AVX2 and FMA.
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c")
#define JAXNET_ISA avx2
#define JAXNET_VECTOR_BYTES 32
#include "kernels.h"
#endif
