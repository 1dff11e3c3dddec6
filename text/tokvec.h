/* A growable vector of token ids with one loss-mask byte per token: what sample builders (ei
 * prepare on the host, the passkey generator on the device) append to. Device side: libc only. */
#ifndef EI_TOKVEC_H
#define EI_TOKVEC_H

#include <stddef.h>
#include <stdint.h>

/* Zero-initialise ({0}) before the first push; owns ids and mask until ei_tokvec_free. */
typedef struct {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} ei_tokvec;

/* Appends n ids, each with the given mask byte. 0, or -1 with ei_error set (out of memory; the
 * vector keeps what it held). */
int ei_tokvec_push(ei_tokvec *v, const int32_t *ids, size_t n, uint8_t mask);
/* Frees the arrays and zeroes the vector (safe on a zeroed one). */
void ei_tokvec_free(ei_tokvec *v);

#endif
