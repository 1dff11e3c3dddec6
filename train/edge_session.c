#include "train/edge_session.h"

#include "core/ei_error.h"

#include <string.h>

void ei_cli_opts_default(ei_cli_opts *c) {
    memset(c, 0, sizeof *c);
    c->mode = "full";
    c->segment = c->sink = c->window = -1;
}

int ei_cli_session_open(ei_cli_session *s, const ei_cli_opts *c, const ei_model *m) {
    memset(s, 0, sizeof *s);
    ei_opts_default(&s->opts);
    if (ei_mode_parse(c->mode, &s->mode) != 0) return ei_error_prefix("--mode: ");
    if (c->gates_path && s->mode != EI_MODE_EDGEINFINITE)
        return ei_error_set("--gates is only used with --mode edgeinfinite");
    if (c->gates_path && ei_gates_file_opts(c->gates_path, &s->opts) != 0) return -1;
    if (c->gate && ei_gate_kind_parse(c->gate, &s->opts.gate) != 0) return ei_error_prefix("--gate: ");
    if (c->memory_rule && ei_mem_rule_parse(c->memory_rule, &s->opts.memory_rule) != 0)
        return ei_error_prefix("--memory-rule: ");
    if (c->positions && ei_positions_parse(c->positions, &s->opts.positions) != 0)
        return ei_error_prefix("--positions: ");
    if (c->segment != -1) s->opts.segment = c->segment;
    if (c->sink != -1) s->opts.sink = c->sink;
    if (c->window != -1) s->opts.window = c->window;
    if (!c->gates_path) s->opts.gate_init_bias = c->gate_init_bias;
    s->opts.bptt_segments = 0;
    if (ei_opts_validate(&s->opts, &m->cfg) != 0) return -1;
    if (s->mode == EI_MODE_EDGEINFINITE) {
        if (!(s->gates = ei_gates_new(&m->cfg, s->opts.gate, s->opts.gate_init_bias))) return -1;
        if (c->gates_path && ei_gates_load(s->gates, c->gates_path) != 0) {
            ei_cli_session_close(s);
            return -1;
        }
    }
    if (!(s->edge = ei_edge_new(m, &s->opts, s->gates, s->mode, AG_F32))) {
        ei_cli_session_close(s);
        return -1;
    }
    return 0;
}

void ei_cli_session_close(ei_cli_session *s) {
    ei_edge_free(s->edge);
    ei_gates_free(s->gates);
    s->edge = NULL;
    s->gates = NULL;
}
