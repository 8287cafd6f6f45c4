import * as Flags from '@oclif/core/flags'

import {DOVECOT_VERSIONS} from '../dovecot/render.js'

/** --dovecot: which form of the configuration (`config render`, `diff`, `push`). */
export const dovecotVersionFlag = Flags.string({
  summary: "Dovecot version (default: the config file's dovecot.version, else 2.3).",
  options: [...DOVECOT_VERSIONS],
})

/** --role: the mail servers' own files (backend) or the proxy passdb on the proxy hosts (proxy). */
export const roleFlag = Flags.string({
  summary:
    'backend: the mail servers, each its own file; proxy: the proxy hosts (`mailring proxy add`), the proxy passdb.',
  options: ['backend', 'proxy'],
  default: 'backend',
})

/** Flags of `config diff` and `config push`. */
export const remoteFlags = {
  server: Flags.string({
    char: 's',
    summary:
      'A server to work on (repeatable; with --role proxy a proxy host); default every server (proxy host) in the store.',
    multiple: true,
  }),
  role: roleFlag,
  dovecot: dovecotVersionFlag,
  parallel: Flags.integer({summary: 'Servers worked on at once.', default: 1, min: 1, max: 100}),
  'accept-new': Flags.boolean({
    summary:
      'Trust and record the host key of a server not in known_hosts yet (StrictHostKeyChecking=accept-new); a changed key is still refused.',
  }),
  'show-secrets': Flags.boolean({summary: 'Show the database password in diffs instead of a mask.'}),
}
