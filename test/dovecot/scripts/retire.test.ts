/**
 * The retire's scripts (src/dovecot/scripts/retire.ts) under /bin/sh on a temporary mail root: moving a
 * home aside and fencing it (again after a crash, with a late home), clearing a fence, and cleanup.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {
  cleanupScript,
  clearFenceScript,
  FENCE_CLEARED,
  FENCE_MARK,
  moveAsideScript,
  parseMovedAside,
} from '../../../src/dovecot/scripts/retire.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {runSh, stub} from './sh.js'

const NAME = 'alice@example.com.7'

let root: string
let home: string
let trash: string

function moveAside(day = '2026-01-02') {
  return runSh(moveAsideScript({home, dest: `${trash}/${day}/${NAME}`, trash, name: NAME}))
}

function homeWithMail(message = 'msg1'): void {
  fs.mkdirSync(path.join(home, 'Maildir', 'cur'), {recursive: true})
  fs.writeFileSync(path.join(home, 'Maildir', 'cur', message), 'Subject: hi\n')
}

beforeEach(() => {
  root = makeTempDir('mr-retire-script')
  fs.mkdirSync(path.join(root, 'example.com'))
  home = path.join(root, 'example.com', 'alice')
  trash = path.join(root, '.mailring-trash')
})

afterEach(() => removeDir(root))

describe('moveAsideScript', () => {
  it('moves the home to the trash, fences it, and is idempotent when run again (any day)', async () => {
    homeWithMail()
    const dest = `${trash}/2026-01-02/${NAME}`
    const r = await moveAside()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(parseMovedAside(r.stdout)).toEqual({copies: [dest], first: dest})
    expect(fs.readFileSync(path.join(dest, 'Maildir', 'cur', 'msg1'), 'utf8')).toBe('Subject: hi\n')
    expect(fs.readFileSync(path.join(dest, '.mailring-retired-from'), 'utf8')).toBe(`${home}\n`)
    expect(fs.readFileSync(home, 'utf8')).toBe(`${FENCE_MARK} ${NAME}\n`)

    const again = await moveAside('2026-01-03')
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseMovedAside(again.stdout)).toEqual({copies: [dest], first: dest})
    expect(fs.existsSync(`${trash}/2026-01-03`)).toBe(false)
  })

  it('a home that came back (a late delivery) goes to the trash as .late<N>, and the fence back up', async () => {
    homeWithMail()
    const dest = `${trash}/2026-01-02/${NAME}`
    expect((await moveAside()).exitCode).toBe(0)
    for (const late of [1, 2]) {
      fs.rmSync(home)
      homeWithMail(`late${late}`)
      const r = await moveAside()
      expect(r.exitCode, r.stderr).toBe(0)
      expect(fs.existsSync(path.join(`${dest}.late${late}`, 'Maildir', 'cur', `late${late}`))).toBe(true)
      expect(fs.readFileSync(home, 'utf8')).toBe(`${FENCE_MARK} ${NAME}\n`)
    }
    expect(parseMovedAside((await moveAside()).stdout)).toEqual({
      copies: [dest, `${dest}.late1`, `${dest}.late2`],
      first: dest,
    })
  })

  it('no folder for the home: nothing at all; no home: fenced all the same, with an empty folder naming it', async () => {
    const elsewhere = home
    home = path.join(root, 'example.org', 'bob')
    const none = await moveAside()
    expect(none).toMatchObject({exitCode: 0, stdout: ''})
    expect(parseMovedAside(none.stdout).first).toBeUndefined()
    expect(fs.existsSync(trash)).toBe(false)

    home = elsewhere
    const dest = `${trash}/2026-01-02/${NAME}`
    const r = await moveAside()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(parseMovedAside(r.stdout)).toEqual({copies: [], first: dest})
    expect(fs.readFileSync(path.join(dest, '.mailring-retired-from'), 'utf8')).toBe(`${home}\n`)
    expect(fs.readFileSync(home, 'utf8')).toBe(`${FENCE_MARK} ${NAME}\n`)
  })

  it('fails (exit 1) and leaves the home when the trash folder cannot be made', async () => {
    homeWithMail()
    fs.writeFileSync(trash, 'a file where the trash folder goes\n')
    const r = await moveAside()
    expect(r.exitCode).toBe(1)
    expect(fs.existsSync(path.join(home, 'Maildir', 'cur', 'msg1'))).toBe(true)
  })
})

describe('clearFenceScript', () => {
  it('takes away a fence, and only a fence', async () => {
    fs.writeFileSync(home, `${FENCE_MARK} ${NAME}\n`)
    expect((await runSh(clearFenceScript(home))).stdout.trim()).toBe(FENCE_CLEARED)
    expect(fs.existsSync(home)).toBe(false)
    fs.writeFileSync(home, 'something else\n')
    expect((await runSh(clearFenceScript(home))).stdout.trim()).toBe('none')
    expect(fs.existsSync(home)).toBe(true)
  })
})

describe('cleanupScript', () => {
  it("deletes the copy, its late parts, its own fence and the empty day folder; another move's fence stays", async () => {
    homeWithMail()
    expect((await moveAside()).exitCode).toBe(0)
    fs.rmSync(home)
    homeWithMail('late')
    expect((await moveAside()).exitCode).toBe(0)
    const dest = `${trash}/2026-01-02/${NAME}`
    const r = await runSh(cleanupScript(dest))
    expect(r.exitCode, r.stderr).toBe(0)
    expect(fs.existsSync(trash) && fs.readdirSync(trash)).toEqual([])
    expect(fs.existsSync(home)).toBe(false)

    // A fence naming another move (the user came back and left again) is not this copy's to take.
    fs.mkdirSync(dest, {recursive: true})
    fs.writeFileSync(path.join(dest, '.mailring-retired-from'), `${home}\n`)
    fs.writeFileSync(home, `${FENCE_MARK} alice@example.com.9\n`)
    expect((await runSh(cleanupScript(dest))).exitCode).toBe(0)
    expect(fs.existsSync(dest)).toBe(false)
    expect(fs.existsSync(home)).toBe(true)
  })

  it('fails when the copy cannot be deleted, and leaves the fence', async () => {
    homeWithMail()
    expect((await moveAside()).exitCode).toBe(0)
    const bin = path.join(root, 'bin')
    stub(bin, 'rm', 'echo "rm: cannot remove: Device or resource busy" >&2; exit 1')
    const r = await runSh(cleanupScript(`${trash}/2026-01-02/${NAME}`), {pathFirst: bin})
    expect(r.exitCode).not.toBe(0)
    expect(r.stderr).toContain('cannot remove')
    expect(fs.readFileSync(home, 'utf8')).toBe(`${FENCE_MARK} ${NAME}\n`)
  })
})
