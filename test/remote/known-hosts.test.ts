import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  appendKnownHost,
  entryMatchesHost,
  fingerprintSha256,
  formatKnownHostsLine,
  keyTypeOfBlob,
  knownHostsName,
  knownKeyTypes,
  loadKnownHosts,
  parseKnownHosts,
  verifyHostKey,
  wildcardMatch,
  type KnownHosts,
} from '../../src/remote/known-hosts.js'

interface TestKey {
  /** 'ssh-ed25519 AAAA...' */
  text: string
  type: string
  blob: Buffer
  pubPath: string
}

let dir: string
const keys: Record<'a' | 'b' | 'ecdsa' | 'rsa', TestKey> = {} as never

function keygen(name: string, type: string, bits?: string): TestKey {
  const file = path.join(dir, name)
  execFileSync('ssh-keygen', [
    '-q',
    '-t',
    type,
    ...(bits ? ['-b', bits] : []),
    '-N',
    '',
    '-C',
    name,
    '-f',
    file,
  ])
  const [keyType, b64] = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/)
  return {
    text: `${keyType} ${b64}`,
    type: keyType!,
    blob: Buffer.from(b64!, 'base64'),
    pubPath: `${file}.pub`,
  }
}

function kh(text: string): KnownHosts {
  const parsed = parseKnownHosts(text, 'known_hosts')
  return {files: ['known_hosts'], ...parsed}
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mr-kh-'))
  keys.a = keygen('a', 'ed25519')
  keys.b = keygen('b', 'ed25519')
  keys.ecdsa = keygen('ecdsa', 'ecdsa', '256')
  keys.rsa = keygen('rsa', 'rsa', '2048')
})

