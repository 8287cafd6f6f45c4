/**
 * Which users a command works on, each with its current copies: named users, whole domains, the users with
 * a copy on some servers, everyone, or a sample spread over every server. A name that selects nothing is
 * reported, one line, and the others go on.
 */
import {canonicalDomain, checkUserAddress} from '../../core/address.js'
import type {Store} from '../../store/store.js'

export interface UserCopies {
  user: string
  copies: string[]
}

/** The users selected, and a line for each name that selected nothing. */
export interface Selection {
  targets: UserCopies[]
  /** One line per name that selects nothing (unknown user or domain, invalid address): reported, skipped. */
  problems: string[]
}

const PAGE = 5000

export async function selectUsers(store: Store, names: readonly string[]): Promise<Selection> {
  const selection: Selection = {targets: [], problems: []}
  const seen = new Set<string>()
  for (const name of names) {
    const check = checkUserAddress(name)
    if (!check.ok) {
      selection.problems.push(`Invalid user address: ${check.reason}.`)
      continue
    }
    if (seen.has(check.user)) continue
    seen.add(check.user)
    const record = await store.getUser(check.user)
    if (!record) selection.problems.push(`Unknown user ${check.user}: add it with \`mailring user add\`.`)
    else if (record.copies.length === 0)
      selection.problems.push(`${check.user} has no copies yet: run \`mailring rebalance\` to place it.`)
    else selection.targets.push({user: record.user, copies: record.copies})
  }
  return selection
}

export async function selectDomains(store: Store, names: readonly string[]): Promise<Selection> {
  const selection: Selection = {targets: [], problems: []}
  for (const name of new Set(names)) {
    const domain = canonicalDomain(name)
    if (typeof domain !== 'string') {
      selection.problems.push(`Invalid domain: ${domain.reason}.`)
      continue
    }
    let after: string | undefined
    let found = 0
    for (;;) {
      const page = await store.listUsers({domain, limit: PAGE, ...(after === undefined ? {} : {after})})
      for (const record of page) {
        found++
        if (record.copies.length === 0)
          selection.problems.push(`${record.user} has no copies yet: run \`mailring rebalance\` to place it.`)
        else selection.targets.push({user: record.user, copies: record.copies})
      }
      if (page.length < PAGE) break
      after = page[page.length - 1]!.user
    }
    if (found === 0)
      selection.problems.push(
        `No users in domain ${domain}: check the name with \`mailring users list --domain ${domain}\`.`,
      )
  }
  return selection
}

/** Every user with a copy on one of `servers` (all users when undefined), streamed from the store. */
export async function selectByServers(
  store: Store,
  servers: readonly string[] | undefined,
): Promise<Selection> {
  const selection: Selection = {targets: [], problems: []}
  const scan = await store.scanPlacements()
  const known = new Set(scan.servers)
  const wanted = servers === undefined ? undefined : new Set(servers)
  for (const name of servers ?? [])
    if (!known.has(name)) selection.problems.push(`Unknown server ${name}: see \`mailring node list\`.`)
  for await (const chunk of scan.chunks) {
    chunk.users.forEach((user, i) => {
      const copies = Array.from(
        chunk.copyServers.subarray(chunk.copyStart[i], chunk.copyStart[i + 1]),
        (k) => scan.servers[k]!,
      )
      if (copies.length === 0) return
      if (wanted === undefined || copies.some((c) => wanted.has(c))) selection.targets.push({user, copies})
    })
  }
  return selection
}

/**
 * At most `size` users spread over every server: the users are grouped by their primary copy's server, a
 * random sample is drawn from each group (reservoir sampling), and the groups are then taken in turn, so
 * that a small sample still touches every server.
 */
export function sampleAcrossServers(
  users: readonly UserCopies[],
  size: number,
  random: () => number = Math.random,
): UserCopies[] {
  const groups = new Map<string, {seen: number; kept: UserCopies[]}>()
  const servers = new Set(users.map((u) => u.copies[0]!))
  const perGroup = Math.max(1, Math.ceil(size / Math.max(1, servers.size)))
  for (const user of users) {
    const key = user.copies[0]!
    const group = groups.get(key) ?? {seen: 0, kept: []}
    groups.set(key, group)
    group.seen++
    if (group.kept.length < perGroup) group.kept.push(user)
    else {
      const j = Math.floor(random() * group.seen)
      if (j < perGroup) group.kept[j] = user
    }
  }
  const lists = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, g]) => g.kept)
  const sample: UserCopies[] = []
  for (let round = 0; sample.length < size; round++) {
    let took = false
    for (const list of lists) {
      if (round < list.length && sample.length < size) {
        sample.push(list[round]!)
        took = true
      }
    }
    if (!took) break
  }
  return sample
}

export interface SelectionRequest {
  users?: readonly string[]
  domains?: readonly string[]
  servers?: readonly string[]
  all?: boolean
  /** At most this many users, spread over every server. */
  sample?: number
}

/** The union of what is asked for, each user once, then sampled when asked. */
export async function selectFor(store: Store, request: SelectionRequest): Promise<Selection> {
  const parts: Selection[] = []
  if (request.all) parts.push(await selectByServers(store, undefined))
  else {
    if (request.users?.length) parts.push(await selectUsers(store, request.users))
    if (request.domains?.length) parts.push(await selectDomains(store, request.domains))
    if (request.servers?.length) parts.push(await selectByServers(store, request.servers))
  }
  // Each user once, in the order first selected.
  const byUser = new Map<string, UserCopies>()
  for (const target of parts.flatMap((p) => p.targets))
    if (!byUser.has(target.user)) byUser.set(target.user, target)
  const targets = [...byUser.values()]
  return {
    targets: request.sample === undefined ? targets : sampleAcrossServers(targets, request.sample),
    problems: parts.flatMap((p) => p.problems),
  }
}

/**
 * Works on the users `parallel` at a time, in the order given, handing each result to `onResult` as it
 * comes; stops taking new users once `signal` is aborted. `work` reports failures in its result.
 */
export async function forEachUser<R>(
  users: readonly UserCopies[],
  parallel: number,
  work: (user: UserCopies) => Promise<R>,
  options: {onResult?: (result: R) => void; signal?: AbortSignal} = {},
): Promise<R[]> {
  const results: R[] = []
  let next = 0
  const worker = async () => {
    while (next < users.length && !options.signal?.aborted) {
      const result = await work(users[next++]!)
      results.push(result)
      options.onResult?.(result)
    }
  }
  await Promise.all(Array.from({length: Math.min(Math.max(1, parallel), users.length)}, worker))
  return results
}
