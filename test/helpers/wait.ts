/**
 * Waiting without sleeping: poll a condition until it holds or a deadline passes, and fail with a
 * message that says what was awaited and what was last seen.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T> | T,
  done: (value: T) => boolean,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let last: T | undefined;
  let interval = opts.intervalMs ?? 20;
  for (;;) {
    last = await probe();
    if (done(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${opts.timeoutMs ?? 30_000} ms waiting for ${what}; last value: ${safeJson(last)}`);
    }
    await new Promise((r) => setTimeout(r, interval));
    // Backs off to 250 ms, or to the given interval when a caller asks for slower polling.
    interval = Math.min(interval * 1.5, Math.max(250, opts.intervalMs ?? 0));
  }
}

/** Resolves when `emitter` emits `event` with a value matching `match`, or rejects at the deadline. */
export function nextEvent<T>(
  emitter: { on(e: string, l: (v: T) => void): unknown; off(e: string, l: (v: T) => void): unknown },
  event: string,
  match: (v: T) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for event ${event}`));
    }, timeoutMs);
    const listener = (v: T) => {
      if (!match(v)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(v);
    };
    emitter.on(event, listener);
  });
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 500) ?? String(v);
  } catch {
    return String(v);
  }
}
