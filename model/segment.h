/* The segment rule (DESIGN 3): where segments start and what the sink, window and memory hold,
 * as a pure function of the document position and the options. libc only. */
#ifndef EI_SEGMENT_H
#define EI_SEGMENT_H

#include "model/options.h"

#include <stdint.h>

/* How a segment of n tokens after n_seen tokens touches the caches (all data-independent):
 *   sf    sink slots filled before the segment (slots 0..sf-1)
 *   wf    window slots filled before (slots W-wf..W-1)
 *   take  segment tokens 0..take-1 that go to the sink
 *   r     segment tokens take..n-1 that join the window (r = n - take)
 *   c     tokens pushed out of the window (oldest first): rows W-wf .. W-wf+c-1 of
 *         [window slots | segment tokens take..n-1]
 *   mem   1 when something was compressed before this segment (memory non-empty)
 * In window mode nothing is ever compressed: pushed-out tokens are dropped and mem stays 0. */
typedef struct {
    int n, sf, wf, take, r, c, mem;
} ei_seg_plan;

ei_seg_plan ei_seg_plan_make(int sink, int window, int64_t n_seen, int n, ei_mode mode);

#endif
