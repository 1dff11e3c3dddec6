#include "model/segment.h"

void ei_seg_fill(const ei_opts *o, ei_mode mode, int64_t committed, int *sf, int *wf, int64_t *in_mem) {
    const int64_t L = o->segment;
    committed -= committed % L; /* only whole segments have reached the caches */
    int64_t s = committed < o->sink ? committed : o->sink;
    int64_t rest = committed - s;
    int64_t w = rest < o->window ? rest : o->window;
    if (sf) *sf = (int)s;
    if (wf) *wf = (int)w;
    if (in_mem) *in_mem = mode == EI_MODE_EDGEINFINITE ? rest - w : 0;
}

ei_seg_plan ei_seg_plan_at(const ei_opts *o, ei_mode mode, int64_t pos, int64_t avail) {
    const int L = o->segment;
    ei_seg_plan pl = {0};
    pl.pos = pos;
    pl.p = (int)(pos % L);
    pl.n = avail < L - pl.p ? (int)avail : L - pl.p;
    pl.commit = pl.p + pl.n == L;
    int64_t in_mem = 0;
    ei_seg_fill(o, mode, pos - pl.p, &pl.sf, &pl.wf, &in_mem); /* the caches as the segment start left them */
    pl.mem = in_mem > 0;
    if (pl.commit) {
        pl.take = o->sink - pl.sf < L ? o->sink - pl.sf : L;
        pl.r = L - pl.take;
        int over = pl.wf + pl.r - o->window;
        pl.c = over > 0 ? over : 0;
    }
    return pl;
}

int32_t ei_seg_max_pos(const ei_opts *o) { return (int32_t)((int64_t)o->sink + o->window + o->segment); }

void ei_seg_positions(const ei_opts *o, const ei_seg_plan *pl, int p_slots, uint8_t *valid, int32_t *kpos,
                      int32_t *qpos) {
    const int S = o->sink, W = o->window;
    const int compact = o->positions == EI_POS_COMPACT;
    /* compact numbers the occupied slots contiguously; design (DESIGN 3.1) uses the slot index, so
     * a window that is still filling leaves a gap after the sink. Unfilled slots are masked; their
     * position only has to stay in range. */
    const int32_t base = compact ? pl->sf + pl->wf : S + W; /* position of the segment's first token */
    int64_t i = 0;
    for (int s = 0; s < S; s++, i++) {
        if (valid) valid[i] = s < pl->sf;
        kpos[i] = s;
    }
    for (int j = 0; j < W; j++, i++) {
        int ok = j >= W - pl->wf;
        if (valid) valid[i] = (uint8_t)ok;
        kpos[i] = compact ? (ok ? pl->sf + j - (W - pl->wf) : pl->sf) : S + j;
    }
    for (int u = 0; u < p_slots; u++, i++) {
        if (valid) valid[i] = u < pl->p;
        kpos[i] = base + (u < pl->p ? u : 0);
    }
    for (int t = 0; t < pl->n; t++, i++) {
        if (valid) valid[i] = 1;
        kpos[i] = base + pl->p + t;
        if (qpos) qpos[t] = base + pl->p + t;
    }
}

int ei_route_to_base(const ei_opts *o, const ei_model_config *cfg, ei_mode mode, int64_t total_len) {
    return mode == EI_MODE_FULL || total_len <= ei_opts_route_threshold(o, cfg);
}

/* Segment length of full attention: the GEMMs of a 128-token block already run near their peak,
 * and shorter blocks mean fewer masked window slots per segment for short documents. */
#define EI_FULL_SEGMENT 128

ei_opts ei_opts_full(const ei_model_config *cfg, int ctx) {
    ei_opts f;
    ei_opts_default(&f);
    if (ctx <= 0) ctx = cfg->max_seq_len;
    f.segment = ctx < EI_FULL_SEGMENT ? ctx : EI_FULL_SEGMENT;
    f.sink = 0;
    /* every segment of a ctx-token document starts at most at floor((ctx-1)/L) L: the window must
     * hold that many earlier tokens so nothing is ever pushed out */
    f.window = (ctx - 1) / f.segment * f.segment;
    f.positions = EI_POS_COMPACT;
    f.route_threshold = 0;
    return f;
}
