/* ei_tokenizer_load: the format is detected from the path and handed to the llama2.c / SentencePiece
 * readers (text/, libc only) or the tokenizer.json reader (data/tokenizer_hf.c, cJSON + PCRE2). */
#include "text/tokenizer_internal.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* tok*.bin in a folder (llama2.c's naming for custom vocabularies), first in name order. */
static char *find_tok_bin(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "tok", 3) != 0 || !has_suffix(e->d_name, ".bin")) continue;
        if (!best || strcmp(e->d_name, best) < 0) {
            free(best);
            best = strdup(e->d_name);
        }
    }
    closedir(d);
    if (!best) return NULL;
    char *p = ei_path_join(dir, best);
    free(best);
    return p;
}

static char *resolve_path(const char *path) {
    if (!ei_path_is_dir(path)) return strdup(path);
    static const char *names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = ei_path_join(path, names[i]);
        if (p && ei_path_exists(p)) return p;
        free(p);
    }
    char *p = find_tok_bin(path);
    if (!p) ei_error_set("%s: no tokenizer.json, tokenizer.model, tokenizer.bin or tok*.bin in this folder", path);
    return p;
}

static int sniff_kind(const char *path) {
    if (has_suffix(path, ".json")) return 'j';
    if (has_suffix(path, ".model")) return 'm';
    if (has_suffix(path, ".bin")) return 'b';
    FILE *fp = fopen(path, "rb");
    int c = fp ? fgetc(fp) : EOF;
    while (fp && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) c = fgetc(fp);
    if (fp) fclose(fp);
    if (c == '{') return 'j';
    if (c == 0x0A) return 'm'; /* protobuf field 1, length-delimited: the first piece */
    return 'b';
}

ei_tokenizer *ei_tokenizer_load(const char *path, int vocab_hint) {
    if (!path || !*path) {
        ei_error_set("tokenizer: empty path");
        return NULL;
    }
    char *file = resolve_path(path);
    if (!file) return NULL;
    ei_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(file);
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    t->bos = t->eos = t->unk = -1;
    int rc, k = sniff_kind(file);
    if (k == 'j')
        rc = ei_tok_load_hf(t, file);
    else if (k == 'm')
        rc = ei_tok_load_spm(t, file);
    else
        rc = ei_tok_load_llama2c(t, file, vocab_hint);
    free(file);
    if (rc) {
        ei_tokenizer_free(t);
        return NULL;
    }
    return t;
}
