// Moved to runtime/coordinator/failure.ts (the coordinator judges every engine's failures); kept for imports.
export { PEER_GONE, rootFailure, type RankFailure } from '../../coordinator/failure';
