// ESLint (flat config): the recommended JavaScript and typescript-eslint rules on every TypeScript and
// script file, with the options below. Layering (what may import what) is test/unit/layering.test.ts's job;
// formatting is Prettier's (.prettierrc.json), so no stylistic rules here. Run: npx eslint .
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['out/', 'dist/', 'node_modules/', '.vscode-test/', 'media/', 'python/', 'runs/', 'test-artifacts/', '.venv/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      // `const { token: _token, ...rest } = m` drops a field on purpose; a leading _ marks such names.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Typed events: `interface X { on(event: 'message', …): this }` merged with `class X extends EventEmitter`
      // is the idiom Node's typings expect; the merged interface only narrows inherited methods.
      '@typescript-eslint/no-unsafe-declaration-merging': 'off',
    },
  },
  {
    // CommonJS is these files' module format.
    files: ['**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tests read parsed JSON by path and feed deliberately ill-typed configs to the validators.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
