// The `torch` convention: what the torch engine (python/scalelm, PyTorch under torchrun) holds per rank, as it
// measures it (python/scalelm/memory.py): parameters, gradients and optimizer state counted from the rank's
// own tensors (FSDP2 shards each parameter on dim 0 with torch.chunk; ZeRO-1 gives each dp rank whole
// parameters, greedily by size), and activations = the unique storages autograd saves in one micro-batch's
// forward, tensor by tensor as the engine's model saves them (dropout off). On GPUs the engine measures
// activations as the allocator's peak minus the rest, which adds temporaries this list leaves out.
// bf16-mixed (GPUs): parameters, gradients and optimizer state stay fp32 (torch.autocast casts inside the
// forward only), so the model states are the fp32 ones; the activations are autocastActivationTerms.
// Checked against the measurement on CPU (fp32, and bf16 under CPU autocast): docs/torch-engine.md. Pure.
import { paddedVocab } from './params';
import type { HfActivations, Layout, MemoryTerm, PlanInput, PlanIssue } from './types';

const F32 = 4;
const BF16 = 2;

/** One parameter of the rank (after the tensor-parallel split): dim 0 and the elements of one dim-0 row. */
interface Shard {
  name: string;
  rows: number;
  rowElements: number;
}

export function torchVocab(vocab: number, tp: number): number {
  return tp === 1 ? vocab : paddedVocab(vocab, tp);
}

/** The rank's parameters in the engine's order (python/scalelm/model.py param_specs, split as scalelm/tp.py). */
export function torchShards(input: PlanInput, tp: number): Shard[] {
  const m = input.model;
  const C = m.hidden;
  const F = m.ffnHidden;
  const hd = m.hidden / m.heads;
  const V = torchVocab(m.vocab, tp) / tp;
  const out: Shard[] = [];
  const p = (name: string, rows: number, rowElements = 1) => out.push({ name, rows, rowElements });
  if (m.activation === 'gelu') {
    p('wte', V, C);
    p('wpe', m.seqLen, C);
    for (let i = 0; i < m.layers; i++) {
      p(`h.${i}.ln_1.weight`, C);
      p(`h.${i}.ln_1.bias`, C);
      p(`h.${i}.attn.c_attn.weight`, C, (3 * C) / tp);
      p(`h.${i}.attn.c_attn.bias`, (3 * C) / tp);
      p(`h.${i}.attn.c_proj.weight`, C / tp, C);
      p(`h.${i}.attn.c_proj.bias`, C);
      p(`h.${i}.ln_2.weight`, C);
      p(`h.${i}.ln_2.bias`, C);
      p(`h.${i}.mlp.c_fc.weight`, C, F / tp);
      p(`h.${i}.mlp.c_fc.bias`, F / tp);
      p(`h.${i}.mlp.c_proj.weight`, F / tp, C);
      p(`h.${i}.mlp.c_proj.bias`, C);
    }
    p('ln_f.weight', C);
    p('ln_f.bias', C);
    return out;
  }
  p('embed_tokens', V, C);
  for (let i = 0; i < m.layers; i++) {
    p(`layers.${i}.input_layernorm`, C);
    p(`layers.${i}.q_proj`, (m.heads * hd) / tp, C);
    p(`layers.${i}.k_proj`, (m.kvHeads * hd) / tp, C);
    p(`layers.${i}.v_proj`, (m.kvHeads * hd) / tp, C);
    p(`layers.${i}.o_proj`, C, (m.heads * hd) / tp);
    p(`layers.${i}.post_attention_layernorm`, C);
    p(`layers.${i}.gate_proj`, F / tp, C);
    p(`layers.${i}.up_proj`, F / tp, C);
    p(`layers.${i}.down_proj`, C, F / tp);
  }
  p('norm', C);
  p('lm_head', V, C);
  return out;
}

