/** The probe settings of the `replicator` config section (src/engine/replicator/probe-settings.ts). */
import {describe, expect, it} from 'vitest'

import {parseProbeSettings, probePortsOf} from '../../../src/engine/replicator/probe-settings.js'
import {DEFAULT_DOVEADM_SETTINGS, parseDoveadmSettings} from '../../../src/remote/doveadm-settings.js'
import {configText, refusal} from '../../support/config-text.js'

const FILE = '/etc/mailring/config.yaml'
const config = (text: string) => configText(text, FILE)
const doveadm = {...DEFAULT_DOVEADM_SETTINGS, httpPorts: {}}

describe('replicator probe settings', () => {
  it("has the design's defaults: 500 ms, 1 s, down after 2, returning after 3; IMAP 143, LMTP 24, doveadm's HTTP port", () => {
    const s = parseProbeSettings(undefined, doveadm)
    expect(s).toMatchObject({intervalMs: 500, timeoutMs: 1000, downAfter: 2, upAfter: 3, https: false})
    expect(probePortsOf(s, doveadm, 'mx01')).toEqual({imap: 143, lmtp: 24, doveadm: 8080})
  })

  it('reads every key; doveadm ports follow the doveadm section unless given; per-server ports', () => {
    const file = config(
      [
        'doveadm:',
        '  http_port: 8081',
        '  http_ports: {mx07: 9090}',
        '  https: true',
        'replicator:',
        "  listen: 127.0.0.1:8425 # the service's keys are left alone here",
        '  probe_interval: 250ms',
        '  probe_timeout: 2s',
        '  down_after: 3',
        '  up_after: 5',
        '  probe_ports: {imap: 1143, lmtp: 2424}',
        '  probe_ports_by_server: {mx02: {imap: 10143, doveadm: 7000}}',
      ].join('\n'),
    )
    const d = parseDoveadmSettings(file)
    const s = parseProbeSettings(file, d)
    expect(s).toMatchObject({intervalMs: 250, timeoutMs: 2000, downAfter: 3, upAfter: 5, https: true})
    expect(probePortsOf(s, d, 'mx01')).toEqual({imap: 1143, lmtp: 2424, doveadm: 8081})
    expect(probePortsOf(s, d, 'mx07')).toEqual({imap: 1143, lmtp: 2424, doveadm: 9090})
    expect(probePortsOf(s, d, 'mx02')).toEqual({imap: 10143, lmtp: 2424, doveadm: 7000})
    const fixed = parseProbeSettings(config('replicator:\n  probe_ports: {doveadm: 8443}\n'), d)
    expect(probePortsOf(fixed, d, 'mx07').doveadm).toBe(8443)
  })

  it('refuses bad values, every one at once, by file, line and key', () => {
    const message = refusal(
      (c) => parseProbeSettings(c, doveadm),
      [
        'replicator:',
        '  probe_interval: 5',
        '  down_after: 0',
        '  probe_ports: {imap: 70000, pop3: 110}',
        '  probe_ports_by_server: [mx01]',
      ].join('\n'),
      FILE,
    )
    expect(message.split('\n')).toEqual([
      `${FILE}:2: replicator.probe_interval: probe_interval is a duration from 50ms to 3600s, e.g. 500ms (got 5)`,
      `${FILE}:3: replicator.down_after: down_after is a count from 1 to 1000 (got 0)`,
      expect.stringMatching(
        /^\/etc\/mailring\/config.yaml:4: replicator.probe_ports.imap: a port is a whole number/,
      ),
      expect.stringMatching(/:4: replicator.probe_ports.pop3: unknown key "pop3"/),
      expect.stringMatching(/:5: replicator.probe_ports_by_server: probe_ports_by_server maps server names/),
    ])
  })
})
