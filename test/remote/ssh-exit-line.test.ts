/**
 * The exit line every command over SSH prints on stderr as its shell exits (src/remote/ssh-exec.ts), run
 * here under the local /bin/sh and bash: what stands in when the channel loses the exit status.
 */
import {spawnSync} from 'node:child_process'

import {describe, expect, it} from 'vitest'

import {exitLineOf, newExitMarker, withExitLine} from '../../src/remote/ssh-exec.js'

function runUnder(shell: string, command: string, marker: string) {
  const r = spawnSync(shell, ['-c', withExitLine(command, marker)], {encoding: 'buffer'})
  return {stdout: r.stdout.toString(), stderr: r.stderr, status: r.status, signal: r.signal}
}

describe('the exit line', () => {
  for (const shell of ['/bin/sh', 'bash']) {
    it(`${shell}: prints the status of a command that ends or calls exit, after all of its output`, () => {
      const marker = newExitMarker()
      for (const [command, status, stdout, stderr] of [
        ['echo out; echo err >&2', 0, 'out\n', 'err\n'],
        ['echo out; false', 1, 'out\n', ''],
        ['printf partial >&2; exit 3', 3, '', 'partial'],
        ['f() { return 75; }; f', 75, '', ''],
      ] as const) {
        const r = runUnder(shell, command, marker)
        expect(r.status, command).toBe(status) // the shell's own status is untouched
        const line = `\n${marker} ${status}\n`
        expect(exitLineOf(r.stderr, marker), command).toEqual({status, bytes: line.length})
        // What the command wrote is all before the line.
        expect(r.stderr.toString(), command).toBe(stderr + line)
        expect(r.stdout, command).toBe(stdout)
      }
    })
  }

  it('a shell killed by a signal prints no line (the channel says so with the signal)', () => {
    const marker = newExitMarker()
    const r = runUnder('/bin/sh', 'kill -KILL $$', marker)
    expect(r.signal).toBe('SIGKILL')
    expect(exitLineOf(r.stderr, marker)).toBeUndefined()
  })

  it('counts only its own marker, on a line of its own, at the very end', () => {
    const marker = newExitMarker()
    expect(newExitMarker()).not.toBe(marker)
    expect(exitLineOf(Buffer.from(`x\n${marker} 0\n`), marker)).toEqual({status: 0, bytes: marker.length + 4})
    expect(exitLineOf(Buffer.from(`x\n${newExitMarker()} 0\n`), marker)).toBeUndefined()
    expect(exitLineOf(Buffer.from(`x${marker} 0\n`), marker)).toBeUndefined()
    expect(exitLineOf(Buffer.from(`\n${marker} 0\nlater\n`), marker)).toBeUndefined()
    expect(exitLineOf(Buffer.from(`\n${marker} 0`), marker)).toBeUndefined()
  })
})