/** Elements dp rank `r` holds of each parameter under FSDP2 (torch.chunk on dim 0). */
function fsdpElements(s: Shard, dp: number, r: number): number {
  const chunk = Math.ceil(s.rows / dp);
  return Math.max(0, Math.min(chunk, s.rows - r * chunk)) * s.rowElements;
}

/** ZeRO-1: elements whose optimizer state each dp rank keeps (the engine's greedy split, largest first). */
export function zero1Loads(shards: Shard[], dp: number): number[] {
  const load = new Array<number>(dp).fill(0);
  const sorted = shards.map((s) => s.rows * s.rowElements).sort((a, b) => b - a); // stable, as Python's sorted
  for (const n of sorted) {
    let k = 0;
    for (let i = 1; i < dp; i++) if (load[i]! < load[k]!) k = i;
    load[k]! += n;
  }
  return load;
}

/** The sizes both activation models count in (per rank, after the tensor-parallel split). */
function activationDims(input: PlanInput, layout: Layout) {
  const m = input.model;
  const { tp } = layout;
  const B = layout.microBatch;
  const T = m.seqLen;
  const H = m.heads / tp;
  return {
    m,
    tp,
    B,
    T,
    C: m.hidden,
    H,
    hd: m.hidden / m.heads,
    F: m.ffnHidden / tp,
    Vl: torchVocab(m.vocab, tp) / tp,
    BT: B * T,
    rec: input.train.recompute,
    L: m.layers,
    /** The attention log-sum-exp (fp32, B·heads/tp·T), not kept under selective recompute. */
    lse: input.train.recompute === 'selective' ? 0 : F32 * B * H * T,
  };
}

/** Bytes autograd saves in one micro-batch's forward, term by term. */
function activationTerms(input: PlanInput, layout: Layout): [string, number][] {
  const { m, tp, T, C, H, hd, F, Vl, BT, rec, L, lse } = activationDims(input, layout);
  const out: [string, number][] = [];
  const add = (label: string, bytes: number) => out.push([label, bytes]);
  if (rec === 'full') add(`${L} × block input (full recompute keeps only it, B·T·C)`, L * F32 * BT * C);
  else if (m.activation === 'gelu') {
    add(`${L} × ln_1 and ln_2: input, mean, rstd and output (2 × (2·B·T·C + 2·B·T))`, L * F32 * 2 * (2 * BT * C + 2 * BT));
    add(`${L} × fused q, k, v (one storage, 3·B·T·C/tp)`, (L * F32 * 3 * BT * C) / tp);
    add(`${L} × attention output (= c_proj input, B·T·C/tp)`, (L * F32 * BT * C) / tp);
    if (lse) add(`${L} × attention log-sum-exp (B·heads/tp·T; not kept under selective recompute)`, L * lse);
    add(`${L} × c_fc output and GELU output (2·B·T·F/tp)`, L * F32 * 2 * BT * F);
  } else {
    add(`${L} × two RMSNorms: input, rstd, normalised, weighted (2 × (3·B·T·C + B·T))`, L * F32 * 2 * (3 * BT * C + BT));
    add(`${L} × q, k, v after RoPE and GQA repeat, attention output (4·B·T·heads·hd/tp)`, L * F32 * 4 * BT * H * hd);
    if (lse) add(`${L} × attention log-sum-exp (B·heads/tp·T; not kept under selective recompute)`, L * lse);
    add(`${L} × gate, SiLU, up and product (4·B·T·F/tp)`, L * F32 * 4 * BT * F);
  }
  add('token ids (int64)', 8 * BT);
  if (tp > 1) add('vocab-parallel embedding mask (bool)', BT);
  if (m.activation === 'gelu') add('ln_f: input, mean, rstd, output (2·B·T·C + 2·B·T)', F32 * (2 * BT * C + 2 * BT));
  else {
    add('RoPE cos and sin (2·T·head dim)', F32 * 2 * T * hd);
    add('final RMSNorm: input, rstd, normalised, weighted (3·B·T·C + B·T)', F32 * (3 * BT * C + BT));
  }
  if (tp === 1) add('cross entropy: logits (B·T·V), target ids (int64) and a scalar', F32 * BT * Vl + 8 * BT + F32);
  else add('vocab-parallel cross entropy: masked and shifted logits (2·B·T·V/tp), masks, target ids, Σexp', 2 * F32 * BT * Vl + Vl + 8 * BT + BT + F32 * BT);
  return out;
}

