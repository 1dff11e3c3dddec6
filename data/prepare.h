/* `ei prepare`: text and JSONL documents -> tokenised samples with loss masks -> HDF5 datasets
 * (data/dataset.h) and/or an evaluation set (data/evalset.h). docs/datasets.md documents every rule
 * below for users.
 *
 * Sample construction (instruction data):
 *   the template is split at "{answer}": prompt text P = the part before it with {context} and
 *   {instruction} filled in, without its trailing spaces; answer text A = those spaces + the answer
 *   + the template text after "{answer}".
 *   tokens = [BOS] encode(P) encode_cont(A) [EOS]; loss mask 1 on encode_cont(A) and EOS, 0 elsewhere.
 *   (P and A are encoded separately so the mask boundary is exact; P is encoded as one string, as a
 *   prompt is at inference time; A as its continuation (ei_tokenizer_encode_cont), so the tokens
 *   are those of P + A encoded whole: no lone space piece at the end of P, no second dummy-prefix
 *   space at the start of A.)
 * Truncation (--max-tokens N, instruction data): if the sample is longer than N, the prompt is
 *   re-encoded in three parts, encode(before {context}) + head + tail of encode_cont(context) +
 *   encode_cont(after {context}), dropping the middle of the context so the total is exactly N; the
 *   instruction and answer are never cut. A sample that does not fit even with an empty context is
 *   dropped. For an evaluation set the same rule applies to the prompt alone ([BOS] P).
 * Language modelling (text files, or JSONL with only --context): tokens = [BOS] encode(doc) [EOS],
 *   mask 1 on every token but BOS. Longer than N: split into consecutive pieces of at most N tokens
 *   (each starts with BOS, the last ends with EOS), or with lm_overflow "cut", keep head and tail.
 */
#ifndef EI_PREPARE_H
#define EI_PREPARE_H

#include "text/tokenizer.h"
#include "text/tokvec.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ templates */

/* A prompt template: literal text with the placeholders {context}, {instruction} and {answer}
 * ("{{" and "}}" stand for literal braces). {answer} must appear exactly once, after {context} and
 * {instruction}, each of which may appear at most once. */
typedef struct {
    char *name;
    char *before_ctx;   /* text before {context} (may contain the {instruction} placeholder) */
    char *after_ctx;    /* between {context} and {answer} (may contain {instruction}) */
    char *after_answer; /* text after {answer}: part of the answer, so it carries loss */
    int has_context;
    int parse_special; /* recognise special tokens written in the template (chatml) */
} ei_template;

/* Built-in names: "plain" = "{context}\n{instruction}\n{answer}",
 * "llama2-chat" = "[INST] {context}\n\n{instruction} [/INST] {answer}",
 * "chatml" = "<|im_start|>user\n{context}\n\n{instruction}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>".
 * NULL with ei_error set for an unknown name. */
ei_template *ei_template_builtin(const char *name);
/* Special-token markers written in the template ("<|im_start|>") that the tokenizer does not
 * encode as one token: returns how many, and the first in marker (cap bytes). */
int ei_template_unknown_specials(const ei_template *t, const ei_tokenizer *tok, char *marker, size_t cap);
/* Parses a custom template string (where names the option or file in error messages). */
ei_template *ei_template_parse(const char *text, const char *where);
void ei_template_free(ei_template *t);
/* The template's text rebuilt with placeholders (malloc'd), for metadata. */
char *ei_template_text(const ei_template *t);

/* Result of building one sample. */
typedef enum { EI_SAMPLE_OK = 0, EI_SAMPLE_TRUNCATED = 1, EI_SAMPLE_TOO_LONG = 2 } ei_sample_status;

/* Instruction sample: [BOS] P A [EOS] with the mask rule above into out (cleared first). For an
 * evaluation prompt (eval_prompt = 1) out receives [BOS] P only (mask 0) and *ref receives
 * encode(answer) alone. max_tokens <= 0: no limit. Returns ei_sample_status or -1 on error. */
