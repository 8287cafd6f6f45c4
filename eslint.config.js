import js from '@eslint/js'
import tseslint from 'typescript-eslint'

import layers from './eslint/layers.js'

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'coverage/**']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
    },
  },
  {
    // A promise nobody awaits loses its rejection (an unhandled rejection ends the process) and its order.
    files: ['src/**/*.ts'],
    languageOptions: {parserOptions: {projectService: true, tsconfigRootDir: import.meta.dirname}},
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: {mailring: layers},
    rules: {
      'mailring/layers': 'error',
      // The index of @oclif/core loads all of oclif (and semver, for a Node version check) on every start.
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@oclif/core',
              message:
                'import from its subpaths (@oclif/core/command, /flags, /args, /errors): the index loads all of oclif at start-up',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  {
    files: ['bin/**/*.js', 'eslint.config.js', 'eslint/**/*.js'],
    languageOptions: {globals: {console: 'readonly', process: 'readonly'}},
  },
)
