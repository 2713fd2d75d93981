/** Small helpers for the human output of commands (never used for --json). */

/** "2025-01-31 14:05:09Z": UTC, to the second. */
export function formatTime(iso: string): string {
  const time = new Date(iso)
  return Number.isNaN(time.getTime()) ? iso : `${time.toISOString().slice(0, 19).replace('T', ' ')}Z`
}

/** Rows as columns separated by two spaces, each padded to its widest cell; no trailing spaces. */
export function formatTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd())
}
