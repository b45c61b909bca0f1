// jaxnet's kernels for x86-64 with AVX-512 (F, DQ, VL, BW).
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,prefer-vector-width=512")
#define JAXNET_ISA avx512
#define JAXNET_VECTOR_BYTES 64
#include "kernels.h"
#endif
