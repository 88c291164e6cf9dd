// The dashboard webview panel: one per window, revived after reload by its serializer. The host keeps the
// authoritative data and forwards it with postMessage; the webview never opens a socket itself.
import * as vscode from 'vscode';
import { dashboardHtml, makeNonce } from '../webview/html';
import { validateWebviewMessage, type HostRequest, type HostRequests, type HostToWebview, type Viewport, type WebviewToHost } from '../webview/messages';

export const DASHBOARD_VIEW_TYPE = 'scalelm.dashboard';

/**
 * The smallest dashboard that reads well: below 720 px its views fold to one column (media/dashboard.css) and
 * the charts shrink to slivers; below 480 px high only the header and a strip of chart fit.
 */
export const READABLE: Viewport = { width: 720, height: 480 };

type Reply = HostRequests[keyof HostRequests];

export class DashboardPanel implements vscode.Disposable {
  private static current: DashboardPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly pending = new Map<number, (reply: Reply | undefined) => void>();
  private nextId = 1;
  /** Set on a panel that show() just made: its first ready says whether it came out big enough. */
  private fitOnReady = false;
  private ready: Promise<void>;
  private markReady!: () => void;
  private readonly readyEmitter = new vscode.EventEmitter<void>();
  /** Fires each time the webview (re)loads and says it is ready. */
  readonly onReady = this.readyEmitter.event;
  private readonly messageEmitter = new vscode.EventEmitter<WebviewToHost>();
  /** The page's requests (select/compare a run, control, choose a layout...), validated. */
  readonly onMessage = this.messageEmitter.event;

  static show(context: vscode.ExtensionContext, log: vscode.LogOutputChannel): DashboardPanel {
    if (DashboardPanel.current) {
      DashboardPanel.current.panel.reveal(undefined, true);
      return DashboardPanel.current;
    }
    // Where there is room: its own editor group beside the open editor; the whole editor area when nothing
    // is open. VS Code does not tell an extension the window's size, so the page measures itself when it
    // loads, and a dashboard that came out too small to read is maximised then (makeRoom).
    const editorOpen = vscode.window.visibleTextEditors.length > 0;
    const panel = vscode.window.createWebviewPanel(
      DASHBOARD_VIEW_TYPE,
      'ScaleLM Dashboard',
      { viewColumn: editorOpen ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active, preserveFocus: editorOpen },
      DashboardPanel.options(context),
    );
    DashboardPanel.current = new DashboardPanel(panel, context, log);
    DashboardPanel.current.fitOnReady = true;
    return DashboardPanel.current;
  }

  static revive(panel: vscode.WebviewPanel, context: vscode.ExtensionContext, log: vscode.LogOutputChannel): void {
    panel.webview.options = DashboardPanel.options(context);
    DashboardPanel.current?.dispose();
    DashboardPanel.current = new DashboardPanel(panel, context, log);
  }

  static get instance(): DashboardPanel | undefined {
    return DashboardPanel.current;
  }

