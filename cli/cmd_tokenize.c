/* `ei tokenize`: text -> ids, or ids -> text with --decode, for any supported tokenizer. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "text/paragraphs.h"
#include "text/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) break;
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

/* Ids separated by spaces, commas, brackets or newlines. */
static int parse_ids(const char *s, int32_t **ids, size_t *n, size_t *cap) {
    while (*s) {
        if (strchr(" \t\r\n,[]", *s)) {
            s++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX)
            return ei_error_set("not a token id: '%.20s'", s);
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            int32_t *nv = realloc(*ids, *cap * sizeof **ids);
            if (!nv) return ei_error_set("out of memory");
            *ids = nv;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

static int do_decode(const ei_tokenizer *t, char **pos, int npos) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int i = 0; i < npos && !rc; i++) {
        if (strcmp(pos[i], "-") == 0) {
            size_t len;
            char *in = read_stdin(&len);
            if (!in) rc = ei_error_set("cannot read standard input");
            else rc = parse_ids(in, &ids, &n, &cap);
            free(in);
        } else {
            rc = parse_ids(pos[i], &ids, &n, &cap);
        }
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (ids[i] >= ei_tokenizer_vocab_size(t))
            rc = ei_error_set("id %d is outside the vocabulary (size %d)", ids[i], ei_tokenizer_vocab_size(t));
    char *text = NULL;
    size_t len = 0;
    if (!rc) rc = ei_tokenizer_decode(t, ids, n, &text, &len);
    if (!rc) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    }
    free(text);
    free(ids);
    return rc;
}

/* The text is normalised as `ei prepare` and `ei eval --ppl` read files (ei_text_normalize: a
 * byte-order mark dropped, CRLF -> LF), so the ids printed are the ids a dataset holds. */
static int do_encode(const ei_tokenizer *t, const char *arg, int bos, int parse_special, int pieces) {
    char *owned = NULL;
    size_t len = strlen(arg);
    if (strcmp(arg, "-") == 0) {
        owned = read_stdin(&len);
        if (!owned) return ei_error_set("cannot read standard input");
    } else if (!(owned = strdup(arg))) {
        return ei_error_set("out of memory");
    }
    len = ei_text_normalize(owned, len);
    const char *text = owned;
    int32_t *ids;
    size_t n;
    int rc = ei_tokenizer_encode(t, text, len, bos, parse_special, &ids, &n);
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            if (pieces) printf("%d\t%s\n", ids[i], ei_tokenizer_piece(t, ids[i]));
            else printf(i ? " %d" : "%d", ids[i]);
        }
        if (!pieces) putchar('\n');
        free(ids);
    }
    free(owned);
    return rc;
}

int ei_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int decode = 0, bos = 0, literal = 0, pieces = 0, vocab = 0;
    ei_arg opts[] = {
        {"tokenizer", EI_ARG_STR, &path, "PATH", "tokenizer.bin, tokenizer.model, tokenizer.json or a model folder"},
        {"decode", EI_ARG_FLAG, &decode, NULL, "decode ids (arguments, or '-' for stdin) to text"},
        {"bos", EI_ARG_FLAG, &bos, NULL, "prepend BOS when the tokenizer has one"},
        {"no-parse-special", EI_ARG_FLAG, &literal, NULL,
         "treat special-token text such as <|im_start|> or <s> as plain text"},
        {"pieces", EI_ARG_FLAG, &pieces, NULL, "print one 'id<TAB>piece' line per token"},
        {"vocab", EI_ARG_INT, &vocab, "N", "vocabulary size for a llama2.c tokenizer.bin (0: read to the end)"},
        EI_ARG_RANGE(0, 1 << 22),
        {0}};
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "ei tokenize",
                           "ei tokenize --tokenizer PATH [--decode] [--bos] TEXT|-\n\n"
                           "Prints the token ids of TEXT (or of standard input with '-'), space-separated, without "
                           "BOS unless --bos; with --decode, prints the text of the given ids. The text is read as "
                           "ei prepare reads files: a UTF-8 byte-order mark is dropped and CRLF becomes LF.",
                           opts, &pos, &npos);
    if (rc) {
        free(pos);
        return rc < 0 ? 2 : 0;
    }
    if (!path || npos < 1 || (!decode && npos != 1)) {
        fprintf(stderr, "ei tokenize: error: %s (see ei tokenize --help)\n",
                !path ? "--tokenizer PATH is required" : "give one TEXT argument or '-' (ids with --decode)");
        free(pos);
        return 2;
    }
    ei_tokenizer *t = ei_tokenizer_load(path, vocab);
    if (!t) {
        ei_error_print("tokenize");
        free(pos);
        return 1;
    }
    rc = decode ? do_decode(t, pos, npos) : do_encode(t, pos[0], bos, !literal, pieces);
    if (rc) ei_error_print("tokenize");
    ei_tokenizer_free(t);
    free(pos);
    return rc ? 1 : 0;
}
