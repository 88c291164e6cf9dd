// The dashboard page. One bundle for two hosts (VS Code webview, plain browser). This first version
// shows the run header and a live loss curve; the memory panels and planner tab grow from here.
import '@vscode-elements/elements/dist/vscode-badge/index.js';
import '@vscode-elements/elements/dist/vscode-tabs/index.js';
import '@vscode-elements/elements/dist/vscode-tab-header/index.js';
import '@vscode-elements/elements/dist/vscode-tab-panel/index.js';
import { Chart, LineController, LineElement, PointElement, LinearScale, Tooltip } from 'chart.js';
import { detachedHost, vscodeHost, type DashboardHost } from './host';
import { onThemeChange, readTheme } from './theme';

Chart.register(LineController, LineElement, PointElement, LinearScale, Tooltip);

const host: DashboardHost = vscodeHost() ?? detachedHost();
const app = document.getElementById('app')!;
app.innerHTML = `
  <header class="run-header">
    <h1 id="run-name">No run yet</h1>
    <vscode-badge id="run-state" variant="counter">idle</vscode-badge>
    <span id="run-step" class="muted"></span>
  </header>
  <vscode-tabs id="tabs" selected-index="0">
    <vscode-tab-header slot="header">Training</vscode-tab-header>
    <vscode-tab-panel>
      <section class="chart-box"><h2>Loss</h2><canvas id="loss-chart" role="img" aria-label="Training loss by step"></canvas></section>
    </vscode-tab-panel>
    <vscode-tab-header slot="header">Planner</vscode-tab-header>
    <vscode-tab-panel><p class="muted">Open a *.scalelm.json and run "ScaleLM: Suggest Parallel Layouts".</p></vscode-tab-panel>
  </vscode-tabs>`;

const canvas = document.getElementById('loss-chart') as HTMLCanvasElement;
let theme = readTheme();
const lossChart = new Chart(canvas, {
  type: 'line',
  data: { datasets: [{ label: 'loss', data: [] as { x: number; y: number }[], borderColor: theme.series[0], borderWidth: 1.5, pointRadius: 0 }] },
  options: {
    animation: false,
    parsing: false,
    normalized: true,
    responsive: true,
    maintainAspectRatio: false,
    scales: {
      x: { type: 'linear', title: { display: true, text: 'step', color: theme.foreground }, ticks: { color: theme.foreground }, grid: { color: theme.grid } },
      y: { type: 'linear', title: { display: true, text: 'loss', color: theme.foreground }, ticks: { color: theme.foreground }, grid: { color: theme.grid } },
    },
    plugins: { tooltip: { enabled: true } },
  },
});

onThemeChange(() => {
  theme = readTheme();
  const ds = lossChart.data.datasets[0]!;
  ds.borderColor = theme.series[0];
  for (const axis of ['x', 'y'] as const) {
    const scale = lossChart.options.scales![axis]!;
    (scale.ticks as { color: string }).color = theme.foreground;
    (scale.grid as { color: string }).color = theme.grid;
  }
  lossChart.update('none');
});

/** Pixels in the chart canvas that are not fully transparent: proof that something was drawn. */
function chartInk(): number {
  const ctx = canvas.getContext('2d');
  if (!ctx || canvas.width === 0 || canvas.height === 0) return 0;
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) ink++;
  return ink;
}

function renderedComponents(): string[] {
  const tags = new Set<string>();
  for (const el of Array.from(app.querySelectorAll('*'))) {
    const tag = el.tagName.toLowerCase();
    if (tag.includes('-') && customElements.get(tag) && el.shadowRoot) tags.add(tag);
  }
  return [...tags].sort();
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

host.onMessage((message) => {
  if (!isRecord(message) || typeof message.type !== 'string') return;
  switch (message.type) {
    case 'ping':
      host.post({ type: 'pong', id: message.id, components: renderedComponents(), chartInk: chartInk() });
      break;
    case 'step':
      if (typeof message.step === 'number' && typeof message.loss === 'number') {
        (lossChart.data.datasets[0]!.data as { x: number; y: number }[]).push({ x: message.step, y: message.loss });
        lossChart.update('none');
        document.getElementById('run-step')!.textContent = `step ${message.step}`;
      }
      break;
    case 'hello':
      if (typeof message.runName === 'string') document.getElementById('run-name')!.textContent = message.runName;
      break;
    case 'status':
      if (typeof message.state === 'string') document.getElementById('run-state')!.textContent = message.state;
      break;
  }
});

host.post({ type: 'ready' });
