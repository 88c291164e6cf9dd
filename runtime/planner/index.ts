// Public face of the planner: memory estimator (eight conventions), step-time model, layout search, exports.
// Pure: no Node APIs (the webview bundles it).
export * from './types';
export { estimate, describeLayout, usableMemory } from './estimate';
export { estimateMemory, layoutOf, layoutParallel, microBatchesPerStep, DEFAULT_OVERHEADS, bytesPerParam } from './memory';
export { estimateTime, stepFlops, collectiveTime, DEFAULT_COMM } from './time';
export { searchLayouts, explain, type SearchOptions, type SearchResult, type Candidate } from './search';
export { planIssues, conventionIssues } from './validate';
export { countParams, paddedVocab, stageParams, paramsPerStage, layerParams, megatronClosedForm, largestModuleParams, ParamCountError, type ParamCounts } from './params';
export { korthikantiLayerBytes, layerActivationBytes, layersInFlight } from './activations';
export { zeroPaperModelStates, deepspeedZero2, deepspeedZero3, megatronWeightAndOptimizer, megatronActivations, accelerateTrainingUsage } from './anchors';
export { RUNTIME_LAYER_TENSORS, RUNTIME_MODEL_TENSORS, runtimeMemoryTerms } from './runtime-model';
export { planInputFor, megatronGpt, type PlanInputOptions } from './input';
export {
  exportLayout,
  deepspeedConfig,
  megatronArguments,
  torchrunCommand,
  checkDeepspeedConfig,
  checkMegatronArguments,
  checkTorchrunCommand,
  needsDeepSpeed,
  EXPORT_TARGETS,
  type ExportTarget,
  type ExportResult,
} from './export';
export { planTarget, checkFit, describeSuggestion, suggestionEdits, type PlanTarget, type FitCheck } from './target';
