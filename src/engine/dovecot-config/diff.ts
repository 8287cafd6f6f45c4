/** `mailring config diff`: each server's installed file against the rendered one, read only. */

import {unifiedDiff} from '../../dovecot/unified-diff.js'
import {SshConnection, SshRunCache} from '../../remote/ssh.js'
import {connectOptions, type DovecotContext} from '../context.js'

import {masked, runOnTargets, type PushStatus, type RemoteOptions} from './targets.js'
import {readInstalled} from './installed.js'

export type DiffStatus = 'same' | 'different' | 'missing' | 'failed' | 'skipped'

export interface ServerDiffResult {
  server: string
  address: string
  path: string
  status: DiffStatus
  message: string
  diff?: string
}

export async function diffConfig(
  ctx: DovecotContext,
  options: RemoteOptions = {},
): Promise<ServerDiffResult[]> {
  const cache = new SshRunCache()
  const results = await runOnTargets(ctx, {...options, continueOnError: true}, async (target, started) => {
    const r = target.rendering
    const conn = await SshConnection.connect(connectOptions(ctx, r.address, options, cache))
    try {
      const current = (await readInstalled(conn, r.path))?.data.toString('utf8')
      const same = current === r.rendered.text
      const diff = same
        ? ''
        : masked(
            ctx,
            r,
            unifiedDiff(current ?? '', r.rendered.text, {
              fromLabel: `${r.server}:${r.path}`,
              toLabel: `${r.path} (rendered)`,
            }),
            options.showSecrets ?? false,
          )
      const status: PushStatus = same ? 'unchanged' : current === undefined ? 'would-update' : 'would-update'
      return {
        server: target.name,
        address: r.address,
        path: r.path,
        status,
        message: same ? 'same' : current === undefined ? `${r.path} does not exist` : 'differs',
        ...(same ? {} : {diff}),
        ms: Date.now() - started,
      }
    } finally {
      await conn.close()
    }
  })
  return results.map((r) => ({
    server: r.server,
    address: r.address,
    path: r.path,
    status:
      r.status === 'unchanged'
        ? 'same'
        : r.status === 'would-update'
          ? r.message === 'differs'
            ? 'different'
            : 'missing'
          : r.status === 'skipped'
            ? 'skipped'
            : 'failed',
    message: r.message,
    ...(r.diff ? {diff: r.diff} : {}),
  }))
}
