// The Memory tab: one card per rank. A stacked bar of the measured categories against the device's
// capacity with the step's peak as a line; per category the measured bytes, the planner's prediction as a
// marker on the same scale and the error; a sparkline of the step peak since the start with its maximum;
// and, where a GPU exists, the driver's own reading (used / total / reserved, utilisation, temperature,
// power, memory per process). The runtime is the authority on the breakdown, the driver on the totals
// (docs/dashboard.md): both are shown, and the gap between them.
// A multi-node run (messages with `node`) is grouped by machine: a header per node (host, node rank, its
// ranks, its fullest rank, its GPUs) over that node's cards or rows. From COMPACT_FROM ranks on, the panel is
// a heatmap of every rank (grouped by node) over a sortable table with one row per rank; clicking a rank in
// either shows its detailed card.
import { fill, h, setText } from '../dom';
import { minMaxPerPixel } from '../downsample';
import { formatBytes, formatDuration, formatError, formatPercent } from '../format';
import type { MemoryLayoutInspection, MemoryPanelInspection } from '../messages';
import { CATEGORY_LABEL, DISPLAY_CATEGORIES, groupCategories, levelOf, predictionFor, type DisplayCategory, type Level } from '../metrics';
import type { GpuDevice } from '../../common/protocol';
import type { NodeGroup, RankMemory, RunData } from '../store';
import type { ChartTheme } from '../theme';

interface Card {
  rank: number;
  root: HTMLElement;
  title: HTMLElement;
  usage: HTMLElement;
  segments: Map<DisplayCategory, HTMLElement>;
  peakLine: HTMLElement;
  /** The device capacity on the bar's scale (hidden when off scale). */
  capLine: HTMLElement;
  scaleEnd: HTMLElement;
  stack: HTMLElement;
  rows: Map<DisplayCategory, { row: HTMLElement; measured: HTMLElement; bar: HTMLElement; marker: HTMLElement; predicted: HTMLElement; error: HTMLElement }>;
  sparkCanvas: HTMLCanvasElement;
  sparkLabel: HTMLElement;
  predictionNote: HTMLElement;
  gpu: HTMLElement;
  drawnVersion: number;
  drawnWidth: number;
  level: Level;
  gpuDevice: GpuDevice | null;
  gpuKey: string;
}

/** A node's header (over its cards, as a table row, or as a heatmap row label). */
interface NodeHead {
  root: HTMLElement;
  text: HTMLElement;
  level: Level;
}

/** A rank's row in the compact table. */
interface Row {
  root: HTMLTableRowElement;
  device: HTMLElement;
  peak: HTMLElement;
  fraction: HTMLElement;
  max: HTMLElement;
  predicted: HTMLElement;
  error: HTMLElement;
  fill: HTMLElement;
  /** The driver's reading of the rank's GPU (on its own node): utilisation, temperature. */
  gpu: HTMLElement;
  gpuKey: string;
  level: Level;
}

interface Cell {
  root: HTMLElement;
  level: Level;
}

export type MemorySort = 'rank' | 'peak';

/** From this many ranks on, the panel is a heatmap and one compact table instead of a card per rank. */
export const COMPACT_FROM = 16;

const fractionOf = (m: { stepPeak: number; capacity: number }): number => (m.capacity > 0 ? m.stepPeak / m.capacity : 0);

export class MemoryView {
  readonly root: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly note: HTMLElement;
  private cards = new Map<number, Card>();
  /** Card mode of a multi-node run: one section per node (header + its cards), by node key. */
  private sections = new Map<string, { root: HTMLElement; head: NodeHead; cards: HTMLElement }>();
  private cardsLayout = '';
  /** Compact mode (COMPACT_FROM ranks or more; cards for 64 ranks are a long scroll): heatmap, detail, table. */
  private readonly compactBox: HTMLElement;
  private readonly heatmap: HTMLElement;
  private readonly compact: HTMLTableElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly sortButtons: Record<MemorySort, HTMLElement>;
  private readonly detail: HTMLElement;
  private readonly detailTitle: HTMLElement;
  private detailCard: Card | null = null;
  private rows = new Map<number, Row>();
  private nodeRows = new Map<string, NodeHead>();
  private cells = new Map<number, Cell>();
  private hmNodes = new Map<string, { root: HTMLElement; label: HTMLElement; cells: HTMLElement }>();
  private tableOrder = '';
  private heatmapLayout = '';
  private worst: number | null = null;
  /** The rank whose detailed card is shown under the heatmap (compact mode). */
  selected: number | null = null;
  sort: MemorySort = 'rank';
  private lastKey = '';
  private shownRunId: string | null = null;
  /** CSS size of each sparkline canvas, kept by the observer. */
  private readonly sparkSize = new WeakMap<Element, { w: number; h: number }>();
  private resized = 0;
  private readonly observer = new ResizeObserver((entries) => {
    for (const e of entries) this.sparkSize.set(e.target, { w: e.contentRect.width, h: e.contentRect.height });
    this.resized++;
    this.onResize?.();
  });
  /** Set by the dashboard: schedule a redraw (a sparkline changed size, a rank was picked, the sort changed). */
  onResize: (() => void) | null = null;

