import {createReadStream, statSync} from 'node:fs'
import type {Readable} from 'node:stream'

import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {MailringError} from '../../core/errors.js'
import {importUsers, type ImportResult} from '../../engine/cluster/users-import.js'
import {startProgress} from '../../ui/progress.js'

export type UsersImportResult = ImportResult

export default class UsersImport extends StoreCommand {
  static override summary = 'Import users from a file or stdin: one address per line, or CSV with a header.'
  static override description = `Each user is placed at once on its target servers (a new user has no mail yet, so nothing moves). A CSV file needs a header naming the address column: address, email, user or mail. Blank lines and lines starting with # are skipped.

All or nothing: an invalid address, a duplicate line or a user that exists already stops the import with every problem listed by line number, and nothing is written. With --skip-invalid those lines are skipped and reported, and the rest is imported.

Exit codes: 0 imported, 1 bad input (nothing written), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> users import examples/users.txt',
    'cut -d, -f2 accounts.csv | <%= config.bin %> users import -',
    '<%= config.bin %> users import accounts.csv --skip-invalid --json',
  ]

  static override args = {
    file: Args.string({
      ignoreStdin: true,
      description: 'file to read, or - for stdin (the default when stdin is not a terminal)',
    }),
  }
  static override flags = {
    ...lockFlags,
    'skip-invalid': Flags.boolean({
      summary: 'Skip invalid, duplicate and existing users instead of importing nothing.',
    }),
  }

  async run(): Promise<UsersImportResult> {
    const {args, flags} = await this.parse(UsersImport)
    const fromStdin = args.file === undefined || args.file === '-'
    if (fromStdin && process.stdin.isTTY) {
      throw new MailringError('Give a file to import, or pipe the addresses in with `-`.')
    }
    const source = fromStdin ? 'stdin' : args.file!
    const result = await this.locked(flags, `users import ${source}`, async (store) => {
      const input: Readable = fromStdin ? process.stdin : openFile(source)
      const progress = startProgress('Importing', {json: this.jsonEnabled(), unit: 'lines'})
      try {
        return await importUsers(store, input, {
          source,
          skipInvalid: flags['skip-invalid'],
          onProgress: (lines) => progress.update(lines),
        })
      } finally {
        progress.stop()
      }
    })
    for (const problem of result.problems.slice(0, 20))
      this.warnUser(`${source}:${problem.line}: ${problem.message} (skipped)`)
    const skipped = result.skipped.invalid + result.skipped.duplicate + result.skipped.exists
    if (skipped > 20) this.warnUser(`... ${skipped - 20} more lines skipped`)
    if (result.imported === 0 && skipped === 0)
      this.warnUser(
        `${source} holds no users: nothing imported (give one address per line, or CSV with a header naming the address column).`,
      )
    this.log(
      `Imported ${result.imported} users from ${source}${skipped > 0 ? `; skipped ${skipped} lines` : ''}.`,
    )
    return result
  }
}

function openFile(path: string): Readable {
  try {
    if (!statSync(path).isFile()) throw new MailringError(`Cannot read ${path}: not a file.`)
  } catch (error) {
    if (error instanceof MailringError) throw error
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
    throw new MailringError(`Cannot read ${path}: ${reason}.`)
  }
  return createReadStream(path, {encoding: 'utf8'})
}
