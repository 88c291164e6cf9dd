// The `launch` section of a run config (your own command under `scalelm launch`): declared once in
// runtime/config/schema.ts, so the parser, the JSON schema and docs/config.md agree; and the command-line
// splitter of VS Code's "Launch with Monitor" input box.
import * as assert from 'node:assert/strict';
import { buildJsonSchema, parseConfig } from '../../runtime/config';
import { buildMarkdownReference } from '../../runtime/config/schema';
import { CommandLineError, joinCommandLine, splitCommandLine } from '../../runtime/launch/command-line';

const withLaunch = (launch: unknown) => ({ model: { preset: 'tiny' }, launch });

function errors(input: unknown): { path: string; message: string }[] {
  const r = parseConfig(input);
  assert.equal(r.ok, false, `expected errors for ${JSON.stringify(input)}`);
  return r.ok ? [] : r.errors;
}

describe('run config: the launch section', () => {
  it('a command, cwd and env resolve into config.launch; without the section there is none', () => {
    const r = parseConfig(withLaunch({ command: ['torchrun', '--nproc-per-node', '2', 'train.py'], cwd: 'scripts', env: { OMP_NUM_THREADS: '1' } }));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.config.launch, { command: ['torchrun', '--nproc-per-node', '2', 'train.py'], cwd: 'scripts', env: { OMP_NUM_THREADS: '1' } });
    const bare = parseConfig(withLaunch({ command: ['python', 'train.py'] }));
    assert.ok(bare.ok);
    assert.deepEqual(bare.config.launch, { command: ['python', 'train.py'], env: {} });
    const none = parseConfig({ model: { preset: 'tiny' } });
    assert.ok(none.ok);
    assert.equal(none.config.launch, undefined);
  });

  it('the command must be a non-empty array of strings, the program first', () => {
    assert.deepEqual(
      errors(withLaunch({})).map((e) => e.path),
      ['launch.command'],
    );
    assert.match(errors(withLaunch({ command: 'torchrun train.py' }))[0]!.message, /launch\.command must be an array of strings, got "torchrun train\.py"/);
    assert.match(errors(withLaunch({ command: [] }))[0]!.message, /launch\.command must have at least 1 item/);
    const mixed = errors(withLaunch({ command: ['python', 3, null] }));
    assert.deepEqual(
      mixed.map((e) => e.path),
      ['launch.command[1]', 'launch.command[2]'],
    );
    assert.match(mixed[0]!.message, /launch\.command\[1\] must be a string, got number 3/);
    assert.deepEqual(
      errors(withLaunch({ command: ['', 'train.py'] })).map((e) => e.path),
      ['launch.command[0]'],
    );
    assert.deepEqual(
      errors(withLaunch({ command: ['python', 'a\0b'] })).map((e) => e.path),
      ['launch.command[1]'],
    );
  });

  it('cwd is relative to the config file: absolute paths are refused', () => {
    for (const cwd of ['/etc', '\\\\server\\share', 'C:\\work']) {
      const e = errors(withLaunch({ command: ['python', 't.py'], cwd }));
      assert.deepEqual(
        e.map((x) => x.path),
        ['launch.cwd'],
        cwd,
      );
      assert.match(e[0]!.message, /must be relative to the config file/);
    }
    assert.deepEqual(
      errors(withLaunch({ command: ['python'], cwd: 3 })).map((e) => e.path),
      ['launch.cwd'],
    );
    assert.ok(parseConfig(withLaunch({ command: ['python', 't.py'], cwd: '../sibling' })).ok, "the workspace check is the extension's (it knows the workspace)");
  });

  it('env takes string values under valid names only', () => {
    const e = errors(withLaunch({ command: ['python'], env: { GOOD: '1', N: 2, 'BAD-NAME': 'x', '1X': 'y' } }));
    assert.deepEqual(e.map((x) => x.path).sort(), ['launch.env.1X', 'launch.env.BAD-NAME', 'launch.env.N']);
    assert.match(e.find((x) => x.path === 'launch.env.N')!.message, /launch\.env\.N must be a string, got number 2/);
    assert.deepEqual(
      errors(withLaunch({ command: ['python'], env: ['A=1'] })).map((x) => x.path),
      ['launch.env'],
    );
    assert.deepEqual(
      errors(withLaunch({ command: ['python'], env: { A: 'x\0y' } })).map((x) => x.path),
      ['launch.env.A'],
    );
  });

  it('unknown keys in the section are named with a suggestion', () => {
    const e = errors(withLaunch({ command: ['python'], comand: ['x'] }));
    assert.deepEqual(
      e.map((x) => x.path),
      ['launch.comand'],
    );
    assert.match(e[0]!.message, /did you mean "launch\.command"/);
  });

  it('the JSON schema and docs/config.md come from the same declaration', () => {
    const launch = (buildJsonSchema() as { properties: Record<string, { required?: string[]; additionalProperties?: unknown; properties: Record<string, Record<string, unknown>> }> }).properties
      .launch!;
    assert.deepEqual(launch.required, ['command']);
    assert.equal(launch.additionalProperties, false);
    assert.equal(launch.properties.command!.type, 'array');
    assert.equal(launch.properties.command!.minItems, 1);
    assert.deepEqual(launch.properties.command!.items, { type: 'string', maxLength: 32768 });
    assert.deepEqual(launch.properties.env!.additionalProperties, { type: 'string', maxLength: 32768 });
    assert.deepEqual(launch.properties.env!.propertyNames, { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' });
    const doc = buildMarkdownReference();
    assert.match(doc, /## `launch`/);
    assert.match(doc, /\| `command` \(required\) \| array of strings \|/);
    assert.match(doc, /\| `env` \| object of strings \|/);
  });
});

describe('Launch with Monitor: the command line as argv', () => {
  it('splits on blanks and honours quotes and backslashes, without any shell expansion', () => {
    assert.deepEqual(splitCommandLine('  torchrun --nproc-per-node 2   train.py --lr 3e-4 '), ['torchrun', '--nproc-per-node', '2', 'train.py', '--lr', '3e-4']);
    assert.deepEqual(splitCommandLine(`python "my script.py" --msg 'it''s' a\\ b "q\\"x" '' $HOME|x`), ['python', 'my script.py', '--msg', 'its', 'a b', 'q"x', '', '$HOME|x']);
    assert.deepEqual(splitCommandLine(''), []);
  });

  it('an unclosed quote or a lone trailing backslash is one clear error', () => {
    assert.throws(
      () => splitCommandLine('python "train.py'),
      (e: Error) => e instanceof CommandLineError && /unclosed " at column 8/.test(e.message),
    );
    assert.throws(() => splitCommandLine("python 'x"), /unclosed ' at column 8/);
    assert.throws(() => splitCommandLine('python x\\'), /ends with a lone \\/);
  });

  it('joinCommandLine quotes only what needs it, and round-trips', () => {
    const argv = ['/venv/bin/python', '-m', 'torch.distributed.run', '--nproc-per-node', '1', 'dir with space/train.py', "it's", '', 'a"b$c'];
    const line = joinCommandLine(argv);
    assert.equal(line.split(' ').slice(0, 5).join(' '), '/venv/bin/python -m torch.distributed.run --nproc-per-node 1');
    assert.deepEqual(splitCommandLine(line), argv);
  });
});
