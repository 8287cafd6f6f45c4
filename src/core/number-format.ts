/** Numbers as people read them. */

/** 1234567 -> "1,234,567", the same on every locale. */
export function groupDigits(value: number): string {
  const [whole, fraction] = String(value).split('.') as [string, string | undefined]
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  return fraction === undefined ? grouped : `${grouped}.${fraction}`
}
