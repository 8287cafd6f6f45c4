/** `mailring simulate` for people: the ring and pairs side by side, then the pair groups and notes. */
import type {CapacityFigures, LayoutReport, SimulationResult} from '../core/simulate/index.js'
import {groupDigits, percent, renderTable} from './table.js'

/** Server names for a table cell: the first few, then how many in all. */
function names(list: readonly string[], limit = 5, separator = ','): string {
  if (list.length <= limit) return list.join(separator)
  return `${list.slice(0, limit).join(separator)}${separator}... (${list.length} servers)`
}

/** The result as tables and lines; the warnings are not part of it (they go to stderr). */
export function renderSimulation(result: Omit<SimulationResult, 'warnings'>): string {
  const {cluster, failure, ring, pairs, capacity} = result
  const k = failure.k
  const lines: string[] = []
  const zones = cluster.zones.length === 0 ? 'no zones' : `${cluster.zones.length} zones`
  lines.push(
    `Cluster: ${cluster.servers} servers (${cluster.source === 'synthetic' ? 'synthetic' : 'topology file'}), ${zones}, ${cluster.copies} copies, ${groupDigits(cluster.users)} users.`,
  )
  const what =
    failure.mode === 'random'
      ? `${k} server${k === 1 ? '' : 's'} chosen at random (seed ${failure.seed})`
      : failure.mode === 'zone'
        ? `zone ${failure.zone}`
        : `${k} named server${k === 1 ? '' : 's'}`
  lines.push(`Failing ${what}: ${names(failure.servers, 12, ', ')}.`, '')

  const both = (cell: (report: LayoutReport) => string): string[] => [cell(ring), cell(pairs)]
  const users = (count: number, share: number) => `${percent(share)} (${groupDigits(count)})`
  const worstCell = (report: LayoutReport) =>
    report.offline.worst.users === 0
      ? `${percent(0)} (no ${k}-server failure loses a user)`
      : `${percent(report.offline.worst.share)} ${names(report.offline.worst.servers)}${
          report.offline.worstMethod === 'heuristic' ? ' (by search)' : ''
        }`
  const load = (value: number) => groupDigits(Math.round(value))
  const capacityCell = (figures: CapacityFigures) => {
    if (figures.utilisation === null) return 'n/a'
    const share = `${percent(figures.utilisation, 1)} of nominal`
    return figures.users === null ? share : `${groupDigits(figures.users)} users (${share})`
  }
  const rows: string[][] = [
    ['Offline now', ...both((r) => users(r.offline.chosen.users, r.offline.chosen.share))],
    [`Offline, expected over any ${k}`, ...both((r) => percent(r.offline.expected))],
    [`Offline, worst ${k}`, ...both(worstCell)],
    [
      'Load increase, max',
      ...both(
        (r) =>
          `+${load(r.load.increase.max)}${r.load.increase.server && r.load.increase.max > 0 ? ` on ${r.load.increase.server}` : ''}`,
      ),
    ],
    ['Load increase, mean', ...both((r) => `+${load(r.load.increase.mean)}`)],
    ['Max load, before -> after', ...both((r) => `${load(r.load.before.max)} -> ${load(r.load.after.max)}`)],
    [
      'Mean load, before -> after',
      ...both((r) => `${load(r.load.before.mean)} -> ${load(r.load.after.mean)}`),
    ],
    [`Capacity, tolerating ${capacity.tolerates}`, capacityCell(capacity.ring), capacityCell(capacity.pairs)],
    [
      '  limited by failing',
      ...[capacity.ring, capacity.pairs].map((c) => {
        const count = groupDigits(c.setsEvaluated)
        if (c.method === 'zones') return `zone ${c.worstZone ?? '-'} (of ${count} zones)`
        const how = c.method === 'exact' ? `all ${count} sets` : `${count} sets sampled`
        return `${names(c.worstSet) || '-'} (${how})`
      }),
    ],
  ]
  lines.push(renderTable(['', 'RING', 'PAIRS'], rows))
  if (capacity.ratio !== null) {
    const perServer =
      capacity.perServer === null ? '' : ` at ${groupDigits(capacity.perServer)} users per server`
    lines.push('', `The ring holds ${capacity.ratio.toFixed(2)}x the users of pairs${perServer}.`)
  }
  for (const pool of pairs.pools) {
    const groups = pool.groups.map((group) => group.join('+'))
    const which = pairs.pools.length > 1 ? ` for ${pool.domains.join(', ')} (${pool.copies} copies)` : ''
    lines.push(
      `Pairs${which}: ${groups.slice(0, 12).join(', ')}${groups.length > 12 ? `, ... (${groups.length} groups)` : ''}.`,
    )
  }

  if (ring.load.perServer && pairs.load.perServer) {
    const pairRows = new Map(pairs.load.perServer.map((row) => [row.name, row]))
    lines.push(
      '',
      renderTable(
        [
          'SERVER',
          'ZONE',
          'STATE',
          'RING BEFORE',
          'RING AFTER',
          'RING +',
          'PAIRS BEFORE',
          'PAIRS AFTER',
          'PAIRS +',
        ],
        ring.load.perServer.map((row) => {
          const pair = pairRows.get(row.name)!
          return [
            row.name,
            row.zone ?? '-',
            row.state,
            row.before,
            row.after,
            row.increase,
            pair.before,
            pair.after,
            pair.increase,
          ]
        }),
      ),
    )
  }
  for (const note of result.notes) lines.push(`Note: ${note}`)
  return lines.join('\n')
}
