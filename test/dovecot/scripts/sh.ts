/**
 * Runs a script under the local /bin/sh, as a server's shell would (no SSH, no Dovecot): commands the
 * script calls can be stubbed with tiny shell scripts in a folder put first on PATH.
 */
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface ShResult {
  stdout: string
  stderr: string
  exitCode: number | null
}

/** Writes an executable `dir/name` running `body` (a shell script). */
export function stub(dir: string, name: string, body: string): string {
  fs.mkdirSync(dir, {recursive: true})
  const file = path.join(dir, name)
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, {mode: 0o755})
  return file
}

/**
 * Runs `script`; its stdin is `stdin`, or, with `respond`, what respond returns once it is called with
 * stdout so far and returns something (as SshConnection.exec's respond), then closed.
 */
export function runSh(
  script: string,
  options: {
    stdin?: string | Buffer
    respond?: (stdout: string) => string | Buffer | undefined
    pathFirst?: string
  } = {},
): Promise<ShResult> {
  const env = {...process.env}
  if (options.pathFirst) env.PATH = `${options.pathFirst}:${env.PATH ?? ''}`
  const child = spawn('/bin/sh', ['-c', script], {env})
  let stdout = ''
  let stderr = ''
  let answered = false
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    if (!options.respond || answered) return
    const reply = options.respond(stdout)
    if (reply === undefined) return
    answered = true
    child.stdin.end(reply)
  })
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.on('error', () => {}) // the script did not read all of it
  if (!options.respond) child.stdin.end(options.stdin ?? '')
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (exitCode) => resolve({stdout, stderr, exitCode}))
  })
}
