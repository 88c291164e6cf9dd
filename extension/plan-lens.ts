// The CodeLens above a config: "≈ 23.4 GiB / device peak · fits 8 × H100-SXM · 41k tokens/s · as nvidia-smi
// shows it (PyTorch allocates 21.2 GiB)", plus
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
export async function planLensTitle(doc: vscode.TextDocument): Promise<string> {
  const { parsed, fit, skipped } = await analyseConfig(doc);
  if (!parsed.ok) return `ScaleLM: ${parsed.errors.length} problem${parsed.errors.length === 1 ? '' : 's'} in this config`;
  if (skipped) return `ScaleLM: no estimate — ${skipped}`;
  if (!fit || !fit.result.ok) return `ScaleLM: cannot estimate this layout${fit && !fit.result.ok ? ` — ${fit.result.issues[0]!.message}` : ''}`;
  const { result, target } = fit;
  const f = result.memory.figures;
  const peak = `≈ ${formatBytes(result.memory.perDevice.total, 1)} / device peak`;
  // Say which figure it is: nvidia-smi's device memory, with PyTorch's allocated peak beside it.
  const which = f ? ` · as nvidia-smi shows it (PyTorch allocates ${formatBytes(f.allocated, 1)})` : '';
  const verdict = result.fits ? `fits ${target.label}` : `does not fit ${target.label} (${formatBytes(target.capacity, 1)} usable)`;
  // The step-time model describes GPUs; for a local CPU run it would be a fiction, so it is left out there.
  const speed = target.kind === 'cluster' ? ` · ${formatRate(result.time.tokensPerSec)} tokens/s` : '';
  return `${peak} · ${verdict}${speed}${which}`;
}

export class PlanLensProvider implements vscode.CodeLensProvider {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;

  refresh(): void {
    this.changed.fire();
  }

  // Async: the estimate comes from the planner worker; the host renders the lens when it answers.
  async provideCodeLenses(doc: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    const top = new vscode.Range(0, 0, 0, 0);
    const title = await planLensTitle(doc);
    // A config the local runtime cannot train gets no Launch action, but a greyed line that says why (a lens
    // without a command is drawn as plain text), like the disabled menu items.
    const { localProblem } = await analyseConfig(doc);
    const launch: vscode.Command = localProblem
      ? { title: '$(circle-slash) Launch Training: not on this machine', command: '', tooltip: `The local runtime cannot train it — ${localProblem}` }
      : { title: '$(play) Launch Training', command: 'scalelm.launchTraining', arguments: [doc.uri] };
    return [
      new vscode.CodeLens(top, { title, command: 'scalelm.suggestLayouts', arguments: [doc.uri], tooltip: 'Memory per device by the ScaleLM planner — click to search layouts' }),
      new vscode.CodeLens(top, launch),
    ];
  }
}
