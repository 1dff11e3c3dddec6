/* Passkey retrieval samples (the "needle in filler text" test of long-context models).
 *
 * A sample of target length L at depth d in [0, 1] is
 *   [BOS] filler[0 .. a) KEY filler[a .. a+b) QUESTION | ANSWER [EOS]
 * with KEY = encode("The pass key is NNNNN. Remember it. NNNNN is the pass key."),
 * QUESTION = encode("What is the pass key? The pass key is"), ANSWER the tokens of " NNNNN" as the
 * tokenizer produces them after the question, and a + b chosen so that the prompt ([BOS] .. QUESTION)
 * has exactly L tokens, a = round(d * (a + b)). Filler tokens repeat from the start when the filler
 * is shorter than needed. For training the loss mask covers ANSWER and EOS; for evaluation the prompt
 * and the reference (text "NNNNN" and ANSWER ids) are returned separately. */
#ifndef EI_PASSKEY_H
#define EI_PASSKEY_H

#include "text/tokenizer.h"
#include "text/tokvec.h"

#include <stddef.h>
#include <stdint.h>

/* Filler used when none is given: the sentences of the original passkey test, repeated. */
extern const char *const ei_passkey_default_filler;

/* Builds one sample. filler: token ids (n_filler >= 1). key: 10000..99999. for_eval: out receives the
 * prompt only (mask 0) and ref the answer ids; otherwise out receives the training sample and ref is
 * unused (may be NULL). *key_at (may be NULL) receives the index of KEY's first token in out.
 * Fails if L is too small to hold BOS, KEY and QUESTION. */
int ei_passkey_sample(const ei_tokenizer *tok, const int32_t *filler, size_t n_filler, int64_t length,
                      double depth, int key, int for_eval, ei_tokvec *out, ei_tokvec *ref, int64_t *key_at);

/* Parses "1024,4096" / "0,0.25,0.5" lists (malloc'd arrays). */
int ei_parse_i64_list(const char *s, const char *option, int64_t **out, int *n);
int ei_parse_f64_list(const char *s, const char *option, double **out, int *n);

#endif
