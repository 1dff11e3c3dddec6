#include "model/segment.h"

ei_seg_plan ei_seg_plan_make(int sink, int window, int64_t n_seen, int n, ei_mode mode) {
    ei_seg_plan p = {0};
    p.n = n;
    p.sf = (int)(n_seen < sink ? n_seen : sink);
    int64_t rest = n_seen - p.sf;
    p.wf = (int)(rest < window ? rest : window);
    p.mem = mode == EI_MODE_EDGEINFINITE && rest - p.wf > 0;
    p.take = sink - p.sf < n ? sink - p.sf : n;
    p.r = n - p.take;
    int over = p.wf + p.r - window;
    p.c = over > 0 ? over : 0;
    return p;
}
