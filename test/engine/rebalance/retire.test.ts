/**
 * Retiring an old copy (engine/rebalance/retire.ts) without servers: the server the copy leaves is a
 * folder on this machine, its shell this machine's bash (the retire script runs as it would over SSH), its
 * doveadm a fake that knows the user's home and reads message GUIDs as the names of the files in a home.
 * The copy that takes its place is a set of GUIDs that the test's catch-up fills, or not.
 */
import {execFile} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {DOVEADM_EXIT, type DoveadmCommand} from '../../../src/dovecot/doveadm.js'
import {CopyProblem} from '../../../src/engine/sync/fleet.js'
import {FENCE_MARK, retireOldCopy, type RetireFleet} from '../../../src/engine/rebalance/retire.js'
import type {DoveadmReply} from '../../../src/remote/doveadm.js'
import type {ExecResult} from '../../../src/remote/ssh.js'
import type {MoveRecord} from '../../../src/store/store.js'
import {makeTempDir, removeDir} from '../../support/proc.js'

const USER = 'alice@example.com'
const MOVE: MoveRecord & {from: string} = {
  id: 7,
  user: USER,
  position: 0,
  from: 'mx-a',
  to: 'mx-b',
  state: 'caught-up',
  plan: 'p1',
  attempts: 0,
  lastError: null,
  updatedAt: '2026-03-02T10:00:00.000Z',
  trash: null,
}
const NOW = new Date('2026-03-02T10:00:10Z')
const NEXT_DAY = new Date('2026-03-03T09:00:00Z')

function reply(rows: DoveadmReply['rows'], exitCode: number = DOVEADM_EXIT.ok): DoveadmReply {
  return {outcome: exitCode === DOVEADM_EXIT.ok ? 'ok' : 'failed', exitCode, rows, message: ''}
}

function bash(script: string): Promise<ExecResult> {
  return new Promise((resolve) =>
    execFile('bash', ['-c', script], (error, stdout, stderr) =>
      resolve({stdout, stderr, exitCode: error ? (typeof error.code === 'number' ? error.code : 1) : 0}),
    ),
  )
}

/** mx-a, the server the copy leaves: its mail root in a temp folder, mail in `<home>/mail/<guid>`. */
class LeavingServer implements RetireFleet {
  readonly ctx: {settings: {home: string}}
  readonly home: string
  /** The GUIDs on mx-b, the copy that stays. */
  readonly partner = new Set<string>()
  kickExit: number = DOVEADM_EXIT.ok
  readonly commands: string[] = []

  constructor(readonly root: string) {
    this.ctx = {settings: {home: `${root}/%d/%n`}}
    this.home = `${root}/example.com/alice`
  }

  deliver(home: string, ...guids: string[]): void {
    fs.mkdirSync(path.join(home, 'mail'), {recursive: true})
    for (const guid of guids) fs.writeFileSync(path.join(home, 'mail', guid), `message ${guid}\n`)
  }

  guidsIn(home: string): string[] {
    const mail = path.join(home, 'mail')
    return fs.existsSync(mail) ? fs.readdirSync(mail).sort() : []
  }

  async run(server: string, command: DoveadmCommand): Promise<DoveadmReply> {
    this.commands.push(`${server} ${command.words.join(' ')}`)
    if (command.method === 'user') return reply({[USER]: {home: this.home}})
    if (command.method === 'kick') return reply([], this.kickExit)
    if (command.method === 'fetch' && server === 'mx-b')
      return reply([...this.partner].map((guid) => ({guid})))
    throw new Error(`unexpected doveadm ${command.method} on ${server}`)
  }

  async runCommandLine(server: string, command: DoveadmCommand): Promise<DoveadmReply> {
    const home = command.overrides?.mail_home
    if (server !== 'mx-a' || command.method !== 'fetch' || home === undefined)
      throw new Error(`unexpected doveadm ${command.method} on ${server}'s command line`)
    return reply(this.guidsIn(home).map((guid) => ({guid})))
  }

  async ssh(server: string) {
    if (server !== 'mx-a') throw new Error(`no shell on ${server}`)
    return {exec: (script: string) => bash(script)}
  }
}

let dir: string
let server: LeavingServer
/** Each catch-up: the copy in the trash it read, and whether in full. */
let catchUps: [string, boolean][]

/** A catch-up that copies what the trash copy holds to mx-b; `loses` drops those GUIDs (unless in full). */
function catchUp(loses: {guids: string[]; evenInFull?: boolean} = {guids: []}) {
  return async (trashCopy: string, full: boolean): Promise<string> => {
    catchUps.push([trashCopy, full])
    for (const guid of server.guidsIn(trashCopy))
      if (!loses.guids.includes(guid) || (full && !loses.evenInFull)) server.partner.add(guid)
    return 'mx-b'
  }
}

