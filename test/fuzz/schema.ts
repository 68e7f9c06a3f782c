import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';

/**
 * Records generated from Cloudflare's published risk-scoring schema (vendored
 * beside the contract test): each schema's every required property, optional
 * ones or not, of its type and format. What fills a string, a uuid, a
 * date-time or an integer is the caller's: the suite fills them with values
 * the schema allows and a store or client may still choke on.
 */

const SPEC_FILE = path.join(import.meta.dirname, '..', 'cloudflare', 'schema', 'zt-risk-scoring.openapi.json');

interface JsonSchema {
  readonly $ref?: string;
  readonly type?: string;
  readonly format?: string;
  readonly enum?: readonly unknown[];
  readonly minimum?: number;
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
  readonly nullable?: boolean;
}

const schemas = (JSON.parse(fs.readFileSync(SPEC_FILE, 'utf8')) as { components: { schemas: Record<string, JsonSchema> } }).components.schemas;

/** Arbitraries for the leaves; `integer` gets the schema's minimum (the schema gives no maximum). */
export interface Leaves {
  readonly string: fc.Arbitrary<unknown>;
  readonly uuid: fc.Arbitrary<unknown>;
  readonly dateTime: fc.Arbitrary<unknown>;
  readonly integer: (minimum: number | undefined) => fc.Arbitrary<unknown>;
}

/** Records of component schema `name` (e.g. dlp_UserRiskInfo). */
export function fromSchema(name: string, leaves: Leaves): fc.Arbitrary<Record<string, unknown>> {
  const schema = schemas[name];
  if (!schema) throw new Error(`${SPEC_FILE} has no schema ${name}`);
  return arbitrary(schema, leaves) as fc.Arbitrary<Record<string, unknown>>;
}

function arbitrary(schema: JsonSchema, leaves: Leaves): fc.Arbitrary<unknown> {
  if (schema.$ref) return arbitrary(schemas[schema.$ref.replace('#/components/schemas/', '')]!, leaves);
  const value = leaf(schema, leaves);
  return schema.nullable ? fc.option(value, { nil: null }) : value;
}

function leaf(schema: JsonSchema, leaves: Leaves): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  switch (schema.type) {
    case 'object': {
      const properties = Object.fromEntries(Object.entries(schema.properties ?? {}).map(([key, property]) => [key, arbitrary(property, leaves)]));
      return fc.record(properties, { requiredKeys: [...(schema.required ?? [])] });
    }
    case 'array':
      return fc.array(arbitrary(schema.items ?? {}, leaves), { maxLength: 3 });
    case 'string':
      return schema.format === 'uuid' ? leaves.uuid : schema.format === 'date-time' ? leaves.dateTime : leaves.string;
    case 'integer':
      return leaves.integer(schema.minimum);
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true });
    case 'boolean':
      return fc.boolean();
    default:
      // No type (event_details: {}): any JSON.
      return fc.jsonValue({ maxDepth: 2 });
  }
}
