import {Flags} from '@oclif/core'

import {StoreCommand} from '../../cli/store-command.js'
import {dovecotVersionFlag, roleFlag} from '../../cli/remote-flags.js'
import type {DovecotVersion} from '../../dovecot/render.js'
import {
  findHost,
  loadDovecotContext,
  renderedText,
  renderFor,
  renderForHost,
} from '../../engine/config-render.js'

export interface ConfigRenderResult {
  server: string
  role: 'backend' | 'proxy'
  version: DovecotVersion
  /** Where `config push` installs it. */
  path: string
  /** The file; secrets masked unless --show-secrets. */
  text: string
  secretsMasked: boolean
  notes: string[]
}

export default class ConfigRender extends StoreCommand {
  static override summary = "Print a server's Dovecot SQL configuration, rendered from the store."
  static override description = `The file (Dovecot 2.3: dovecot-sql.conf.ext; 2.4: inline sql settings) that makes SERVER's Dovecot find exactly the users it holds a copy of, with mail_replica set to the next copy of each user. With --role proxy (or --proxy), the passdb for proxy and director hosts: each login goes to the first copy on a server that is neither down (its state) nor unhealthy (the replicator's probes); with --server NAME, for that proxy host (its Dovecot version and path).

The database password appears only with --show-secrets (and in the file written to the server by \`config push\`).

Exit codes: 0 printed, 1 unknown server or invalid configuration, 4 store error.`

  static override examples = [
    '<%= config.bin %> config render --server mx01',
    '<%= config.bin %> config render --server mx01 --dovecot 2.4',
    '<%= config.bin %> config render --proxy',
    '<%= config.bin %> config render --role proxy --server proxy01',
  ]

  static override flags = {
    server: Flags.string({
      char: 's',
      summary: 'The server to render for (with --role proxy: a proxy host).',
      exclusive: ['proxy'],
    }),
    role: roleFlag,
    proxy: Flags.boolean({summary: 'Render the proxy passdb (for proxy and director hosts): --role proxy.'}),
    dovecot: dovecotVersionFlag,
    'show-secrets': Flags.boolean({summary: 'Show the database password instead of a mask.'}),
  }

  async run(): Promise<ConfigRenderResult> {
    const {flags} = await this.parse(ConfigRender)
    const store = await this.store(flags)
    const ctx = await loadDovecotContext({store, location: this.storeLocation(flags), config: flags.config})
    const role = flags.proxy || flags.role === 'proxy' ? 'proxy' : 'backend'
    const version = flags.dovecot ? {version: flags.dovecot as DovecotVersion} : {}
    const r =
      role === 'proxy' && flags.server !== undefined
        ? renderForHost(ctx, findHost(await store.listHosts(), flags.server), version)
        : renderFor(ctx, flags.server, {role, ...version})
    const text = renderedText(r, flags['show-secrets'])
    for (const note of r.rendered.notes) this.warnUser(note)
    this.log(text.replace(/\n$/, ''))
    return {
      server: r.server,
      role,
      version: r.version,
      path: r.path,
      text,
      secretsMasked: !flags['show-secrets'] && r.rendered.secrets.length > 0,
      notes: r.rendered.notes,
    }
  }
}
