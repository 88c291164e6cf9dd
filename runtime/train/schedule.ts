// Learning rate per optimizer step: linear warm-up, then cosine (or linear, or constant) decay to minLr.
import type { TrainConfig } from '../config/types';

export type ScheduleConfig = Pick<TrainConfig, 'lr' | 'minLr' | 'warmupSteps' | 'schedule' | 'steps'>;

/** The learning rate of optimizer step `step` (1-based). Pure, so a resumed run gets the same values. */
export function learningRate(c: ScheduleConfig, step: number): number {
  const it = step - 1;
  if (it < c.warmupSteps) return (c.lr * (it + 1)) / c.warmupSteps;
  if (c.schedule === 'constant') return c.lr;
  const span = Math.max(1, c.steps - c.warmupSteps);
  const progress = Math.min(1, (it - c.warmupSteps) / span);
  if (c.schedule === 'linear') return c.lr - (c.lr - c.minLr) * progress;
  return c.minLr + 0.5 * (c.lr - c.minLr) * (1 + Math.cos(Math.PI * progress));
}
