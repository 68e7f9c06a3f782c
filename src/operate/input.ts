import type { Config } from '../config/config.ts';
import { parseDuration, parseTime } from '../config/duration.ts';
import { UsageError } from '../errors.ts';
import { EVENT_TYPES, type EventType, RISK_LEVELS, type RiskLevel } from '../model.ts';
import { MAX_SILENCE_MS, type Silence, userKey } from '../store/store.ts';

/**
 * What an operator asks for, read the same way wherever it comes from: a
 * command's flags (`--until`) or an /api/ request's fields (`until`). Each
 * reader takes the value and how its source names it, and throws a UsageError
 * naming both when the value is wrong.
 */
export type Label = (key: string) => string;

/** How the command line names a field. */
export const flagLabel: Label = (key) => `--${key}`;
/** How /api/ names it. */
export const fieldLabel: Label = (key) => key;

/** A duration (`90m`, `24h`, `7d`), in ms. */
export function durationInput(label: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`${label} ${value}: not a duration (use 90m, 24h, 7d)`);
  return ms;
}

/** An RFC 3339 time, in epoch ms. */
export function timeInput(label: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseTime(value);
  if (ms === undefined) throw new UsageError(`${label} ${value}: not an RFC 3339 time on the calendar (2026-12-01T18:00:00Z)`);
  return ms;
}

/** A configured account's id, given by id or name. */
export function accountInput(label: string, value: string | undefined, config: Config): string | undefined {
  if (value === undefined) return undefined;
  const account = config.accounts.find((a) => a.id === value || a.name === value);
  if (!account) throw new UsageError(`${label} ${value}: not the id or name of a configured account (${config.accounts.map((a) => a.label).join(', ')})`);
  return account.id;
}

export function levelInput(label: string, value: string | undefined): RiskLevel | undefined {
  if (value !== undefined && !RISK_LEVELS.includes(value as RiskLevel)) throw new UsageError(`${label} ${value}: must be one of ${RISK_LEVELS.join(', ')}`);
  return value as RiskLevel | undefined;
}

export function eventTypeInput(label: string, value: string | undefined): EventType | undefined {
  if (value !== undefined && !EVENT_TYPES.includes(value as EventType)) throw new UsageError(`${label} ${value}: must be one of ${EVENT_TYPES.join(', ')}`);
  return value as EventType | undefined;
}

/** A whole number from `min` (1 unless said) to `max`. */
export function countInput(label: string, value: string | undefined, max: number, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new UsageError(`${label} ${value}: must be a whole number from ${min} to ${max}`);
  return n;
}

/** The fields a new silence is asked for with, wherever it comes from. */
export const SILENCE_FIELDS = ['user', 'behavior', 'account', 'for', 'until', 'reason', 'by'] as const;

/** What a new silence is made of, as given (SPEC §8): every field text, or absent. */
export interface SilenceRequest {
  readonly user?: string | undefined;
  readonly behavior?: string | undefined;
  readonly account?: string | undefined;
  readonly for?: string | undefined;
  readonly until?: string | undefined;
  readonly reason?: string | undefined;
  readonly by?: string | undefined;
}

/**
 * The silence a request makes, from `now`: one of user or behavior, an end
 * (for or until, in the future, within ten years), a reason. `by` defaults to
 * whoever `defaultBy` names. Throws a UsageError naming the field at fault.
 */
export function silenceInput(request: SilenceRequest, label: Label, config: Config, now: number, defaultBy: () => string): Silence {
  const user = request.user?.trim();
  const behavior = request.behavior?.trim();
  if ((user === undefined) === (behavior === undefined)) throw new UsageError(`give ${label('user')} or ${label('behavior')} (one of them)`);
  if (user === '' || behavior === '') throw new UsageError(`${label(user === '' ? 'user' : 'behavior')}: must not be empty`);
  const forMs = durationInput(label('for'), request.for);
  const until = timeInput(label('until'), request.until);
  if ((forMs === undefined) === (until === undefined)) throw new UsageError(`give ${label('for')} D or ${label('until')} T (one of them): a silence always ends`);
  const endsAt = until ?? now + forMs!;
  const given = until === undefined ? `${label('for')} ${request.for}` : `${label('until')} ${request.until}`;
  if (endsAt <= now) throw new UsageError(`${given}: is not in the future`);
  if (endsAt - now > MAX_SILENCE_MS) throw new UsageError(`${given}: a silence lasts at most ${MAX_SILENCE_MS / 86_400_000}d (ten years)`);
  const reason = request.reason?.trim();
  if (!reason) throw new UsageError(`${label('reason')}: required (why is this muted?)`);
  return {
    // node:crypto, loaded here only: the read-only commands need not pay for it.
    id: `sil_${process.getBuiltinModule('node:crypto').randomBytes(4).toString('hex')}`,
    user: user === undefined ? null : userKey(user),
    behavior: behavior ?? null,
    accountId: accountInput(label('account'), request.account, config) ?? null,
    startsAt: now,
    endsAt,
    reason,
    by: request.by?.trim() || defaultBy(),
  };
}

/** Which dead letters to retry: a configured sink's, or these ids (whole numbers). */
export function retryInput(label: Label, sink: string | undefined, ids: readonly string[], config: Config): { readonly sink: string } | { readonly ids: readonly number[] } {
  if ((sink === undefined) === (ids.length === 0)) throw new UsageError(`give ${label('sink')} S or ${label('id')} N, one of them`);
  const bad = ids.find((id) => !/^\d+$/.test(id) || !Number.isSafeInteger(Number(id)));
  if (bad !== undefined) throw new UsageError(`${label('id')} ${bad}: must be a delivery id (a whole number; the dead letters list shows them)`);
  if (sink === undefined) return { ids: ids.map(Number) };
  const configured = config.sinks.map((s) => s.name);
  if (!configured.includes(sink)) {
    // The command line can move a renamed sink's deliveries; /api/ cannot.
    const move = label === flagLabel ? '; move them with --to NEW' : '';
    throw new UsageError(`${label('sink')} ${sink}: not a configured sink, so nothing would send its deliveries${move} (${configured.join(', ')})`);
  }
  return { sink };
}
