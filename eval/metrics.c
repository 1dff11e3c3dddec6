/* Quality metrics (eval/metrics.h). Byte-wise and locale-free on purpose: <ctype.h> depends on the
 * C locale a host program may have changed, and the device and the host must agree. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_alpha(unsigned char c) { return is_upper(c) || (c >= 'a' && c <= 'z'); }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static unsigned char lower(unsigned char c) { return is_upper(c) ? (unsigned char)(c - 'A' + 'a') : c; }
/* ASCII punctuation as Python's string.punctuation (what SQuAD removes). */
static int is_punct(unsigned char c) { return c > ' ' && c < 0x7f && !is_alpha(c) && !is_digit(c); }

char *ei_metric_answer_line(const char *text) {
    const char *p = text ? text : "";
    for (;;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        size_t a = 0, b = n;
        while (a < b && is_space((unsigned char)p[a])) a++;
        while (b > a && is_space((unsigned char)p[b - 1])) b--;
        if (b > a || !e) {
            char *s = malloc(b - a + 1);
            if (!s) return NULL;
            memcpy(s, p + a, b - a);
            s[b - a] = '\0';
            return s;
        }
        p = e + 1;
    }
}

int ei_metric_line_complete(const char *text) {
    int content = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '\n' && content) return 1;
        if (!is_space(*p)) content = 1;
    }
    return 0;
}

static int is_article(const char *w, size_t n) {
    return (n == 1 && w[0] == 'a') || (n == 2 && memcmp(w, "an", 2) == 0) || (n == 3 && memcmp(w, "the", 3) == 0);
}

char *ei_metric_normalize(const char *s) {
    size_t len = strlen(s);
    char *tmp = malloc(len + 1), *out = malloc(len + 1);
    if (!tmp || !out) {
        free(tmp);
        free(out);
        return NULL;
    }
    /* SQuAD's order: lower case, drop punctuation (so "don't" is one word "dont"), then articles
     * and whitespace on the words that are left. */
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_punct(c)) tmp[k++] = (char)lower(c);
    }
    tmp[k] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < k;) {
        while (i < k && is_space((unsigned char)tmp[i])) i++;
        size_t w = i;
        while (i < k && !is_space((unsigned char)tmp[i])) i++;
        if (i == w || is_article(tmp + w, i - w)) continue;
        if (o) out[o++] = ' ';
        memcpy(out + o, tmp + w, i - w);
        o += i - w;
    }
    out[o] = '\0';
    free(tmp);
    return out;
}

int ei_metric_exact(const char *answer, const char *reference) {
    char *a = ei_metric_normalize(answer), *r = ei_metric_normalize(reference);
    int rc = a && r ? strcmp(a, r) == 0 : -1;
    free(a);
    free(r);
    return rc;
}

int ei_metric_contains(const char *answer, const char *reference) {
    char *a = ei_metric_normalize(answer), *r = ei_metric_normalize(reference);
    int rc = -1;
    if (a && r) {
        size_t la = strlen(a), lr = strlen(r);
        rc = 0;
        if (lr == 0) {
            rc = la == 0;
        } else {
            /* Normalised text is words joined by single spaces: a whole-word match is a substring
             * match bounded by the string ends or spaces. */
            for (const char *p = a; (p = strstr(p, r)) != NULL; p++)
                if ((p == a || p[-1] == ' ') && (p[lr] == '\0' || p[lr] == ' ')) {
                    rc = 1;
                    break;
                }
        }
    }
    free(a);
    free(r);
    return rc;
}

static char letter_of(unsigned char c) { return (char)(is_upper(c) ? c : c - 'a' + 'A'); }

char ei_metric_choice_letter(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i]; i++)
        if (p[i] == '(' && is_alpha(p[i + 1]) && p[i + 2] == ')') return letter_of(p[i + 1]);
    while (*p && is_space(*p)) p++;
    if (is_alpha(p[0]) && (p[1] == '\0' || p[1] == ')' || p[1] == '.' || p[1] == ':' || is_space(p[1])))
        return letter_of(p[0]);
    return 0;
}

int ei_metric_choice(const char *answer, const char *reference) {
    char a = ei_metric_choice_letter(answer), r = ei_metric_choice_letter(reference);
    return a && a == r;
}

/* Words as [start, length) pairs into s; *n words. */
static int words(const char *s, size_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    size_t *w = malloc(cap * 2 * sizeof *w);
    if (!w) return -1;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i];) {
        while (p[i] && !(is_alpha(p[i]) || is_digit(p[i]) || p[i] >= 0x80)) i++;
        size_t b = i;
        while (p[i] && (is_alpha(p[i]) || is_digit(p[i]) || p[i] >= 0x80)) i++;
        if (i == b) continue;
        if (k == cap) {
            size_t *nw = realloc(w, cap * 4 * sizeof *w);
            if (!nw) {
                free(w);
                return -1;
            }
            w = nw;
            cap *= 2;
        }
        w[2 * k] = b;
        w[2 * k + 1] = i - b;
        k++;
    }
    *out = w;
    *n = k;
    return 0;
}

static int word_eq(const char *a, const size_t *wa, const char *b, const size_t *wb) {
    if (wa[1] != wb[1]) return 0;
    for (size_t i = 0; i < wa[1]; i++)
        if (lower((unsigned char)a[wa[0] + i]) != lower((unsigned char)b[wb[0] + i])) return 0;
    return 1;
}

double ei_metric_rouge_l(const char *answer, const char *reference) {
    size_t *wa = NULL, *wr = NULL, na = 0, nr = 0;
    double f = -1.0;
    if (words(answer, &wa, &na) != 0 || words(reference, &wr, &nr) != 0) goto done;
    f = 0.0;
    if (na == 0 || nr == 0) goto done;
    /* One row of the LCS table (O(nr) memory): summaries run to thousands of words. */
    size_t *row = calloc(nr + 1, sizeof *row);
    if (!row) {
        f = -1.0;
        goto done;
    }
    for (size_t i = 0; i < na; i++) {
        size_t diag = 0; /* row[j] of the previous i, before it was overwritten */
        for (size_t j = 1; j <= nr; j++) {
            size_t up = row[j];
            row[j] = word_eq(answer, wa + 2 * i, reference, wr + 2 * (j - 1)) ? diag + 1
                     : row[j - 1] > up                                         ? row[j - 1]
                                                                               : up;
            diag = up;
        }
    }
    size_t lcs = row[nr];
    free(row);
    if (lcs > 0) {
        double p = (double)lcs / (double)na, r = (double)lcs / (double)nr;
        f = 2.0 * p * r / (p + r);
    }
done:
    free(wa);
    free(wr);
    return f;
}

double ei_metric_perplexity(double nll_sum, int64_t count) {
    return count > 0 ? exp(nll_sum / (double)count) : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ei_metric_quantile(double *v, size_t n, double q) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    if (q <= 0.0) return v[0];
    if (q >= 1.0) return v[n - 1];
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    double frac = pos - (double)i;
    return i + 1 < n ? v[i] + frac * (v[i + 1] - v[i]) : v[i];
}
