// Issue 12, item 7: which errors the CLI prints as one line, and how (runtime/cli.ts uses these).
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, mkdirSync } from 'node:fs';
import { describeSystemError, isUserFacingError, sanitizeForTerminal } from '../../../runtime/commands/args';
import { CommTimeoutError, CommAbortedError } from '../../../runtime/comm/types';
import { FileReadError } from '../../../runtime/files';

describe('security: one-line errors and terminal-safe output', () => {
  it('real file-system errors become "cannot <verb> <path>: <reason>"', () => {
    const caught = (fn: () => void): unknown => {
      try {
        fn();
      } catch (e) {
        return e;
      }
      assert.fail('expected an error');
    };
    assert.equal(describeSystemError(caught(() => mkdirSync('/etc/passwd/x'))), 'cannot create the folder /etc/passwd/x: a part of the path is not a directory');
    assert.equal(describeSystemError(caught(() => openSync('/', 'w'))), 'cannot open /: is a directory');
    const fd = openSync('/dev/full', 'w');
    try {
      assert.equal(describeSystemError(caught(() => writeSync(fd, 'x'))), 'cannot write a file: no space left on the device');
    } finally {
      closeSync(fd);
    }
    assert.equal(describeSystemError(new Error('plain')), null);
    assert.equal(describeSystemError(Object.assign(new Error('x'), { code: 'toString' })), null, 'prototype names are not codes');
  });

  it('a hung or aborted rank and a refused file are user-facing (no stack); a TypeError is not', () => {
    assert.ok(isUserFacingError(new CommTimeoutError('rank 1: all_reduce timed out after 100 ms', 1, 'all_reduce', 'world')));
    assert.ok(isUserFacingError(new CommAbortedError('aborted', 0, 'all_reduce', 'world')));
    assert.ok(isUserFacingError(new FileReadError('/x: is a FIFO, not a regular file')));
    assert.ok(!isUserFacingError(new TypeError('bug')));
    assert.ok(!isUserFacingError('CommTimeoutError'));
  });

  it('control characters are spelled out; newlines, tabs and Unicode text are kept', () => {
    assert.equal(sanitizeForTerminal('a\u001b]0;pwned\u0007b\r\n\tü€\u009b'), 'a\\x1b]0;pwned\\x07b\\x0d\n\tü€\\x9b');
  });
});
