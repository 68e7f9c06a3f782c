import { randomBytes } from 'node:crypto';
import { type Answer, type ReceivedRequest, Receiver } from '../receiver.ts';
import { INVALID_JSON, isObject, json, VendorFake } from './vendor.ts';

/** A flow fails a message over this many bytes (RECEIVERS.md: `MessageSizeExceeded … 28672 bytes`). */
export const TEAMS_MAX_MESSAGE_BYTES = 28_672;

/** What the fake accepted: the posted body, and its one Adaptive Card. */
export interface TeamsDelivery {
  readonly payload: Record<string, unknown> & { summary?: unknown };
  readonly card: { readonly version: string; readonly body: readonly unknown[] } & Record<string, unknown>;
  readonly bytes: number;
}

/**
 * A Power Automate Workflows webhook ("Post to a channel when a webhook
 * request is received") on loopback. It answers as the flow does, but at
 * once, where the real flow accepts with 202 and fails later, unseen:
 * - a wrong `sig` → 401;
 * - a body over 28,672 bytes → 400 with the flow's `MessageSizeExceeded`
 *   error (the real limit applies after the flow wraps the body; the fake
 *   measures the request as sent, so a sink must stay well under it);
 * - anything but `{"type":"message","attachments":[…]}` whose attachments are
 *   all Adaptive Cards (contentType application/vnd.microsoft.card.adaptive,
 *   content.type AdaptiveCard, a string version, a body array) → 400;
 * - otherwise 202 with an empty body, and the card is kept in `delivered`.
 * Faults go in front with `failNext(times, answer)` (429 with Retry-After,
 * 500, `{reset: true}`, `{hang: true}`).
 */
export class FakeTeams extends VendorFake {
  /** The `sig` query parameter: the credential inside a Workflows URL. */
  readonly sig: string;
  /** Every message accepted, in order. */
  readonly delivered: TeamsDelivery[] = [];

  private constructor(receiver: Receiver, workflow: string, sig: string) {
    super(receiver, `/powerautomate/automations/direct/workflows/${workflow}/triggers/manual/paths`);
    this.sig = sig;
  }

  static async start(): Promise<FakeTeams> {
    return new FakeTeams(await Receiver.start(), randomBytes(16).toString('hex'), randomBytes(24).toString('base64url'));
  }

  /** The webhook URL a sink's `url` is set to, `sig` and all (a secret: it must never show in an error). */
  get webhookUrl(): string {
    return `${this.url}/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=${this.sig}`;
  }

  /** The accepted cards, in order. */
  get cards(): TeamsDelivery['card'][] {
    return this.delivered.map((d) => d.card);
  }

  protected answer(path: URL, body: unknown, request: ReceivedRequest): Answer {
    if (path.pathname !== '/invoke') return json(404, { error: { code: 'TriggerNotFound', message: 'The workflow has no trigger at this path.' } });
    if (path.searchParams.get('sig') !== this.sig) {
      return json(401, { error: { code: 'DirectApiAuthorizationRequired', message: 'The request must be authenticated by a valid signature (sig).' } });
    }
    const bytes = Buffer.byteLength(request.body);
    if (bytes > TEAMS_MAX_MESSAGE_BYTES) {
      return json(400, {
        error: {
          code: 'BadRequest',
          message: 'InvalidParameter',
          innerError: {
            code: '1',
            message: `MessageSizeExceeded-Message properties size exceeded. Actual message properties size: ${bytes} bytes, whereas max allowed size is ${TEAMS_MAX_MESSAGE_BYTES} bytes`,
          },
        },
      });
    }
    const problem = body === INVALID_JSON ? 'the body is not JSON' : messageProblem(body);
    if (problem) return json(400, { error: { code: 'InvalidRequestContent', message: problem } });
    const payload = body as TeamsDelivery['payload'];
    const [attachment] = payload.attachments as { content: TeamsDelivery['card'] }[];
    this.delivered.push({ payload, card: attachment!.content, bytes });
    return { status: 202, body: '' };
  }
}

/** Why a body is not a message the flow can post, or undefined. */
function messageProblem(body: unknown): string | undefined {
  if (!isObject(body) || body.type !== 'message') return 'the body must be an object with "type": "message"';
  const { attachments } = body;
  if (!Array.isArray(attachments) || attachments.length === 0) return '"attachments" must be a non-empty array';
  for (const [i, attachment] of attachments.entries()) {
    if (!isObject(attachment) || attachment.contentType !== 'application/vnd.microsoft.card.adaptive') return `attachments[${i}].contentType must be application/vnd.microsoft.card.adaptive`;
    const card = attachment.content;
    if (!isObject(card) || card.type !== 'AdaptiveCard') return `attachments[${i}].content.type must be AdaptiveCard`;
    if (typeof card.version !== 'string') return `attachments[${i}].content.version must be a string`;
    if (!Array.isArray(card.body)) return `attachments[${i}].content.body must be an array`;
  }
  return undefined;
}
