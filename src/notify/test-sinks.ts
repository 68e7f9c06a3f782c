import type { Clock } from '../clock.ts';
import { type Config, isIncidentSink } from '../config/config.ts';
import { UsageError } from '../errors.ts';
import { type RetryPolicy, withRetry } from '../retry.ts';
import type { SinkDeps } from './sinks/create.ts';
import { sampleEvents } from './sample.ts';
import { createSink } from './sinks/create.ts';

const { randomUUID } = process.getBuiltinModule('node:crypto');

/** A few quick attempts: seconds, not the delivery policy's hours. */
const TEST_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 1000, maxDelayMs: 4000, maxWaitMs: 5000 };
const TEST_TIMEOUT_MS = 10_000;

export interface SinkTestResult {
  readonly sink: string;
  readonly ok: boolean;
  /** One line: `secops (slack): accepted` or what went wrong. */
  readonly line: string;
}

/**
 * `test-sinks`: one clearly marked test message to each sink (or the one
 * named), through the sinks' real send path. With `sample`, a realistic,
 * clearly marked alert instead (sample.ts), rendered as a real one is; not to
 * PagerDuty or Opsgenie, where it would page the on-call, and to a webhook
 * only when `--sink` names it: its payload is a real event type, signed, and
 * an automation keyed on the type cannot tell it is a sample. The message is
 * rendered once, so that every attempt carries the same ids.
 */
export async function testSinks(config: Config, only: string | undefined, deps: SinkDeps & { clock: Clock }, options: { readonly sample?: boolean } = {}): Promise<SinkTestResult[]> {
  const chosen = only === undefined ? config.sinks : config.sinks.filter((s) => s.name === only);
  if (chosen.length === 0) {
    throw new UsageError(`--sink ${only}: no such sink (configured: ${config.sinks.map((s) => s.name).join(', ')})`);
  }
  return Promise.all(
    chosen.map(async (sinkConfig) => {
      const sink = await createSink(sinkConfig, deps);
      const label = `${sink.name} (${sinkConfig.type})`;
      if (options.sample && isIncidentSink(sinkConfig)) {
        return { sink: sink.name, ok: true, line: `${label}: no sample sent: it would page the on-call (test-sinks without --sample proves the key)` };
      }
      if (options.sample && sinkConfig.type === 'webhook' && only === undefined) {
        return { sink: sink.name, ok: true, line: `${label}: no sample sent: an automation would take it for a real event (name it with --sink to send one)` };
      }
      const message = options.sample ? sink.render(sampleEvents(config.accounts[0]!, deps.clock.now(), randomUUID)) : sink.renderTest();
      let attempts = 0;
      try {
        await withRetry(
          () => {
            attempts++;
            return sink.send(message, AbortSignal.timeout(TEST_TIMEOUT_MS));
          },
          TEST_RETRY,
          { clock: deps.clock },
        );
        return { sink: sink.name, ok: true, line: `${label}: ${options.sample ? 'sample ' : ''}accepted${attempts > 1 ? ` (after ${attempts} attempts)` : ''}` };
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        return { sink: sink.name, ok: false, line: `${label}: FAILED after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${message}` };
      }
    }),
  );
}
