import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../../cli/store-command.js'
import {dovecotVersionFlag, roleFlag} from '../../cli/remote-flags.js'
import type {DovecotVersion} from '../../dovecot/render.js'
import {findHost, renderedText, renderFor, renderForHost} from '../../engine/dovecot-config/render.js'
import {renderNotifyFor} from '../../engine/replicator/notify-config.js'

export interface ConfigRenderResult {
  server: string
  /** notify: the event-exporter snippet that sends change notifications to `mailring replicator`. */
  role: 'backend' | 'proxy' | 'notify'
  version: DovecotVersion
  /** Where `config push` installs it (notify: where to put it; not pushed). */
  path: string
  /** The file; secrets masked unless --show-secrets. */
  text: string
  secretsMasked: boolean
  notes: string[]
}

export default class ConfigRender extends StoreCommand {
  static override summary =
    "Print a server's Dovecot SQL configuration (or, with --notify, its replicator notification snippet)."
  static override description = `The file (Dovecot 2.3: dovecot-sql.conf.ext; 2.4: inline sql settings) that makes SERVER's Dovecot find exactly the users it holds a copy of, with mail_replica set to the next copy of each user. With --role proxy (or --proxy), the passdb for proxy and director hosts: each login goes to the first copy on a server that is neither down (its state) nor unhealthy (the replicator's probes); with --server NAME, for that proxy host (its Dovecot version and path).

With --notify, the snippet that makes a server's Dovecot post the events meaning a user's mail changed (LMTP deliveries, IMAP saves, flag changes, expunges, mailbox changes, POP3 deletions) to \`mailring replicator\` at replicator.url (default http://<replicator.listen>), authenticated by the replicator secret (MAILRING_REPLICATOR_SECRET or replicator.secret_file). Put it in /etc/dovecot/conf.d/95-mailring-replicator.conf (or \`!include\` it; 2.4: after dovecot_config_version) and reload Dovecot; \`config push\` does not install it. The replicator tells servers apart by the host name in each event (the server's name, or its first label, or the server's address) or else by the address the post comes from.

The database password and the replicator secret appear only with --show-secrets (and in the file written to the server by \`config push\`).

Exit codes: 0 printed, 1 unknown server or invalid configuration, 4 store error.`

  static override examples = [
    '<%= config.bin %> config render --server mx01',
    '<%= config.bin %> config render --server mx01 --dovecot 2.4',
    '<%= config.bin %> config render --proxy',
    '<%= config.bin %> config render --role proxy --server proxy01',
    '<%= config.bin %> config render --notify --server mx01 --show-secrets > /etc/dovecot/conf.d/95-mailring-replicator.conf',
    '<%= config.bin %> config render --notify --dovecot 2.4',
  ]

  static override flags = {
    server: Flags.string({
      char: 's',
      summary: 'The server to render for (with --role proxy: a proxy host).',
      exclusive: ['proxy'],
    }),
    role: roleFlag,
    proxy: Flags.boolean({
      summary: 'Render the proxy passdb (for proxy and director hosts): --role proxy.',
      exclusive: ['notify'],
    }),
    notify: Flags.boolean({
      summary:
        "Render the snippet that sends the server's change notifications to `mailring replicator` (any server when --server is not given).",
      exclusive: ['role'],
    }),
    dovecot: dovecotVersionFlag,
    'show-secrets': Flags.boolean({
      summary: 'Show the database password (--notify: the replicator secret) instead of a mask.',
    }),
  }

  async run(): Promise<ConfigRenderResult> {
    const {flags} = await this.parse(ConfigRender)
    const store = await this.store(flags)
    const ctx = await this.dovecotContext(flags)
    const role = flags.notify ? 'notify' : flags.proxy || flags.role === 'proxy' ? 'proxy' : 'backend'
    const version = flags.dovecot ? {version: flags.dovecot as DovecotVersion} : {}
    const r =
      role === 'notify'
        ? renderNotifyFor(ctx, flags.server, version)
        : role === 'proxy' && flags.server !== undefined
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
