/* IEEE half (binary16) and bfloat16 conversions, used by the model loaders, the quantiser and the
 * on-device runtime. libc only. */
#ifndef EI_HALF_H
#define EI_HALF_H

#include <stdint.h>

/* Scalar conversions (round to nearest even on the way down; NaN stays NaN). */
float ei_f16_to_f32(uint16_t h);
float ei_bf16_to_f32(uint16_t b);
uint16_t ei_f32_to_f16(float f);
uint16_t ei_f32_to_bf16(float f);

#endif
