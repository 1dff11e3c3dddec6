/* The passkey grid that `ei-eval --passkey` builds on the device: for every length, depth and
 * repetition one sample of text/passkey.h (key hidden at that depth of the filler, asked for at
 * the end), as ordinary passkey items of an evaluation set, so they run and score like the items
 * of a .eis file. Tokenising the filler and the key sentences needs an encoder: the tokenizer the
 * runner rebuilds from the .eig (SentencePiece / llama2.c kinds encode on the device).
 * Device side: libc only. */
#ifndef EI_EVAL_PASSKEY_GRID_H
#define EI_EVAL_PASSKEY_GRID_H

#include "text/evalset.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t *lengths; /* prompt tokens per sample */
    int n_lengths;
    double *depths;   /* fractions in [0, 1] */
    int n_depths;
    int per_cell;     /* samples per (length, depth) */
    uint64_t seed;    /* keys: 10000 + ei_rng_below(90000) from ei_rng_seed(seed), in grid order */
} ei_pk_grid;

/* "1k,4k,16384": positive integers, a k / K suffix multiplies by 1024, m / M by 1024^2.
 * malloc'd array; -1 with ei_error set (naming --option) on a bad list. */
int ei_pk_parse_lengths(const char *s, const char *option, int64_t **out, int *n);
/* "0,25,50,75,100" (percentages) or "0,0.25,0.5" (fractions): a list whose largest value is above 1,
 * or whose values end in '%', is read as percentages; values must lie in [0, 100] / [0, 1]. */
int ei_pk_parse_depths(const char *s, const char *option, double **out, int *n);

/* Appends the grid's items to set (tags "passkey:<length>:<depth>:<repetition>", reference text
 * the key, reference ids the answer tokens), lengths outermost, then depths, then repetitions.
 * filler: UTF-8 text (NULL: text/passkey.h's default sentences); only the part the longest sample
 * can use is encoded. */
int ei_pk_generate(const ei_tokenizer *tok, const char *filler, size_t filler_len, const ei_pk_grid *g,
                   ei_evalset *set);

#endif
