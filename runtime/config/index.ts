// Public face of the run config. Pure (bundled into the webview too).
export * from './types';
export * from './parse';
export { MODEL_PRESETS, MODEL_PRESET_NAMES, GPU_PRESETS, GPU_PRESET_NAMES } from './presets';
export type { ModelShape, GpuSpec, ModelPresetName, GpuPresetName } from './presets';
export { layoutIssues, divisorsOf, listChoices, isLoopback } from './rules';
export { buildJsonSchema, type RunConfigInput } from './schema';
export { setPath } from './set-path';
export { modelFromHuggingFace, isHuggingFaceConfig } from './huggingface';
