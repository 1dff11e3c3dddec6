/* `ei prepare` driver: reads inputs document by document, builds samples, splits by document,
 * writes the outputs and reports statistics. */
#include "data/prepare.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "data/dataset.h"
#include "text/evalset.h"
#include "text/paragraphs.h"
#include "text/passkey.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ outputs and statistics */

typedef struct {
    ei_prepare_stats st;
    int64_t *lens;
    size_t n_lens, cap_lens;
    int64_t last_doc;
} out_stats;

enum { OUT_ALL = 0, OUT_TRAIN = 1, OUT_VAL = 2, OUT_EVAL = 3, N_OUT = 4 };
static const char *const out_names[N_OUT] = {"all", "train", "val", "eval"};

typedef struct {
    const ei_prepare_opts *o;
    const ei_tokenizer *tok;
    ei_dataset_writer *w[3];
    ei_evalset *es;
    out_stats s[N_OUT];
    uint8_t *is_val; /* per document, when splitting */
    int64_t n_docs;
    int counting;     /* --piece-docs, first pass: only count the pieces (into n_docs) */
    int64_t next_doc; /* --piece-docs: id of the next piece */
    int64_t n_inputs_docs; /* documents read from the inputs (n_docs counts pieces with --piece-docs) */
    int64_t dropped_empty, dropped_short, dropped_long, bad_lines;
    double t0, last_progress;
} job;