/**
 * Bytes autograd saves in one micro-batch's forward under torch.autocast(bfloat16) (train.precision
 * "bf16-mixed"), term by term. Measured on CPU under CPU autocast (python/tests/test_memory_bf16.py: tp 1 and
 * tp 2, exact). The same ops take the same dtypes under CUDA autocast: matmuls (addmm, matmul, linear) and
 * scaled_dot_product_attention are on both devices' lower-precision lists, so each casts its inputs to bf16
 * and autograd saves the casts: a bf16 copy of every weight it multiplies (2 B per matmul parameter, on top of
 * the fp32 parameters) and a bf16 copy of its activation input, made per call (Llama's q, k, v projections
 * cast the same norm output three times). CUDA's fp32 list (layer_norm, pow, rsqrt, exp, cross_entropy, …)
 * only meets tensors that are fp32 already here: the norms' internals, the residual stream (bf16 matmul
 * output + fp32 bias or residual promotes to fp32), RoPE (bf16 q × fp32 cos → fp32) and the loss
 * (logits.float()). Derived for CUDA, not measured: attention. CPU runs SDPA's flash kernel; on CUDA (bf16,
 * head dim ≤ 256, sm80+) it is FlashAttention-2, which saves the same tensors: q, k, v, the output (bf16) and
 * the fp32 log-sum-exp [B, heads, T] (plus two RNG scalars, left out). The memory-efficient kernel (older
 * GPUs) pads the log-sum-exp to a multiple of 32 in T (not modelled).
 */
