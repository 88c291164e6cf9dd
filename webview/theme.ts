// Chart colours come from VS Code's theme variables (or the browser theme's, media/dashboard.css), re-read
// when the theme changes: VS Code swaps the body's class (vscode-light / vscode-dark / vscode-high-contrast
// / vscode-high-contrast-light) and rewrites the variables on <html>; a browser flips prefers-color-scheme.

export interface ChartTheme {
  kind: 'light' | 'dark' | 'high-contrast' | 'high-contrast-light';
  foreground: string;
  muted: string;
  background: string;
  grid: string;
  series: string[];
  error: string;
  warning: string;
  ok: string;
  /** Colour per memory category, in DISPLAY_CATEGORIES order. */
  categories: string[];
  /** Thicker lines and no faint raw series in high contrast. */
  highContrast: boolean;
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}

function kindOf(): ChartTheme['kind'] {
  const cls = document.body.classList;
  if (cls.contains('vscode-high-contrast-light')) return 'high-contrast-light';
  if (cls.contains('vscode-high-contrast')) return 'high-contrast';
  if (cls.contains('vscode-light')) return 'light';
  if (cls.contains('vscode-dark')) return 'dark';
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

export function readTheme(): ChartTheme {
  const kind = kindOf();
  const highContrast = kind === 'high-contrast' || kind === 'high-contrast-light';
  const series = [
    cssVar('--vscode-charts-blue', '#3794ff'),
    cssVar('--vscode-charts-orange', '#d18616'),
    cssVar('--vscode-charts-green', '#89d185'),
    cssVar('--vscode-charts-purple', '#b180d7'),
    cssVar('--vscode-charts-red', '#f14c4c'),
    cssVar('--vscode-charts-yellow', '#cca700'),
  ];
  return {
    kind,
    highContrast,
    foreground: cssVar('--vscode-charts-foreground', cssVar('--vscode-foreground', '#333')),
    muted: cssVar('--vscode-descriptionForeground', '#888'),
    background: cssVar('--vscode-editor-background', '#fff'),
    grid: highContrast ? cssVar('--vscode-contrastBorder', '#6fc3df') : cssVar('--vscode-charts-lines', cssVar('--vscode-editorWidget-border', 'rgba(128,128,128,0.3)')),
    series,
    error: cssVar('--vscode-errorForeground', '#f14c4c'),
    warning: cssVar('--vscode-editorWarning-foreground', '#cca700'),
    ok: cssVar('--vscode-charts-green', '#89d185'),
    categories: [series[0]!, series[1]!, series[3]!, series[2]!, series[5]!, cssVar('--vscode-descriptionForeground', '#888')],
  };
}

/** A colour with an alpha, for the faint raw series under a smoothed one. */
export function withAlpha(colour: string, alpha: number): string {
  const c = colour.trim();
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(c);
  if (hex) {
    let h = hex[1]!;
    if (h.length === 3)
      h = h
        .split('')
        .map((x) => x + x)
        .join('');
    const r = parseInt(h.slice(0, 2), 16);
    const g = parseInt(h.slice(2, 4), 16);
    const b = parseInt(h.slice(4, 6), 16);
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }
  const rgb = /^rgba?\(([^)]+)\)$/i.exec(c);
  if (rgb) {
    const [r, g, b] = rgb[1]!.split(',').map((s) => s.trim());
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }
  return c;
}

export function onThemeChange(callback: () => void): void {
  let pending = false;
  const fire = (): void => {
    if (pending) return;
    pending = true;
    // VS Code changes the class and the variables in separate mutations: read once both have landed.
    requestAnimationFrame(() => {
      pending = false;
      callback();
    });
  };
  new MutationObserver(fire).observe(document.body, { attributes: true, attributeFilter: ['class', 'data-vscode-theme-kind'] });
  new MutationObserver(fire).observe(document.documentElement, { attributes: true, attributeFilter: ['style', 'class'] });
  window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', fire);
}
