import {existsSync} from 'node:fs'
import {homedir} from 'node:os'
import {isAbsolute, join, resolve} from 'node:path'

import {MailringError} from '../core/errors.js'
import {describeIssues, readYamlFile, type YamlFile} from './yaml-file.js'

/**
 * mailring's config file (YAML). Each top-level key is one section, parsed by the module that owns it,
 * so that every error names the file, the line and the key:
 *   db, db_password_file, db_tls    where the store is and how to reach it    (src/store/open.ts, ...)
 *   users_table                     the operator's own users table (read only)
 *   dovecot                         how Dovecot's configuration is rendered and installed
 *   ssh                             how servers are reached over SSH
 *   doveadm                         how doveadm is reached (HTTP API or over SSH)   (src/remote/doveadm-settings.ts)
 *   replicator                      `mailring replicator`: listen, url, secret, timings (src/engine/replicator/settings.ts), probes (probe-settings.ts)
 */
export const CONFIG_SECTIONS = [
  'db',
  'db_password_file',
  'db_tls',
  'users_table',
  'dovecot',
  'ssh',
  'doveadm',
  'replicator',
] as const
export type ConfigSection = (typeof CONFIG_SECTIONS)[number]

export interface ConfigFile {
  path: string
  file: YamlFile
  /** The raw value of a section, undefined when absent. */
  section(name: ConfigSection): unknown
}

/**
 * The config file in force: --config FILE, else MAILRING_CONFIG, else ./mailring.yaml, else
 * $XDG_CONFIG_HOME/mailring/config.yaml (~/.config/mailring/config.yaml); undefined when there is none.
 */
export function locateConfigFile(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): string | undefined {
  const given = explicit !== undefined && explicit !== '' ? explicit : env.MAILRING_CONFIG
  if (given !== undefined && given !== '') {
    const path = resolve(cwd, given)
    if (!existsSync(path)) throw new MailringError(`Cannot read config file ${given}: no such file.`)
    return path
  }
  const local = join(cwd, 'mailring.yaml')
  if (existsSync(local)) return local
  const configHome =
    env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME)
      ? env.XDG_CONFIG_HOME
      : join(homeOf(env), '.config')
  const user = join(configHome, 'mailring', 'config.yaml')
  return existsSync(user) ? user : undefined
}

/** Reads a config file and checks its top level; sections are checked by their owners. */
export function readConfigFile(path: string): ConfigFile {
  const file = readYamlFile(path, 'config file')
  const data = file.data ?? {}
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new MailringError(
      describeIssues(file, [{path: [], message: 'a config file is a mapping, e.g. db: sqlite:./cluster.db'}]),
    )
  }
  const record = data as Record<string, unknown>
  const unknown = Object.keys(record).filter((key) => !(CONFIG_SECTIONS as readonly string[]).includes(key))
  if (unknown.length > 0) {
    throw new MailringError(
      describeIssues(
        file,
        unknown.map((key) => ({
          path: [key],
          message: `unknown key "${key}" (expected one of ${CONFIG_SECTIONS.join(', ')})`,
        })),
      ),
    )
  }
  return {path, file, section: (name) => record[name] ?? undefined}
}

export function homeOf(env: NodeJS.ProcessEnv): string {
  return env.HOME && env.HOME !== '' ? env.HOME : homedir()
}