static int stats_add(out_stats *s, int64_t doc, size_t len, int truncated, int split) {
    if (s->n_lens == s->cap_lens) {
        size_t cap = s->cap_lens ? s->cap_lens * 2 : 1024;
        int64_t *n = realloc(s->lens, cap * sizeof *n);
        if (!n) return ei_error_set("out of memory");
        s->lens = n;
        s->cap_lens = cap;
    }
    s->lens[s->n_lens++] = (int64_t)len;
    if (s->st.samples == 0 || doc != s->last_doc) s->st.docs++;
    s->last_doc = doc;
    s->st.samples++;
    s->st.tokens += (int64_t)len;
    s->st.truncated += truncated;
    s->st.split += split;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void stats_finish(out_stats *s) {
    if (!s->n_lens) return;
    qsort(s->lens, s->n_lens, sizeof *s->lens, cmp_i64);
    s->st.min_len = s->lens[0];
    s->st.max_len = s->lens[s->n_lens - 1];
    s->st.median_len = s->n_lens % 2 ? s->lens[s->n_lens / 2]
                                     : (s->lens[s->n_lens / 2 - 1] + s->lens[s->n_lens / 2]) / 2;
}

static void progress(job *j, const char *file, size_t done, size_t total) {
    if (j->o->quiet) return;
    double now = ei_time_now();
    if (now - j->last_progress < 1.0 && done < total) return;
    if (now - j->t0 < 1.0) return; /* short jobs print nothing */
    j->last_progress = now;
    int64_t samples = 0;
    for (int i = 0; i < N_OUT; i++) samples += j->s[i].st.samples;
    fprintf(stderr, "%sprepare: %s %5.1f%% (%.1f MB), %lld samples, %.1f MB/s%s",
            isatty(2) ? "\r" : "", file, total ? 100.0 * (double)done / (double)total : 100.0, (double)done / 1e6,
            (long long)samples, (double)done / 1e6 / (now - j->t0 + 1e-9), isatty(2) ? "" : "\n");
    fflush(stderr);
}

/* Routes one sample to the HDF5 output(s) and/or the evaluation set. truncated: text was dropped;
 * split: the sample is one piece of a longer document (nothing dropped). */
static int emit(job *j, int64_t doc, const ei_tokvec *sample, int truncated, int split, const ei_tokvec *prompt,
                const ei_tokvec *ref, const char *ref_text, int task, const char *tag) {
    int val = j->is_val && j->is_val[doc];
    if (sample && j->w[0]) {
        int k = j->is_val ? (val ? 2 : 1) : 0;
        if (ei_dataset_writer_add(j->w[k], sample->ids, sample->mask, sample->n, doc) != 0) return -1;
        if (stats_add(&j->s[k], doc, sample->n, truncated, split) != 0) return -1;
    }
    if (prompt && j->es && (!j->is_val || val)) {
        if (ei_evalset_add(j->es, task, tag, prompt->ids, prompt->n, ref_text, ref ? ref->ids : NULL,
                           ref ? ref->n : 0) != 0)
            return -1;
        if (stats_add(&j->s[OUT_EVAL], doc, prompt->n, truncated, split) != 0) return -1;
    }
    return 0;
}

static int too_short(job *j, size_t n) {
    if (j->o->min_tokens > 0 && (int64_t)n < j->o->min_tokens) {
        j->dropped_short++;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ language modelling documents */

/* With --piece-docs every piece is its own document: ids are handed out in input order, the same
 * in the counting pass and the writing pass, so the split chosen between them holds whole pieces. */
static int lm_doc(job *j, int64_t doc, const char *text, size_t len, const char *tag) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (ei_tokenizer_encode(j->tok, text, len, 0, 0, &ids, &n) != 0) return -1;
    if (n == 0) {
        free(ids);
        if (!j->counting) j->dropped_empty++;
        return 0;
    }
    int bos = ei_tokenizer_bos(j->tok), eos = ei_tokenizer_eos(j->tok);
    int64_t max = j->o->max_tokens;
    int64_t room = max > 0 ? max - (bos >= 0) : (int64_t)n + 1; /* body tokens per piece */
    int cut = j->o->lm_overflow && strcmp(j->o->lm_overflow, "cut") == 0;
    ei_tokvec v = {0};
    int rc = 0;
    int over = max > 0 && (int64_t)n + (bos >= 0) + (eos >= 0) > max;
    /* cut drops the middle; split keeps every token, in pieces */
    int truncated = over && cut, split = over && !cut;
    if (room < 1) {
        free(ids);
        return ei_error_set("--max-tokens %lld leaves no room for text", (long long)max);
    }
    size_t at = 0;
    int piece = 0;
    while (rc == 0 && at < n) {
        v.n = 0;
        int32_t b = bos, e = eos;
        if (bos >= 0) rc |= ei_tokvec_push(&v, &b, 1, 0);
        size_t take = n - at, rest = 0;
        int last = 1;
        if (truncated) {
            int64_t keep = room - (eos >= 0);
            if (keep < 2) keep = 2;
            rest = (size_t)keep / 2;
            take = (size_t)keep - rest;
        } else if (split) {
            /* The last piece must also hold EOS. */
            int64_t need = (int64_t)(n - at) + (eos >= 0);
            if (need > room) {
                take = (size_t)room;
                last = 0;
            }
        }
        rc |= ei_tokvec_push(&v, ids + at, take, 1);
        if (rest) rc |= ei_tokvec_push(&v, ids + n - rest, rest, 1);
        if (last && eos >= 0) rc |= ei_tokvec_push(&v, &e, 1, 1);
        at = truncated ? n : at + take;
        if (rc) break;
        int64_t id = j->o->piece_docs ? j->next_doc++ : doc;
        if (j->counting) {
            j->n_docs++;
            continue;
        }
        if (too_short(j, v.n)) continue;
        char t[512];
        snprintf(t, sizeof t, "%s:%d", tag, piece++);
        rc = emit(j, id, &v, truncated, split, &v, NULL, "",
                  j->o->task ? ei_task_type_parse(j->o->task) : EI_TASK_LM, t);
    }
    free(ids);
    ei_tokvec_free(&v);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ JSONL documents */

typedef struct {
    ei_selector *ctx, *ins, *ans;
    ei_template *tpl;
    char *join;
} jsonl_spec;

static char *join_values(char **v, size_t n, const char *sep) {
    size_t total = 1, sl = strlen(sep);
    for (size_t i = 0; i < n; i++) total += strlen(v[i]) + (i ? sl : 0);
    char *s = malloc(total), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i) p = memcpy(p, sep, sl), p += sl;
        size_t l = strlen(v[i]);
        memcpy(p, v[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

static int jsonl_doc(job *j, const jsonl_spec *sp, int64_t doc, const cJSON *obj, const char *tag) {
    char **cv = NULL, **iv = NULL, **av = NULL, *ctx = NULL;
    size_t cn = 0, in = 0, an = 0;
    int rc = -1;
    ei_tokvec sample = {0}, prompt = {0}, ref = {0};
    if (ei_selector_eval(sp->ctx, obj, &cv, &cn) != 0) goto done;
    if (!(ctx = join_values(cv, cn, sp->join))) {
        ei_error_set("out of memory");
        goto done;
    }
    if (!sp->ans && !sp->ins) {
        rc = lm_doc(j, doc, ctx, strlen(ctx), tag);
        goto done;
    }
    if (sp->ins && ei_selector_eval(sp->ins, obj, &iv, &in) != 0) goto done;
    if (sp->ans && ei_selector_eval(sp->ans, obj, &av, &an) != 0) goto done;
    size_t n = sp->ins ? in : an;
    if (sp->ins && sp->ans && in != an && in != 1 && an != 1) {
        ei_error_set("--instruction '%s' gives %zu values but --answer '%s' gives %zu (they pair up by index)",
                     ei_selector_text(sp->ins), in, ei_selector_text(sp->ans), an);
        goto done;
    }
    if (sp->ins && sp->ans && in == 1 && an > 1) n = an;
    int task = j->o->task ? ei_task_type_parse(j->o->task) : EI_TASK_QA;
    for (size_t k = 0; k < n; k++) {
        const char *ins = sp->ins ? iv[in == 1 ? 0 : k] : "";
        const char *ans = sp->ans ? av[an == 1 ? 0 : k] : "";
        char t[512];
        snprintf(t, sizeof t, "%s:%zu", tag, k);
        int st_train = EI_SAMPLE_OK, st_eval = EI_SAMPLE_OK;
        if (j->w[0]) {
            if (!sp->ans) {
                ei_error_set("writing a training dataset from instructions needs --answer");
                goto done;
            }
            st_train = ei_prepare_instruct(j->tok, sp->tpl, ctx, ins, ans, j->o->max_tokens, 0, &sample, NULL);
            if (st_train < 0) goto done;
        }
        if (j->es) {
            st_eval = ei_prepare_instruct(j->tok, sp->tpl, ctx, ins, ans, j->o->max_tokens, 1, &prompt, &ref);
            if (st_eval < 0) goto done;
        }
        if (st_train == EI_SAMPLE_TOO_LONG || st_eval == EI_SAMPLE_TOO_LONG) {
            j->dropped_long++;
            continue;
        }
        if ((j->w[0] && too_short(j, sample.n)) || (!j->w[0] && too_short(j, prompt.n))) continue;
        if (emit(j, doc, j->w[0] ? &sample : NULL, st_train == EI_SAMPLE_TRUNCATED || st_eval == EI_SAMPLE_TRUNCATED,
                 0, j->es ? &prompt : NULL, &ref, ans, task, t) != 0)
            goto done;
    }
    rc = 0;
done:
    ei_strings_free(cv, cn);
    ei_strings_free(iv, in);
    ei_strings_free(av, an);
    free(ctx);
    ei_tokvec_free(&sample);
    ei_tokvec_free(&prompt);
    ei_tokvec_free(&ref);
    return rc;
}

/* ------------------------------------------------------------------ reading inputs */

static int is_jsonl(const ei_prepare_opts *o, const char *path) {
    if (o->format && strcmp(o->format, "jsonl") == 0) return 1;
    if (o->format && strcmp(o->format, "text") == 0) return 0;
    size_t n = strlen(path);
    return (n > 6 && strcmp(path + n - 6, ".jsonl") == 0) || (n > 5 && strcmp(path + n - 5, ".json") == 0);
}

/* Loads a file, checks UTF-8, drops a BOM and turns CRLF into LF. */
static int load_text(const char *path, char **buf, size_t *len) {
    if (ei_file_read_all(path, buf, len) != 0) return -1;
    size_t bad;
    if (ei_utf8_check(*buf, *len, &bad) != 0) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++) line += (*buf)[i] == '\n';
        free(*buf);
        *buf = NULL;
        return ei_error_set("%s:%zu: not valid UTF-8 (byte offset %zu); convert the file to UTF-8 first", path, line,
                            bad);
    }
    *len = ei_text_normalize(*buf, *len);
    return 0;
}

static int blank_line(const char *s, const char *e) {
    for (; s < e; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\f' && *s != '\v') return 0;
    return 1;
}

/* Calls fn for each document of a text file (paragraphs: text/paragraphs.h, the rule `ei eval
 * --paragraphs` shares). Returns the number of documents, or -1 on failure. fn may be NULL (count
 * only). */
typedef int (*doc_fn)(job *j, int64_t doc, const char *text, size_t len, size_t at, const char *tag);

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int64_t text_docs(job *j, const char *path, const char *buf, size_t len, int paragraphs, int64_t first,
                         int64_t limit, doc_fn fn) {
    int64_t count = 0;
    char tag[400];
    if (!paragraphs) {
        if (blank_line(buf, buf + len)) {
            if (fn && !j->counting) j->dropped_empty++;
            return 0;
        }
        snprintf(tag, sizeof tag, "%s", base_name(path));
        if (fn && fn(j, first, buf, len, len, tag) != 0) return -1;
        return 1;
    }
    ei_span *sp;
    size_t np;
    if (ei_text_paragraphs(buf, len, &sp, &np) != 0) return -1;
    for (size_t k = 0; k < np && first + count < limit; k++) {
        snprintf(tag, sizeof tag, "%s:%lld", base_name(path), (long long)count);
        if (fn && fn(j, first + count, buf + sp[k].start, sp[k].len, sp[k].start + sp[k].len, tag) != 0) {
            free(sp);
            return -1;
        }
        count++;
    }
    free(sp);
    return count;
}

static int text_cb(job *j, int64_t doc, const char *text, size_t len, size_t at, const char *tag) {
    (void)at;
    return lm_doc(j, doc, text, len, tag);
}

/* JSONL: one document per non-blank line. */
static int64_t jsonl_docs(job *j, const jsonl_spec *sp, const char *path, char *buf, size_t len, int64_t first,
                          int64_t limit) {
    int64_t count = 0;
    size_t i = 0, line = 0;
    while (i < len && first + count < limit) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        line++;
        if (blank_line(buf + i, buf + e)) {
            i = e + 1;
            continue;
        }
        if (sp) {
            const char *endp = NULL;
            cJSON *obj = cJSON_ParseWithLengthOpts(buf + i, e - i, &endp, 0);
            int rc = 0;
            size_t col = endp && endp >= buf + i ? (size_t)(endp - (buf + i)) + 1 : (size_t)1;
            if (!obj && ei_json_depth(buf + i, col < e - i ? col : e - i) >= CJSON_NESTING_LIMIT) {
                rc = ei_error_set("%s:%zu: JSON nested deeper than %d levels (column %zu)", path, line,
                                  CJSON_NESTING_LIMIT, col);
            } else if (!obj || !cJSON_IsObject(obj)) {
                rc = ei_error_set("%s:%zu: malformed JSON%s (column %zu)", path, line,
                                  obj ? " (the line is not an object)" : "", col);
            } else {
                char tag[400];
                snprintf(tag, sizeof tag, "%s:%zu", base_name(path), line);
                rc = jsonl_doc(j, sp, first + count, obj, tag);
                if (rc != 0) ei_error_prefix("%s:%zu: ", path, line);
            }
            cJSON_Delete(obj);
            if (rc != 0) {
                if (!j->o->skip_bad) return -1;
                if (!j->counting) { /* the writing pass reports it */
                    if (!j->o->quiet) fprintf(stderr, "prepare: skipped: %s\n", ei_error_get());
                    j->bad_lines++;
                }
            }
            if (!j->counting) progress(j, base_name(path), e, len);
        }
        count++;
        i = e + 1;
    }
    return count;
}

/* ------------------------------------------------------------------ the job */

char *ei_prepare_split_path(const char *path, const char *split) {
    size_t n = strlen(path);
    if (n > 3 && strcmp(path + n - 3, ".h5") == 0) n -= 3;
    size_t cap = n + strlen(split) + 8;
    char *s = malloc(cap);
    if (s) snprintf(s, cap, "%.*s.%s.h5", (int)n, path, split);
    return s;
}

static void print_stats(const job *j, const char *label, const out_stats *s) {
    if (!s->st.samples) {
        printf("  %-6s %s: no samples\n", out_names[s - j->s], label);
        return;
    }
    printf("  %-6s %s: %lld documents, %lld samples, %lld tokens; tokens per sample min %lld / median %lld / "
           "max %lld; %lld truncated, %lld pieces of split documents\n",
           out_names[s - j->s], label, (long long)s->st.docs, (long long)s->st.samples, (long long)s->st.tokens,
           (long long)s->st.min_len, (long long)s->st.median_len, (long long)s->st.max_len,
           (long long)s->st.truncated, (long long)s->st.split);
}

static int write_meta(job *j, ei_dataset_writer *w, const char *split, const char *kind, const char *tpl_name,
                      const char *tpl_text, const out_stats *s) {
    const ei_prepare_opts *o = j->o;
    char *sources = NULL;
    size_t sl = 1;
    for (int i = 0; i < o->n_inputs; i++) sl += strlen(o->inputs[i]) + 1;
    if (o->passkey && o->filler) sl += strlen(o->filler) + 1;
    sources = calloc(1, sl);
    if (!sources) return ei_error_set("out of memory");
    for (int i = 0; i < o->n_inputs; i++) {
        if (i) strcat(sources, "\n");
        strcat(sources, o->inputs[i]);
    }
    if (o->passkey && o->filler) strcat(sources, o->filler);
    int rc = 0;
    char vh[24];
    snprintf(vh, sizeof vh, "%016llx", (unsigned long long)ei_tokenizer_vocab_hash(j->tok));
    rc |= ei_dataset_writer_attr_str(w, "tokenizer", ei_tokenizer_identity(j->tok));
    rc |= ei_dataset_writer_attr_str(w, "tokenizer_vocab_hash", vh);
    rc |= ei_dataset_writer_attr_i64(w, "vocab_size", ei_tokenizer_vocab_size(j->tok));
    rc |= ei_dataset_writer_attr_i64(w, "bos_id", ei_tokenizer_bos(j->tok));
    rc |= ei_dataset_writer_attr_i64(w, "eos_id", ei_tokenizer_eos(j->tok));
    rc |= ei_dataset_writer_attr_str(w, "kind", kind);
    rc |= ei_dataset_writer_attr_str(w, "template", tpl_name);
    rc |= ei_dataset_writer_attr_str(w, "template_string", tpl_text);
    rc |= ei_dataset_writer_attr_str(w, "split", split);
    rc |= ei_dataset_writer_attr_str(w, "sources", sources);
    rc |= ei_dataset_writer_attr_str(w, "doc_mode", o->doc_mode ? o->doc_mode : "");
    rc |= ei_dataset_writer_attr_str(w, "context_selector", o->context ? o->context : "");
    rc |= ei_dataset_writer_attr_str(w, "instruction_selector", o->instruction ? o->instruction : "");
    rc |= ei_dataset_writer_attr_str(w, "answer_selector", o->answer ? o->answer : "");
    rc |= ei_dataset_writer_attr_i64(w, "n_docs", s->st.docs);
    rc |= ei_dataset_writer_attr_i64(w, "n_docs_total", j->n_docs);
    rc |= ei_dataset_writer_attr_i64(w, "n_truncated", s->st.truncated);
    rc |= ei_dataset_writer_attr_i64(w, "n_split", s->st.split);
    rc |= ei_dataset_writer_attr_i64(w, "piece_docs", o->piece_docs ? 1 : 0);
    rc |= ei_dataset_writer_attr_i64(w, "n_dropped_empty", j->dropped_empty);
    rc |= ei_dataset_writer_attr_i64(w, "n_dropped_short", j->dropped_short);
    rc |= ei_dataset_writer_attr_i64(w, "n_dropped_too_long", j->dropped_long);
    rc |= ei_dataset_writer_attr_i64(w, "n_bad_lines", j->bad_lines);
    rc |= ei_dataset_writer_attr_i64(w, "max_tokens", o->max_tokens);
    rc |= ei_dataset_writer_attr_i64(w, "min_tokens", o->min_tokens);
    rc |= ei_dataset_writer_attr_f64(w, "val_fraction", o->val_fraction);
    rc |= ei_dataset_writer_attr_i64(w, "seed", (int64_t)o->seed);
    rc |= ei_dataset_writer_attr_str(w, "created_by", "ei prepare " EI_VERSION);
    free(sources);
    return rc ? -1 : 0;
}

/* --seed feeds core/ei_rng streams: the split draws from the seed's stream after one jump, passkey
 * keys after two. Separate streams keep the keys the same with or without a split; and the data
 * loader draws its shuffles from stream 0 of train.seed (data/dataset.h), so the same number in
 * both places does not tie the split to the training order. */
static void prepare_rng(ei_rng *r, uint64_t seed, int jumps) {
    ei_rng_seed(r, seed);
    for (int i = 0; i < jumps; i++) ei_rng_jump(r);
}

static int open_outputs(job *j);
static int choose_split(job *j);

/* Passkey samples: one "document" per (length, depth, repetition), keys drawn from the seed. */
static int passkey_run(job *j) {
    const ei_prepare_opts *o = j->o;
    int64_t *lens = NULL;
    double *depths = NULL;
    int nl = 0, nd = 0, rc = -1;
    char *text = NULL;
    size_t tlen = 0;
    int32_t *filler = NULL;
    size_t nf = 0;
    ei_tokvec v = {0}, ref = {0};
    if (ei_parse_i64_list(o->lengths ? o->lengths : "1024", "lengths", &lens, &nl) != 0 ||
        ei_parse_f64_list(o->depths ? o->depths : "0,0.25,0.5,0.75,1", "depths", &depths, &nd) != 0)
        goto done;
    int per = o->per_cell > 0 ? o->per_cell : 1;
    int64_t maxlen = 0;
    for (int i = 0; i < nl; i++)
        if (lens[i] > maxlen) maxlen = lens[i];
    if (o->filler) {
        if (load_text(o->filler, &text, &tlen) != 0) goto done;
    } else if (!(text = strdup(ei_passkey_default_filler))) {
        goto done;
    } else {
        tlen = strlen(text);
    }
    /* Encode only what the longest sample can use (a token covers at least one byte; text is
     * repeated when short), cut at a space so no word is split. */
    size_t cap = (size_t)maxlen * 16 + 1024;
    if (tlen > cap) {
        tlen = cap;
        while (tlen > cap / 2 && text[tlen] != ' ' && text[tlen] != '\n') tlen--;
    }
    if (ei_tokenizer_encode(j->tok, text, tlen, 0, 0, &filler, &nf) != 0) goto done;
    if (nf == 0) {
        ei_error_set("%s: the filler text gives no tokens", o->filler ? o->filler : "default filler");
        goto done;
    }
    j->n_docs = (int64_t)nl * nd * per;
    if (choose_split(j) != 0 || open_outputs(j) != 0) goto done;
    j->t0 = ei_time_now();
    ei_rng keys;
    prepare_rng(&keys, o->seed, 2);
    int64_t doc = 0;
    for (int li = 0; li < nl; li++)
        for (int di = 0; di < nd; di++)
            for (int r = 0; r < per; r++, doc++) {
                int key = 10000 + (int)ei_rng_below(&keys, 90000);
                char tag[128], kt[16];
                snprintf(tag, sizeof tag, "passkey:%lld:%.3g:%d", (long long)lens[li], depths[di], r);
                snprintf(kt, sizeof kt, "%d", key);
                if (j->w[0]) {
                    if (ei_passkey_sample(j->tok, filler, nf, lens[li], depths[di], key, 0, &v, NULL, NULL) != 0 ||
                        emit(j, doc, &v, 0, 0, NULL, NULL, NULL, 0, NULL) != 0)
                        goto done;
                }
                if (j->es) {
                    if (ei_passkey_sample(j->tok, filler, nf, lens[li], depths[di], key, 1, &v, &ref, NULL) != 0 ||
                        emit(j, doc, NULL, 0, 0, &v, &ref, kt, EI_TASK_PASSKEY, tag) != 0)
                        goto done;
                }
            }
    rc = 0;
done:
    free(lens);
    free(depths);
    free(text);
    free(filler);
    ei_tokvec_free(&v);
    ei_tokvec_free(&ref);
    return rc;
}

/* Creates the folder an output goes into (runs/data/x.h5 -> runs/data), as `ei train` does for
 * its out_dir: the documented commands write under runs/ without asking for a mkdir first. */
static int make_parent(const char *path) {
    const char *slash = path ? strrchr(path, '/') : NULL;
    if (!slash || slash == path) return 0;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return ei_error_set("out of memory");
    int rc = ei_mkdir_p(dir);
    free(dir);
    return rc != 0 ? ei_error_prefix("%s: cannot create its folder: ", path) : 0;
}

static int open_outputs(job *j) {
    const ei_prepare_opts *o = j->o;
    if (make_parent(o->output) != 0 || make_parent(o->eval_set) != 0) return -1;
    if (o->output) {
        if (j->is_val) {
            char *tp = ei_prepare_split_path(o->output, "train"), *vp = ei_prepare_split_path(o->output, "val");
            if (tp && vp) {
                j->w[1] = ei_dataset_writer_open(tp);
                if (j->w[1]) j->w[2] = ei_dataset_writer_open(vp);
            }
            free(tp);
            free(vp);
            if (!j->w[1] || !j->w[2]) return -1;
            j->w[0] = j->w[1]; /* "a training output exists" */
        } else if (!(j->w[0] = ei_dataset_writer_open(o->output))) {
            return -1;
        }
    }
    if (o->eval_set &&
        !(j->es = ei_evalset_new(ei_tokenizer_identity(j->tok), ei_tokenizer_vocab_size(j->tok),
                                 ei_tokenizer_bos(j->tok), ei_tokenizer_eos(j->tok))))
        return ei_error_set("out of memory");
    return 0;
}

static int choose_split(job *j) {
    const ei_prepare_opts *o = j->o;
    if (!(o->val_fraction > 0)) return 0;
    if (o->val_fraction >= 1) return ei_error_set("--val-fraction must be in [0, 1)");
    if (j->n_docs < 2)
        return ei_error_set("--val-fraction needs at least 2 %s, found %lld%s", o->piece_docs ? "pieces" : "documents",
                            (long long)j->n_docs,
                            o->piece_docs ? " (lower --max-tokens)"
                                          : " (one long text: add --max-tokens N --piece-docs to split it into "
                                            "pieces that count as documents)");
    int64_t k = (int64_t)llround(o->val_fraction * (double)j->n_docs);
    if (k < 1) k = 1;
    if (k > j->n_docs - 1) k = j->n_docs - 1;
    int64_t *perm = malloc(sizeof *perm * (size_t)j->n_docs);
    j->is_val = calloc((size_t)j->n_docs, 1);
    if (!perm || !j->is_val) {
        free(perm);
        return ei_error_set("out of memory");
    }
    ei_rng r;
    prepare_rng(&r, o->seed, 1);
    if (o->piece_docs) {
        /* One contiguous run of whole pieces: validation text is one stretch that no training piece
         * overlaps, and few pieces border it. */
        int64_t start = (int64_t)ei_rng_below(&r, (uint64_t)(j->n_docs - k + 1));
        for (int64_t i = start; i < start + k; i++) j->is_val[i] = 1;
        free(perm);
        return 0;
    }
    for (int64_t i = 0; i < j->n_docs; i++) perm[i] = i;
    ei_rng_shuffle_i64(&r, perm, (size_t)j->n_docs);
    for (int64_t i = 0; i < k; i++) j->is_val[perm[i]] = 1;
    free(perm);
    return 0;
}

static int run_inputs(job *j, const jsonl_spec *sp) {
    const ei_prepare_opts *o = j->o;
    int paragraphs = o->doc_mode && strcmp(o->doc_mode, "paragraphs") == 0;
    int64_t limit = o->max_docs > 0 ? o->max_docs : INT64_MAX;
    /* Pass 1 counts documents so that the split can pick an exact fraction of them; with
     * --piece-docs it tokenizes them to count their pieces. */
    for (int pass = 0; pass < 2; pass++) {
        int64_t doc = 0;
        int work = pass == 1 || o->piece_docs;
        j->counting = pass == 0 && o->piece_docs;
        j->next_doc = 0;
        if (j->counting) j->n_docs = 0;
        for (int f = 0; f < o->n_inputs && doc < limit; f++) {
            char *buf;
            size_t len;
            if (load_text(o->inputs[f], &buf, &len) != 0) return -1;
            int64_t c = is_jsonl(o, o->inputs[f]) ? jsonl_docs(j, work ? sp : NULL, o->inputs[f], buf, len, doc, limit)
                                                  : text_docs(j, o->inputs[f], buf, len, paragraphs, doc, limit,
                                                              work ? text_cb : NULL);
            free(buf);
            if (c < 0) return -1;
            doc += c;
        }
        if (pass == 0) {
            if (!o->piece_docs) j->n_docs = doc;
            j->n_inputs_docs = doc;
            j->counting = 0;
            if (choose_split(j) != 0 || open_outputs(j) != 0) return -1;
            j->t0 = ei_time_now();
        }
    }
    return 0;
}

/* An output without samples is an error, not an empty file that fails later (in ei train). */
static int no_samples(const job *j, const char *path) {
    return ei_error_set("%s: no samples to write (%lld documents; dropped: %lld empty, %lld shorter than --min-tokens, "
                        "%lld not fitting --max-tokens, %lld bad lines); nothing written",
                        path, (long long)j->n_docs, (long long)j->dropped_empty, (long long)j->dropped_short,
                        (long long)j->dropped_long, (long long)j->bad_lines);
}

/* No output may be an input: `--output F F` would replace the text with the dataset. */
static int check_outputs(const ei_prepare_opts *o) {
    int n = o->n_inputs + 2;
    const char **in = malloc(sizeof *in * (size_t)n);
    char *tp = NULL, *vp = NULL;
    int rc = 0;
    if (!in) return ei_error_set("out of memory");
    for (int i = 0; i < o->n_inputs; i++) in[i] = o->inputs[i];
    in[o->n_inputs] = o->tokenizer_path;
    in[o->n_inputs + 1] = o->filler;
    if (o->output && o->val_fraction > 0) {
        tp = ei_prepare_split_path(o->output, "train");
        vp = ei_prepare_split_path(o->output, "val");
        if (!tp || !vp) rc = ei_error_set("out of memory");
    }
    const char *outs[] = {o->val_fraction > 0 ? NULL : o->output, tp, vp, o->eval_set};
    for (size_t k = 0; rc == 0 && k < sizeof outs / sizeof outs[0]; k++) rc = ei_check_not_input(outs[k], in, n);
    free(tp);
    free(vp);
    free(in);
    return rc;
}

int ei_prepare_run(const ei_prepare_opts *o) {
    job j = {0};
    j.o = o;
    jsonl_spec sp = {0};
    int rc = -1;
    if (!o->output && !o->eval_set) return ei_error_set("nothing to write: give --output FILE.h5 and/or --eval-set FILE.eis");
    if (check_outputs(o) != 0) return -1;
    if (!o->passkey && o->n_inputs == 0) return ei_error_set("no input files (or --passkey)");
    if (o->task && ei_task_type_parse(o->task) < 0) return ei_error_set("unknown --task '%s'", o->task);
    if (o->doc_mode && strcmp(o->doc_mode, "whole") != 0 && strcmp(o->doc_mode, "paragraphs") != 0)
        return ei_error_set("--doc-mode must be 'whole' or 'paragraphs', not '%s'", o->doc_mode);
    if (o->lm_overflow && strcmp(o->lm_overflow, "split") != 0 && strcmp(o->lm_overflow, "cut") != 0)
        return ei_error_set("--lm-overflow must be 'split' or 'cut', not '%s'", o->lm_overflow);
    if (o->format && strcmp(o->format, "auto") && strcmp(o->format, "text") && strcmp(o->format, "jsonl"))
        return ei_error_set("--format must be auto, text or jsonl, not '%s'", o->format);
    ei_tokenizer *tok = ei_tokenizer_load(o->tokenizer_path, 0);
    if (!tok) return -1;
    j.tok = tok;
    sp.tpl = o->template_string ? ei_template_parse(o->template_string, "--template-string")
                                : ei_template_builtin(o->template_name ? o->template_name : "plain");
    if (!sp.tpl) goto done;
    int any_jsonl = 0;
    for (int i = 0; i < o->n_inputs; i++) any_jsonl |= is_jsonl(o, o->inputs[i]);
    if (any_jsonl && !o->context) {
        ei_error_set("JSONL input needs --context FIELD (and --instruction/--answer for instruction data)");
        goto done;
    }
    if ((o->context && !(sp.ctx = ei_selector_parse(o->context, "context"))) ||
        (o->instruction && !(sp.ins = ei_selector_parse(o->instruction, "instruction"))) ||
        (o->answer && !(sp.ans = ei_selector_parse(o->answer, "answer"))))
        goto done;
    sp.join = strdup(o->join ? o->join : "\n");
    if (!sp.join) goto done;
    const char *kind = o->passkey ? "passkey" : (sp.ins || sp.ans) && any_jsonl ? "instruct" : "lm";
    if (o->piece_docs) {
        const char *why = NULL;
        if (o->passkey) why = "passkey samples are documents already";
        else if (strcmp(kind, "lm") != 0)
            why = "it splits language-modelling documents (instruction samples cut their context instead)";
        else if (o->max_tokens <= 0) why = "it needs --max-tokens N (the piece length)";
        else if (o->lm_overflow && !strcmp(o->lm_overflow, "cut")) why = "it needs --lm-overflow split";
        if (why) {
            ei_error_set("--piece-docs: %s", why);
            goto done;
        }
    }
    if (!strcmp(kind, "instruct")) {
        char marker[128];
        int n = ei_template_unknown_specials(sp.tpl, tok, marker, sizeof marker);
        if (n > 0)
            fprintf(stderr,
                    "prepare: warning: template '%s': %s%s is not a special token of %s; it is encoded as "
                    "ordinary text (use a template for this tokenizer, e.g. --template plain)\n",
                    sp.tpl->name, marker, n > 1 ? " (and others)" : "", ei_tokenizer_identity(tok));
    }
    if (o->passkey) {
        if (passkey_run(&j) != 0) goto done;
    } else if (run_inputs(&j, &sp) != 0) {
        goto done;
    }
    if (!o->quiet && ei_time_now() - j.t0 >= 1.0) fprintf(stderr, "\n");
    char *tpl_text = ei_template_text(sp.tpl);
    if (o->piece_docs) printf("prepare: %lld documents: the pieces of %lld input documents\n", (long long)j.n_docs,
                              (long long)j.n_inputs_docs);
    printf("prepare: %lld documents; dropped: %lld empty, %lld shorter than --min-tokens, %lld not fitting "
           "--max-tokens, %lld bad lines\n",
           (long long)j.n_docs, (long long)j.dropped_empty, (long long)j.dropped_short, (long long)j.dropped_long,
           (long long)j.bad_lines);
    rc = 0;
    for (int k = 0; k < 3; k++) {
        if (!j.w[k] || (k == 0 && j.is_val)) continue;
        stats_finish(&j.s[k]);
        const char *split = out_names[k];
        if (write_meta(&j, j.w[k], split, kind, strcmp(kind, "instruct") ? "none" : sp.tpl->name,
                       strcmp(kind, "instruct") ? "" : tpl_text ? tpl_text : "", &j.s[k]) != 0) {
            rc = -1;
            break;
        }
        print_stats(&j, "hdf5", &j.s[k]);
        if (!j.s[k].st.samples) {
            char *sp_path = k == 0 ? NULL : ei_prepare_split_path(o->output, split);
            rc = no_samples(&j, sp_path ? sp_path : o->output);
            free(sp_path);
            break;
        }
    }
    free(tpl_text);
    if (rc == 0 && j.es) {
        stats_finish(&j.s[OUT_EVAL]);
        print_stats(&j, "eval set", &j.s[OUT_EVAL]);
        rc = j.s[OUT_EVAL].st.samples ? ei_evalset_write(j.es, o->eval_set) : no_samples(&j, o->eval_set);
    }
    for (int k = 0; k < 3; k++) {
        if (!j.w[k] || (k == 0 && j.is_val)) continue;
        if (rc == 0) {
            if (ei_dataset_writer_close(j.w[k]) != 0) rc = -1;
        } else {
            ei_dataset_writer_abort(j.w[k]);
        }
        j.w[k] = NULL;
    }
done:
    if (j.is_val) j.w[0] = NULL; /* an alias of w[1] */
    for (int k = 0; k < 3; k++)
        if (j.w[k]) ei_dataset_writer_abort(j.w[k]);
    ei_evalset_free(j.es);
    for (int k = 0; k < N_OUT; k++) free(j.s[k].lens);
    free(j.is_val);
    ei_selector_free(sp.ctx);
    ei_selector_free(sp.ins);
    ei_selector_free(sp.ans);
    ei_template_free(sp.tpl);
    free(sp.join);
    ei_tokenizer_free(tok);
    return rc;
}
