import * as Flags from '@oclif/core/flags'

import {remoteFlags} from '../../cli/remote-flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import type {DovecotRole, DovecotVersion} from '../../dovecot/render.js'
import {pushConfig} from '../../engine/dovecot-config/push.js'
import type {ServerPushResult} from '../../engine/dovecot-config/targets.js'
import {renderTable} from '../../ui/table.js'

export interface ConfigPushResult {
  dryRun: boolean
  servers: ServerPushResult[]
  /** Servers that failed or were rolled back. */
  failed: number
}

export default class ConfigPush extends StoreCommand {
  static override summary =
    "Install each server's Dovecot SQL configuration over SSH, validated, with rollback."
  static override description = `Per server, over one SSH connection (host keys verified against known_hosts; ~/.ssh/config or ssh.config_file honoured): read the installed file (unchanged: nothing written, no reload); keep it as FILE.mailring-backup; write the new one atomically with the configured owner and mode (default root:dovecot 0640); run doveconf -n, doveadm reload, and look up a user the server holds through the new file. When a check fails, the backup is put back and Dovecot reloaded again.

With --role proxy, the proxy passdb goes to the proxy and director hosts of the store (\`mailring proxy add\`; all of them unless --server names some), validated the same way: the lookup is \`doveadm auth lookup\` of a user of the store, which must be proxied to one of its copies.

Servers are worked on --parallel at a time; the first failure stops further servers unless --continue-on-error. One line per server: updated, unchanged, would-update (--dry-run), failed, rolled-back, skipped.

Exit codes: 0 every server updated or unchanged, 1 a server failed or was rolled back (the others' results are still reported), 4 store error.`

  static override examples = [
    '<%= config.bin %> config push --dry-run',
    '<%= config.bin %> config push --parallel 10',
    '<%= config.bin %> config push --server mx01 --server mx02 --continue-on-error --json',
    '<%= config.bin %> config push --role proxy',
    '<%= config.bin %> config push --role proxy --server proxy01 --dry-run',
  ]

  static override flags = {
    ...remoteFlags,
    'dry-run': Flags.boolean({summary: 'Show what would change; write nothing.'}),
    'continue-on-error': Flags.boolean({summary: 'Keep going after a server fails.'}),
  }

  async run(): Promise<ConfigPushResult> {
    const {flags} = await this.parse(ConfigPush)
    const ctx = await this.dovecotContext(flags)
    const servers = await pushConfig(ctx, {
      ...(flags.server ? {servers: flags.server} : {}),
      ...(flags.dovecot ? {version: flags.dovecot as DovecotVersion} : {}),
      role: flags.role as DovecotRole,
      parallel: flags.parallel,
      continueOnError: flags['continue-on-error'],
      dryRun: flags['dry-run'],
      acceptNew: flags['accept-new'],
      showSecrets: flags['show-secrets'],
      onNote: (note) => {
        if (/added the host key/.test(note)) this.warnUser(note)
      },
    })
    if (flags['dry-run']) {
      for (const s of servers) if (s.diff) this.log(s.diff.replace(/\n$/, ''))
    }
    this.log(
      renderTable(
        ['SERVER', 'ADDRESS', 'STATUS', 'DETAIL'],
        servers.map((s) => [s.server, s.address || '-', s.status, s.message]),
      ),
    )
    const failed = servers.filter((s) => s.status === 'failed' || s.status === 'rolled-back').length
    if (failed > 0) process.exitCode = 1
    return {dryRun: flags['dry-run'], servers, failed}
  }
}