  constructor(private theme: ChartTheme) {
    this.empty = h('p', { class: 'muted empty' }, 'No memory readings yet: the runtime sends one per rank per step.');
    this.note = h('p', { class: 'muted note' });
    this.grid = h('div', { class: 'mem-grid', id: 'memory-grid' });
    this.heatmap = h('div', { class: 'heatmap', id: 'memory-heatmap', role: 'group', 'aria-label': 'step peak of capacity per rank; pick a rank for its details' });
    this.sortButtons = {
      rank: h('button', { class: 'sort', type: 'button', 'data-sort': 'rank', title: 'sort by rank' }, 'rank'),
      peak: h('button', { class: 'sort', type: 'button', 'data-sort': 'peak', title: 'sort by step peak (fullest first)' }, 'step peak'),
    };
    const head = h(
      'thead',
      null,
      h(
        'tr',
        null,
        ...[this.sortButtons.rank, 'device', this.sortButtons.peak, 'of capacity', 'max since start', 'predicted peak', 'error', '', 'GPU'].map((c, i) =>
          h('th', { scope: 'col', class: i >= 2 && i <= 6 ? 'num' : '', 'data-col': typeof c === 'string' ? null : c.dataset.sort }, c),
        ),
      ),
    );
    this.tbody = h('tbody');
    this.compact = h('table', { class: 'mem-compact', id: 'memory-compact' }, head, this.tbody);
    this.detailTitle = h('span', { class: 'detail-title' });
    const close = h('button', { class: 'detail-close', type: 'button', 'aria-label': 'close the rank\u2019s details', title: 'close' }, '×');
    this.detail = h('section', { class: 'mem-detail', id: 'memory-detail', hidden: true, 'aria-live': 'polite' }, h('header', null, this.detailTitle, close));
    this.compactBox = h('div', { class: 'mem-many', hidden: true }, this.heatmap, this.detail, this.compact);
    this.root = h('div', { class: 'memory-view' }, this.empty, this.compactBox, this.grid, this.note);

    for (const s of ['rank', 'peak'] as const) this.sortButtons[s].addEventListener('click', () => this.setSort(s));
    close.addEventListener('click', () => this.select(null));
    this.heatmap.addEventListener('click', (e) => {
      const cell = (e.target as Element).closest('[data-rank]');
      if (cell) this.select(Number((cell as HTMLElement).dataset.rank), true);
    });
    this.tbody.addEventListener('click', (e) => {
      const row = (e.target as Element).closest('tr[data-rank]');
      if (row) this.select(Number((row as HTMLElement).dataset.rank), true);
    });
    this.tbody.addEventListener('keydown', (e) => {
      const row = (e.target as Element).closest('tr[data-rank]');
      if (row && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault();
        this.select(Number((row as HTMLElement).dataset.rank), true);
      }
    });
  }

  /** Shows this rank's detailed card in compact mode (`toggle`: picking the shown rank again closes it). */
  select(rank: number | null, toggle = false): void {
    this.selected = toggle && rank === this.selected ? null : rank;
    this.lastKey = '';
    this.onResize?.();
  }

  setSort(sort: MemorySort): void {
    this.sort = sort;
    this.lastKey = '';
    this.onResize?.();
  }

  applyTheme(theme: ChartTheme): void {
    this.theme = theme;
    for (const c of [...this.cards.values(), ...(this.detailCard ? [this.detailCard] : [])]) {
      c.drawnVersion = -1;
      c.gpuKey = '';
    }
    this.lastKey = '';
  }

  /** Called only while the Memory tab is shown. Reads no layout: sizes come from a ResizeObserver. */
  render(run: RunData | null, force = false): boolean {
    const key = `${run?.runId}|${run?.versions.memory}|${run?.versions.gpu}|${run?.versions.meta}|${this.resized}`;
    if (!force && key === this.lastKey) return false;
    this.lastKey = key;
    if (!run || run.runId !== this.shownRunId) this.reset(run?.runId ?? null);
    const ranks = run ? [...run.memory.keys()].sort((a, b) => a - b) : [];
    this.empty.hidden = ranks.length > 0;
    const compact = ranks.length >= COMPACT_FROM;
    this.compactBox.hidden = !compact;
    this.grid.hidden = compact;
    if (!run || !ranks.length) {
      setText(this.note, '');
      return true;
    }
    const multiNode = run.multiNode;
    const groups = run.nodeGroups();
    if (compact) {
      this.worst = worstRank(run);
      this.renderHeatmap(run, groups, multiNode);
      this.renderTable(run, groups, multiNode);
      this.renderDetail(run);
      setText(
        this.note,
        `Heatmap: every rank's step peak in % of its device${multiNode ? ', one row of cells per node' : ''}; the shade runs from the run's emptiest to its fullest rank below 80%, yellow and red mark 80% and 92%. The fullest rank is outlined. Pick a rank (cell or row) for its detailed card. Fewer than ${COMPACT_FROM} ranks get a card each.`,
      );
      return true;
    }
    for (const rank of ranks) {
      let card = this.cards.get(rank);
      if (!card) {
        card = this.makeCard(rank);
        this.cards.set(rank, card);
      }
      this.updateCard(card, run, run.memory.get(rank)!);
    }
    this.layoutCards(run, groups, multiNode);
    setText(
      this.note,
      'Bars: each category is its maximum during the step, so the segments can add up to more than the peak (they need not be live at the same time). Markers: the planner\u2019s prediction.',
    );
    return true;
  }

