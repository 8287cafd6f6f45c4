/**
 * The one-line messages of SSH failures: connecting (DNS, refused, timeouts, authentication), host keys
 * (unknown, changed, revoked: each with what to check and how to trust it), channels and SFTP.
 */
import * as os from 'node:os'

import type {AuthenticationType} from 'ssh2'

import {MailringError} from '../core/errors.js'
import {fingerprintSha256, type HostKeyVerification, type KnownHostEntry} from './known-hosts.js'
import type {HostKeyPolicy} from './ssh-config.js'

/** SFTP status codes (ssh2's utils.sftp.STATUS_CODE). */
export const SFTP_NO_SUCH_FILE = 2
const SFTP_PERMISSION_DENIED = 3

export function displayPath(file: string): string {
  const home = os.homedir()
  return home && file.startsWith(home + '/') ? '~' + file.slice(home.length) : file
}

export function errorCode(error: unknown): string | number | undefined {
  return (error as {code?: string | number} | undefined)?.code
}

export function errorLevel(error: unknown): string | undefined {
  return (error as {level?: string} | undefined)?.level
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`
}

export function hostKeyError(
  v: HostKeyVerification,
  ctx: {
    label: string
    lookupHost: string
    lookupPort: number
    policy: HostKeyPolicy
    appendTo: string | undefined
    knownHostsFiles: readonly string[]
  },
): MailringError {
  const key = `${v.keyType} ${v.fingerprint}`
  const file = displayPath(ctx.appendTo ?? ctx.knownHostsFiles[0] ?? '~/.ssh/known_hosts')
  const at = (e: KnownHostEntry) => `line ${e.line} of ${displayPath(e.file)}`
  const scan = `ssh-keyscan ${ctx.lookupPort === 22 ? '' : `-p ${ctx.lookupPort} `}${ctx.lookupHost} >> ${file}`
  switch (v.status) {
    case 'revoked':
      return new MailringError(
        `The host key of ${ctx.label} (${key}) is revoked by ${at(v.matchedLine!)}: connection refused.`,
        {code: 'ssh_host_key_revoked'},
      )
    case 'changed': {
      const old = v.matchedLine!
      return new MailringError(
        `WARNING: the host key of ${ctx.label} changed: it presented ${key}, known_hosts has ${fingerprintOf(old)}: possible man-in-the-middle attack, connection refused; if the change is expected, check the new fingerprint and remove the old ${at(old)} (ssh-keygen -R ${ctx.lookupPort === 22 ? ctx.lookupHost : `'[${ctx.lookupHost}]:${ctx.lookupPort}'`} -f ${displayPath(old.file)}).`,
        {code: 'ssh_host_key_changed'},
      )
    }
    default: {
      if (v.otherKeys.length > 0) {
        const other = v.otherKeys[0]!
        return new MailringError(
          `WARNING: ${ctx.label} presented a ${key} host key, but known_hosts has a ${other.keyType} key for it (${at(other)}) and no ${v.keyType} key: possible man-in-the-middle attack, connection refused even with --accept-new; if the server's keys changed, check the fingerprint and replace that line.`,
          {code: 'ssh_host_key_changed'},
        )
      }
      const ca =
        v.certAuthorities.length > 0
          ? ` (${at(v.certAuthorities[0]!)} trusts a certificate authority for this host, but mailring does not verify host certificates: add the host key itself)`
          : ''
      return new MailringError(
        `The host key of ${ctx.label} is unknown (${key})${ca}: check that fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_${keyFileStem(v.keyType)}_key.pub), then run \`${scan}\`, or connect with --accept-new.`,
        {code: 'ssh_host_key_unknown'},
      )
    }
  }
}

export function connectError(
  error: unknown,
  ctx: {
    label: string
    hostName: string
    port: number
    user: string
    readyTimeout: number
    tried: readonly string[]
    serverMethods: AuthenticationType[] | undefined
  },
): MailringError {
  const code = errorCode(error)
  const level = errorLevel(error)
  const text = message(error)
  const make = (msg: string, c: string) => new MailringError(msg, {code: c, cause: error})
  if (level === 'client-authentication') {
    const methods = ctx.serverMethods?.length ? `; the server accepts: ${ctx.serverMethods.join(', ')}` : ''
    return make(
      `Authentication failed for ${ctx.user}@${ctx.label}: tried ${ctx.tried.length ? ctx.tried.join(', ') : 'nothing'}${methods}. Add your public key to ~${ctx.user}/.ssh/authorized_keys on the server, or use the right key (IdentityFile, ssh-agent).`,
      'ssh_auth',
    )
  }
  if (level === 'client-timeout' || code === 'ETIMEDOUT') {
    return make(
      `Timed out after ${seconds(ctx.readyTimeout)} connecting to ${ctx.label} over SSH: check the address, the port and firewalls.`,
      'ssh_timeout',
    )
  }
  switch (code) {
    case 'ECONNREFUSED':
      return make(
        `Connection to ${ctx.label} refused: is sshd running there, and listening on port ${ctx.port}?`,
        'ssh_connection_refused',
      )
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return make(
        `Cannot resolve the host name ${ctx.hostName} (${String(code)}): check the server's address and DNS.`,
        'ssh_dns',
      )
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return make(
        `${ctx.label} is unreachable (${String(code)}): check the address and the network route.`,
        'ssh_unreachable',
      )
    case 'ECONNRESET':
      return make(
        `${ctx.label} closed the connection during the SSH handshake: is this an SSH server, and does it accept connections from here?`,
        'ssh_connection',
      )
  }
  if (level === 'handshake' || level === 'protocol') {
    return make(`SSH handshake with ${ctx.label} failed: ${text}.`, 'ssh_handshake')
  }
  return make(`SSH connection to ${ctx.label} failed: ${text.replace(/\.$/, '')}.`, 'ssh_connection')
}

export function channelError(error: Error, what: string, server: string): MailringError {
  if (error instanceof MailringError) return error
  return new MailringError(`Cannot ${what} on ${server}: ${error.message}.`, {
    code: 'ssh_channel',
    cause: error,
  })
}

/** `action` names the operation and its paths: "read /etc/dovecot/dovecot.conf". */
export function sftpError(error: unknown, action: string, who: string): MailringError {
  if (error instanceof MailringError) return error
  if (errorCode(error) === SFTP_PERMISSION_DENIED) {
    return new MailringError(`Permission denied: cannot ${action} on ${who}.`, {
      code: 'ssh_permission_denied',
      cause: error,
    })
  }
  if (errorCode(error) === SFTP_NO_SUCH_FILE) {
    return new MailringError(`Cannot ${action} on ${who}: no such file or directory.`, {
      code: 'ssh_no_such_file',
      cause: error,
    })
  }
  return new MailringError(`Cannot ${action} on ${who}: ${message(error).replace(/\.$/, '')}.`, {
    code: 'ssh_sftp',
    cause: error,
  })
}

function fingerprintOf(entry: KnownHostEntry): string {
  return `${entry.keyType} ${fingerprintSha256(entry.key)}`
}

function keyFileStem(keyType: string): string {
  if (keyType === 'ssh-ed25519') return 'ed25519'
  if (keyType.startsWith('ecdsa-')) return 'ecdsa'
  if (keyType === 'ssh-rsa') return 'rsa'
  return '*'
}
