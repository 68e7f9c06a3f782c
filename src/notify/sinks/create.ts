import type { SinkConfig } from '../../config/config.ts';
import { ConfigError } from '../../errors.ts';
import type { Sink } from '../sink.ts';
import { ConsoleSink } from './console.ts';

export interface SinkDeps {
  /** Where the console sink writes its lines. */
  readonly writeLine?: (line: string) => void;
}

/** The one place a sink type becomes a sink: a new sink type is added here and in config/schema.ts. */
export function createSink(config: SinkConfig, deps: SinkDeps = {}): Sink {
  switch (config.type) {
    case 'console':
      return new ConsoleSink(config.name, deps.writeLine);
    case 'slack':
    case 'webhook':
      throw new ConfigError(`sinks: ${config.name}: ${config.type} sinks are not available in this build yet`);
  }
}
