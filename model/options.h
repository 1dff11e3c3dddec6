/* EdgeInfinite options (DESIGN.md section 3): segment length, sink, window, gate kind, memory rule,
 * routing threshold, gate initialisation and BPTT truncation. Plain values, no ownership.
 *
 * Option names are the config keys of DESIGN.md: segment, sink, window, gate (token|head),
 * memory_rule (linear|delta), route_threshold, gate_init_bias, bptt_segments, plus positions
 * (compact|design, see ei_positions). */
#ifndef EI_OPTIONS_H
#define EI_OPTIONS_H

#include "model/config.h"

typedef enum { EI_GATE_TOKEN = 0, EI_GATE_HEAD = 1 } ei_gate_kind;
typedef enum { EI_MEM_LINEAR = 0, EI_MEM_DELTA = 1 } ei_mem_rule;
/* RoPE positions of the local attention keys (sf sink slots and wf window slots filled):
 *   design  (DESIGN 3.1) sink slot i -> i, window slot j (right-aligned) -> S + j, segment token t
 *           (0-based) -> S + W + t; while the window fills there is a gap of W - wf positions
 *           between the sink and the oldest cached token;
 *   compact (default) the occupied slots are numbered contiguously: sink slot i -> i, the wf filled
 *           window slots -> sf .. sf + wf - 1, segment token t -> sf + wf + t. Equal to design once
 *           the window is full, and to the base model's absolute positions until it first
 *           overflows. */
typedef enum { EI_POS_COMPACT = 0, EI_POS_DESIGN = 1 } ei_positions;
/* full: base model; window: sink + window only (StreamingLLM, nothing compressed);
 * edgeinfinite: the whole method. */
typedef enum { EI_MODE_FULL = 0, EI_MODE_WINDOW = 1, EI_MODE_EDGEINFINITE = 2 } ei_mode;

/* Defaults used for the measurements of the issue (segment 128, window 256, sink 4). */
#define EI_DEFAULT_SEGMENT 128
#define EI_DEFAULT_SINK 4
#define EI_DEFAULT_WINDOW 256
/* Retrieval denominator: A_mem = s(Q) M / (s(Q) . z + EI_MEM_EPS). */
#define EI_MEM_EPS 1e-6

typedef struct {
    int segment;         /* L >= 1 tokens per segment */
    int sink;            /* S >= 0 */
    int window;          /* W >= 0 */
    ei_gate_kind gate;
    ei_mem_rule memory_rule;
    int route_threshold; /* -1: default S + W + L; any value is capped at the model's max_seq_len;
                            0 never routes */
    double gate_init_bias; /* b (token gate) or beta (head gate) at initialisation; w starts at 0 */
    int bptt_segments;   /* 0: full BPTT; k > 0: state gradient cut every k segments */
    ei_positions positions;
} ei_opts;

void ei_opts_default(ei_opts *o);
/* Checks ranges; cfg may be NULL (then model-dependent checks are skipped). -1 + ei_error. */
int ei_opts_validate(const ei_opts *o, const ei_model_config *cfg);
/* The effective routing threshold for this model: documents of at most this many tokens run the
 * base model unchanged. */
int ei_opts_route_threshold(const ei_opts *o, const ei_model_config *cfg);
/* Sets one option by its config key from a string ("segment", "128"). -1 + ei_error naming the key
 * on an unknown key or a bad value. */
int ei_opts_set(ei_opts *o, const char *key, const char *value);

int ei_gate_kind_parse(const char *s, ei_gate_kind *out);
int ei_mem_rule_parse(const char *s, ei_mem_rule *out);
int ei_mode_parse(const char *s, ei_mode *out);
int ei_positions_parse(const char *s, ei_positions *out);
const char *ei_gate_kind_name(ei_gate_kind k);
const char *ei_mem_rule_name(ei_mem_rule r);
const char *ei_mode_name(ei_mode m);
const char *ei_positions_name(ei_positions p);

#endif