afterAll(() => {
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('key blobs', () => {
  it('reads the key type from the blob', () => {
    expect(keyTypeOfBlob(keys.a.blob)).toBe('ssh-ed25519')
    expect(keyTypeOfBlob(keys.ecdsa.blob)).toBe('ecdsa-sha2-nistp256')
    expect(keyTypeOfBlob(keys.rsa.blob)).toBe('ssh-rsa')
    expect(keyTypeOfBlob(Buffer.from([0, 0, 0]))).toBeUndefined()
    expect(keyTypeOfBlob(Buffer.from([0, 0, 1, 0, 65]))).toBeUndefined()
  })

  it('computes fingerprints exactly as ssh-keygen -l shows them', () => {
    for (const key of Object.values(keys)) {
      const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', key.pubPath], {encoding: 'utf8'})
      expect(out.split(' ')[1]).toBe(fingerprintSha256(key.blob))
    }
  })
})

describe('wildcardMatch', () => {
  it.each([
    ['*', '', true],
    ['*', 'anything', true],
    ['*.example.org', 'mail.example.org', true],
    ['*.example.org', 'example.org', false],
    ['mail?.example.net', 'mail1.example.net', true],
    ['mail?.example.net', 'mail12.example.net', false],
    ['mail?.example.net', 'mail.example.net', false],
    ['10.0.*.1', '10.0.200.1', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'axxbyy', false],
    ['[*.example.org]:2222', '[mx.example.org]:2222', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
  ])('%s vs %s -> %s', (pattern, text, expected) => {
    expect(wildcardMatch(pattern, text)).toBe(expected)
  })
})

describe('parseKnownHosts', () => {
  it('skips comments and blank lines and keeps line numbers and trailing comments', () => {
    const {entries, problems} = parseKnownHosts(
      [
        '# a comment',
        '',
        '   ',
        `host1 ${keys.a.text} my comment here`,
        '\t# indented comment',
        `host2 ${keys.b.text}`,
      ].join('\n'),
      'f',
    )
    expect(problems).toEqual([])
    expect(entries.map((e) => [e.line, e.hosts, e.comment])).toEqual([
      [4, 'host1', 'my comment here'],
      [6, 'host2', undefined],
    ])
    expect(entries[0]!.key.equals(keys.a.blob)).toBe(true)
  })

  it('reports malformed lines with their line numbers and keeps the rest', () => {
    const {entries, problems} = parseKnownHosts(
      [
        'onlyhost',
        `host ssh-rsa ${keys.a.text.split(' ')[1]}`, // type does not match the key
        'host ssh-ed25519 not*base64',
        `@bogus host ${keys.a.text}`,
        `|1|short|x ${keys.a.text}`,
        `a,,b ${keys.a.text}`,
        `good ${keys.a.text}`,
      ].join('\n'),
      'f',
    )
    expect(entries.map((e) => e.line)).toEqual([7])
    expect(problems.map((p) => p.line)).toEqual([1, 2, 3, 4, 5, 6])
    expect(problems[1]!.reason).toContain('does not match')
    expect(problems[3]!.reason).toContain('@bogus')
  })

  it('parses markers', () => {
    const {entries} = parseKnownHosts(
      `@revoked * ${keys.a.text}\n@cert-authority *.example.org ${keys.b.text}\n`,
      'f',
    )
    expect(entries.map((e) => e.marker)).toEqual(['revoked', 'cert-authority'])
  })

  it('accepts CRLF line endings', () => {
    const {entries, problems} = parseKnownHosts(`host1 ${keys.a.text}\r\nhost2 ${keys.b.text}\r\n`, 'f')
    expect(problems).toEqual([])
    expect(entries.map((e) => e.hosts)).toEqual(['host1', 'host2'])
  })
})

describe('verifyHostKey', () => {
  it('trusts a plain host name (case-insensitively) on port 22 only', () => {
    const k = kh(`Mail.Example.com ${keys.a.text}\n`)
    const v = verifyHostKey(k, 'mail.example.com', 22, keys.a.blob)
    expect(v.status).toBe('trusted')
    expect(v.matchedLine?.line).toBe(1)
    expect(v.fingerprint).toBe(fingerprintSha256(keys.a.blob))
    expect(v.keyType).toBe('ssh-ed25519')
    expect(verifyHostKey(k, 'MAIL.EXAMPLE.COM', 22, keys.a.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'other.example.com', 22, keys.a.blob).status).toBe('unknown')
    expect(verifyHostKey(k, 'mail.example.com', 2222, keys.a.blob).status).toBe('unknown')
  })

  it('matches each name of a comma-separated list', () => {
    const k = kh(`mail1,mail1.example.com,192.0.2.10 ${keys.a.text}\n`)
    for (const host of ['mail1', 'mail1.example.com', '192.0.2.10']) {
      expect(verifyHostKey(k, host, 22, keys.a.blob).status).toBe('trusted')
    }
    expect(verifyHostKey(k, 'mail2', 22, keys.a.blob).status).toBe('unknown')
  })

  it('matches [host]:port entries on that port only', () => {
    const k = kh(`[mail.example.com]:2222 ${keys.a.text}\n[192.0.2.1]:2200,[::1]:2200 ${keys.b.text}\n`)
    expect(verifyHostKey(k, 'mail.example.com', 2222, keys.a.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'mail.example.com', 22, keys.a.blob).status).toBe('unknown')
    expect(verifyHostKey(k, 'mail.example.com', 2200, keys.a.blob).status).toBe('unknown')
    expect(verifyHostKey(k, '::1', 2200, keys.b.blob).status).toBe('trusted')
    expect(verifyHostKey(k, '192.0.2.1', 2200, keys.b.blob).status).toBe('trusted')
    expect(knownHostsName('::1', 2200)).toBe('[::1]:2200')
    expect(knownHostsName('Host', 22)).toBe('host')
  })

  it('treats an explicit [host]:22 entry as port 22', () => {
    const k = kh(`[mail.example.com]:22 ${keys.a.text}\n`)
    expect(verifyHostKey(k, 'mail.example.com', 22, keys.a.blob).status).toBe('trusted')
  })

  it('matches wildcards and lets negations win', () => {
    const k = kh(
      [
        `*.example.org,!bad.example.org ${keys.a.text}`,
        `mail?.example.net ${keys.b.text}`,
        `[*.example.org]:2222 ${keys.b.text}`,
      ].join('\n'),
    )
    expect(verifyHostKey(k, 'good.example.org', 22, keys.a.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'bad.example.org', 22, keys.a.blob).status).toBe('unknown')
    expect(verifyHostKey(k, 'example.org', 22, keys.a.blob).status).toBe('unknown')
    expect(verifyHostKey(k, 'mail1.example.net', 22, keys.b.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'mail10.example.net', 22, keys.b.blob).status).toBe('unknown')
    expect(verifyHostKey(k, 'mx.example.org', 2222, keys.b.blob).status).toBe('trusted')
    // A negation alone matches nothing.
    expect(entryMatchesHost(kh(`!bad ${keys.a.text}`).entries[0]!, 'good', 22)).toBe(false)
  })

  it('reports a changed key with the line that has the old one', () => {
    const k = kh(`# header\nmail ${keys.b.text}\n`)
    const v = verifyHostKey(k, 'mail', 22, keys.a.blob)
    expect(v.status).toBe('changed')
    expect(v.matchedLine?.line).toBe(2)
    expect(v.matchedLine?.key.equals(keys.b.blob)).toBe(true)
    expect(v.fingerprint).toBe(fingerprintSha256(keys.a.blob))
  })

  it('trusts a key if any line has it, even when another line has a different key of that type', () => {
    const k = kh(`mail ${keys.b.text}\nmail ${keys.a.text}\n`)
    const v = verifyHostKey(k, 'mail', 22, keys.a.blob)
    expect(v.status).toBe('trusted')
    expect(v.matchedLine?.line).toBe(2)
  })

  it('reports keys of other types known for the host (not "changed", but not plain unknown either)', () => {
    const k = kh(`mail ${keys.ecdsa.text}\nmail ${keys.rsa.text}\n`)
    const v = verifyHostKey(k, 'mail', 22, keys.a.blob)
    expect(v.status).toBe('unknown')
    expect(v.otherKeys.map((e) => e.keyType)).toEqual(['ecdsa-sha2-nistp256', 'ssh-rsa'])
    expect(knownKeyTypes(k, 'mail', 22)).toEqual(['ecdsa-sha2-nistp256', 'ssh-rsa'])
    expect(knownKeyTypes(k, 'other', 22)).toEqual([])
  })

  it('refuses a revoked key even if another line trusts it, whatever hosts the @revoked line names', () => {
    const trusted = `mail ${keys.a.text}\n`
    expect(verifyHostKey(kh(`${trusted}@revoked * ${keys.a.text}\n`), 'mail', 22, keys.a.blob)).toMatchObject(
      {
        status: 'revoked',
        matchedLine: {line: 2, marker: 'revoked'},
      },
    )
    expect(
      verifyHostKey(kh(`@revoked other ${keys.a.text}\n${trusted}`), 'mail', 22, keys.a.blob).status,
    ).toBe('revoked')
    // Revoking one key does not affect others.
    expect(verifyHostKey(kh(`@revoked * ${keys.b.text}\n${trusted}`), 'mail', 22, keys.a.blob).status).toBe(
      'trusted',
    )
    // A revoked line is not a "known key" of the host.
    expect(knownKeyTypes(kh(`@revoked mail ${keys.b.text}\n`), 'mail', 22)).toEqual([])
  })

  it('never trusts a @cert-authority key as a host key, but reports the line', () => {
    const k = kh(`@cert-authority *.example.org ${keys.a.text}\n`)
    const v = verifyHostKey(k, 'mail.example.org', 22, keys.a.blob)
    expect(v.status).toBe('unknown')
    expect(v.certAuthorities.map((e) => e.line)).toEqual([1])
    expect(v.otherKeys).toEqual([])
    expect(knownKeyTypes(k, 'mail.example.org', 22)).toEqual([])
    // Nor does a CA line make a different key "changed".
    expect(verifyHostKey(k, 'mail.example.org', 22, keys.b.blob).status).toBe('unknown')
  })
})

describe('hashed host names (ssh-keygen -H interop)', () => {
  it('verifies entries hashed by ssh-keygen -H', () => {
    const file = path.join(dir, 'hashed_known_hosts')
    fs.writeFileSync(file, `hashed.example.com ${keys.a.text}\n[hashed.example.com]:2222 ${keys.b.text}\n`)
    execFileSync('ssh-keygen', ['-H', '-f', file], {stdio: 'ignore'})
    const text = fs.readFileSync(file, 'utf8')
    expect(text).not.toContain('hashed.example.com')
    expect(text.match(/^\|1\|/gm)).toHaveLength(2)
    const k = kh(text)
    expect(k.problems).toEqual([])
    expect(verifyHostKey(k, 'hashed.example.com', 22, keys.a.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'HASHED.example.com', 22, keys.a.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'hashed.example.com', 2222, keys.b.blob).status).toBe('trusted')
    expect(verifyHostKey(k, 'hashed.example.com', 2222, keys.a.blob).status).toBe('changed')
    expect(verifyHostKey(k, 'other.example.com', 22, keys.a.blob).status).toBe('unknown')
  })

  it('writes hashed entries that ssh-keygen -F finds', async () => {
    const file = path.join(dir, 'ours_hashed')
    await appendKnownHost(file, 'mail.example.com', 22, keys.a.blob, {hash: true})
    await appendKnownHost(file, 'mail.example.com', 2222, keys.b.blob, {hash: true})
    const text = fs.readFileSync(file, 'utf8')
    expect(text).not.toContain('example')
    const found = execFileSync('ssh-keygen', ['-F', 'mail.example.com', '-f', file], {encoding: 'utf8'})
    expect(found).toContain(keys.a.text)
    const foundPort = execFileSync('ssh-keygen', ['-F', '[mail.example.com]:2222', '-f', file], {
      encoding: 'utf8',
    })
    expect(foundPort).toContain(keys.b.text)
    expect(formatKnownHostsLine('h', 22, keys.a.blob, {hash: true})).toMatch(
      /^\|1\|[A-Za-z0-9+/=]{28}\|[A-Za-z0-9+/=]{28} ssh-ed25519 /,
    )
  })
})

describe('loadKnownHosts', () => {
  it('reads several files in order, skipping missing ones', async () => {
    const f1 = path.join(dir, 'load1')
    const f2 = path.join(dir, 'load2')
    fs.writeFileSync(f1, `one ${keys.a.text}\n`)
    fs.writeFileSync(f2, `two ${keys.b.text}\nbroken\n`)
    const k = await loadKnownHosts([f1, path.join(dir, 'missing'), f2])
    expect(k.files).toEqual([f1, f2])
    expect(k.entries.map((e) => [e.file, e.line, e.hosts])).toEqual([
      [f1, 1, 'one'],
      [f2, 1, 'two'],
    ])
    expect(k.problems).toMatchObject([{file: f2, line: 2}])
  })

  it('fails on a file that exists but cannot be read', async () => {
    await expect(loadKnownHosts([dir])).rejects.toThrow(/Cannot read known_hosts file/)
  })
})

describe('appendKnownHost', () => {
  it('creates the folder with mode 0700 and the file with mode 0600, atomically', async () => {
    const home = fs.mkdtempSync(path.join(dir, 'home-'))
    const file = path.join(home, '.ssh', 'known_hosts')
    const entry = await appendKnownHost(file, '127.0.0.1', 2222, keys.a.blob)
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.readFileSync(file, 'utf8')).toBe(`[127.0.0.1]:2222 ${keys.a.text}\n`)
    expect(entry).toMatchObject({file, line: 1, hosts: '[127.0.0.1]:2222', keyType: 'ssh-ed25519'})
    // What we wrote is what OpenSSH finds.
    const found = execFileSync('ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', file], {encoding: 'utf8'})
    expect(found).toContain(keys.a.text)
    expect(fs.readdirSync(path.dirname(file))).toEqual(['known_hosts'])
  })

  it('appends to an existing file, keeping its content and mode, even without a final newline', async () => {
    const file = path.join(dir, 'existing_known_hosts')
    fs.writeFileSync(file, `# mine\nold ${keys.b.text}`)
    fs.chmodSync(file, 0o644)
    const entry = await appendKnownHost(file, 'new', 22, keys.a.blob)
    expect(fs.readFileSync(file, 'utf8')).toBe(`# mine\nold ${keys.b.text}\nnew ${keys.a.text}\n`)
    expect(fs.statSync(file).mode & 0o777).toBe(0o644)
    expect(entry.line).toBe(3)
    const k = await loadKnownHosts([file])
    expect(verifyHostKey(k, 'new', 22, keys.a.blob)).toMatchObject({
      status: 'trusted',
      matchedLine: {line: 3},
    })
  })

  it('serialises concurrent appends to one file', async () => {
    const file = path.join(dir, 'concurrent_known_hosts')
    await Promise.all(
      Array.from({length: 10}, (_, i) =>
        appendKnownHost(file, `host${i}`, 22, i % 2 ? keys.a.blob : keys.b.blob),
      ),
    )
    const k = await loadKnownHosts([file])
    expect(k.entries.map((e) => e.hosts).sort()).toEqual(
      Array.from({length: 10}, (_, i) => `host${i}`).sort(),
    )
    expect(fs.readdirSync(dir).filter((n) => n.includes('mailring'))).toEqual([])
  })

  it('writes through a symlinked known_hosts instead of replacing the link', async () => {
    const real = path.join(dir, 'real_known_hosts')
    const link = path.join(dir, 'link_known_hosts')
    fs.writeFileSync(real, '')
    fs.symlinkSync(real, link)
    await appendKnownHost(link, 'linked', 22, keys.a.blob)
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true)
    expect(fs.readFileSync(real, 'utf8')).toBe(`linked ${keys.a.text}\n`)
  })
})
