/* Evaluation sets (`.eis`): prompts as token ids, references as text and ids, and a task type per
 * item, in a compact binary file that the on-device evaluator reads without HDF5 or a JSON parser
 * (data/evalset.c depends on libc and core/ only).
 *
 * File layout (all integers little-endian; docs/datasets.md has the full table):
 *   header, 48 bytes:
 *     magic "EIEVSET\0" | u32 version (1) | u32 header size (48) | u64 file size |
 *     u32 item count | i32 vocab size | i32 bos | i32 eos | u32 tokenizer identity length | u32 0
 *   tokenizer identity bytes, zero-padded to a multiple of 4
 *   per item: u32 task type | u32 tag length | u32 prompt tokens | u32 reference text length |
 *             u32 reference tokens | then tag bytes, prompt ids (i32), reference text bytes,
 *             reference ids (i32), each part zero-padded to a multiple of 4
 *   trailer: u64 FNV-1a 64 of every byte before it
 * The reader checks the magic, version, the recorded file size against the real one, every length
 * against the bytes that remain, the checksum, token ids against [0, vocab) and the task types. */
#ifndef EI_EVALSET_H
#define EI_EVALSET_H

#include <stddef.h>
#include <stdint.h>

#define EI_EVALSET_VERSION 1

typedef enum {
    EI_TASK_QA = 0,      /* free answer: exact match / contains */
    EI_TASK_CHOICE = 1,  /* multiple choice: the reference names the right option */
    EI_TASK_SUMMARY = 2, /* summary: ROUGE-L against the reference text */
    EI_TASK_LM = 3,      /* language modelling: perplexity of the prompt tokens, no reference */
    EI_TASK_PASSKEY = 4, /* passkey retrieval: the reference is the number */
    EI_TASK_COUNT_
} ei_task_type;

/* "qa", "choice", "summary", "lm", "passkey"; NULL for an unknown value. */
const char *ei_task_type_name(int type);
/* Parses one of the names above (also "multiple-choice", "mc"); -1 if unknown. */
int ei_task_type_parse(const char *name);

typedef struct {
    int type;          /* ei_task_type */
    char *tag;         /* NUL-terminated label such as "qmsum:3:0" or "passkey:4096:0.50" */
    int32_t *prompt;   /* prompt token ids (BOS included when the tokenizer has one) */
    uint32_t n_prompt;
    char *ref_text;    /* NUL-terminated reference text ("" when none) */
    uint32_t ref_text_len;
    int32_t *ref_ids;  /* reference token ids, no BOS/EOS */
    uint32_t n_ref;
} ei_eval_item;

/* An evaluation set in memory. Owns every item and every array in it. */
typedef struct {
    char *tokenizer; /* tokenizer identity (ei_tokenizer_identity) */
    int32_t vocab_size, bos, eos;
    uint32_t n_items;
    ei_eval_item *items;
    uint32_t cap_;
} ei_evalset;

/* Empty set; NULL on allocation failure. */
ei_evalset *ei_evalset_new(const char *tokenizer_identity, int32_t vocab_size, int32_t bos, int32_t eos);
void ei_evalset_free(ei_evalset *s);

/* Appends a copy of the given arrays and strings (ref_text may be NULL for none). Checks the type
 * and token ids against the vocabulary. */
int ei_evalset_add(ei_evalset *s, int type, const char *tag, const int32_t *prompt, size_t n_prompt,
                   const char *ref_text, const int32_t *ref_ids, size_t n_ref);

/* Serialises to a malloc'd buffer (caller frees) / writes atomically to path. */
int ei_evalset_serialize(const ei_evalset *s, uint8_t **buf, size_t *size);
int ei_evalset_write(const ei_evalset *s, const char *path);

/* Parses size bytes (name is used in error messages). NULL with ei_error set on any problem.
 * The result does not point into buf. */
ei_evalset *ei_evalset_parse(const uint8_t *buf, size_t size, const char *name);
ei_evalset *ei_evalset_read(const char *path);

#endif