function autocastActivationTerms(input: PlanInput, layout: Layout): [string, number][] {
  const { m, tp, T, C, H, hd, F, Vl, BT, rec, L, lse } = activationDims(input, layout);
  const out: [string, number][] = [];
  const add = (label: string, bytes: number) => out.push([label, bytes]);
  // Autocast's cast cache keeps each leaf parameter's bf16 copy until the forward's autocast context exits:
  // the copies saved for backward are counted below; these are the ones nothing saves (measured on CPU).
  const gptBiases = (3 * C + m.ffnHidden) / tp; // c_attn and c_fc biases: addmm casts them, its backward does not keep them
  const blockWeights = m.activation === 'gelu' ? (4 * C * C + 2 * C * m.ffnHidden) / tp : 2 * C * H * hd + (2 * m.kvHeads * hd * C) / tp + 3 * C * F;
  if (rec === 'full')
    add(
      `${L} × bf16 copies of the block's weights${m.activation === 'gelu' ? ' and addmm biases' : ''}, held by autocast's cast cache until the forward ends (recomputed, not saved)`,
      L * BF16 * (blockWeights + (m.activation === 'gelu' ? gptBiases : 0)),
    );
  else if (m.activation === 'gelu') add(`${L} × bf16 copies of the c_attn and c_fc biases, held by autocast's cast cache until the forward ends ((3·C + F)/tp)`, L * BF16 * gptBiases);
  if (rec === 'full') add(`${L} × block input (fp32; full recompute keeps only it, B·T·C)`, L * F32 * BT * C);
  else if (m.activation === 'gelu') {
    add(`${L} × ln_1 and ln_2: fp32 input, mean, rstd, and the bf16 output cast for the matmul (2 × (4·(B·T·C + 2·B·T) + 2·B·T·C))`, L * 2 * (F32 * (BT * C + 2 * BT) + BF16 * BT * C));
    add(`${L} × bf16 copies of c_attn, c_proj, c_fc and c_proj weights ((4·C² + 2·C·F)/tp)`, L * BF16 * blockWeights);
    add(`${L} × fused q, k, v (bf16, one storage, 3·B·T·C/tp)`, (L * BF16 * 3 * BT * C) / tp);
    add(`${L} × attention output (bf16, = c_proj input, B·T·C/tp)`, (L * BF16 * BT * C) / tp);
    if (lse) add(`${L} × attention log-sum-exp (fp32, B·heads/tp·T; not kept under selective recompute)`, L * lse);
    add(`${L} × c_fc output and GELU output (bf16, 2·B·T·F/tp)`, L * BF16 * 2 * BT * F);
  } else {
    add(`${L} × two RMSNorms: fp32 input, rstd, normalised (2 × (2·B·T·C + B·T)); bf16 casts of the output, one per projection (5·B·T·C)`, L * (F32 * 2 * (2 * BT * C + BT) + BF16 * 5 * BT * C));
    add(`${L} × bf16 copies of q, k, v, o, gate, up and down weights`, L * BF16 * blockWeights);
    if (rec === 'selective') add(`${L} × attention inputs kept by the checkpoint: q and k after RoPE and GQA repeat (fp32), v (bf16) (B·T·heads·hd/tp each)`, L * (2 * F32 + BF16) * BT * H * hd);
    else add(`${L} × SDPA's q, k, v (cast to bf16 after RoPE and GQA repeat, 3·B·T·heads·hd/tp)`, L * BF16 * 3 * BT * H * hd);
    add(`${L} × attention output (bf16, = o_proj input, B·T·heads·hd/tp)`, L * BF16 * BT * H * hd);
    if (lse) add(`${L} × attention log-sum-exp (fp32, B·heads/tp·T; not kept under selective recompute)`, L * lse);
    add(`${L} × gate, SiLU, up and product (bf16, 4·B·T·F/tp)`, L * BF16 * 4 * BT * F);
  }
  add('token ids (int64)', 8 * BT);
  if (tp > 1) add('vocab-parallel embedding mask (bool)', BT);
  if (m.activation === 'gelu') add('ln_f: fp32 input, mean, rstd (B·T·C + 2·B·T), bf16 output cast for the logits (B·T·C)', F32 * (BT * C + 2 * BT) + BF16 * BT * C);
  else {
    add('RoPE cos and sin (fp32, 2·T·head dim)', F32 * 2 * T * hd);
    add('final RMSNorm: fp32 input, rstd, normalised (2·B·T·C + B·T), bf16 output cast for the logits (B·T·C)', F32 * (2 * BT * C + BT) + BF16 * BT * C);
  }
  add(`bf16 copy of the output weight (${m.activation === 'gelu' ? 'tied wte' : 'lm_head'}, V/tp·C)`, BF16 * Vl * C);
  if (tp === 1) add('cross entropy on logits.float(): fp32 log-softmax (B·T·V), target ids (int64) and a scalar', F32 * BT * Vl + 8 * BT + F32);
  else add('vocab-parallel cross entropy on logits.float(): shifted logits and their exp (fp32, 2·B·T·V/tp), masks, target ids, Σexp', 2 * F32 * BT * Vl + Vl + 8 * BT + BT + F32 * BT);
  return out;
}

/**
 * Bytes autograd saves in one micro-batch's forward of a HuggingFace GPT-2 or Llama (transformers 5.x
 * modeling_gpt2.py / modeling_llama.py, fp32 on CPU, one rank's whole model: tp 1, no recompute), term by
 * term as the modeling code saves them, unique storages. Checked by measurement: python/tests/test_hf_activations.py.
 * Each dropout that is on (p > 0, training) saves its fp32 noise (CPU's dropout is input × noise); off, it
 * returns its input and saves nothing. sdpa on CPU runs the math kernel when attention dropout is on (then it
 * saves what eager saves) and the flash kernel otherwise (q, k, v, output, log-sum-exp; no T×T scores).
 */
