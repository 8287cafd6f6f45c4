/** The snippet each server needs to post its changes to `mailring replicator` (`config render --notify`). */
import type {DovecotVersion} from '../../dovecot/render.js'
import {DEFAULT_NOTIFY_PATH, renderNotifyConfig} from '../../dovecot/notify.js'
import {versionOf} from '../../dovecot/settings.js'
import type {DovecotContext} from '../context.js'
import {findServer, type ServerRendering} from '../dovecot-config/render.js'
import {parseReplicatorSettings, replicatorSecret, replicatorUrl} from './settings.js'

/**
 * The snippet that sends a server's change notifications to `mailring replicator` (the same text for every
 * server but its header; the version is the server's, else dovecot.version, unless given). Reads the
 * replicator section of the config file and the secret (MAILRING_REPLICATOR_SECRET or secret_file).
 */
export function renderNotifyFor(
  ctx: DovecotContext,
  name: string | undefined,
  options: {version?: DovecotVersion} = {},
): ServerRendering {
  const server = name === undefined ? undefined : findServer(ctx, name)
  const version = options.version ?? (server ? versionOf(ctx.settings, server.name) : ctx.settings.version)
  const settings = parseReplicatorSettings(ctx.config)
  const rendered = renderNotifyConfig({
    ...(server ? {server: server.name} : {}),
    version,
    url: replicatorUrl(settings),
    secret: replicatorSecret(settings, ctx.env),
  })
  return {
    server: server?.name ?? 'every server',
    address: server?.address ?? '',
    version,
    path: DEFAULT_NOTIFY_PATH,
    rendered,
  }
}