  /** A new run: every card, row, cell and node header is the old run's. */
  private reset(runId: string | null): void {
    for (const c of this.cards.values()) this.observer.unobserve(c.sparkCanvas);
    if (this.detailCard) this.observer.unobserve(this.detailCard.sparkCanvas);
    this.cards.clear();
    this.sections.clear();
    this.rows.clear();
    this.nodeRows.clear();
    this.cells.clear();
    this.hmNodes.clear();
    this.detailCard = null;
    this.selected = null;
    this.cardsLayout = this.tableOrder = this.heatmapLayout = '';
    this.grid.replaceChildren();
    this.tbody.replaceChildren();
    this.heatmap.replaceChildren();
    this.detail.hidden = true;
    this.shownRunId = runId;
  }

  /** Puts the cards in rank order, under one header per node in a multi-node run. DOM moves only when the layout changes. */
  private layoutCards(run: RunData, groups: NodeGroup[], multiNode: boolean): void {
    for (const g of multiNode ? groups : []) {
      let s = this.sections.get(g.key);
      if (!s) {
        const head = makeNodeHead(g.key);
        const cards = h('div', { class: 'node-cards' });
        s = { root: h('section', { class: 'node-group', 'data-node': g.key, 'aria-label': nodeName(g) }, head.root, cards), head, cards };
        this.sections.set(g.key, s);
      }
      updateNodeHead(s.head, g, run);
    }
    const layout = `${multiNode}|${groups.map((g) => `${g.key}:${g.ranks.join(',')}`).join(';')}`;
    if (layout === this.cardsLayout) return;
    this.cardsLayout = layout;
    this.grid.classList.toggle('by-node', multiNode);
    if (multiNode) {
      this.grid.replaceChildren(...groups.map((g) => this.sections.get(g.key)!.root));
      for (const g of groups) this.sections.get(g.key)!.cards.replaceChildren(...g.ranks.map((r) => this.cards.get(r)!.root));
    } else {
      this.grid.replaceChildren(
        ...groups
          .flatMap((g) => g.ranks)
          .sort((a, b) => a - b)
          .map((r) => this.cards.get(r)!.root),
      );
    }
  }

  /** Every rank as one cell coloured by its step peak's share of the device, a row per node. */
  private renderHeatmap(run: RunData, groups: NodeGroup[], multiNode: boolean): void {
    // The shade is relative (emptiest to fullest rank below the warning line), so a 3% difference between
    // ranks shows even beside one nearly full rank; the number and the warning/critical colours are absolute.
    let lo = Infinity;
    let hi = -Infinity;
    for (const mem of run.memory.values()) {
      const f = fractionOf(mem.latest);
      if (levelOf(f) !== 'ok') continue;
      lo = Math.min(lo, f);
      hi = Math.max(hi, f);
    }
    const spread = hi - lo;
    for (const g of groups) {
      let n = this.hmNodes.get(g.key);
      if (!n) {
        const label = h('div', { class: 'hm-label' });
        const cells = h('div', { class: 'hm-cells' });
        n = { root: h('div', { class: 'hm-node', 'data-node': g.key }, label, cells), label, cells };
        this.hmNodes.set(g.key, n);
      }
      n.label.hidden = !multiNode;
      setText(n.label, multiNode ? nodeName(g) : '');
      n.label.title = multiNode ? `${nodeName(g)}: ${rankList(g.ranks)}` : '';
      for (const rank of g.ranks) {
        let c = this.cells.get(rank);
        if (!c) {
          c = { root: h('button', { class: 'hm-cell level-ok', type: 'button', 'data-rank': rank }), level: 'ok' };
          this.cells.set(rank, c);
        }
        const mem = run.memory.get(rank)!;
        const m = mem.latest;
        const f = fractionOf(m);
        const level = levelOf(f);
        if (level !== c.level) {
          c.root.classList.replace(`level-${c.level}`, `level-${level}`);
          c.level = level;
        }
        c.root.dataset.node = g.key;
        c.root.classList.toggle('worst', rank === this.worst);
        c.root.classList.toggle('selected', rank === this.selected);
        c.root.setAttribute('aria-pressed', String(rank === this.selected));
        c.root.style.setProperty('--r', (spread > 1e-6 ? Math.min(1, Math.max(0, (f - lo) / spread)) : 1).toFixed(3));
        setText(c.root, String(Math.min(999, Math.round(f * 100))));
        const label = `rank ${rank}${multiNode ? ` on ${nodeName(g)}` : ''}: ${formatBytes(m.stepPeak)} of ${formatBytes(m.capacity)} (${formatPercent(f, 1)})${rank === this.worst ? ', the fullest rank' : ''}`;
        if (c.root.title !== label) {
          c.root.title = label;
          c.root.setAttribute('aria-label', label);
        }
      }
    }
    const layout = groups.map((g) => `${g.key}:${g.ranks.join(',')}`).join(';');
    if (layout === this.heatmapLayout) return;
    this.heatmapLayout = layout;
    this.heatmap.classList.toggle('by-node', multiNode);
    this.heatmap.replaceChildren(...groups.map((g) => this.hmNodes.get(g.key)!.root));
    for (const g of groups) this.hmNodes.get(g.key)!.cells.replaceChildren(...g.ranks.map((r) => this.cells.get(r)!.root));
  }

