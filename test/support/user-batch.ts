import type {UserBatch} from '../../src/store/store.js'

/** A batch of users, each given as [address, copies] (primary first). */
export function userBatch(users: [string, string[]][]): UserBatch {
  const servers = [...new Set(users.flatMap(([, copies]) => copies))]
  const copyStart = new Int32Array(users.length + 1)
  const copyServers: number[] = []
  users.forEach(([, copies], i) => {
    copyStart[i] = copyServers.length
    copyServers.push(...copies.map((name) => servers.indexOf(name)))
  })
  copyStart[users.length] = copyServers.length
  return {
    users: users.map(([user]) => user),
    domains: users.map(([user]) => user.slice(user.indexOf('@') + 1)),
    copyStart,
    copyServers: Int32Array.from(copyServers),
    servers,
  }
}
