#include "core/ei_rng.h"
#include "core/ei_error.h"

#include <math.h>

uint64_t ei_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ei_rng_seed(ei_rng *r, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < EI_RNG_STATE_WORDS; i++) r->s[i] = ei_splitmix64(&sm);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

int ei_rng_set_state(ei_rng *r, const uint64_t s[EI_RNG_STATE_WORDS]) {
    if (!(s[0] | s[1] | s[2] | s[3])) return ei_error_set("rng state: all zero (not a valid xoshiro256** state)");
    for (int i = 0; i < EI_RNG_STATE_WORDS; i++) r->s[i] = s[i];
    return 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ei_rng_next(ei_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ei_rng_uniform(ei_rng *r) { return (double)(ei_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t ei_rng_below(ei_rng *r, uint64_t n) {
    if (n == 0) return 0;
    /* Reject the top partial block so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ei_rng_next(r);
    while (x >= limit);
    return x % n;
}

double ei_rng_normal(ei_rng *r) {
    double u1 = 1.0 - ei_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = ei_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ei_rng_shuffle_i64(ei_rng *r, int64_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ei_rng_below(r, (uint64_t)i);
        int64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void ei_rng_jump(ei_rng *r) {
    static const uint64_t JUMP[] = {0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL, 0xa9582618e03fc9aaULL,
                                    0x39abdc4529b1661cULL};
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 64; b++) {
            if (JUMP[i] & (1ULL << b)) {
                s0 ^= r->s[0];
                s1 ^= r->s[1];
                s2 ^= r->s[2];
                s3 ^= r->s[3];
            }
            ei_rng_next(r);
        }
    r->s[0] = s0;
    r->s[1] = s1;
    r->s[2] = s2;
    r->s[3] = s3;
}
