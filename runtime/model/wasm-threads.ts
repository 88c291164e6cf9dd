// wasm multithreading in Node. tfjs switches it off there (tfjs#3830) because Emscripten starts its pthread
// workers from blob: URLs, which Node's Worker cannot load, and hands them the main script as a Blob to
// importScripts(). This shim turns the flag on and wraps the global Worker the Emscripten runtime uses: a
// worker asked for a blob: URL starts from a small bootstrap that receives the script text, and the main
// script Blob becomes a temporary file with the few helpers the bundled factory refers to.
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveObjectURL } from 'node:buffer';
import { Worker as NodeWorker, type WorkerOptions } from 'node:worker_threads';

const BOOT = `const { parentPort } = require('worker_threads');
globalThis.require = require;
parentPort.once('message', (m) => { (0, eval)(m.scalelmWorkerScript); });`;

// The factory was compiled with TypeScript's downlevel helpers and Rollup's commonjsGlobal in scope.
const PRELUDE = `var commonjsGlobal = globalThis;
var __values = function (o) { var s = typeof Symbol === 'function' && Symbol.iterator, m = s && o[s], i = 0; if (m) return m.call(o); if (o && typeof o.length === 'number') return { next: function () { if (o && i >= o.length) o = void 0; return { value: o && o[i++], done: !o }; } }; throw new TypeError('not iterable'); };
var __read = function (o, n) { var m = typeof Symbol === 'function' && o[Symbol.iterator]; if (!m) return o; var i = m.call(o), r, ar = [], e; try { while ((n === void 0 || n-- > 0) && !(r = i.next()).done) ar.push(r.value); } catch (error) { e = { error: error }; } finally { try { if (r && !r.done && (m = i['return'])) m.call(i); } finally { if (e) throw e.error; } } return ar; };
var __spreadArray = function (to, from, pack) { if (pack || arguments.length === 2) for (var i = 0, l = from.length, ar; i < l; i++) { if (ar || !(i in from)) { if (!ar) ar = Array.prototype.slice.call(from, 0, i); ar[i] = from[i]; } } return to.concat(ar || Array.prototype.slice.call(from)); };
`;

let installed = false;

/** Makes the next wasm backend start use threads in Node. Returns a note for the backend report. */
export function enableWasmThreadsInNode(): string {
  if (installed) return 'wasm threads via ScaleLM\'s Node worker shim';
  installed = true;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  let Base: typeof NodeWorker = NodeWorker;

  class BlobWorker extends NodeWorker {
    private ready: Promise<void> = Promise.resolve();
    constructor(url: string | URL, options?: WorkerOptions) {
      const blobUrl = typeof url === 'string' && url.startsWith('blob:') ? url : undefined;
      if (!blobUrl) {
        super(url, options);
        return;
      }
      super(BOOT, { ...options, eval: true });
      const blob = resolveObjectURL(blobUrl);
      if (!blob) throw new Error(`wasm threads: cannot resolve ${blobUrl}`);
      this.ready = blob.text().then((text) => NodeWorker.prototype.postMessage.call(this, { scalelmWorkerScript: text }));
    }

    override postMessage(message: unknown, transfer?: Parameters<NodeWorker['postMessage']>[1]): void {
      const send = async (): Promise<void> => {
        let m = message as { cmd?: string; urlOrBlob?: unknown };
        if (m && m.cmd === 'load' && m.urlOrBlob instanceof Blob) m = { ...m, urlOrBlob: await mainScriptFile(m.urlOrBlob) };
        NodeWorker.prototype.postMessage.call(this, m, transfer as never);
      };
      // Keep the order Emscripten posted in, behind the asynchronous script hand-over.
      this.ready = this.ready.then(send);
      this.ready.catch((e) => this.emit('error', e));
    }
  }

  Object.defineProperty(globalThis, 'Worker', {
    configurable: true,
    get: () => (Base === NodeWorker ? BlobWorker : Base),
    // Emscripten assigns worker_threads.Worker here when its module starts; keep ours in its place.
    set: (v: typeof NodeWorker) => {
      Base = v;
    },
  });
  return 'wasm threads via ScaleLM\'s Node worker shim';
}

async function mainScriptFile(blob: Blob): Promise<string> {
  const text = PRELUDE + (await blob.text());
  const dir = join(tmpdir(), 'scalelm-wasm');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `threaded-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.js`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  return file;
}
