#include "model/options.h"

#include "core/ei_error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ei_opts_default(ei_opts *o) {
    memset(o, 0, sizeof *o);
    o->segment = EI_DEFAULT_SEGMENT;
    o->sink = EI_DEFAULT_SINK;
    o->window = EI_DEFAULT_WINDOW;
    o->gate = EI_GATE_TOKEN;
    o->memory_rule = EI_MEM_LINEAR;
    o->route_threshold = -1;
    o->gate_init_bias = 0.0;
    o->bptt_segments = 0;
    o->positions = EI_POS_COMPACT;
}

int ei_opts_validate(const ei_opts *o, const ei_model_config *cfg) {
    if (o->segment < 1 || o->segment > (1 << 20))
        return ei_error_set("edgeinfinite: segment must be in [1, 1048576], got %d", o->segment);
    if (o->sink < 0 || o->sink > (1 << 20))
        return ei_error_set("edgeinfinite: sink must be in [0, 1048576], got %d", o->sink);
    if (o->window < 0 || o->window > (1 << 24))
        return ei_error_set("edgeinfinite: window must be in [0, 16777216], got %d", o->window);
    if (o->gate != EI_GATE_TOKEN && o->gate != EI_GATE_HEAD)
        return ei_error_set("edgeinfinite: gate must be token or head");
    if (o->memory_rule != EI_MEM_LINEAR && o->memory_rule != EI_MEM_DELTA)
        return ei_error_set("edgeinfinite: memory_rule must be linear or delta");
    if (o->positions != EI_POS_COMPACT && o->positions != EI_POS_DESIGN)
        return ei_error_set("edgeinfinite: positions must be compact or design");
    if (o->route_threshold < -1)
        return ei_error_set("edgeinfinite: route_threshold must be >= 0 (or -1 for the default), got %d",
                            o->route_threshold);
    if (!isfinite(o->gate_init_bias))
        return ei_error_set("edgeinfinite: gate_init_bias must be finite");
    if (o->bptt_segments < 0)
        return ei_error_set("edgeinfinite: bptt_segments must be >= 0 (0 = full BPTT), got %d",
                            o->bptt_segments);
    if (cfg && cfg->head_dim % 2)
        return ei_error_set("edgeinfinite: head_dim %d is odd (RoPE needs pairs)", cfg->head_dim);
    return 0;
}

int ei_opts_route_threshold(const ei_opts *o, const ei_model_config *cfg) {
    long t = o->route_threshold < 0 ? (long)o->sink + o->window + o->segment : o->route_threshold;
    if (cfg && t > cfg->max_seq_len) t = cfg->max_seq_len;
    return (int)t;
}

static int parse_int(const char *key, const char *v, int *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
        return ei_error_set("edgeinfinite: %s: '%s' is not an integer", key, v);
    *out = (int)x;
    return 0;
}

int ei_opts_set(ei_opts *o, const char *key, const char *value) {
    if (!key || !value) return ei_error_set("edgeinfinite: option key and value required");
    if (strcmp(key, "segment") == 0) return parse_int(key, value, &o->segment);
    if (strcmp(key, "sink") == 0) return parse_int(key, value, &o->sink);
    if (strcmp(key, "window") == 0) return parse_int(key, value, &o->window);
    if (strcmp(key, "route_threshold") == 0) return parse_int(key, value, &o->route_threshold);
    if (strcmp(key, "bptt_segments") == 0) return parse_int(key, value, &o->bptt_segments);
    if (strcmp(key, "gate") == 0) return ei_gate_kind_parse(value, &o->gate);
    if (strcmp(key, "memory_rule") == 0) return ei_mem_rule_parse(value, &o->memory_rule);
    if (strcmp(key, "positions") == 0) return ei_positions_parse(value, &o->positions);
    if (strcmp(key, "gate_init_bias") == 0) {
        char *end = NULL;
        errno = 0;
        double x = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(x))
            return ei_error_set("edgeinfinite: gate_init_bias: '%s' is not a number", value);
        o->gate_init_bias = x;
        return 0;
    }
    return ei_error_set("edgeinfinite: unknown option '%s' (known: segment, sink, window, gate, "
                        "memory_rule, route_threshold, gate_init_bias, bptt_segments, positions)", key);
}

int ei_gate_kind_parse(const char *s, ei_gate_kind *out) {
    if (s && strcmp(s, "token") == 0) { *out = EI_GATE_TOKEN; return 0; }
    if (s && strcmp(s, "head") == 0) { *out = EI_GATE_HEAD; return 0; }
    return ei_error_set("edgeinfinite: gate must be 'token' or 'head', got '%s'", s ? s : "");
}

int ei_mem_rule_parse(const char *s, ei_mem_rule *out) {
    if (s && strcmp(s, "linear") == 0) { *out = EI_MEM_LINEAR; return 0; }
    if (s && strcmp(s, "delta") == 0) { *out = EI_MEM_DELTA; return 0; }
    return ei_error_set("edgeinfinite: memory_rule must be 'linear' or 'delta', got '%s'", s ? s : "");
}

int ei_positions_parse(const char *s, ei_positions *out) {
    if (s && strcmp(s, "compact") == 0) { *out = EI_POS_COMPACT; return 0; }
    if (s && strcmp(s, "design") == 0) { *out = EI_POS_DESIGN; return 0; }
    return ei_error_set("edgeinfinite: positions must be 'compact' or 'design', got '%s'", s ? s : "");
}

int ei_mode_parse(const char *s, ei_mode *out) {
    if (s && strcmp(s, "full") == 0) { *out = EI_MODE_FULL; return 0; }
    if (s && strcmp(s, "window") == 0) { *out = EI_MODE_WINDOW; return 0; }
    if (s && strcmp(s, "edgeinfinite") == 0) { *out = EI_MODE_EDGEINFINITE; return 0; }
    return ei_error_set("mode must be 'full', 'window' or 'edgeinfinite', got '%s'", s ? s : "");
}

const char *ei_gate_kind_name(ei_gate_kind k) { return k == EI_GATE_HEAD ? "head" : "token"; }
const char *ei_mem_rule_name(ei_mem_rule r) { return r == EI_MEM_DELTA ? "delta" : "linear"; }
const char *ei_positions_name(ei_positions p) { return p == EI_POS_DESIGN ? "design" : "compact"; }
const char *ei_mode_name(ei_mode m) {
    return m == EI_MODE_FULL ? "full" : m == EI_MODE_WINDOW ? "window" : "edgeinfinite";
}
