/** A mailring config file held in memory, for the tests of each config section's parser. */
import {expect} from 'vitest'

import type {ConfigFile} from '../../src/config/config-file.js'
import {parseYamlText} from '../../src/config/yaml-file.js'
import {MailringError} from '../../src/core/errors.js'

export function configText(text: string, file: string): ConfigFile {
  const yaml = parseYamlText(text, file)
  const data = (yaml.data ?? {}) as Record<string, unknown>
  return {path: file, file: yaml, section: (name) => data[name] ?? undefined}
}

/** The one-line message a section parser refuses `text` with (the test fails if it accepts it). */
export function refusal(parse: (config: ConfigFile) => unknown, text: string, file: string): string {
  try {
    parse(configText(text, file))
  } catch (error) {
    expect(error).toBeInstanceOf(MailringError)
    return (error as Error).message
  }
  throw new Error(`no error for:\n${text}`)
}
