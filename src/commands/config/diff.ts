import * as Flags from '@oclif/core/flags'

import {remoteFlags} from '../../cli/remote-flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import type {DovecotRole, DovecotVersion} from '../../dovecot/render.js'
import {diffConfig, type ServerDiffResult} from '../../engine/dovecot-config/diff.js'

export interface ConfigDiffResult {
  servers: ServerDiffResult[]
  /** Servers whose installed file differs from the rendered one (or is missing). */
  drifted: number
  failed: number
}

export default class ConfigDiff extends StoreCommand {
  static override summary =
    "Compare each server's installed Dovecot SQL file with the rendered one (unified diff)."
  static override description = `Reads the file over SSH (read only) and prints a unified diff from the installed file to the rendered one; secrets are masked unless --show-secrets. With --role proxy: the proxy passdb on the proxy and director hosts of the store (\`mailring proxy add\`).

Exit codes: 0 no server differs (or without --detailed-exitcode: shown), 2 with --detailed-exitcode: a server differs or lacks the file, 1 a server could not be read (unknown, no address, unreachable, host key, permission), 4 store error.`

  static override examples = [
    '<%= config.bin %> config diff',
    '<%= config.bin %> config diff --server mx01 --detailed-exitcode',
    '<%= config.bin %> config diff --role proxy',
  ]

  static override flags = {
    ...remoteFlags,
    'detailed-exitcode': Flags.boolean({summary: 'Exit 2 when a server differs (drift detection in CI).'}),
  }

  async run(): Promise<ConfigDiffResult> {
    const {flags} = await this.parse(ConfigDiff)
    const ctx = await this.dovecotContext(flags)
    const servers = await diffConfig(ctx, {
      ...(flags.server ? {servers: flags.server} : {}),
      ...(flags.dovecot ? {version: flags.dovecot as DovecotVersion} : {}),
      role: flags.role as DovecotRole,
      parallel: flags.parallel,
      acceptNew: flags['accept-new'],
      showSecrets: flags['show-secrets'],
    })
    for (const s of servers) {
      if (s.diff) this.log(s.diff.replace(/\n$/, ''))
      else if (s.status === 'same') this.log(`${s.server}: ${s.path} is up to date`)
    }
    for (const s of servers)
      if (s.status === 'failed') process.stderr.write(`Error: ${s.server}: ${s.message}\n`)
    const drifted = servers.filter((s) => s.status === 'different' || s.status === 'missing').length
    const failed = servers.filter((s) => s.status === 'failed').length
    if (failed > 0) process.exitCode = 1
    else if (drifted > 0 && flags['detailed-exitcode']) process.exitCode = 2
    return {servers, drifted, failed}
  }
}
