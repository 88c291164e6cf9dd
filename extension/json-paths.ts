// Maps a config JSON path ("parallel.tp") to where it stands in the document, so an error lands on the
// value the user has to change. Uses jsonc-parser, the parser VS Code's own JSON support is built on.
import { applyEdits, findNodeAtLocation, modify, parse, parseTree, type Node, type ParseError } from 'jsonc-parser';
import { parseConfig } from '../runtime/config/parse';

export interface TextSpan {
  offset: number;
  length: number;
}

/** The span of the value at `path`, else of its nearest ancestor that exists (e.g. a missing key's section). */
export function spanOfPath(text: string, path: string): TextSpan {
  const tree = parseTree(text);
  if (!tree) return { offset: 0, length: 0 };
  const keys = path ? path.split('.') : [];
  for (let n = keys.length; n >= 0; n--) {
    const node: Node | undefined = findNodeAtLocation(tree, keys.slice(0, n));
    if (!node) continue;
    // Point at the key of an object-valued property rather than at the whole block.
    if (node.type === 'object' && node.parent?.type === 'property' && n > 0) {
      const key = node.parent.children![0]!;
      return { offset: key.offset, length: key.length };
    }
    return { offset: node.offset, length: node.length };
  }
  return { offset: 0, length: 0 };
}

/** The raw parsed value of a JSON-with-comments document (undefined when it does not parse at all). */
export { parse as parseJsonc } from 'jsonc-parser';

/** The document text with each `path = value` written in place (sections created where missing), keeping comments and layout. */
export function applyConfigEdits(text: string, edits: { path: string; value: unknown }[]): string {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  for (const e of edits) {
    text = applyEdits(text, modify(text, e.path.split('.'), e.value, { formattingOptions: { insertSpaces: true, tabSize: 2, eol } }));
  }
  return text;
}

/** One `path = value` edit per leaf of a patch object ({parallel: {dp: 8}} → parallel.dp = 8). */
export function patchEdits(patch: Record<string, unknown>): { path: string; value: unknown }[] {
  const edits: { path: string; value: unknown }[] = [];
  const walk = (prefix: string, v: unknown): void => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) for (const [k, child] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, child);
    else edits.push({ path: prefix, value: v });
  };
  walk('', patch);
  return edits;
}

/**
 * A config file's text with a patch merged in (comments and layout kept), only if the result is a config the
 * parser accepts: a patch that would leave the file invalid is refused with the parser's first problem, so
 * the caller writes nothing.
 */
export function patchConfigText(text: string, patch: Record<string, unknown>): { ok: true; text: string } | { ok: false; reason: string } {
  const patched = applyConfigEdits(text, patchEdits(patch));
  const errors: ParseError[] = [];
  const value: unknown = parse(patched, errors, { allowTrailingComma: true });
  if (errors.length) return { ok: false, reason: 'the file is not valid JSON' };
  const parsed = parseConfig(value);
  if (!parsed.ok) {
    const first = parsed.errors[0];
    return { ok: false, reason: `${first ? `${first.path || '(root)'}: ${first.message}` : 'the config does not parse'}${parsed.errors.length > 1 ? ` (and ${parsed.errors.length - 1} more)` : ''}` };
  }
  return { ok: true, text: patched };
}
