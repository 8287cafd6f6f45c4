/**
 * Every patch into ssh2's internals (its private fields and its protocol object) is in this file, and no
 * other file of mailring reaches past ssh2's public API: on an ssh2 upgrade, this is the only file to audit.
 * Each patch first checks that what it uses is there and otherwise changes nothing, so an ssh2 that changed
 * inside costs speed (coalesceWrites, signWithoutQuery) or a quicker kill (killRemote), never correctness.
 * Written against ssh2 1.17.
 */
import type {Socket} from 'node:net'

import type {Client, ClientChannel, ParsedKey} from 'ssh2'

/**
 * Sends signal KILL to a command. OpenSSH (7.9+) delivers it to the command's process group; older servers
 * ignore it, and then closing the channel is all we can do. ssh2's Channel.signal() silently does nothing once
 * stdin has been ended (it checks `writable`), which is always the case here, so the request is sent through
 * the channel's protocol object when it is there.
 */
export function killRemote(stream: ClientChannel): void {
  const ch = stream as unknown as {
    outgoing?: {id?: number; state?: string}
    _client?: {_protocol?: {signal?: (id: number, signal: string) => void}}
  }
  try {
    const protocol = ch._client?._protocol
    if (
      (ch.outgoing?.state === 'open' || ch.outgoing?.state === 'eof') &&
      typeof ch.outgoing.id === 'number' &&
      typeof protocol?.signal === 'function'
    ) {
      protocol.signal(ch.outgoing.id, 'KILL')
    } else {
      stream.signal('KILL')
    }
  } catch {
    // the channel is closing already
  }
}

/**
 * The SSH packets ssh2 writes in one go (e.g. NEWKEYS and the service request; a channel's request, its data
 * and its EOF) leave in one write instead of one each: the socket is corked at the first write of a tick and
 * uncorked on the next tick. Fewer system calls and TCP segments here, and fewer wake-ups of the server for
 * the same round trips. When ssh2's socket is not where expected, nothing changes.
 */
export function coalesceWrites(client: Client): void {
  const sock = (client as unknown as {_sock?: Socket})._sock
  if (!sock || typeof sock.cork !== 'function' || typeof sock.uncork !== 'function') return
  const write = sock.write
  let corked = false
  sock.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    if (!corked) {
      corked = true
      this.cork()
      process.nextTick(() => {
        corked = false
        this.uncork()
      })
    }
    return write.apply(this, args)
  } as Socket['write']
}

/** The hash of a public key signature algorithm, as ssh2 signs with it (see its getKeyAlgos). */
function signatureHash(keyAlgo: string | undefined): string | undefined {
  if (keyAlgo === 'rsa-sha2-256') return 'sha256'
  if (keyAlgo === 'rsa-sha2-512') return 'sha512'
  if (keyAlgo === 'ssh-rsa') return 'sha1'
  return undefined
}

/**
 * Public key authentication with a key file in one round trip instead of two: ssh2 first asks whether the
 * server would accept the key (a request without signature, answered by PK_OK) and only then sends the signed
 * request; RFC 4252 (7) lets a client send the signed request at once, and the server answers it with success
 * or failure as it answers the query (a failure goes on to the next key, as before). Done by giving ssh2's
 * authPK a signer when it is called for a private key without one; keys from ssh-agent (public halves: the
 * agent signs) keep the query. When ssh2's internals are not as expected, nothing changes.
 */
export function signWithoutQuery(client: Client): void {
  type Signer = (data: Buffer, done: (signature: Buffer) => void) => void
  type AuthPK = (user: string, key: unknown, keyAlgo?: string | Signer, sign?: Signer) => void
  const proto = (client as unknown as {_protocol?: {authPK?: AuthPK}})._protocol
  const original = proto?.authPK
  if (!proto || typeof original !== 'function') return
  proto.authPK = function (user, key, keyAlgo, sign) {
    const parsed = key as Partial<ParsedKey> | undefined
    if (
      sign !== undefined ||
      typeof keyAlgo === 'function' ||
      typeof parsed?.isPrivateKey !== 'function' ||
      !parsed.isPrivateKey() ||
      typeof parsed.sign !== 'function'
    ) {
      return original.call(this, user, key, keyAlgo, sign)
    }
    const privateKey = parsed as ParsedKey
    const signed: Signer = (data, done) => {
      const signature = privateKey.sign(data, signatureHash(keyAlgo))
      // Cannot sign: ask first after all, and ssh2 reports the error when it signs after PK_OK.
      if (signature instanceof Error) original.call(this, user, key, keyAlgo)
      else done(signature)
    }
    return original.call(this, user, key, keyAlgo, signed)
  }
}