function hfActivationTerms(input: PlanInput, layout: Layout, hf: HfActivations): [string, number][] {
  const m = input.model;
  const B = layout.microBatch;
  const T = m.seqLen;
  const C = m.hidden;
  const H = m.heads;
  const hd = m.hidden / m.heads;
  const F = m.ffnHidden;
  const BT = B * T;
  const L = m.layers;
  const scores = F32 * B * H * T * T;
  const math = hf.impl === 'hf-eager' || hf.attnDropout;
  const out: [string, number][] = [];
  const add = (label: string, bytes: number) => out.push([label, bytes]);
  const attnDrop = hf.attnDropout ? ', its dropout noise and the dropped weights' : '';
  if (hf.family === 'gpt2') {
    add(`${L} × ln_1 and ln_2: input, mean, rstd, and the output Conv1D's addmm saves (2 × (2·B·T·C + 2·B·T))`, L * F32 * 2 * (2 * BT * C + 2 * BT));
    if (math) {
      add(`${L} × q, kᵀ and v made contiguous for the matmuls (3·B·T·C)`, L * F32 * 3 * BT * C);
      add(`${L} × softmax output${attnDrop} (${hf.attnDropout ? 3 : 1}·B·heads·T·T)`, L * (hf.attnDropout ? 3 : 1) * scores);
      add(`${L} × heads merged for c_proj (B·T·C)`, L * F32 * BT * C);
    } else {
      add(`${L} × sdpa's q, k, v: one a view of the fused c_attn output, saved whole (3·B·T·C), two contiguous copies (2·B·T·C)`, L * F32 * 5 * BT * C);
      add(`${L} × sdpa output (= c_proj input, B·T·C) and log-sum-exp (B·heads·T)`, L * F32 * (BT * C + B * H * T));
    }
    if (hf.residDropout) add(`${L} × attention and MLP residual dropout noise (2·B·T·C)`, L * F32 * 2 * BT * C);
    add(`${L} × gelu_new: c_fc output, tanh, 0.5·x, 1 + tanh, and its output for c_proj (5·B·T·F)`, L * F32 * 5 * BT * F);
    add('token ids and position ids (int64, B·T + T)', 8 * (BT + T));
    if (hf.embdDropout) add('embedding dropout noise (B·T·C)', F32 * BT * C);
    add('ln_f: input, mean, rstd, output (lm_head input) (2·B·T·C + 2·B·T)', F32 * (2 * BT * C + 2 * BT));
  } else {
    const kv = m.kvHeads * hd;
    add(`${L} × two RMSNorms: input, rstd, normalised, weighted (the projections' input) (2 × (3·B·T·C + B·T))`, L * F32 * 2 * (3 * BT * C + BT));
    if (math) {
      add(`${L} × q after RoPE, k and v repeated to every head, heads merged for o_proj (4·B·T·heads·hd)`, L * F32 * 4 * BT * H * hd);
      add(`${L} × softmax output${attnDrop} (${hf.attnDropout ? 3 : 1}·B·heads·T·T)`, L * (hf.attnDropout ? 3 : 1) * scores);
    } else {
      add(`${L} × sdpa's q after RoPE and output (= o_proj input) (2·B·T·heads·hd), k and v unrepeated (2·B·T·kv heads·hd)`, L * F32 * (2 * BT * H * hd + 2 * BT * kv));
      add(`${L} × sdpa log-sum-exp (B·heads·T)`, L * F32 * B * H * T);
    }
    add(`${L} × gate, SiLU, up and product (4·B·T·F)`, L * F32 * 4 * BT * F);
    add('token ids (int64)', 8 * BT);
    add('RoPE cos and sin (2·T·head dim)', F32 * 2 * T * hd);
    add('final RMSNorm: input, rstd, normalised, weighted (lm_head input) (3·B·T·C + B·T)', F32 * (3 * BT * C + BT));
  }
  // ForCausalLMLoss pads the labels to T + 1 and takes labels[..., 1:].contiguous(): a copy (B·T) unless B = 1,
  // where the slice is already contiguous and the target stays a view of the padded storage (T + 1).
  const targets = B === 1 ? T + 1 : BT;
  add('cross entropy: logits (B·T·V), shifted target ids (int64) and a scalar', F32 * BT * m.vocab + 8 * targets + F32);
  return out;
}

