/* RMSNorm and RoPE kernels (see kernels.h); the body is norm_rope_impl.inc, compiled once per
 * float type. */
#include "kernels/kernels.h"

#include <math.h>

#define REAL float
#define SFX(name) name##_f32
#include "kernels/norm_rope_impl.inc"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include "kernels/norm_rope_impl.inc"
#undef REAL
#undef SFX
