/** A WAL position in PostgreSQL's own notation, `X/Y` (upper and lower 32 bits in hex), as pg_lsn prints it. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