  /** One row per rank (under a row per node in a multi-node run), by rank or fullest first; rows are updated in place. */
  private renderTable(run: RunData, groups: NodeGroup[], multiNode: boolean): void {
    for (const s of ['rank', 'peak'] as const) {
      const th = this.sortButtons[s].parentElement!;
      th.setAttribute('aria-sort', this.sort === s ? (s === 'peak' ? 'descending' : 'ascending') : 'none');
      this.sortButtons[s].classList.toggle('active', this.sort === s);
    }
    const byFraction = (a: number, b: number) => fractionOf(run.memory.get(b)!.latest) - fractionOf(run.memory.get(a)!.latest) || a - b;
    const ordered = this.sort === 'peak' ? [...groups].sort((a, b) => b.worstFraction - a.worstFraction || (a.node?.rank ?? -1) - (b.node?.rank ?? -1)) : groups;
    const order: HTMLElement[] = [];
    let orderKey = '';
    for (const g of ordered) {
      if (multiNode) {
        let head = this.nodeRows.get(g.key);
        if (!head) {
          const text = h('th', { colspan: 9, scope: 'rowgroup' });
          head = { root: h('tr', { class: 'node-row level-ok', 'data-node': g.key }, text), text, level: 'ok' };
          this.nodeRows.set(g.key, head);
        }
        updateNodeHead(head, g, run);
        order.push(head.root);
        orderKey += `|${g.key}`;
      }
      const ranks = this.sort === 'peak' ? [...g.ranks].sort(byFraction) : g.ranks;
      for (const rank of ranks) {
        const row = this.rows.get(rank) ?? this.makeRow(rank);
        this.updateRow(row, run, rank, g.key);
        order.push(row.root);
        orderKey += `,${rank}`;
      }
    }
    if (orderKey !== this.tableOrder) {
      this.tableOrder = orderKey;
      this.tbody.replaceChildren(...order);
    }
  }

  private makeRow(rank: number): Row {
    const cell = (cls?: string) => h('td', cls ? { class: cls } : null);
    const device = cell();
    const peak = cell('num');
    const fraction = cell('num');
    const max = cell('num');
    const predicted = cell('num');
    const error = cell('num');
    const fillEl = h('div', { class: 'fill' });
    const gpu = cell('gpu');
    const root = h(
      'tr',
      { 'data-rank': rank, class: 'level-ok', tabindex: 0 },
      h('td', null, `r${rank}`),
      device,
      peak,
      fraction,
      max,
      predicted,
      error,
      h('td', { class: 'barcell' }, h('div', { class: 'mini-bar' }, fillEl)),
      gpu,
    );
    const row: Row = { root, device, peak, fraction, max, predicted, error, fill: fillEl, gpu, gpuKey: '', level: 'ok' };
    this.rows.set(rank, row);
    return row;
  }

  private updateRow(row: Row, run: RunData, rank: number, node: string): void {
    const mem = run.memory.get(rank)!;
    const m = mem.latest;
    const f = fractionOf(m);
    const level = levelOf(f);
    if (level !== row.level) {
      row.root.classList.replace(`level-${row.level}`, `level-${level}`);
      row.level = level;
    }
    row.root.dataset.node = node;
    row.root.classList.toggle('worst', rank === this.worst);
    row.root.classList.toggle('selected', rank === this.selected);
    const p = predictionFor(run, m);
    const small = 0.02 * (m.capacity > 0 ? m.capacity : m.stepPeak);
    row.device.title = m.device ?? '';
    setText(row.device, m.device ? shortDevice(m.device) : '—');
    setText(row.peak, formatBytes(m.stepPeak));
    setText(row.fraction, m.capacity > 0 ? `${formatPercent(f, f >= 0.75 ? 1 : undefined)} of ${formatBytes(m.capacity, 1)}` : '—');
    setText(row.max, formatBytes(mem.maxPeak));
    setText(row.predicted, p ? formatBytes(p.total) : '—');
    setText(row.error, p ? formatError(m.stepPeak, p.total, small) : '—');
    row.fill.style.width = `${Math.min(100, f * 100)}%`;
    const gpuKey = `${run.versions.gpu}|${m.device}|${node}`;
    if (gpuKey !== row.gpuKey) {
      row.gpuKey = gpuKey;
      const d = gpuFor(run, rank, m.device);
      setText(
        row.gpu,
        d
          ? `GPU ${d.index}${d.lost ? ' LOST' : ''} · ${d.utilPercent === null ? 'n/a' : `${Math.round(d.utilPercent)}%`} · ${d.temperatureC === null ? 'n/a' : `${Math.round(d.temperatureC)} °C`}`
          : '—',
      );
      row.gpu.title = d ? `${d.name}: used ${d.memoryUsed === null ? 'n/a' : formatBytes(d.memoryUsed)} of ${d.memoryTotal === null ? 'n/a' : formatBytes(d.memoryTotal)}` : '';
    }
  }

