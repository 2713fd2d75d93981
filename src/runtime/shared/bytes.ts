/** Sizes in bytes, and the one way amp writes them. */
export const KIB = 1024
export const MIB = 1024 * KIB

/**
 * A size as amp writes it: `prose` for messages ("8 MiB", "10 bytes"), `setting` as the flags and
 * the config file take it ("8MiB", "10B").
 */
export function formatBytes(bytes: number, form: 'prose' | 'setting' = 'prose'): string {
  const gap = form === 'prose' ? ' ' : ''
  if (bytes % MIB === 0) return `${bytes / MIB}${gap}MiB`
  if (bytes % KIB === 0) return `${bytes / KIB}${gap}KiB`
  return form === 'prose' ? `${bytes} bytes` : `${bytes}B`
}
