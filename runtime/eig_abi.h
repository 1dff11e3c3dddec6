/* The interface between `ei compile` (deploy/lower.c) and the runner (runtime/runner.c): the names
 * of the graphs in a .eig file, of their inputs and outputs, and of the scenario keys. Both sides
 * include this header, so the two can only disagree at compile time.
 *
 * Graphs (n = tokens per call N for prefill, 1 for decode; C = cache slots):
 *   prefill, decode   one call of the segment rule on the EdgeInfinite (or window) state, or in
 *                     full mode one call of full attention
 *   compress          (edgeinfinite) the memory update by the L rows that leave the window
 *   base_prefill, base_decode   (edgeinfinite / window with routing) the base model for documents
 *                     up to the routing threshold
 * Inputs of the attention graphs:
 *   tokens  i32 [n]         the call's token ids (padding rows: any valid id)
 *   qpos    i32 [n]         RoPE position of each new token
 *   kpos    i32 [C]         RoPE position of each cache slot (any in-range value for empty slots)
 *   kbias   f32 [1, C]      0 for a visible cache slot, EI_IR_MASKED for an empty or stale one
 *   nbias   f32 [n, n]      among the new tokens: 0 where row t may see column u (u <= t, u real)
 *   memflag f32 [1]         (edgeinfinite) 1 when the memory is non-empty, else 0
 *   l<i>.kc, l<i>.vc  f32 [C, Hkv, d]   layer i's cache (pre-RoPE keys; sink slots first)
 *   l<i>.M f32 [Hkv, d, d], l<i>.z f32 [Hkv, d]   (edgeinfinite) layer i's memory
 * Outputs: logits f32 [n, V]; l<i>.k_new, l<i>.v_new f32 [n, Hkv, d] (the runner stores the real
 * rows in their cache slots).
 * compress: rows i32 [L] (cache slots of the leaving tokens), rowmask f32 [L, 1, 1] (1 real, 0
 * padding), l<i>.kc, l<i>.vc, l<i>.M, l<i>.z -> l<i>.M_out, l<i>.z_out. */
#ifndef EI_RUNTIME_EIG_ABI_H
#define EI_RUNTIME_EIG_ABI_H

#define EI_GRAPH_PREFILL "prefill"
#define EI_GRAPH_DECODE "decode"
#define EI_GRAPH_COMPRESS "compress"
#define EI_GRAPH_BASE_PREFILL "base_prefill"
#define EI_GRAPH_BASE_DECODE "base_decode"

#define EI_IN_TOKENS "tokens"
#define EI_IN_QPOS "qpos"
#define EI_IN_KPOS "kpos"
#define EI_IN_KBIAS "kbias"
#define EI_IN_NBIAS "nbias"
#define EI_IN_MEMFLAG "memflag"
#define EI_IN_ROWS "rows"
#define EI_IN_ROWMASK "rowmask"
#define EI_OUT_LOGITS "logits"
/* per layer, with %d = layer */
#define EI_FMT_KC "l%d.kc"
#define EI_FMT_VC "l%d.vc"
#define EI_FMT_M "l%d.M"
#define EI_FMT_Z "l%d.z"
#define EI_FMT_K_NEW "l%d.k_new"
#define EI_FMT_V_NEW "l%d.v_new"
#define EI_FMT_M_OUT "l%d.M_out"
#define EI_FMT_Z_OUT "l%d.z_out"

/* Score bias of a masked key (see deploy/ir_emit.h). */
#define EI_MASKED_BIAS (-1.0e30f)

/* SCEN keys */
#define EI_SCEN_NAME "name"
#define EI_SCEN_MODE "mode"                 /* edgeinfinite | window | full */
#define EI_SCEN_TOKENS_PER_CALL "tokens_per_call"
#define EI_SCEN_MAX_NEW_TOKENS "max_new_tokens"
#define EI_SCEN_CACHE_SLOTS "cache_slots"   /* C of prefill / decode */
#define EI_SCEN_BASE_SLOTS "base_slots"     /* C of base_* (0: no routing graphs) */
#define EI_SCEN_WEIGHTS "weights"
#define EI_SCEN_ACTIVATIONS "activations"
#define EI_SCEN_KV_CACHE "kv_cache"

#endif