  /** The picked rank's full card (compact mode), kept up to date like the cards of a small run. */
  private renderDetail(run: RunData): void {
    const rank = this.selected;
    const mem = rank === null ? undefined : run.memory.get(rank);
    if (rank === null || !mem) {
      this.detail.hidden = true;
      if (this.detailCard) {
        this.observer.unobserve(this.detailCard.sparkCanvas);
        this.detailCard.root.remove();
        this.detailCard = null;
      }
      return;
    }
    if (this.detailCard?.rank !== rank) {
      if (this.detailCard) {
        this.observer.unobserve(this.detailCard.sparkCanvas);
        this.detailCard.root.remove();
      }
      this.detailCard = this.makeCard(rank);
      this.detail.append(this.detailCard.root);
    }
    this.detail.hidden = false;
    this.detail.dataset.rank = String(rank);
    setText(this.detailTitle, `Rank ${rank}${mem.node ? ` on ${mem.node.host} (node ${mem.node.rank})` : ''}`);
    this.updateCard(this.detailCard, run, mem);
  }

  private makeCard(rank: number): Card {
    const segments = new Map<DisplayCategory, HTMLElement>();
    const peakLine = h('div', { class: 'peak-line', title: 'step peak' });
    const capLine = h('div', { class: 'cap-line', title: 'device capacity' });
    const stack = h('div', { class: 'stack', role: 'img' });
    DISPLAY_CATEGORIES.forEach((cat, i) => {
      const seg = h('div', { class: `seg cat-${i}`, 'data-category': cat });
      segments.set(cat, seg);
      stack.append(seg);
    });
    stack.append(peakLine, capLine);
    const rows = new Map<DisplayCategory, { row: HTMLElement; measured: HTMLElement; bar: HTMLElement; marker: HTMLElement; predicted: HTMLElement; error: HTMLElement }>();
    const tbody = h('tbody');
    DISPLAY_CATEGORIES.forEach((cat, i) => {
      const measured = h('td', { class: 'num measured' });
      const bar = h('div', { class: `cat-bar cat-${i}` });
      const marker = h('div', { class: 'pred-marker', title: 'planner prediction' });
      const predicted = h('td', { class: 'num predicted' });
      const error = h('td', { class: 'num error' });
      const row = h(
        'tr',
        { 'data-category': cat },
        h('th', { scope: 'row' }, h('span', { class: `swatch cat-${i}` }), CATEGORY_LABEL[cat]),
        measured,
        h('td', { class: 'barcell' }, h('div', { class: 'cat-track' }, bar, marker)),
        predicted,
        error,
      );
      rows.set(cat, { row, measured, bar, marker, predicted, error });
      tbody.append(row);
    });
    const table = h(
      'table',
      { class: 'cats' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'category'),
          h('th', { scope: 'col', class: 'num' }, 'measured'),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'bar')),
          h('th', { scope: 'col', class: 'num' }, 'predicted'),
          h('th', { scope: 'col', class: 'num' }, 'error'),
        ),
      ),
      tbody,
    );
    const title = h('h3', null, `Rank ${rank}`);
    const scaleEnd = h('span', { class: 'cap' }, 'capacity');
    const usage = h('span', { class: 'usage' });
    const sparkCanvas = h('canvas', { class: 'spark', 'aria-hidden': 'true' });
    this.observer.observe(sparkCanvas);
    const sparkLabel = h('span', { class: 'spark-label muted' });
    const predictionNote = h('p', { class: 'muted small' });
    const gpu = h('div', { class: 'gpu-reading' });
    const root = h(
      'article',
      { class: 'mem-card level-ok', 'data-rank': rank, tabindex: 0 },
      h('header', null, title, usage),
      stack,
      h('div', { class: 'stack-scale muted small' }, h('span', null, '0'), scaleEnd),
      table,
      predictionNote,
      h('div', { class: 'spark-box' }, sparkCanvas, sparkLabel),
      gpu,
    );
    return {
      rank,
      root,
      title,
      usage,
      segments,
      peakLine,
      capLine,
      scaleEnd,
      stack,
      rows,
      sparkCanvas,
      sparkLabel,
      predictionNote,
      gpu,
      drawnVersion: -1,
      drawnWidth: 0,
      level: 'ok',
      gpuDevice: null,
      gpuKey: '',
    };
  }

  private updateCard(card: Card, run: RunData, mem: RankMemory): void {
    const m = mem.latest;
    const capacity = m.capacity;
    const fraction = capacity > 0 ? m.stepPeak / capacity : 0;
    const level = levelOf(fraction);
    if (level !== card.level) {
      card.root.classList.remove(`level-${card.level}`);
      card.root.classList.add(`level-${level}`);
      card.level = level;
    }
    setText(card.title, `Rank ${card.rank}${m.device ? ` · ${shortDevice(m.device)}` : ''}`);
    card.title.title = m.device ?? '';
    // One decimal near the thresholds, so 91.5% (warning) does not read as 92% (critical).
    setText(card.usage, `${formatBytes(m.stepPeak)} peak of ${formatBytes(capacity)} (${formatPercent(fraction, fraction >= 0.75 ? 1 : undefined)})`);
    const grouped = groupCategories(m.categories);
    // Scaled to the data: a run using 6% of its device gets a bar it can be read on, with the capacity
    // marked where it falls (or said to be off the scale); a nearly full device is drawn to its capacity.
    const used = Math.max(
      m.stepPeak,
      DISPLAY_CATEGORIES.reduce((a, c) => a + groupCategories(m.categories).bytes[c], 0),
    );
    const barScale = capacity > 0 && used >= 0.5 * capacity ? capacity : Math.max(1, used * 1.25);
    const pct = (b: number) => `${Math.min(100, (100 * b) / barScale)}%`;
    card.capLine.hidden = !(capacity > 0 && capacity <= barScale);
    card.capLine.style.left = pct(capacity);
    setText(card.scaleEnd, capacity > 0 && capacity > barScale ? `${formatBytes(barScale, 1)} · capacity ${formatBytes(capacity, 1)} off scale →` : `capacity ${formatBytes(capacity, 1)}`);
    let left = 0;
    for (const cat of DISPLAY_CATEGORIES) {
      const seg = card.segments.get(cat)!;
      const b = grouped.bytes[cat];
      seg.style.left = pct(left);
      seg.style.width = pct(Math.max(0, Math.min(b, barScale - left)));
      seg.title = `${cat}${grouped.parts[cat].length > 1 || (grouped.parts[cat][0] && grouped.parts[cat][0] !== cat) ? ` (${grouped.parts[cat].join(', ')})` : ''}: ${formatBytes(b)}`;
      left += b;
    }
    card.peakLine.style.left = pct(m.stepPeak);
    card.stack.setAttribute(
      'aria-label',
      `Rank ${card.rank}: step peak ${formatBytes(m.stepPeak)} of ${formatBytes(capacity)}, ${DISPLAY_CATEGORIES.map((c) => `${c} ${formatBytes(grouped.bytes[c])}`).join(', ')}`,
    );

    const prediction = predictionFor(run, m);
    const scale = Math.max(1, ...DISPLAY_CATEGORIES.map((c) => Math.max(grouped.bytes[c], prediction?.bytes[c] ?? 0)));
    /** Differences under 2% of the device (or of the peak when the capacity is unknown) are shown in bytes. */
    const small = 0.02 * (capacity > 0 ? capacity : m.stepPeak);
    for (const cat of DISPLAY_CATEGORIES) {
      const r = card.rows.get(cat)!;
      const measured = grouped.bytes[cat];
      const predicted = prediction ? prediction.bytes[cat] : null;
      r.row.hidden = measured === 0 && !predicted;
      setText(r.measured, formatBytes(measured));
      r.bar.style.width = `${(100 * measured) / scale}%`;
      r.marker.hidden = predicted === null;
      if (predicted !== null) r.marker.style.left = `${(100 * predicted) / scale}%`;
      setText(r.predicted, predicted === null ? '—' : formatBytes(predicted));
      setText(r.error, predicted === null ? '—' : formatError(measured, predicted, small));
      // Red only for an error that matters: more than 20% and more than the small-bytes threshold.
      r.error.classList.toggle('bad', predicted !== null && predicted > 0 && Math.abs(measured - predicted) >= small && Math.abs(measured - predicted) / predicted > 0.2);
      if (grouped.parts[cat].some((p) => p !== cat)) r.row.title = `measured: ${grouped.parts[cat].join(' + ')}`;
    }
    setText(
      card.predictionNote,
      prediction
        ? `Predicted peak ${formatBytes(prediction.total)} (${prediction.source === 'runtime' ? 'sent by the runtime' : prediction.source}); measured ${formatError(m.stepPeak, prediction.total, small)}.`
        : 'No prediction: the run sent no plan and the planner could not estimate its config.',
    );

    const width = this.sparkSize.get(card.sparkCanvas)?.w ?? 0;
    if (mem.version !== card.drawnVersion || width !== card.drawnWidth) {
      this.drawSpark(card, mem, capacity);
      card.drawnVersion = mem.version;
      card.drawnWidth = width;
    }
    setText(card.sparkLabel, `step peak since start · max ${formatBytes(mem.maxPeak)}`);

    const gpuKey = `${run.versions.gpu}|${m.device}`;
    if (gpuKey !== card.gpuKey) {
      card.gpuKey = gpuKey;
      card.gpuDevice = gpuFor(run, card.rank, m.device);
      this.renderGpu(card, card.gpuDevice, grouped.bytes, m.stepPeak);
    }
  }

  private drawSpark(card: Card, mem: RankMemory, capacity: number): void {
    const canvas = card.sparkCanvas;
    const size = this.sparkSize.get(canvas);
    const cssW = Math.floor(size?.w ?? 0);
    const cssH = Math.floor(size?.h ?? 0);
    if (!cssW || !cssH) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const n = mem.t.length;
    if (!n) return;
    // Scaled to the data (the capacity line drawn when within sight), so a small run is not a flat line.
    const top = capacity > 0 && mem.maxPeak >= 0.5 * capacity ? Math.max(capacity, mem.maxPeak) : Math.max(mem.maxPeak * 1.15, 1);
    const yOf = (b: number) => cssH - 2 - (Math.min(b, top) / top) * (cssH - 4);
    const xsData = mem.t.data;
    const t0 = xsData[0]!;
    const span = Math.max(1, xsData[n - 1]! - t0);
    const points = minMaxPerPixel(xsData, mem.peak.data, 0, n, Math.max(16, Math.floor(cssW)));
    const colour = card.level === 'critical' ? this.theme.error : card.level === 'warn' ? this.theme.warning : this.theme.series[0]!;
    ctx.strokeStyle = colour;
    ctx.lineWidth = this.theme.highContrast ? 2 : 1.25;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = ((p.x - t0) / span) * (cssW - 1);
      if (i === 0) ctx.moveTo(x, yOf(p.y));
      else ctx.lineTo(x, yOf(p.y));
    });
    if (points.length === 1) ctx.lineTo(cssW - 1, yOf(points[0]!.y));
    ctx.stroke();
    // Max since start, dashed; the capacity too when it is within sight.
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = this.theme.muted;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, yOf(mem.maxPeak));
    ctx.lineTo(cssW, yOf(mem.maxPeak));
    ctx.stroke();
    if (capacity > 0 && capacity <= top) {
      ctx.strokeStyle = this.theme.error;
      ctx.beginPath();
      ctx.moveTo(0, yOf(capacity));
      ctx.lineTo(cssW, yOf(capacity));
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  private renderGpu(card: Card, d: GpuDevice | null, bytes: Record<DisplayCategory, number>, stepPeak: number): void {
    if (!d) {
      if (card.gpu.childElementCount) card.gpu.replaceChildren();
      card.gpu.hidden = true;
      return;
    }
    card.gpu.hidden = false;
    const used = d.memoryUsed;
    const total = d.memoryTotal;
    const reserved = d.memoryReserved;
    const na = (v: number | null, f: (x: number) => string) => (v === null ? 'n/a' : f(v));
    const proc = d.processes.find((p) => p.rank === card.rank);
    const tensors = Object.values(bytes).reduce((a, b) => a + b, 0);
    const gapBase = proc?.memory ?? null;
    const line1 = `GPU ${d.index} · ${d.name}${d.lost ? ' · LOST' : ''}`;
    const line2 = `used ${na(used, (v) => formatBytes(v))} of ${na(total, (v) => formatBytes(v))} (reserved ${na(reserved, (v) => formatBytes(v))}) · util ${na(d.utilPercent, (v) => `${Math.round(v)}%`)} · ${na(d.temperatureC, (v) => `${Math.round(v)} °C`)} · ${na(d.powerW, (v) => `${Math.round(v)} W`)}${d.powerLimitW !== null ? ` / ${Math.round(d.powerLimitW)} W` : ''}`;
    const gap =
      gapBase !== null
        ? `this rank's process holds ${formatBytes(gapBase)}: ${formatBytes(Math.max(0, gapBase - stepPeak))} beyond the step peak (CUDA context, allocator cache, fragmentation)`
        : `tensors ${formatBytes(tensors)}`;
    const procs = h('ul', { class: 'procs' });
    for (const p of [...d.processes].sort((a, b) => (b.memory ?? 0) - (a.memory ?? 0)).slice(0, 8)) {
      procs.append(h('li', null, `pid ${p.pid}${p.rank !== undefined ? ` · rank ${p.rank}` : ''}${p.name ? ` · ${p.name}` : ''} · ${p.memory === null ? 'n/a' : formatBytes(p.memory)}`));
    }
    const usedFraction = used !== null && total ? used / (total - (reserved ?? 0)) : null;
    const bar = h('div', { class: 'gpu-bar' }, h('div', { class: 'fill' }));
    if (usedFraction !== null) (bar.firstChild as HTMLElement).style.width = `${Math.min(100, usedFraction * 100)}%`;
    fill(
      card.gpu,
      h('div', { class: 'gpu-title' }, line1),
      bar,
      h('div', { class: 'small' }, line2),
      h('div', { class: 'small muted' }, gap),
      d.processes.length ? procs : h('div', { class: 'small muted' }, 'no compute processes reported'),
    );
  }

  inspect(run: RunData | null): MemoryPanelInspection[] {
    if (!run) return [];
    return [...run.memory.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([rank, mem]) => {
        const m = mem.latest;
        const p = predictionFor(run, m);
        const card = this.cards.get(rank);
        const d = card?.gpuDevice ?? gpuFor(run, rank, m.device);
        return {
          rank,
          device: m.device ?? null,
          capacity: m.capacity,
          stepPeak: m.stepPeak,
          maxPeak: mem.maxPeak,
          level: levelOf(m.capacity > 0 ? m.stepPeak / m.capacity : 0),
          measured: groupCategories(m.categories).bytes,
          predicted: p ? p.bytes : null,
          predictionSource: p?.source ?? null,
          historyPoints: mem.t.length,
          gpu: d ? { name: d.name, memoryUsed: d.memoryUsed, memoryTotal: d.memoryTotal, utilPercent: d.utilPercent } : null,
          node: mem.node ? { rank: mem.node.rank, host: mem.node.host } : null,
        };
      });
  }

  /** How the panel is laid out, read from what it drew (the DOM it owns), for tests and probes. */
  inspectLayout(): MemoryLayoutInspection {
    const ranksIn = (el: Element, selector: string) => Array.from(el.querySelectorAll(selector)).map((e) => Number((e as HTMLElement).dataset.rank));
    const compact = !this.compactBox.hidden;
    const mode = !this.empty.hidden ? 'empty' : compact ? 'compact' : 'cards';
    let groups: MemoryLayoutInspection['groups'] = [];
    if (mode === 'cards' && this.grid.classList.contains('by-node')) {
      groups = Array.from(this.grid.querySelectorAll(':scope > .node-group')).map((s) => ({
        key: (s as HTMLElement).dataset.node ?? '',
        header: (s.querySelector('.node-head')?.textContent ?? '').trim(),
        ranks: ranksIn(s, '.mem-card'),
      }));
    } else if (mode === 'compact') {
      // The table as drawn: each node row followed by its ranks' rows.
      for (const tr of Array.from(this.tbody.children) as HTMLElement[]) {
        if (tr.classList.contains('node-row')) groups.push({ key: tr.dataset.node ?? '', header: (tr.textContent ?? '').trim(), ranks: [] });
        else if (groups.length) groups[groups.length - 1]!.ranks.push(Number(tr.dataset.rank));
      }
    }
    return {
      mode,
      groups,
      cards: ranksIn(this.grid, '.mem-card'),
      rows: compact ? ranksIn(this.tbody, 'tr[data-rank]') : [],
      heatmap: compact
        ? Array.from(this.heatmap.querySelectorAll('.hm-node')).map((n) => ({
            key: (n as HTMLElement).dataset.node ?? '',
            label: n.querySelector('.hm-label')?.textContent ?? '',
            ranks: ranksIn(n, '.hm-cell'),
          }))
        : [],
      worst: compact ? this.worst : null,
      selected: compact && !this.detail.hidden ? this.selected : null,
      detail: compact && !this.detail.hidden ? (this.detailTitle.textContent ?? '') : null,
      sort: this.sort,
    };
  }
}