int ei_prepare_instruct(const ei_tokenizer *tok, const ei_template *t, const char *context,
                        const char *instruction, const char *answer, int64_t max_tokens, int eval_prompt,
                        ei_tokvec *out, ei_tokvec *ref);

/* ------------------------------------------------------------------ JSON field selectors */

/* A selector picks text out of a JSON object:
 *   "a.b"                      a string (or number) at a path; "a[2].b" indexes an array
 *   "list[].field"             every element of an array (path after "[]" applies to the element)
 *   "list[]"                   every element itself
 *   "list[].{speaker}: {content}"  every element formatted with a template of element paths
 *   "{title}\n{body}"          a format over paths of the object itself
 * At most one "[]" per selector. Evaluated as a context the values are joined with a separator;
 * as an instruction or answer each value becomes its own sample (see ei_prepare_opts). */
typedef struct ei_selector ei_selector;
ei_selector *ei_selector_parse(const char *text, const char *option);
void ei_selector_free(ei_selector *s);
int ei_selector_is_array(const ei_selector *s);
const char *ei_selector_text(const ei_selector *s);
/* Evaluates on a parsed JSON object (a cJSON *). *values: malloc'd array of malloc'd strings, *n
 * of them (caller frees with ei_strings_free). Missing fields: -1 with an error naming the field. */
int ei_selector_eval(const ei_selector *s, const void *json, char ***values, size_t *n);
void ei_strings_free(char **v, size_t n);

/* ------------------------------------------------------------------ the whole job */

typedef struct {
    const char **inputs; /* text or JSONL files */
    int n_inputs;
    const char *format;   /* "auto" (by extension: .jsonl/.json -> JSONL), "text" or "jsonl" */
    const char *doc_mode; /* text files: "whole" or "paragraphs" */
    const char *context, *instruction, *answer; /* JSONL selectors (context required for JSONL) */
    const char *join;     /* separator for array values of the context ("\n") */
    const char *template_name;   /* plain | llama2-chat | chatml */
    const char *template_string; /* overrides template_name */
    const char *task;            /* evaluation-set task type (qa|choice|summary|lm|passkey) or NULL */
    const char *lm_overflow;     /* "split" or "cut" */
    int64_t max_tokens, min_tokens, max_docs;
    double val_fraction;
    uint64_t seed;
    int skip_bad;
    int quiet;
    const char *output;   /* .h5 (with a split: <stem>.train.h5 and <stem>.val.h5), or NULL */
    const char *eval_set; /* .eis, or NULL */
    const char *tokenizer_path;
    /* passkey generation instead of inputs */
    int passkey;
    const char *filler;
    const char *lengths; /* "1024,4096" */
    const char *depths;  /* "0,0.25,0.5,0.75,1" */
    int per_cell;        /* samples per (length, depth) */
    /* language modelling with max_tokens: each piece of a split document is its own document (own
     * doc id; the split takes one contiguous run of whole pieces for validation) */
    int piece_docs;
} ei_prepare_opts;

/* Statistics of one output. */
typedef struct {
    int64_t docs, samples, tokens, min_len, median_len, max_len;
    int64_t truncated; /* samples that lost text (a context's middle, --lm-overflow cut) */
    int64_t split;     /* samples that are pieces of a longer document (nothing lost) */
} ei_prepare_stats;

/* Runs the job; prints statistics to stdout (and progress to stderr unless quiet). */
int ei_prepare_run(const ei_prepare_opts *o);

/* Output paths for a split: "<stem>.train.h5" / "<stem>.val.h5", stem = path without ".h5".
 * malloc'd. */
char *ei_prepare_split_path(const char *path, const char *split);

/* Checks that buf is valid UTF-8; on failure returns -1 and sets *bad_offset. */
int ei_utf8_check(const char *buf, size_t len, size_t *bad_offset);

#endif
