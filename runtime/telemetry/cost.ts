// Telemetry work that happens after publish() returns (the end-of-tick write of batched gauges to
// metrics.jsonl, the uncorked socket writes to clients) is timed here, so the overhead a run reports
// covers everything telemetry does on the training process's thread, not only publish() itself.
export const deferredCost = { ms: 0 };

export function timeDeferred(work: () => void): void {
  const t0 = performance.now();
  try {
    work();
  } finally {
    deferredCost.ms += performance.now() - t0;
  }
}
