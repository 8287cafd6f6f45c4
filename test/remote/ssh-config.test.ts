import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expandSshPath, resolveSshHost, type ResolveOptions} from '../../src/remote/ssh-config.js'

let home: string
let sshDir: string

function touch(file: string): string {
  fs.mkdirSync(path.dirname(file), {recursive: true})
  fs.writeFileSync(file, '')
  return file
}

/** Options that read only `config` (written to ~/.ssh/config of the fake home) and no system file. */
function opts(config: string | undefined, extra: Partial<ResolveOptions> = {}): ResolveOptions {
  const configPath = path.join(sshDir, 'config')
  if (config === undefined) fs.rmSync(configPath, {force: true})
  else fs.writeFileSync(configPath, config)
  return {home, systemConfigPath: false, env: {}, localUser: 'alice', ...extra}
}

beforeAll(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'mr-sshcfg-'))
  sshDir = path.join(home, '.ssh')
  fs.mkdirSync(sshDir, {mode: 0o700})
})

afterAll(() => {
  fs.rmSync(home, {recursive: true, force: true})
})

describe('resolveSshHost', () => {
  it('uses the OpenSSH defaults without a config: current user, port 22, existing default keys', async () => {
    touch(path.join(sshDir, 'id_rsa'))
    touch(path.join(sshDir, 'id_ed25519'))
    const r = await resolveSshHost('mail1.example.com', opts(undefined))
    expect(r).toMatchObject({
      alias: 'mail1.example.com',
      hostName: 'mail1.example.com',
      port: 22,
      user: 'alice',
      identityFiles: [path.join(sshDir, 'id_ed25519'), path.join(sshDir, 'id_rsa')],
      identitiesOnly: false,
      hostKeyPolicy: 'strict',
      hashKnownHosts: false,
      userKnownHostsFiles: [path.join(sshDir, 'known_hosts'), path.join(sshDir, 'known_hosts2')],
      globalKnownHostsFiles: ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'],
    })
    expect(r.agentSocket).toBeUndefined()
    expect(r.notes).toEqual([])
    fs.rmSync(path.join(sshDir, 'id_rsa'))
    fs.rmSync(path.join(sshDir, 'id_ed25519'))
  })

  it('uses ssh-agent through SSH_AUTH_SOCK', async () => {
    const r = await resolveSshHost('h', opts(undefined, {env: {SSH_AUTH_SOCK: '/run/agent.sock'}}))
    expect(r.agentSocket).toBe('/run/agent.sock')
  })

  it('reads HostName, User, Port, IdentityFile with tokens, known_hosts files and StrictHostKeyChecking', async () => {
    const key = touch(path.join(sshDir, 'keys', 'root@mail1.example.com-2222'))
    const r = await resolveSshHost(
      'mail1',
      opts(`
Host mail1
  HostName %h.example.com
  User root
  Port 2222
  IdentityFile ~/.ssh/keys/%r@%h-%p
  IdentityFile ~/.ssh/missing_%u
  UserKnownHostsFile ~/.ssh/known_hosts_mailring "${home}/other known"
  StrictHostKeyChecking accept-new
  HashKnownHosts yes
  ConnectTimeout 7

Host *
  User nobody
  Port 2200
`),
    )
    expect(r).toMatchObject({
      alias: 'mail1',
      hostName: 'mail1.example.com',
      user: 'root',
      port: 2222,
      identityFiles: [key],
      hostKeyPolicy: 'accept-new',
      strictHostKeyChecking: 'accept-new',
      hashKnownHosts: true,
      connectTimeoutMs: 7000,
    })
    expect(r.userKnownHostsFiles[0]).toBe(path.join(sshDir, 'known_hosts_mailring'))
    expect(r.notes).toEqual([`identity file ${path.join(sshDir, 'missing_alice')} does not exist.`])
  })

  it('lets the first value win, as OpenSSH does, and applies Host * to other hosts', async () => {
    const config = `
Host *.example.com
  User first
Host *
  User second
  Port 2200
`
    expect(await resolveSshHost('a.example.com', opts(config))).toMatchObject({user: 'first', port: 2200})
    expect(await resolveSshHost('b.example.net', opts(config))).toMatchObject({user: 'second', port: 2200})
  })

  it('lets command-line style overrides win over the config', async () => {
    const key = touch(path.join(home, 'explicit_key'))
    const r = await resolveSshHost(
      'mail1',
      opts('Host mail1\n  User root\n  Port 2222\n  IdentityFile ~/.ssh/nope\n', {
        user: 'admin',
        port: 22022,
        identityFiles: [key],
      }),
    )
    expect(r).toMatchObject({user: 'admin', port: 22022, identityFiles: [key]})
  })

  it('an explicit empty identity file list means no key files, not the defaults', async () => {
    touch(path.join(sshDir, 'id_ed25519'))
    expect((await resolveSshHost('h', opts(undefined))).identityFiles).toEqual([
      path.join(sshDir, 'id_ed25519'),
    ])
    expect((await resolveSshHost('h', opts(undefined, {identityFiles: []}))).identityFiles).toEqual([])
    fs.rmSync(path.join(sshDir, 'id_ed25519'))
  })

  it('reads the system config after the user config', async () => {
    const system = path.join(home, 'ssh_config_system')
    fs.writeFileSync(system, 'Host *\n  HashKnownHosts yes\n  User fromsystem\n  Port 2022\n')
    const r = await resolveSshHost('h', opts('Host h\n  Port 2222\n', {systemConfigPath: system}))
    expect(r).toMatchObject({port: 2222, user: 'fromsystem', hashKnownHosts: true})
  })

  it('inlines Include files (relative to ~/.ssh, with wildcards)', async () => {
    fs.mkdirSync(path.join(sshDir, 'config.d'), {recursive: true})
    fs.writeFileSync(path.join(sshDir, 'config.d', '10-mail.conf'), 'Host mail*\n  User mailadmin\n')
    fs.writeFileSync(
      path.join(sshDir, 'config.d', '20-other.conf'),
      'Host mail*\n  User ignored\n  Port 2022\n',
    )
    const r = await resolveSshHost('mail7', opts('Include config.d/*.conf\n'))
    expect(r).toMatchObject({user: 'mailadmin', port: 2022})
  })

  it('IdentitiesOnly and IdentityAgent none disable the agent; IdentityAgent sets its socket', async () => {
    const env = {SSH_AUTH_SOCK: '/run/agent.sock', MYSOCK: '/run/my.sock'}
    expect((await resolveSshHost('h', opts('IdentitiesOnly yes\n', {env}))).agentSocket).toBeUndefined()
    expect((await resolveSshHost('h', opts('IdentityAgent none\n', {env}))).agentSocket).toBeUndefined()
    expect((await resolveSshHost('h', opts('IdentityAgent ~/agent.%u\n', {env}))).agentSocket).toBe(
      path.join(home, 'agent.alice'),
    )
    expect((await resolveSshHost('h', opts('IdentityAgent $MYSOCK\n', {env}))).agentSocket).toBe(
      '/run/my.sock',
    )
  })

  it('maps StrictHostKeyChecking to a policy, never below accept-new', async () => {
    for (const [value, policy] of [
      ['yes', 'strict'],
      ['ask', 'strict'],
      ['accept-new', 'accept-new'],
      ['no', 'accept-new'],
    ] as const) {
      const r = await resolveSshHost('h', opts(`StrictHostKeyChecking ${value}\n`))
      expect(r.hostKeyPolicy).toBe(policy)
    }
    expect((await resolveSshHost('h', opts('StrictHostKeyChecking no\n'))).notes.join()).toContain(
      'a changed host key is always refused',
    )
  })

  it('reads HostKeyAlias and UserKnownHostsFile none', async () => {
    const r = await resolveSshHost('h', opts('HostKeyAlias mailcluster\nUserKnownHostsFile none\n'))
    expect(r.hostKeyAlias).toBe('mailcluster')
    expect(r.userKnownHostsFiles).toEqual([])
  })

  it('refuses ProxyJump and ProxyCommand with a clear line, but accepts "none"', async () => {
    await expect(resolveSshHost('h', opts('Host h\n  ProxyJump bastion\n'))).rejects.toThrow(
      /ssh config sets ProxyJump for h, which mailring does not support/,
    )
    await expect(resolveSshHost('h', opts('Host h\n  ProxyCommand ssh -W %h:%p bastion\n'))).rejects.toThrow(
      /ProxyCommand/,
    )
    await expect(resolveSshHost('h', opts('Host h\n  ProxyJump none\n'))).resolves.toMatchObject({
      hostName: 'h',
    })
  })

  it('never runs Match exec', async () => {
    const marker = path.join(home, 'match-exec-ran')
    const r = await resolveSshHost('h', opts(`Match exec "touch ${marker}"\n  User fromexec\n`))
    expect(fs.existsSync(marker)).toBe(false)
    expect(r.user).toBe('alice')
    expect(r.notes.join()).toContain('Match exec')
  })

  it('rejects an invalid port', async () => {
    await expect(resolveSshHost('h', opts('Port 99999\n'))).rejects.toThrow(/invalid Port 99999/)
  })
})

describe('expandSshPath', () => {
  const ctx = {
    host: 'mail1.example.com',
    originalHost: 'mail1',
    port: 2222,
    remoteUser: 'root',
    localUser: 'alice',
    home: '/home/alice',
  }

  it('expands ~, tokens and ${VAR}', () => {
    expect(expandSshPath('~/.ssh/id_%r@%h:%p', ctx)).toBe('/home/alice/.ssh/id_root@mail1.example.com:2222')
    expect(expandSshPath('%d/keys/%u/%n/100%%', ctx)).toBe('/home/alice/keys/alice/mail1/100%')
    expect(expandSshPath('${KEYS}/k', ctx, {KEYS: '/srv/keys'})).toBe('/srv/keys/k')
  })

  it('rejects unknown tokens and unset variables', () => {
    expect(() => expandSshPath('~/.ssh/%C', ctx)).toThrow(/token %C .* not supported/)
    expect(() => expandSshPath('${NOPE}/k', ctx, {})).toThrow(/NOPE/)
  })
})
