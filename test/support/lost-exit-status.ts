/**
 * Makes every SSH channel of this process lose its command's exit status, as OpenSSH now and then does
 * (it closes the channel without the exit-status request): ssh2's channels stop emitting 'exit', which
 * is all SshConnection.exec sees of that request. The loss is injected here, under exec, because a real
 * sshd cannot be made to drop it on purpose; everything above (the command, sshd, the output) stays real.
 *
 *   const restore = loseExitStatus()
 *   try { ... } finally { restore() }
 */
import {createRequire} from 'node:module'

interface Emitter {
  emit(event: string | symbol, ...args: unknown[]): boolean
}

const require = createRequire(import.meta.url)
const {Channel} = require('ssh2/lib/Channel.js') as {Channel: {prototype: Emitter}}

export function loseExitStatus(): () => void {
  const emit = Channel.prototype.emit
  Channel.prototype.emit = function (this: Emitter, event: string | symbol, ...args: unknown[]) {
    if (event === 'exit') return false
    return emit.call(this, event, ...args)
  }
  return () => {
    Channel.prototype.emit = emit
  }
}
