/** Layouts: each user's servers, primary first, in flat typed arrays (millions of users fit). */
import type {Placement} from '../placement.js'
import type {UserSet} from './synthetic.js'

export interface Layout {
  /** Size of the server index space (Placement.servers.length). */
  serverCount: number
  users: number
  /** Slots per user in `copies`. */
  stride: number
  /** copies[u * stride + c]: server index of user u's c-th copy (c = 0 is the primary). */
  copies: Int32Array
  /** Number of copies of each user. */
  sizes: Uint8Array
}

/** A layout from explicit copy lists (primary first); for tests and small what-ifs. */
export function layoutOf(serverCount: number, lists: readonly (readonly number[])[]): Layout {
  const stride = Math.max(1, ...lists.map((list) => list.length))
  const copies = new Int32Array(lists.length * stride)
  const sizes = new Uint8Array(lists.length)
  lists.forEach((list, u) => {
    sizes[u] = list.length
    list.forEach((server, c) => (copies[u * stride + c] = server))
  })
  return {serverCount, users: lists.length, stride, copies, sizes}
}

/** mailring's placement of every user. */
export function ringLayout(placement: Placement, users: UserSet): Layout {
  const pools = users.domains.map((domain) => placement.poolFor(domain))
  const stride = Math.max(1, ...pools.map((pool) => pool.copies))
  const copies = new Int32Array(users.count * stride)
  const sizes = new Uint8Array(users.count)
  const scratch = new Int32Array(stride)
  for (let u = 0; u < users.count; u++) {
    const count = pools[users.domainIndex[u]!]!.placeHash(users.hashes[u]!, scratch)
    sizes[u] = count
    const offset = u * stride
    for (let c = 0; c < count; c++) copies[offset + c] = scratch[c]!
  }
  return {serverCount: placement.servers.length, users: users.count, stride, copies, sizes}
}