  private static options(context: vscode.ExtensionContext): vscode.WebviewOptions & vscode.WebviewPanelOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: false,
      localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'dist'), vscode.Uri.joinPath(context.extensionUri, 'media')],
    };
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    context: vscode.ExtensionContext,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    const webview = panel.webview;
    webview.html = dashboardHtml({
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(context.extensionUri, 'dist', 'webview.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(context.extensionUri, 'media', 'dashboard.css')).toString(),
      cspSource: webview.cspSource,
      nonce: makeNonce(),
      title: 'ScaleLM Dashboard',
    });
    webview.onDidReceiveMessage((m: unknown) => this.receive(m), undefined, this.disposables);
    // A hidden webview's page is discarded (retainContextWhenHidden is off) and loads again when shown:
    // requests wait for that page's ready instead of going to one that is not listening yet.
    panel.onDidChangeViewState(
      (e) => {
        if (!e.webviewPanel.visible) this.ready = new Promise((resolve) => (this.markReady = resolve));
      },
      undefined,
      this.disposables,
    );
    panel.onDidDispose(() => this.dispose(), undefined, this.disposables);
  }

  private receive(raw: unknown): void {
    const checked = validateWebviewMessage(raw);
    if (!checked.ok) {
      this.log.warn(`dashboard sent an invalid message, ignored: ${checked.reason}`);
      return;
    }
    const message = checked.value;
    if (message.type === 'ready') {
      this.log.info(`dashboard ready${message.viewport ? ` (${message.viewport.width}×${message.viewport.height} px)` : ''}`);
      if (this.fitOnReady && message.viewport) {
        this.fitOnReady = false;
        void this.makeRoom(message.viewport).catch((e: unknown) => this.log.warn(`could not maximise the dashboard: ${String(e)}`));
      }
      this.markReady();
      this.readyEmitter.fire();
      return;
    }
    if ((message.type === 'pong' || message.type === 'inspectResult') && typeof message.id === 'number') {
      const resolve = this.pending.get(message.id);
      this.pending.delete(message.id);
      resolve?.(message);
      return;
    }
    this.messageEmitter.fire(message);
  }

  /**
   * A dashboard opened too small to read (a narrow window split in two, a tall bottom panel) takes the room:
   * too narrow, its editor group is maximised and the side bars hidden (View: Maximize Editor Group and Hide
   * Side Bars; the group's restore button or Ctrl+K Ctrl+M undoes it); too short, the bottom panel closes.
   */
  private async makeRoom(viewport: Viewport): Promise<void> {
    const narrow = viewport.width < READABLE.width;
    const short = viewport.height < READABLE.height;
    if (!narrow && !short) return;
    this.log.info(
      `the dashboard opened at ${viewport.width}×${viewport.height} px, under the ${READABLE.width}×${READABLE.height} it needs: ${[narrow && 'maximising its editor group', short && 'closing the bottom panel'].filter(Boolean).join(' and ')}`,
    );
    // The maximise command acts on the active editor: make the dashboard that first.
    if (!this.panel.active) {
      const activated = new Promise<void>((resolve) => {
        const sub = this.panel.onDidChangeViewState((e) => {
          if (!e.webviewPanel.active) return;
          sub.dispose();
          resolve();
        });
        setTimeout(() => {
          sub.dispose();
          resolve();
        }, 5000);
      });
      this.panel.reveal(this.panel.viewColumn, false);
      await activated;
    }
    if (narrow) await vscode.commands.executeCommand('workbench.action.maximizeEditorHideSidebar');
    if (short) await vscode.commands.executeCommand('workbench.action.closePanel');
  }

  /** Sends a message that the webview answers (it echoes `id`), once the webview has said it is ready. */
  async request<K extends keyof HostRequests>(message: HostRequest<K>, timeoutMs = 15000): Promise<HostRequests[K]> {
    await this.ready;
    const id = this.nextId++;
    return new Promise<HostRequests[K]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the dashboard did not answer "${message.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        // The answer to this id is the reply type its request declares (webview/messages.ts HostRequests).
        if (!reply) reject(new Error(`the dashboard closed before it answered "${message.type}"`));
        else if (reply.type === ({ ping: 'pong', inspect: 'inspectResult' } as const)[message.type]) resolve(reply as HostRequests[K]);
        else reject(new Error(`the dashboard answered "${message.type}" with "${reply.type}"`));
      });
      void this.panel.webview.postMessage({ ...message, id });
    });
  }

  post(message: HostToWebview): Thenable<boolean> {
    return this.panel.webview.postMessage(message);
  }

  dispose(): void {
    if (DashboardPanel.current === this) DashboardPanel.current = undefined;
    for (const answer of this.pending.values()) answer(undefined);
    this.pending.clear();
    this.readyEmitter.dispose();
    this.messageEmitter.dispose();
    this.panel.dispose();
    while (this.disposables.length) this.disposables.pop()?.dispose();
  }
}
