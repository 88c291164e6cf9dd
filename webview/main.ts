// The dashboard page. One bundle for two hosts: inside VS Code it receives messages by postMessage from the
// extension host; in a plain browser (served by `scalelm serve` / `scalelm train`) browser-host.ts connects
// to the runtime's WebSocket and speaks the same messages. See webview/messages.ts for the contract.
import { browserHost } from './browser-host';
import { Dashboard } from './dashboard';
import { detachedHost, vscodeHost, type DashboardHost } from './host';

const host: DashboardHost = vscodeHost() ?? browserHost() ?? detachedHost();
const app = document.getElementById('app')!;
const dashboard = new Dashboard(host, app);
host.onMessage((message) => dashboard.handle(message));

// For tests and the bench in a plain page (VS Code reaches the same through the 'inspect' message).
(window as unknown as { scalelmDashboard: { inspect: () => unknown; flush: (force?: boolean, complete?: boolean) => boolean } }).scalelmDashboard = {
  inspect: () => {
    dashboard.flush(false, true);
    return dashboard.inspect();
  },
  /** Runs the pending redraw now, as the next animation frame would (force: redraw everything, as after a
   *  zoom); true when charts are left for the following frame. */
  flush: (force = false, complete = false) => dashboard.flush(force, complete),
};

host.post({ type: 'ready', viewport: { width: window.innerWidth, height: window.innerHeight } });
