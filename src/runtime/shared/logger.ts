/**
 * Log lines for the daemons, on stderr, one per line: logfmt (`time=… level=info msg="call done" call=… fn=…`)
 * or JSON (`{"time":…,"level":"info","msg":"call done","call":…,"fn":…}`), chosen by --log-format.
 * Call bodies and secrets are never passed in; fields are plain values.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFormat = 'logfmt' | 'json'
export const LOG_FORMATS: readonly LogFormat[] = ['logfmt', 'json']
export type LogFields = Record<string, string | number | boolean | undefined>

export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  child(fields: LogFields): Logger
}

const ORDER: Record<LogLevel, number> = {debug: 10, info: 20, warn: 30, error: 40}

function quote(value: string): string {
  return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)
}

export function formatLine(level: LogLevel, msg: string, fields: LogFields, time: Date): string {
  let line = `time=${time.toISOString()} level=${level} msg=${quote(msg)}`
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) line += ` ${key}=${quote(String(value))}`
  }
  return line + '\n'
}

/** One JSON object per line. time, level and msg come first and cannot be overridden by a field. */
export function formatJsonLine(level: LogLevel, msg: string, fields: LogFields, time: Date): string {
  const record: Record<string, string | number | boolean> = {time: time.toISOString(), level, msg}
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && !(key in record)) record[key] = value
  }
  return JSON.stringify(record) + '\n'
}

export interface LoggerOptions {
  level?: LogLevel
  /** logfmt by default. */
  format?: LogFormat
  write?: (line: string) => void
  fields?: LogFields
  now?: () => Date
}

/** Where log lines go unless told otherwise: stderr, each line as one write. */
export function writeToStderr(line: string): void {
  process.stderr.write(line)
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info']
  const write = options.write ?? writeToStderr
  const now = options.now ?? (() => new Date())
  const base = options.fields ?? {}
  const format = options.format === 'json' ? formatJsonLine : formatLine
  const log = (level: LogLevel) => (msg: string, fields: LogFields = {}) => {
    if (ORDER[level] >= min) write(format(level, msg, {...base, ...fields}, now()))
  }
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => createLogger({...options, fields: {...base, ...fields}}),
  }
}

/** For tests and embedding: drops everything. */
export const silentLogger: Logger = createLogger({write: () => {}})