/** The rank whose step peak is the largest share of its device (the lowest rank among equals). */
function worstRank(run: RunData): number | null {
  let worst: number | null = null;
  let most = -1;
  for (const [rank, mem] of run.memory) {
    const f = fractionOf(mem.latest);
    if (f > most || (f === most && worst !== null && rank < worst)) {
      most = f;
      worst = rank;
    }
  }
  return worst;
}

/** "host-3 · node 3", or "this machine" for the coordinator's own ranks (no node info) in a multi-node run. */
function nodeName(g: NodeGroup): string {
  return g.node ? `${g.node.host} · node ${g.node.rank}` : 'this machine';
}

/** [0,1,2,3,8,9] -> "ranks 0–3, 8–9" */
export function rankList(ranks: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ranks.length;) {
    let j = i;
    while (j + 1 < ranks.length && ranks[j + 1] === ranks[j]! + 1) j++;
    parts.push(j > i ? `${ranks[i]}–${ranks[j]}` : String(ranks[i]));
    i = j + 1;
  }
  return `rank${ranks.length === 1 ? '' : 's'} ${parts.join(', ')}`;
}

function makeNodeHead(key: string): NodeHead {
  const text = h('span', null);
  return { root: h('header', { class: 'node-head level-ok', 'data-node': key }, text), text, level: 'ok' };
}

