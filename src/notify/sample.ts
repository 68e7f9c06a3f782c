import type { AccountConfig } from '../config/config.ts';
import type { BehaviorEvent, RiskEvent, UserEvent } from '../detect/events.ts';

/** What marks every sample as one, wherever a receiver shows it. */
export const SAMPLE_MARK = 'riskwatch sample alert, not a real one';

/**
 * `test-sinks --sample`: a realistic alert, clearly marked, for seeing how a
 * receiver shows a real one before the first incident: a user raised from low
 * to high with their risk events, and a detection disabled, in the first
 * configured account (named as a sample). Ids are fresh each time, so a
 * receiver that deduplicates shows every sample.
 */
export function sampleEvents(account: Pick<AccountConfig, 'id' | 'label'>, now: number, newId: () => string): RiskEvent[] {
  const timestamp = new Date(now).toISOString();
  const minutesAgo = (m: number) => new Date(now - m * 60_000).toISOString();
  const ref = { id: account.id, name: `${account.label} (${SAMPLE_MARK})` };
  const raised: UserEvent = {
    id: `sample_${newId()}`,
    type: 'user.risk_level_raised',
    timestamp,
    data: {
      account: ref,
      user: { user_id: '5a3b1e00-0000-4000-8000-00000000a1e7', email: 'sample.user@example.com', name: `Sample User (${SAMPLE_MARK})`, event_count: 3, last_event: minutesAgo(2) },
      previous_level: 'low',
      current_level: 'high',
      risk_events: [
        { id: 'sample-impossible-travel', name: 'Impossible travel', risk_level: 'high', timestamp: minutesAgo(2) },
        { id: 'sample-dlp', name: 'High number of DLP policies triggered', risk_level: 'medium', timestamp: minutesAgo(25) },
      ],
    },
  };
  const disabled: BehaviorEvent = {
    id: `sample_${newId()}`,
    type: 'behavior.disabled',
    timestamp,
    data: {
      account: ref,
      behavior: {
        id: 'sample_imp_travel',
        name: `Impossible travel (${SAMPLE_MARK})`,
        description: 'A user logged in from two places too far apart for the time between them.',
        enabled: false,
        risk_level: 'high',
      },
      previous: { enabled: true, risk_level: 'high' },
    },
  };
  return [raised, disabled];
}
