// jaxnet's kernels for the compiler's default instruction set.
#define JAXNET_ISA base
#define JAXNET_VECTOR_BYTES 16
#include "kernels.h"
