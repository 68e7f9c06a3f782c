/**
 * Runs tasks side by side under one signal, as one: the first to fail aborts
 * the others, and every task has settled before this returns or throws, so no
 * request outlives it (a task still running could otherwise write into state
 * its caller has moved on from, and spend its request budget).
 */
export async function together<T extends readonly unknown[]>(signal: AbortSignal | undefined, tasks: { readonly [K in keyof T]: (signal: AbortSignal) => Promise<T[K]> }): Promise<T> {
  const stop = new AbortController();
  const shared = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let failure: { error: unknown } | undefined;
  const results = await Promise.allSettled(
    tasks.map(async (task) => {
      try {
        return await task(shared);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
        throw error;
      }
    }),
  );
  if (failure) throw failure.error;
  return results.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
