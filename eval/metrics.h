/* Quality metrics of on-device evaluation, shared by `ei-eval` (device) and `ei eval --graph` (host)
 * so both report the same numbers for the same generated text. libc only (no locale: every rule
 * below works on bytes, ASCII letters are the only ones case-folded, other UTF-8 bytes are kept).
 *
 * Answer line (QA, multiple choice, passkey): the first line of the generated text that holds
 * anything but spaces, trimmed. Models keep talking after a short answer; the first line is the
 * answer, so scoring it (not the whole generation) makes exact match meaningful.
 *
 * Normalisation (exact match, contains): SQuAD v1.1's: ASCII lower case, ASCII punctuation removed,
 * the words "a", "an", "the" removed, whitespace runs collapsed to one space, trimmed.
 *   exact:    normalise(answer) == normalise(reference)
 *   contains: the reference's normalised words appear in the answer's normalised words as one
 *             contiguous run (whole words: reference "12" is not contained in "123"). An empty
 *             normalised reference is contained only in an empty answer.
 *
 * Multiple choice: the option letter of a text is the letter of the first "(X)" in it, X in A..Z
 * (upper or lower case); else, when the trimmed text starts with a letter X followed by nothing,
 * ')', '.', ':' or a space, that letter. Correct when both letters exist and are equal.
 *
 * ROUGE-L: F1 of the longest common subsequence of WORDS (not tokenizer tokens, so the score does
 * not depend on the vocabulary): words are maximal runs of ASCII letters and digits and of bytes
 * >= 0x80 (UTF-8 letters stay inside words), ASCII lower-cased, no stemming, no stop words.
 * P = LCS / answer words, R = LCS / reference words, F1 = 2PR / (P + R); 0 when either side has no
 * words. This is rouge-score's rougeL F-measure with use_stemmer=False for ASCII text.
 *
 * Perplexity: exp(sum of token NLL / number of scored tokens), NAN when nothing was scored; an
 * aggregate over items weights every token equally (sums first, one exp).
 *
 * Timing quantiles: linear interpolation between order statistics (numpy's default), so the median
 * of an even count is the mean of the middle two. */
#ifndef EI_EVAL_METRICS_H
#define EI_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The answer line of text, malloc'd (caller frees); NULL on allocation failure. */
char *ei_metric_answer_line(const char *text);
/* 1 when text holds a complete answer line (non-space content followed by a newline): greedy
 * decoding of a line-answer task may stop there without changing any score. */
int ei_metric_line_complete(const char *text);

/* SQuAD normalisation, malloc'd (caller frees); NULL on allocation failure. */
char *ei_metric_normalize(const char *s);
/* 1 / 0, or -1 on allocation failure. */
int ei_metric_exact(const char *answer, const char *reference);
int ei_metric_contains(const char *answer, const char *reference);

/* 'A'..'Z', or 0 when the text names no option. */
char ei_metric_choice_letter(const char *s);
int ei_metric_choice(const char *answer, const char *reference);

/* In [0, 1]; -1 on allocation failure. */
double ei_metric_rouge_l(const char *answer, const char *reference);

double ei_metric_perplexity(double nll_sum, int64_t count);

/* q in [0, 1] of v[0..n) (v is sorted in place); NAN when n == 0. */
double ei_metric_quantile(double *v, size_t n, double q);

#endif
