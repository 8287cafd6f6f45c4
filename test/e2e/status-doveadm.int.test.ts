/**
 * `mailring status --doveadm` end to end: the built CLI against three real Dovecot 2.3 servers reached
 * through the doveadm HTTP API. Every server answers; then a wrong password is refused (and never shown);
 * then one Dovecot is stopped and only that server is unreachable. Plain `status` probes nothing.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {StatusResult} from '../../src/commands/status.js'
import type {JsonEnvelope} from '../support/cli.js'
import {RING_OF_THREE, startRingCluster, type RingCluster} from '../support/ring-cluster.js'

const SERVERS = RING_OF_THREE.servers

let ring: RingCluster

beforeAll(async () => {
  ring = await startRingCluster(RING_OF_THREE)
})

afterAll(async () => {
  await ring?.stop()
})

/** Each server's doveadm state, by name. */
function states(r: {json?: JsonEnvelope<StatusResult>}): Record<string, string | undefined> {
  return Object.fromEntries((r.json?.result?.servers ?? []).map((s) => [s.name, s.doveadm?.state]))
}

describe('status --doveadm', () => {
  it('shows every server ok with its response time', async () => {
    const r = await ring.cli<JsonEnvelope<StatusResult>>(['status', '--doveadm', '--json'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(r.json?.status).toBe(0)
    expect(r.json?.warnings).toEqual([])
    const servers = r.json!.result!.servers
    expect(servers.map((s) => s.name)).toEqual(SERVERS)
    for (const s of servers) {
      expect(s.doveadm, s.name).toEqual({state: 'ok', ms: expect.any(Number)})
      expect(s.doveadm?.state === 'ok' && Number.isInteger(s.doveadm.ms) && s.doveadm.ms >= 0).toBe(true)
    }

    const text = await ring.cli(['status', '--doveadm'])
    expect(text.exitCode, text.stderr).toBe(0)
    expect(text.stderr).toBe('')
    const lines = text.stdout.split('\n')
    expect(lines.find((l) => l.startsWith('SERVER'))).toMatch(/\sOUT\s+DOVEADM$/)
    for (const server of SERVERS)
      expect(lines.find((l) => l.startsWith(`${server} `))).toMatch(/\sok \d+ ms$/)
  })

  it('plain status asks no server and shows no DOVEADM column', async () => {
    const text = await ring.cli(['status'])
    expect(text.exitCode, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/^SERVER\s.*\sOUT$/m)
    expect(text.stdout).not.toContain('DOVEADM')
    const json = await ring.cli<JsonEnvelope<StatusResult>>(['status', '--json'])
    expect(json.exitCode).toBe(0)
    for (const s of json.json!.result!.servers) expect(s).not.toHaveProperty('doveadm')
  })

  it('says refused for a wrong doveadm password, and never shows it', async () => {
    const wrong = 'not-the-password-42'
    const env = {MAILRING_DOVEADM_PASSWORD: wrong}
    const r = await ring.cli<JsonEnvelope<StatusResult>>(['status', '--doveadm', '--json'], env)
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(states(r)).toEqual({'mx-a': 'refused', 'mx-b': 'refused', 'mx-c': 'refused'})
    for (const s of r.json!.result!.servers)
      expect(s.doveadm).toMatchObject({reason: expect.stringContaining('the doveadm password was refused')})
    expect(r.json!.warnings).toHaveLength(3)

    const text = await ring.cli(['status', '--doveadm'], env)
    expect(text.exitCode).toBe(0)
    for (const server of SERVERS) expect(text.stdout).toMatch(new RegExp(`^${server} .* refused$`, 'm'))
    expect(text.stderr).toMatch(
      /^Warning: mx-a refused: doveadm on mx-a \(127\.0\.0\.\d+:\d+\): the doveadm password was refused/m,
    )
    for (const output of [r.stdout + r.stderr, text.stdout + text.stderr]) {
      expect(output).not.toContain(wrong)
      expect(output).not.toContain(ring.doveadmPassword)
    }
  })

  it('is a one-line error without the doveadm password', async () => {
    const config = path.join(ring.dir, 'no-password.yaml')
    const original = fs.readFileSync(ring.configPath, 'utf8')
    fs.writeFileSync(config, original.replace(/^\s*password_file:.*\n/m, ''))
    const r = await ring.cli(['status', '--doveadm'], {MAILRING_CONFIG: config})
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^Error: The doveadm password is not set: set MAILRING_DOVEADM_PASSWORD/),
    ])
  })

  it('says unreachable for a stopped Dovecot, and ok for the others', async () => {
    await ring.host('mx-c').stop()
    const r = await ring.cli<JsonEnvelope<StatusResult>>(['status', '--doveadm', '--json'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(r.json?.status).toBe(0)
    expect(states(r)).toEqual({'mx-a': 'ok', 'mx-b': 'ok', 'mx-c': 'unreachable'})
    const c = r.json!.result!.servers.find((s) => s.name === 'mx-c')!
    expect(c.doveadm).toEqual({state: 'unreachable', reason: expect.stringContaining('connection refused')})
    expect(r.json!.warnings).toEqual([expect.stringMatching(/^mx-c unreachable: doveadm on mx-c /)])

    const text = await ring.cli(['status', '--doveadm'])
    expect(text.exitCode).toBe(0)
    expect(text.stdout).toMatch(/^mx-c .* unreachable$/m)
    expect(text.stdout).toMatch(/^mx-a .* ok \d+ ms$/m)
    expect(text.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^Warning: mx-c unreachable: doveadm on mx-c \(127\.0\.0\.\d+:\d+\): connection refused/,
      ),
    ])
  })
})
