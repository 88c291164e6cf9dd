// The CodeLens above a config: "≈ 23.4 GiB / device peak · fits 8 × H100-SXM · 41k tokens/s", plus
// Launch and Suggest actions. Computed from the shared per-version analysis.
import * as vscode from 'vscode';
import { formatBytes } from '../common/units';
import { analyseConfig } from './config-analysis';

export function formatRate(tokensPerSec: number): string {
  if (tokensPerSec >= 1e6) return `${(tokensPerSec / 1e6).toFixed(1)}M`;
  if (tokensPerSec >= 1e3) return `${Math.round(tokensPerSec / 1e3)}k`;
  return `${Math.round(tokensPerSec)}`;
}

/** The lens title for a document, or a reason the estimate cannot be shown. */
export function planLensTitle(doc: vscode.TextDocument): string {
  const { parsed, fit } = analyseConfig(doc);
  if (!parsed.ok) return `ScaleLM: ${parsed.errors.length} problem${parsed.errors.length === 1 ? '' : 's'} in this config`;
  if (!fit || !fit.result.ok) return `ScaleLM: cannot estimate this layout${fit && !fit.result.ok ? ` — ${fit.result.issues[0]!.message}` : ''}`;
  const { result, target } = fit;
  const f = result.memory.figures;
  // Say which figure it is: nvidia-smi's device memory, with PyTorch's allocated peak beside it.
  const peak = f
    ? `≈ ${formatBytes(f.device, 1)} / device peak (nvidia-smi; ${formatBytes(f.allocated, 1)} allocated by PyTorch)`
    : `≈ ${formatBytes(result.memory.perDevice.total, 1)} / device peak`;
  const verdict = result.fits ? `fits ${target.label}` : `does not fit ${target.label} (${formatBytes(target.capacity, 1)} usable)`;
  // The step-time model describes GPUs; for a local CPU run it would be a fiction, so it is left out there.
  const speed = target.kind === 'cluster' ? ` · ${formatRate(result.time.tokensPerSec)} tokens/s` : '';
  return `${peak} · ${verdict}${speed}`;
}

export class PlanLensProvider implements vscode.CodeLensProvider {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;

  refresh(): void {
    this.changed.fire();
  }

  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    const top = new vscode.Range(0, 0, 0, 0);
    return [
      new vscode.CodeLens(top, { title: planLensTitle(doc), command: 'scalelm.suggestLayouts', arguments: [doc.uri], tooltip: 'Memory per device by the ScaleLM planner — click to search layouts' }),
      new vscode.CodeLens(top, { title: '$(play) Launch Training', command: 'scalelm.launchTraining', arguments: [doc.uri] }),
    ];
  }
}
