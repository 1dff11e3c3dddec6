/* Fuzz target: `ei prepare` on JSONL input (data/prepare.c: lines, blank lines, malformed JSON with
 * --skip-bad, instruction and answer values pairing up, templates, truncation to --max-tokens,
 * language-modelling splits; data/prepare_template.c; data/prepare_json.c) with the tok512.model
 * tokenizer, writing an evaluation set and, when the first byte is odd, an HDF5 dataset with a
 * validation split. Input: byte 0 = flags, then lines: context selector, instruction selector,
 * answer selector, custom template ("" for none: the built-in "plain"), then the JSONL body. What it
 * writes must read back (ei_evalset_read, ei_dataset_open). */
#include "fuzz.h"

#include "core/ei_error.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "text/evalset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tok_path[1024];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_fixture(tok_path, sizeof tok_path, "models/stories260K/tok512.model");
    fz_quiet_stdout(); /* ei_prepare_run prints its statistics */
    return 0;
}

/* The next line of [*p, end) as a NUL-terminated copy (in buf, cap bytes); NULL when empty. */
static const char *next_line(const uint8_t **p, const uint8_t *end, char *buf, size_t cap) {
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    if (n >= cap) n = cap - 1;
    memcpy(buf, *p, n);
    buf[n] = '\0';
    *p = nl ? nl + 1 : end;
    return n && !memchr(buf, 0, n) ? buf : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    char ctx[512], ins[512], ans[512], tpl[512];
    const char *c = next_line(&p, end, ctx, sizeof ctx);
    const char *i = next_line(&p, end, ins, sizeof ins);
    const char *a = next_line(&p, end, ans, sizeof ans);
    const char *t = next_line(&p, end, tpl, sizeof tpl);
    if (!c) return 0;
    char in[512], eis[512], h5[512];
    fz_write(in, sizeof in, "input.jsonl", p, (size_t)(end - p));
    fz_path(eis, sizeof eis, "out.eis");
    fz_path(h5, sizeof h5, "out.h5");
    const char *inputs[] = {in};
    static const char *const max_tok[] = {"0", "24", "48", "200"};
    ei_prepare_opts o = {.inputs = inputs, .n_inputs = 1, .format = "auto", .context = c, .instruction = i,
                         .answer = a, .template_string = t, .template_name = (flags & 2) ? "chatml" : "plain",
                         .lm_overflow = (flags & 4) ? "cut" : "split", .max_tokens = atoi(max_tok[(flags >> 3) & 3]),
                         .skip_bad = (flags & 32) != 0, .quiet = 1, .seed = 7, .tokenizer_path = tok_path,
                         .eval_set = eis, .output = (flags & 1) ? h5 : NULL, .val_fraction = (flags & 64) ? 0.5 : 0,
                         .task = (flags & 128) ? "summary" : NULL};
    unlink(eis);
    int rc = ei_prepare_run(&o);
    fz_note("prepare", rc == 0);
    if (rc == 0) {
        ei_evalset *s = ei_evalset_read(eis);
        if (!s) fz_fail("ei prepare wrote an evaluation set that does not read back: %s", ei_error_get());
        ei_evalset_free(s);
        if (o.output) {
            char split[512];
            const char *names[] = {h5, NULL, NULL};
            char *tr = NULL, *va = NULL;
            if (o.val_fraction > 0) {
                names[0] = tr = ei_prepare_split_path(h5, "train");
                names[1] = va = ei_prepare_split_path(h5, "val");
            }
            for (int k = 0; k < 2 && names[k]; k++) {
                snprintf(split, sizeof split, "%s", names[k]);
                if (access(split, F_OK) != 0) continue; /* a split may have no documents */
                ei_dataset *d = ei_dataset_open(split);
                if (!d) fz_fail("ei prepare wrote %s, which does not open: %s", split, ei_error_get());
                ei_dataset_close(d);
                unlink(split);
            }
            free(tr);
            free(va);
        }
    }
    return 0;
}