/** A node's one-line summary: name, ranks, its fullest rank, its ranks' peaks over their capacity, its GPUs. */
function updateNodeHead(head: NodeHead, g: NodeGroup, run: RunData): void {
  const level = levelOf(g.worstFraction);
  if (level !== head.level) {
    head.root.classList.replace(`level-${head.level}`, `level-${level}`);
    head.level = level;
  }
  const parts = [nodeName(g), `${rankList(g.ranks)} (${g.ranks.length})`];
  if (g.worstRank !== null) parts.push(`fullest r${g.worstRank} ${formatPercent(g.worstFraction, g.worstFraction >= 0.75 ? 1 : undefined)}`);
  if (g.capacity > 0) parts.push(`peaks ${formatBytes(g.peak, 1)} of ${formatBytes(g.capacity, 1)}`);
  const gpus = g.gpus;
  if (gpus.length) {
    const names = [...new Set(gpus.map((d) => d.name))].join(', ');
    const util = gpus.filter((d) => d.utilPercent !== null);
    const lost = gpus.filter((d) => d.lost).length;
    parts.push(`${gpus.length} × ${names}${util.length ? `, util ${Math.round(util.reduce((a, d) => a + d.utilPercent!, 0) / util.length)}%` : ''}${lost ? `, ${lost} LOST` : ''}`);
  } else if (run.gpu) parts.push('no GPU sample from this node');
  setText(head.text, parts.join(' · '));
}

/** "GPU-5f1c0a00-0000-…" -> "GPU-5f1c0a00…"; "cpu:0" stays. */
export function shortDevice(device: string): string {
  return device.length > 16 ? `${device.slice(0, 12)}…` : device;
}

/** The GPU a rank runs on: by UUID from the memory message, else the device that lists the rank. */
export function gpuFor(run: RunData, rank: number, device: string | undefined): GpuDevice | null {
  // Device indices and the ranks a sampler lists are its own machine's: look on the rank's node.
  const devices = run.gpusOf(rank);
  if (!devices.length) return null;
  return devices.find((d) => device !== undefined && d.uuid === device) ?? devices.find((d) => d.ranks?.includes(rank) || d.processes.some((p) => p.rank === rank)) ?? null;
}

/** Time until full at the current trend, for the out-of-memory warning (from the alert when it has one). */
export function describeTimeToFull(seconds: number | undefined): string {
  return seconds === undefined ? '' : ` — full in about ${formatDuration(seconds * 1000)} at the current trend`;
}
