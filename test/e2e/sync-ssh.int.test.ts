/**
 * `sync` where a server's doveadm HTTP API is not enabled: doveadm.transports sends mx-c's commands over
 * SSH (a real OpenSSH sshd on mx-c's address, host key checked against known_hosts) while mx-a and mx-b
 * are reached through the HTTP API. sshd runs as root here, so the "remote" doveadm is the local binary
 * with `-c <mx-c's config>`.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {SyncResult} from '../../src/cli/sync-command.js'
import {startSshd, type SshServer} from '../support/sshd.js'
import type {JsonEnvelope} from '../support/cli.js'
import {startRingCluster, type RingCluster} from '../support/ring-cluster.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c']
const USERS: [string, string[]][] = [['dave@example.net', ['mx-c', 'mx-a', 'mx-b']]]

let ring: RingCluster
let sshd: SshServer
let config: string

beforeAll(async () => {
  ring = await startRingCluster({servers: SERVERS, users: USERS, copies: 3})
  const c = ring.host('mx-c')
  sshd = await startSshd({host: c.ip})
  const knownHosts = path.join(ring.dir, 'known_hosts')
  fs.writeFileSync(knownHosts, sshd.knownHostsLine + '\n')
  fs.writeFileSync(
    path.join(ring.dir, 'ssh_config'),
    [`Host ${c.ip}`, `  Port ${sshd.port}`, '  User root', `  IdentityFile ${sshd.clientKeyPath}`, ''].join(
      '\n',
    ),
  )
  config = path.join(ring.dir, 'ssh-transport.yaml')
  const base = fs.readFileSync(ring.configPath, 'utf8')
  fs.writeFileSync(
    config,
    base
      .replace('dovecot:\n', `dovecot:\n  doveadm: doveadm -c ${c.configPath}\n`)
      .concat(
        '  transports: {mx-c: ssh}\n',
        'ssh:\n',
        `  config_file: ${path.join(ring.dir, 'ssh_config')}\n`,
        `  known_hosts: ${knownHosts}\n`,
      ),
  )
})

afterAll(async () => {
  await sshd?.stop()
  await ring?.stop()
})

describe('sync over SSH for one server', () => {
  it('syncs a mail delivered to the copy reached over SSH to the copies reached over HTTP', async () => {
    await ring.host('mx-c').deliver('dave@example.net', 'Subject: over ssh\r\n\r\nbody\r\n')
    const r = await ring.cli<JsonEnvelope<SyncResult>>(['sync-user', 'dave@example.net', '--json'], {
      MAILRING_CONFIG: config,
    })
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(r.json?.result?.users.map((u) => [u.status, u.hub])).toEqual([['synced', 'mx-c']])
    for (const server of SERVERS)
      expect((await ring.mailbox(server, 'dave@example.net')).map((m) => m.subject)).toEqual(['over ssh'])
  })

  it('refuses an unknown SSH host key in one line naming its fingerprint', async () => {
    const empty = path.join(ring.dir, 'empty_known_hosts')
    fs.writeFileSync(empty, '')
    const strange = path.join(ring.dir, 'strange.yaml')
    fs.writeFileSync(
      strange,
      fs.readFileSync(config, 'utf8').replace(/known_hosts: .*/, `known_hosts: ${empty}`),
    )
    const r = await ring.cli(['sync-user', 'dave@example.net'], {MAILRING_CONFIG: strange})
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain(sshd.hostKeyFingerprint)
  })
})
