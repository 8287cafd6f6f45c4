import cliProgress from 'cli-progress'

export interface Progress {
  /** `detail`: the text after the count (startProgress's `detail` option), e.g. bytes moved. */
  update(value: number, detail?: string): void
  stop(): void
}

const silent: Progress = {update: () => undefined, stop: () => undefined}

/**
 * A progress bar on stderr for long work, only on a terminal and never under --json: pipes and scripts
 * get clean output. Without a known total it shows a running count.
 */
export function startProgress(
  label: string,
  options: {json: boolean; total?: number; unit: string; eta?: boolean; detail?: boolean},
): Progress {
  if (options.json || process.stderr.isTTY !== true) return silent
  const detail = options.detail ? ' | {detail}' : ''
  const format = options.total
    ? `${label} [{bar}] {percentage}% | {value}/{total} ${options.unit}${detail}${options.eta ? ' | ETA {eta_formatted}' : ''}`
    : `${label} {value} ${options.unit}${detail}`
  const bar = new cliProgress.SingleBar(
    {format, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50},
    cliProgress.Presets.shades_classic,
  )
  bar.start(options.total ?? 0, 0, {detail: ''})
  return {
    update: (value, text) => bar.update(value, text === undefined ? {} : {detail: text}),
    stop: () => bar.stop(),
  }
}
