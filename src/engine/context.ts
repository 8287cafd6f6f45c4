/**
 * The context every job that reaches Dovecot runs with: the store, the config file's sections (dovecot,
 * ssh, doveadm) and the servers; and how such a job connects to a server over SSH.
 */
import type {Server} from '../core/topology.js'
import {locateConfigFile, readConfigFile, type ConfigFile} from '../config/config-file.js'
import {parseDovecotSettings, type DovecotSettings} from '../dovecot/settings.js'
import {parseDoveadmSettings, type DoveadmSettings} from '../remote/doveadm-settings.js'
import {parseSshSettings, type SshSettings} from '../remote/settings.js'
import type {SshConnectOptions, SshRunCache} from '../remote/ssh.js'
import type {StoreLocation} from '../store/open.js'
import type {Store} from '../store/store.js'

export interface DovecotContext {
  store: Store
  location: StoreLocation
  config?: ConfigFile
  settings: DovecotSettings
  ssh: SshSettings
  doveadm: DoveadmSettings
  servers: Server[]
  env: NodeJS.ProcessEnv
}

export async function loadDovecotContext(options: {
  store: Store
  location: StoreLocation
  config?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
}): Promise<DovecotContext> {
  const env = options.env ?? process.env
  const configPath = locateConfigFile(options.config, env, options.cwd)
  const config = configPath === undefined ? undefined : readConfigFile(configPath)
  const topology = await options.store.readTopology()
  return {
    store: options.store,
    location: options.location,
    ...(config ? {config} : {}),
    settings: parseDovecotSettings(config),
    ssh: parseSshSettings(config),
    doveadm: parseDoveadmSettings(config),
    servers: topology.servers,
    env,
  }
}

/** How a command may use SSH, beyond the ssh section of the config file. */
export interface SshUse {
  /** Behave like StrictHostKeyChecking=accept-new. */
  acceptNew?: boolean
  /** Use ssh-agent (default true). */
  agent?: boolean
  onNote?: (message: string) => void
}

/** The options to connect to one server over SSH, from the ssh section and the command's choices. */
export function connectOptions(
  ctx: DovecotContext,
  address: string,
  use: SshUse,
  cache?: SshRunCache,
): SshConnectOptions {
  const ssh = ctx.ssh
  return {
    host: address,
    ...(cache ? {cache} : {}),
    ...(ssh.user ? {user: ssh.user} : {}),
    ...(ssh.identityFiles ? {identityFiles: ssh.identityFiles} : {}),
    ...(ssh.knownHostsFiles ? {knownHostsFiles: ssh.knownHostsFiles} : {}),
    ...(ssh.connectTimeoutMs ? {readyTimeoutMs: ssh.connectTimeoutMs} : {}),
    ...(use.acceptNew ? {hostKeyPolicy: 'accept-new' as const} : {}),
    agent: use.agent ?? true,
    connectAttempts: 1,
    resolve: {
      ...(ssh.configFile !== undefined ? {configPath: ssh.configFile} : {}),
      env: ctx.env,
    },
    ...(use.onNote ? {onNote: use.onNote} : {}),
  }
}
