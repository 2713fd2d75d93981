/** Reads Prometheus text-format output in tests. */

/** The value of one series, e.g. sample(text, 'amp_listener_calls_total{function="a",status="200"}'); undefined if absent. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}
