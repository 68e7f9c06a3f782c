import type { Config } from '../config/config.ts';
import { loadConfig } from '../config/load.ts';
import { Service } from '../daemon/service.ts';
import { ConfigErrors } from '../errors.ts';
import { configuredLogger } from '../log.ts';
import { type Args, type Command, type Io, nextSignal, readConfig } from './command.ts';

/** `run`: the daemon, until SIGTERM/SIGINT; SIGHUP reads the config again. */
export const run: Command = {
  options: {},
  async run(args: Args, io: Io) {
    const { file, config } = readConfig(args, io);
    const log = await configuredLogger(config.log);
    // Signals are heard from the start: one that arrives while starting stops right after.
    const stopSignal = nextSignal(['SIGTERM', 'SIGINT']);
    let service: Service | undefined;
    let stopping = false;
    let reloading = Promise.resolve();
    // SIGHUP: read the file again; keep running on the old config if the new one is invalid.
    // Ignored while starting (the file was just read) and while stopping.
    const reload = () => {
      if (!service || stopping) return;
      const running = service;
      reloading = reloading.then(async () => {
        let next: Config;
        try {
          next = loadConfig(file, io.env);
        } catch (error) {
          const lines = error instanceof ConfigErrors ? error.problems : [(error as Error).message];
          log.error({ problems: lines }, `reload failed, still running on the previous config: ${lines.join('; ')}`);
          running.reloadFailed();
          return;
        }
        await running.reload(next).catch((error: unknown) => {
          log.error({ err: (error as Error).message }, `reload failed, still running on the previous config: ${(error as Error).message}`);
          running.reloadFailed();
        });
      });
    };
    process.on('SIGHUP', reload);
    try {
      const starting = new AbortController();
      void stopSignal.then(() => starting.abort());
      service = await Service.start(config, { log, signal: starting.signal });
      const signal = await stopSignal;
      stopping = true;
      log.info({ signal }, 'stopping');
      // A second signal while stopping means "now": pending work stays in the state file for next time.
      const force = () => process.exit(1);
      process.once('SIGTERM', force).once('SIGINT', force);
      await reloading;
      await service.stop();
      return 0;
    } finally {
      process.off('SIGHUP', reload);
    }
  },
};
