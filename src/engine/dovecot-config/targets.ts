/**
 * The servers (or proxy hosts) a `config push` or `config diff` works on, each with its rendering, and the
 * run over them: `parallel` at a time, one result per server whatever happens to the others.
 */

import {errorText, firstLine, MailringError} from '../../core/errors.js'
import type {DovecotRole, DovecotVersion} from '../../dovecot/render.js'
import {maskSecrets} from '../../dovecot/render.js'
import {runPerServer, type ServerResult} from '../../remote/pool.js'
import {findHost, findServer, renderFor, renderForHost, type ServerRendering} from './render.js'
import {type DovecotContext, type SshUse} from '../context.js'

export type PushStatus = 'updated' | 'unchanged' | 'would-update' | 'failed' | 'rolled-back' | 'skipped'

export interface ServerPushResult {
  server: string
  address: string
  path: string
  status: PushStatus
  /** One line: what happened, or what went wrong and what was done about it. */
  message: string
  /** The change (secrets masked): with dryRun, and for updated servers. */
  diff?: string
  /** The user looked up through the new configuration. */
  checkedUser?: string
  ms: number
}

export interface RemoteOptions extends SshUse {
  /** Server names (role proxy: proxy host names); default every server (proxy host) in the store. */
  servers?: string[]
  version?: DovecotVersion
  /** backend (default): the mail servers, each its own file; proxy: the proxy hosts, the proxy passdb. */
  role?: DovecotRole
  parallel?: number
  continueOnError?: boolean
  /** Show secrets in diffs (default: masked). */
  showSecrets?: boolean
  onResult?: (result: ServerPushResult) => void
}

export interface Target {
  name: string
  rendering?: ServerRendering
  /** Why this server cannot be worked on at all (unknown, no address, render error). */
  problem?: string
}

/**
 * What to work on: with role backend, the named servers (default every server in the store), each with its
 * own file; with role proxy, the named proxy and director hosts (default every one in the store), each with
 * the proxy passdb in its Dovecot version.
 */
async function targets(ctx: DovecotContext, options: RemoteOptions): Promise<Target[]> {
  const named = options.servers && options.servers.length > 0 ? options.servers : undefined
  const version = options.version ? {version: options.version} : {}
  if (options.role === 'proxy') {
    const hosts = await ctx.store.listHosts()
    const names = named ?? hosts.map((h) => h.name).sort()
    return [...new Set(names)].map((name) => {
      try {
        return {name, rendering: renderForHost(ctx, findHost(hosts, name), version)}
      } catch (error) {
        return {name, problem: errorText(error)}
      }
    })
  }
  const names = named ?? ctx.servers.map((s) => s.name)
  return [...new Set(names)].map((name) => {
    try {
      const server = findServer(ctx, name)
      if (server.address === '')
        return {
          name,
          problem: `server ${name} has no address: set one with \`mailring node set ${name} --address HOST\``,
        }
      return {
        name,
        rendering: renderFor(ctx, name, {...version, ...(options.role ? {role: options.role} : {})}),
      }
    } catch (error) {
      return {name, problem: errorText(error)}
    }
  })
}

export function masked(ctx: DovecotContext, rendering: ServerRendering, text: string, show: boolean): string {
  return show ? text : maskSecrets(text, rendering.rendered.secrets)
}

export async function runOnTargets(
  ctx: DovecotContext,
  options: RemoteOptions,
  work: (target: Target & {rendering: ServerRendering}, started: number) => Promise<ServerPushResult>,
): Promise<ServerPushResult[]> {
  const list = await targets(ctx, options)
  const results = await runPerServer(
    list,
    async (target) => {
      const started = Date.now()
      if (target.problem !== undefined || !target.rendering)
        throw new MailringError(target.problem ?? 'cannot render')
      return work(target as Target & {rendering: ServerRendering}, started)
    },
    {
      parallel: options.parallel ?? 1,
      continueOnError: options.continueOnError ?? false,
      onResult: (r) => options.onResult?.(toResult(r)),
    },
  )
  return results.map(toResult)

  function toResult(r: ServerResult<Target, ServerPushResult>): ServerPushResult {
    const base = {
      server: r.server.name,
      address: r.server.rendering?.address ?? '',
      path: r.server.rendering?.path ?? '',
      ms: 0,
    }
    if (r.status === 'ok') return r.value
    if (r.status === 'skipped')
      return {
        ...base,
        status: 'skipped',
        message: 'not started: an earlier server failed (see --continue-on-error)',
      }
    const error = r.error as Error & {pushResult?: ServerPushResult}
    if (error.pushResult) return error.pushResult
    return {...base, status: 'failed', message: firstLine(errorText(error))}
  }
}

/** A failure that carries its result (rolled back, or failed after connecting). */
export function failed(result: ServerPushResult): Error {
  const error = new Error(result.message) as Error & {pushResult: ServerPushResult}
  error.pushResult = result
  return error
}