/** What the torch engine cannot run (scalelm/train.py layout_issues, the planner-visible part). */
export function torchIssues(input: PlanInput, layout: Layout): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const why = 'the torch engine';
  if (input.train.precision === 'fp16-mixed') issues.push({ path: 'train.precision', message: `${why} trains in bf16-mixed or fp32, not fp16-mixed` });
  if (layout.pp > 1) issues.push({ path: 'parallel.pp', message: `${why} has no pipeline parallelism; parallel.pp=${layout.pp} cannot run there` });
  if (layout.offloadOptimizer || layout.offloadParams) issues.push({ path: 'parallel.offloadOptimizer', message: `${why} does not offload to host memory; turn offload off` });
  if (layout.sequenceParallel) issues.push({ path: 'parallel.sequenceParallel', message: `${why} has no sequence parallelism; set parallel.sequenceParallel=false` });
  return issues;
}

/** The heaviest rank's bytes per category, term by term (dp rank 0 under FSDP; the most loaded under ZeRO-1). */
export function torchMemoryTerms(input: PlanInput, layout: Layout, hf?: HfActivations): MemoryTerm[] {
  const { dp, tp, zero } = layout;
  const shards = torchShards(input, tp);
  const full = shards.reduce((n, s) => n + s.rows * s.rowElements, 0);
  const fsdp = shards.reduce((n, s) => n + fsdpElements(s, dp, 0), 0);
  const slots = input.train.optimizer === 'sgd' ? 1 : 2;
  const terms: MemoryTerm[] = [];
  const add = (category: MemoryTerm['category'], label: string, bytes: number) => terms.push({ category, label, bytes });
  const sharded = zero >= 2;
  const mine = sharded ? fsdp : full;
  add('params', sharded ? `fp32 parameter shards (FSDP2, dim 0 / dp ${dp})` : `fp32 parameters (4 B × ${full})`, F32 * mine);
  add('grads', sharded ? `fp32 gradient shards (FSDP2, dim 0 / dp ${dp})` : 'fp32 gradients (DDP bucket views)', F32 * mine);
  const optElements = zero === 1 && dp > 1 ? Math.max(...zero1Loads(shards, dp)) : mine;
  add(
    'optimizer',
    `${input.train.optimizer === 'sgd' ? 'SGD momentum' : 'AdamW exp_avg and exp_avg_sq'}${zero === 1 && dp > 1 ? " of this rank's share of the parameters (ZeRO-1)" : ''}`,
    slots * F32 * optElements,
  );
  // The HuggingFace terms are fp32 measurements: under autocast ScaleLM's own model's terms stand in (the
  // callers do not pass HF activations for bf16-mixed: config/huggingface.ts hfActivationModel refuses it).
  const bf16 = input.train.precision === 'bf16-mixed';
  const acts = bf16 ? autocastActivationTerms(input, layout) : hf ? hfActivationTerms(input, layout, hf) : activationTerms(input, layout);
  for (const [label, bytes] of acts) add('activations', label, bytes);
  if (input.model.positionEmbedding === 'rope') add('buffers', 'RoPE inverse frequencies (head dim / 2)', (F32 * input.model.hidden) / input.model.heads / 2);
  return terms;
}