function isFence(file: string): boolean {
  return fs.statSync(file).isFile() && fs.readFileSync(file, 'utf8') === `${FENCE_MARK} ${USER}.7\n`
}

beforeEach(() => {
  dir = makeTempDir('mr-retire')
  server = new LeavingServer(path.join(dir, 'vmail'))
  catchUps = []
})

afterEach(() => removeDir(dir))

describe('retireOldCopy', () => {
  it('moves the home to the dated trash, fences it, and catches up once from the copy there', async () => {
    server.deliver(server.home, 'g1', 'g2')
    const trash = await retireOldCopy(server, MOVE, {catchUp: catchUp(), now: NOW})
    expect(trash).toBe(`${server.root}/.mailring-trash/2026-03-02/${USER}.7`)
    expect(server.guidsIn(trash!)).toEqual(['g1', 'g2'])
    expect(fs.readFileSync(path.join(trash!, '.mailring-retired-from'), 'utf8')).toBe(`${server.home}\n`)
    expect(isFence(server.home)).toBe(true)
    expect(catchUps).toEqual([[trash, false]])
    expect([...server.partner].sort()).toEqual(['g1', 'g2'])
    // The sessions were closed before the home moved.
    expect(server.commands.slice(0, 2).sort()).toEqual(['mx-a kick', 'mx-a user'])
  })

  it('syncs in full when a message of the trash copy is missing after the catch-up', async () => {
    server.deliver(server.home, 'g1', 'g2')
    const trash = await retireOldCopy(server, MOVE, {catchUp: catchUp({guids: ['g2']}), now: NOW})
    expect(catchUps).toEqual([
      [trash, false],
      [trash, true],
    ])
    expect(server.partner.has('g2')).toBe(true)
  })

  it('fails while a message is still missing, fenced; the next run finds its trash folder and finishes', async () => {
    server.deliver(server.home, 'g1', 'g2')
    const failed = retireOldCopy(server, MOVE, {
      catchUp: catchUp({guids: ['g2'], evenInFull: true}),
      now: NOW,
    })
    await expect(failed).rejects.toThrow(CopyProblem)
    await expect(failed).rejects.toThrow(
      `1 message(s) of ${USER}'s old copy (${server.root}/.mailring-trash/2026-03-02/${USER}.7 on mx-a) are not on mx-b after the last catch-up; the next run tries again`,
    )
    expect(isFence(server.home)).toBe(true)

    catchUps = []
    const trash = await retireOldCopy(server, MOVE, {catchUp: catchUp(), now: NEXT_DAY})
    expect(trash).toBe(`${server.root}/.mailring-trash/2026-03-02/${USER}.7`)
    expect(catchUps).toEqual([[trash, false]])
    expect(server.partner.has('g2')).toBe(true)
    expect(fs.readdirSync(path.join(server.root, '.mailring-trash'))).toEqual(['2026-03-02'])
  })

  it('moves a home that came back after an earlier attempt aside as well, and catches up from both', async () => {
    // An earlier attempt moved the home away and died before its fence; a delivery then made it anew.
    const earlier = `${server.root}/.mailring-trash/2026-03-02/${USER}.7`
    server.deliver(earlier, 'g1')
    server.deliver(server.home, 'g3')
    const trash = await retireOldCopy(server, MOVE, {catchUp: catchUp(), now: NEXT_DAY})
    expect(trash).toBe(earlier)
    expect(server.guidsIn(`${earlier}.late1`)).toEqual(['g3'])
    expect(catchUps).toEqual([
      [earlier, false],
      [`${earlier}.late1`, false],
    ])
    expect([...server.partner].sort()).toEqual(['g1', 'g3'])
    expect(isFence(server.home)).toBe(true)
  })

  it('fences a home that is not there, with an empty trash folder naming it, and has nothing to catch up', async () => {
    fs.mkdirSync(path.dirname(server.home), {recursive: true})
    const trash = await retireOldCopy(server, MOVE, {catchUp: catchUp(), now: NOW})
    expect(trash).toBe(`${server.root}/.mailring-trash/2026-03-02/${USER}.7`)
    expect(fs.readdirSync(trash!)).toEqual(['.mailring-retired-from'])
    expect(isFence(server.home)).toBe(true)
    expect(catchUps).toEqual([])
  })

  it("leaves the home alone when the user's sessions cannot be closed", async () => {
    server.deliver(server.home, 'g1')
    server.kickExit = DOVEADM_EXIT.temporary
    await expect(retireOldCopy(server, MOVE, {catchUp: catchUp(), now: NOW})).rejects.toThrow(
      `cannot close ${USER}'s sessions on mx-a (doveadm kick: exit ${DOVEADM_EXIT.temporary})`,
    )
    expect(server.guidsIn(server.home)).toEqual(['g1'])
    expect(fs.existsSync(path.join(server.root, '.mailring-trash'))).toBe(false)
    expect(catchUps).toEqual([])
  })
})
