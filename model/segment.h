/* The segment rule (DESIGN 3) and routing, in one place: every consumer (training, evaluation,
 * streaming feed, generation, the deploy runner) asks these functions where segments start, what
 * the sink, window and memory hold, and whether a document runs the base model. libc only.
 *
 * The rule. A document is cut into segments of L tokens counted from its first token: segment k
 * holds positions [kL, (k+1)L). A call may feed any number of tokens; it is split at segment
 * boundaries, and a call that ends inside a segment leaves that segment open: the next call
 * continues it. Tokens of an open segment attend to the sink, the window as it stood when the
 * segment began, the segment's earlier tokens (fed by earlier calls or earlier in this call) and
 * causally to each other, and read the memory as it stood when the segment began. The caches and
 * the memory change only when a segment is complete (its L-th token has been processed: a commit).
 * So feeding 10 + 10 tokens equals feeding 20, and decoding one token at a time is the same rule
 * with calls of one token. At a commit, with S sink slots and W window slots:
 *   - the segment's first tokens fill the sink while it has room (document positions 0 .. S-1);
 *   - the other tokens join the window; the oldest tokens pushed out of it (at most L) are
 *     compressed into the memory (edgeinfinite) or dropped (window mode).
 * A document's unfinished last segment never commits; nothing is lost, since nothing follows.
 *
 * Full attention (the base model, and routed documents) is the same rule with S = 0 and a window
 * that holds every earlier token up to the context (ei_opts_full), so the base model needs no
 * separate code path and never compresses.
 *
 * Routing. A document of at most ei_opts_route_threshold tokens runs the base model. When its
 * length is known (scoring a dataset sample, training), that length decides; when it is not
 * (generation), the routing follows the length so far: token t is computed by the base model while
 * t < threshold, and the first token beyond it switches the document to the EdgeInfinite state by
 * re-running the tokens so far (at most `threshold`) through it. Either way the model's output for
 * a document prefix equals that of the same prefix scored as a whole document. */
#ifndef EI_SEGMENT_H
#define EI_SEGMENT_H

#include "model/config.h"
#include "model/options.h"

#include <stdint.h>

/* One call's share of a segment, all data-independent:
 *   pos    document position of the call's first token
 *   p      tokens of the segment processed before this call (pos - segment start)
 *   n      tokens in this call, 1 .. L - p
 *   commit 1 when this call completes the segment (p + n == L): caches and memory update after it
 *   sf     sink slots filled when the segment began (slots 0 .. sf-1)
 *   wf     window slots filled when the segment began (right-aligned: slots W-wf .. W-1)
 *   mem    1 when something had been compressed before the segment (memory non-empty)
 * For a commit, how the segment's L tokens touch the caches:
 *   take   segment tokens 0 .. take-1 that go to the sink
 *   r      segment tokens take .. L-1 that join the window (r = L - take)
 *   c      tokens pushed out of the window, oldest first: rows W-wf .. W-wf+c-1 of
 *          [window slots | segment tokens take .. L-1]; compressed (edgeinfinite) or dropped. */
typedef struct {
    int64_t pos;
    int p, n, commit;
    int sf, wf, mem;
    int take, r, c;
} ei_seg_plan;

/* The plan of the next call at document position pos with avail >= 1 tokens left to feed (the
 * call takes n = min(avail, L - p) of them). mode EI_MODE_WINDOW never fills the memory. */
ei_seg_plan ei_seg_plan_at(const ei_opts *o, ei_mode mode, int64_t pos, int64_t avail);

/* Cache fill of the state after `committed` tokens have been committed (a multiple of L, or any
 * count: only whole segments count): sink slots, window slots, tokens in memory. */
void ei_seg_fill(const ei_opts *o, ei_mode mode, int64_t committed, int *sf, int *wf, int64_t *in_mem);

/* RoPE positions of the local attention keys and queries of a call (ei_opts.positions):
 *   key slot order [sink S | window W | open segment (p_slots) | this call's n tokens];
 *   valid (may be NULL): 1 for slots that hold a token, 0 for unfilled ones (masked);
 *   kpos: [S + W + p_slots + n] positions (unfilled slots get an in-range position),
 *   qpos: [n] positions of the call's tokens.
 * p_slots is the number of open-segment slots the caller's keys carry: p (exactly the open tokens)
 * or L (a fixed-size buffer whose slots p .. L-1 are unfilled). Every position is below
 * ei_seg_max_pos(o). */
void ei_seg_positions(const ei_opts *o, const ei_seg_plan *pl, int p_slots, uint8_t *valid, int32_t *kpos,
                      int32_t *qpos);
/* One past the largest position ei_seg_positions can produce: S + W + L. */
int32_t ei_seg_max_pos(const ei_opts *o);

/* 1 when a document of total_len tokens runs the base model (mode full always does). */
int ei_route_to_base(const ei_opts *o, const ei_model_config *cfg, ei_mode mode, int64_t total_len);

/* Options under which the segment rule is full attention over a context of ctx tokens (ctx <= 0:
 * the model's max_seq_len): sink 0, compact positions, segments of min(ctx, 128) tokens, a window
 * holding every earlier token of a ctx-token document. Tokens beyond ctx do not fit (callers use
 * a sliding window, see ei_edge). */
ei_opts ei_opts_full(const ei_model_config *cfg, int ctx);

#endif
