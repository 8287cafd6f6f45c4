import cliProgress from 'cli-progress'

export interface Progress {
  update(value: number): void
  stop(): void
}

const silent: Progress = {update: () => undefined, stop: () => undefined}

/**
 * A progress bar on stderr for long work, only on a terminal and never under --json: pipes and scripts
 * get clean output. Without a known total it shows a running count.
 */
export function startProgress(
  label: string,
  options: {json: boolean; total?: number; unit: string; eta?: boolean},
): Progress {
  if (options.json || process.stderr.isTTY !== true) return silent
  const format = options.total
    ? `${label} [{bar}] {percentage}% | {value}/{total} ${options.unit}${options.eta ? ' | ETA {eta_formatted}' : ''}`
    : `${label} {value} ${options.unit}`
  const bar = new cliProgress.SingleBar(
    {format, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50},
    cliProgress.Presets.shades_classic,
  )
  bar.start(options.total ?? 0, 0)
  return {update: (value) => bar.update(value), stop: () => bar.stop()}
}
