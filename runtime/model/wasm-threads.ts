// wasm multithreading in Node. tfjs switches it off there (tfjs#3830) because Emscripten starts its pthread
// workers from blob: URLs, which Node's Worker cannot load, and hands them the main script as a Blob to
// importScripts(). This shim turns the flag on, remembers the text of the Blobs tfjs builds (Node cannot
// read a Blob synchronously, and Emscripten's main thread blocks in Atomics.wait while its workers start,
// so everything here must be synchronous), starts such workers from that text, and turns the main-script
// Blob into a temporary file that begins with the few bundle-scope names the factory refers to.
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker as NodeWorker, type WorkerOptions } from 'node:worker_threads';

// The factory was compiled with TypeScript's downlevel helpers, Rollup's commonjsGlobal and the bundle's
// hoisted requires in scope.
const PRELUDE = `var commonjsGlobal = globalThis;
var require$$0 = require('fs'), require$$1 = require('path'), require$$3 = require('perf_hooks'), require$$4 = require('os');
var __values = function (o) { var s = typeof Symbol === 'function' && Symbol.iterator, m = s && o[s], i = 0; if (m) return m.call(o); if (o && typeof o.length === 'number') return { next: function () { if (o && i >= o.length) o = void 0; return { value: o && o[i++], done: !o }; } }; throw new TypeError('not iterable'); };
var __read = function (o, n) { var m = typeof Symbol === 'function' && o[Symbol.iterator]; if (!m) return o; var i = m.call(o), r, ar = [], e; try { while ((n === void 0 || n-- > 0) && !(r = i.next()).done) ar.push(r.value); } catch (error) { e = { error: error }; } finally { try { if (r && !r.done && (m = i['return'])) m.call(i); } finally { if (e) throw e.error; } } return ar; };
var __spreadArray = function (to, from, pack) { if (pack || arguments.length === 2) for (var i = 0, l = from.length, ar; i < l; i++) { if (ar || !(i in from)) { if (!ar) ar = Array.prototype.slice.call(from, 0, i); ar[i] = from[i]; } } return to.concat(ar || Array.prototype.slice.call(from)); };
`;

const NOTE = "wasm threads via ScaleLM's Node worker shim";
let installed = false;

/** Makes the next wasm backend start use threads in Node. Returns a note for the backend report. */
export function enableWasmThreadsInNode(): string {
  if (installed) return NOTE;
  installed = true;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);

  const blobTexts = new WeakMap<Blob, string>();
  const urlTexts = new Map<string, string>();
  const BaseBlob = globalThis.Blob;
  class RecordingBlob extends BaseBlob {
    constructor(parts?: BlobPart[], options?: BlobPropertyBag) {
      super(parts, options);
      if (parts && parts.every((p) => typeof p === 'string')) blobTexts.set(this, (parts as string[]).join(''));
    }
  }
  globalThis.Blob = RecordingBlob as typeof Blob;
  const createObjectURL = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (obj: Blob) => {
    const url = createObjectURL(obj);
    const text = blobTexts.get(obj);
    if (text !== undefined) urlTexts.set(url, text);
    return url;
  };

  let Base: typeof NodeWorker = NodeWorker;
  class BlobWorker extends NodeWorker {
    private pool = false;
    constructor(url: string | URL, options?: WorkerOptions) {
      const text = typeof url === 'string' ? urlTexts.get(url) : undefined;
      if (text === undefined) super(url, options);
      else {
        super(text, { ...options, eval: true });
        // XNNPACK's pool threads block between kernels for the life of the backend: they must not keep
        // the process alive once the main thread is done (a CLI run, a test runner).
        this.pool = true;
        this.unref();
      }
    }

    /** Emscripten refs a worker while its pthread runs, which for the pool is forever: ignore that. */
    override ref(): void {
      if (!this.pool) super.ref();
    }

    override postMessage(message: unknown, transfer?: Parameters<NodeWorker['postMessage']>[1]): void {
      const m = message as { cmd?: string; urlOrBlob?: unknown };
      if (m && m.cmd === 'load' && m.urlOrBlob instanceof BaseBlob) {
        const text = blobTexts.get(m.urlOrBlob);
        if (text === undefined) throw new Error('wasm threads: the main script Blob was not recorded');
        super.postMessage({ ...m, urlOrBlob: mainScriptFile(text) }, transfer);
      } else super.postMessage(message, transfer);
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
  return NOTE;
}

function mainScriptFile(script: string): string {
  const text = PRELUDE + script;
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
