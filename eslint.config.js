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
    files: ['src/**/*.ts'],
    plugins: {mailring: layers},
    rules: {'mailring/layers': 'error'},
  },
  {
    files: ['bin/**/*.js', 'eslint.config.js', 'eslint/**/*.js'],
    languageOptions: {globals: {console: 'readonly', process: 'readonly'}},
  },
)
