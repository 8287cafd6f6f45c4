/**
 * Generates examples/users.txt, the users of the demo (`npm run demo`): about 2000 plausible addresses
 * over the domains of examples/cluster.yaml and a few more, the same every run (a fixed-seed generator).
 *
 *   npx tsx examples/generate-users.ts > examples/users.txt
 */
const firstNames = [
  'alice',
  'bob',
  'carol',
  'dave',
  'erin',
  'frank',
  'grace',
  'heidi',
  'ivan',
  'judy',
  'mallory',
  'niaj',
  'olivia',
  'peggy',
  'rupert',
  'sybil',
  'trent',
  'victor',
  'walter',
  'yasmin',
  'zoe',
  'anna',
  'jonas',
  'lena',
  'lukas',
  'marie',
  'paul',
  'sophie',
  'tom',
  'emma',
  'noah',
  'mia',
  'leon',
  'hannah',
  'felix',
]
const lastNames = [
  'smith',
  'jones',
  'miller',
  'davis',
  'garcia',
  'wilson',
  'moore',
  'taylor',
  'anderson',
  'thomas',
  'martin',
  'lee',
  'walker',
  'hall',
  'young',
  'king',
  'wright',
  'lopez',
  'hill',
  'scott',
  'mueller',
  'schmidt',
  'schneider',
  'fischer',
  'weber',
  'meyer',
  'wagner',
  'becker',
  'schulz',
  'hoffmann',
]
// Weights: most users in the big domains; the archive domain is small (pinned to three servers).
const domains: [string, number][] = [
  ['example.com', 30],
  ['example.org', 25],
  ['mail.example.de', 20],
  ['archive.example.net', 10],
  ['corp.example.io', 10],
  ['students.example.edu', 5],
]

let state = 20240601
/** mulberry32: a small, fixed-seed generator, so the file is the same on every run. */
function random(): number {
  state = (state + 0x6d2b79f5) | 0
  let t = Math.imul(state ^ (state >>> 15), 1 | state)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!

function domain(): string {
  const total = domains.reduce((sum, [, weight]) => sum + weight, 0)
  let r = random() * total
  for (const [name, weight] of domains) {
    r -= weight
    if (r < 0) return name
  }
  return domains[0]![0]
}

const seen = new Set<string>()
const lines: string[] = []
while (lines.length < 2000) {
  const first = pick(firstNames)
  const last = pick(lastNames)
  const style = random()
  const local =
    style < 0.4
      ? `${first}.${last}`
      : style < 0.6
        ? `${first[0]}${last}`
        : style < 0.75
          ? `${first}_${last}${Math.floor(random() * 100)}`
          : style < 0.9
            ? `${first}${Math.floor(random() * 1000)}`
            : `${first}.${last}+${pick(['lists', 'shop', 'work'])}`
  const address = `${local}@${domain()}`
  if (seen.has(address)) continue
  seen.add(address)
  lines.push(address)
}
process.stdout.write(
  `# Demo users for mailring (examples/generate-users.ts); one address per line.\n${lines.join('\n')}\n`,
)
