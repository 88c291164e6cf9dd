// Maps a config JSON path ("parallel.tp") to where it stands in the document, so an error lands on the
// value the user has to change. Uses jsonc-parser, the parser VS Code's own JSON support is built on.
import { applyEdits, findNodeAtLocation, modify, parseTree, type Node } from 'jsonc-parser';

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
