// The Prometheus text exposition format (0.0.4) of the latest readings, for GET /metrics. Served behind
// the same Host/Origin/token checks as everything else: give Prometheus the token as a bearer token
// (`authorization: { credentials_file: … }` in its scrape config).
import { RUN_STATES } from '../../common/protocol';
import type { RunHistory } from './history';

type Labels = Record<string, string | number>;

interface Family {
  help: string;
  type: 'gauge' | 'counter';
  samples: { labels: Labels; value: number }[];
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const formatValue = (v: number): string => (Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));

export function renderPrometheus(runs: RunHistory[]): string {
  const families = new Map<string, Family>();
  const add = (name: string, help: string, type: Family['type'], labels: Labels, value: number | null | undefined) => {
    if (value === null || value === undefined) return;
    let f = families.get(name);
    if (!f) families.set(name, (f = { help, type, samples: [] }));
    f.samples.push({ labels, value });
  };

  for (const h of runs) {
    const run = h.runId;
    if (h.status) for (const s of RUN_STATES) add('scalelm_run_state', 'Run state (1 for the current one).', 'gauge', { run, state: s }, h.status.state === s ? 1 : 0);
    const step = h.steps.latest();
    if (step) {
      add('scalelm_step', 'Last optimizer step.', 'gauge', { run }, step.step);
      add('scalelm_steps_total', 'Optimizer steps published.', 'counter', { run }, h.steps.count);
      add('scalelm_loss', 'Training loss at the last step.', 'gauge', { run }, step.loss);
      add('scalelm_learning_rate', 'Learning rate at the last step.', 'gauge', { run }, step.lr);
      add('scalelm_grad_norm', 'Global gradient norm at the last step.', 'gauge', { run }, step.gradNorm);
      add('scalelm_tokens_per_second', 'Training throughput at the last step.', 'gauge', { run }, step.tokensPerSec);
      add('scalelm_step_seconds', 'Duration of the last step.', 'gauge', { run }, step.stepMs / 1000);
      for (const [category, bytes] of Object.entries(step.memory))
        add('scalelm_step_memory_bytes', 'Memory by category on the reporting rank at the last step (peak: the step high-water mark).', 'gauge', { run, category }, bytes);
    }
    const ev = h.evals.latest();
    if (ev) add('scalelm_eval_loss', 'Loss at the last evaluation.', 'gauge', { run }, ev.loss);
    for (const [rank, d] of h.memory) {
      const m = d.latest();
      if (!m) continue;
      for (const [category, bytes] of Object.entries(m.categories)) add('scalelm_memory_bytes', 'Measured memory per rank and category.', 'gauge', { run, rank, category }, bytes);
      for (const [category, bytes] of Object.entries(m.predicted ?? {})) add('scalelm_memory_predicted_bytes', 'Planned memory per rank and category.', 'gauge', { run, rank, category }, bytes);
      add('scalelm_memory_step_peak_bytes', 'Peak memory of the last step per rank.', 'gauge', { run, rank }, m.stepPeak);
      add('scalelm_memory_capacity_bytes', 'Device capacity per rank.', 'gauge', { run, rank }, m.capacity);
    }
    // Every machine's latest sample: GPU indices (and, with cloned drivers, UUIDs) repeat across nodes,
    // so a multi-node run's series carry the node (rank and host); a one-machine run's have none.
    for (const g of h.gpu.latestPerNode())
      for (const d of g.devices) {
        const labels: Labels = g.node ? { run, node: g.node.rank, host: g.node.host, gpu: d.index, uuid: d.uuid, name: d.name } : { run, gpu: d.index, uuid: d.uuid, name: d.name };
        add('scalelm_gpu_memory_used_bytes', 'GPU memory in use (nvidia-smi).', 'gauge', labels, d.memoryUsed);
        add('scalelm_gpu_memory_total_bytes', 'GPU memory in total (nvidia-smi).', 'gauge', labels, d.memoryTotal);
        add('scalelm_gpu_memory_reserved_bytes', 'GPU memory reserved by the driver.', 'gauge', labels, d.memoryReserved);
        add('scalelm_gpu_utilization_ratio', 'GPU utilisation, 0 to 1.', 'gauge', labels, d.utilPercent === null ? null : d.utilPercent / 100);
        add('scalelm_gpu_temperature_celsius', 'GPU temperature.', 'gauge', labels, d.temperatureC);
        add('scalelm_gpu_power_watts', 'GPU power draw.', 'gauge', labels, d.powerW);
        add('scalelm_gpu_power_limit_watts', 'GPU power limit.', 'gauge', labels, d.powerLimitW);
        add('scalelm_gpu_sm_clock_hertz', 'GPU SM clock.', 'gauge', labels, d.smClockMHz === null ? null : d.smClockMHz * 1e6);
        add('scalelm_gpu_lost', 'The driver reports the GPU as lost.', 'gauge', labels, d.lost ? 1 : 0);
      }
    for (const c of h.comm.values()) {
      for (const s of c.collectives) {
        const labels = { run, rank: c.rank, kind: s.kind };
        add('scalelm_comm_calls_total', 'Collective calls per rank and kind.', 'counter', labels, s.calls);
        add('scalelm_comm_bytes_total', 'Bytes moved by collectives per rank and kind.', 'counter', labels, s.bytes);
        add('scalelm_comm_seconds_total', 'Time in collectives per rank and kind.', 'counter', labels, s.ms / 1000);
      }
    }
    const active = new Map<string, number>();
    for (const a of h.activeAlerts.values()) active.set(a.kind, (active.get(a.kind) ?? 0) + 1);
    for (const [kind, n] of active) add('scalelm_alerts_active', 'Alerts currently raised.', 'gauge', { run, kind }, n);
  }

  let out = '';
  for (const [name, f] of families) {
    out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n`;
    for (const s of f.samples) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${escapeLabel(String(v))}"`)
        .join(',');
      out += `${name}{${labels}} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}
