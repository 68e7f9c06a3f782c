import fs from 'node:fs';
import path from 'node:path';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { REPO } from '../support/process.ts';

/**
 * deploy/kubernetes/: every resource validates offline against the Kubernetes
 * OpenAPI schema (kubernetes-models: types, required fields, enums, formats)
 * and has no field the schema does not know (kubernetes-models' validators do
 * not check that, the API server does: see knownFieldProblems); the resources
 * refer to each other correctly (Service, ConfigMap, Secret, port `http`,
 * labels); and the ConfigMap's riskwatch.yaml passes riskwatch's own loader,
 * listening where the probes look.
 */

const DIR = path.join(REPO, 'deploy/kubernetes');
const MODELS = path.join(REPO, 'node_modules');

type Json = Record<string, unknown>;
type Resource = Json & { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> } };

/**
 * A manifest's documents, read as kubectl reads them: YAML 1.1 (where `yes`,
 * `on` and 0644 mean what Go's YAML says). They must mean the same in YAML
 * 1.2, so that no scalar is read differently by one tool or another.
 */
function readManifest(file: string): Resource[] {
  const text = fs.readFileSync(path.join(DIR, file), 'utf8');
  const parse = (version: '1.1' | '1.2') =>
    parseAllDocuments(text, { version, uniqueKeys: true }).flatMap((doc) => {
      expect(
        doc.errors.map((e) => e.message),
        `${file}: YAML ${version}`,
      ).toEqual([]);
      const value = doc.toJS() as unknown;
      return value === null ? [] : [value as Resource];
    });
  const resources = parse('1.1');
  expect(parse('1.2'), `${file} means something else in YAML 1.2`).toEqual(resources);
  return resources;
}

/** The kubernetes-models class for a resource's apiVersion and kind: `kubernetes-models/apps/v1/StatefulSet` for apps/v1. */
async function modelFor(resource: Resource): Promise<new (data: unknown) => { validate(): void }> {
  const specifier = `kubernetes-models/${resource.apiVersion}/${resource.kind}`;
  const module = (await import(/* @vite-ignore */ specifier).catch(() => {
    throw new Error(`${resource.kind}/${resource.metadata?.name}: kubernetes-models has no ${specifier} (apiVersion ${resource.apiVersion}, kind ${resource.kind})`);
  })) as Record<string, unknown>;
  const model = module[resource.kind] as { apiVersion?: string; kind?: string; new (data: unknown): { validate(): void } } | undefined;
  expect(model && { apiVersion: model.apiVersion, kind: model.kind }).toEqual({ apiVersion: resource.apiVersion, kind: resource.kind });
  return model!;
}

// --- Unknown fields ------------------------------------------------------------
// kubernetes-models compiles the OpenAPI schema without additionalProperties, so
// validate() accepts a `readinesProbe:` typo, and the pod would run without its
// readiness probe. The API server refuses unknown fields (kubectl apply's
// default --validate=strict): here too, with the field names from the package's
// own type declarations (one interface per schema object, generated from the
// same OpenAPI document as the validators).

type FieldType =
  | { readonly kind: 'leaf' }
  | { readonly kind: 'list'; readonly of: FieldType }
  | { readonly kind: 'map'; readonly of: FieldType }
  | { readonly kind: 'declared'; readonly file: string }
  | { readonly kind: 'inline'; readonly fields: ObjectFields };
/** An object's fields by name, or 'open' where any key goes. */
type ObjectFields = ReadonlyMap<string, FieldType> | 'open';

const declarations = new Map<string, ObjectFields>();

/** The fields of the interface a kubernetes-models .d.ts file declares; 'open' for a type alias (Quantity, IntOrString, Time). */
function fieldsOf(file: string): ObjectFields {
  const known = declarations.get(file);
  if (known) return known;
  const text = fs.readFileSync(file, 'utf8').replace(/^[ \t]*\/\*\*[\s\S]*?\*\/[ \t]*\n/gm, '');
  const imports = new Map<string, string>();
  for (const [, names, from] of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
    const target = from!.startsWith('.') ? path.resolve(path.dirname(file), from!.replace(/\.js$/, '.d.ts')) : path.join(MODELS, `${from}.d.ts`);
    for (const name of names!.split(',')) imports.set(name.trim(), target);
  }
  const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}$/m.exec(text)?.[1];
  if (body === undefined && !/^export type \w+ = /m.test(text)) throw new Error(`${file}: neither an interface nor a type alias`);
  const fields = body === undefined ? 'open' : members(body.replace(/\s+/g, ' ').trim(), imports, file);
  declarations.set(file, fields);
  return fields;
}

/** `"name"?: Type; …` (an interface's or an inline object type's body, on one line) as fields. */
function members(body: string, imports: ReadonlyMap<string, string>, file: string): ObjectFields {
  const parts: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '{' || c === '<') depth++;
    else if (c === '}' || c === '>') depth--;
    else if (c === ';' && depth === 0) {
      parts.push(body.slice(from, i).trim());
      from = i + 1;
    }
  }
  if (body.slice(from).trim() !== '') throw new Error(`${file}: cannot read ${JSON.stringify(body.slice(from))}`);
  if (parts.some((part) => part.startsWith('[key: string]'))) return 'open';
  const fields = new Map<string, FieldType>();
  for (const part of parts) {
    const match = /^"([^"]+)"\??: (.+)$/.exec(part);
    if (!match) throw new Error(`${file}: cannot read the member ${JSON.stringify(part)}`);
    fields.set(match[1]!, typeOf(match[2]!, imports, file));
  }
  return fields;
}

function typeOf(text: string, imports: ReadonlyMap<string, string>, file: string): FieldType {
  const list = /^Array<(.+)>$/.exec(text);
  if (list) return { kind: 'list', of: typeOf(list[1]!, imports, file) };
  const map = /^\{ \[key: string\]: ([^;]+); \}$/.exec(text);
  if (map) return { kind: 'map', of: typeOf(map[1]!, imports, file) };
  if (text.startsWith('{ ') && text.endsWith(' }')) return { kind: 'inline', fields: members(text.slice(2, -2), imports, file) };
  const target = imports.get(text);
  if (target) return { kind: 'declared', file: target };
  if (/^(string|number|boolean|any|object|"[^"]*"( \| "[^"]*")*)$/.test(text)) return { kind: 'leaf' };
  throw new Error(`${file}: cannot read the type ${text}`);
}

/** Every field of `value` (by its path) that its schema object does not declare. */
function unknownFields(value: unknown, type: FieldType, at: string): string[] {
  if (value === null || value === undefined || type.kind === 'leaf') return [];
  if (type.kind === 'list') return Array.isArray(value) ? value.flatMap((item, i) => unknownFields(item, type.of, `${at}[${i}]`)) : [];
  if (typeof value !== 'object' || Array.isArray(value)) return [];
  if (type.kind === 'map') return Object.entries(value).flatMap(([key, item]) => unknownFields(item, type.of, `${at}.${key}`));
  const fields = type.kind === 'declared' ? fieldsOf(type.file) : type.fields;
  if (fields === 'open') return [];
  return Object.entries(value).flatMap(([key, item]) => {
    const field = fields.get(key);
    return field ? unknownFields(item, field, `${at}.${key}`) : [`${at}.${key}`];
  });
}

function knownFieldProblems(resource: Resource): string[] {
  const file = path.join(MODELS, 'kubernetes-models', resource.apiVersion, `${resource.kind}.d.ts`);
  return unknownFields(resource, { kind: 'declared', file }, `${resource.kind}/${resource.metadata.name}`);
}

// --- Cross-references ------------------------------------------------------------

type Probe = { httpGet?: { path?: string; port?: string | number } };
type Container = {
  name: string;
  image: string;
  ports?: { name?: string; containerPort: number }[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string } }[];
  env?: { valueFrom?: { secretKeyRef?: { name: string }; configMapKeyRef?: { name: string } } }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Json;
};
type PodSpec = {
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: Json }[];
  securityContext?: Json;
  terminationGracePeriodSeconds?: number;
  shareProcessNamespace?: boolean;
};
type Workload = Resource & {
  spec: {
    replicas: number;
    serviceName?: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
};
type Service = Resource & { spec: { clusterIP?: string; selector: Record<string, string>; ports: { name?: string; port: number; targetPort?: string | number }[] } };

function only<T extends Resource>(resources: Resource[], kind: string): T {
  const found = resources.filter((r) => r.kind === kind);
  expect(
    found.map((r) => r.metadata.name),
    `one ${kind}`,
  ).toHaveLength(1);
  return found[0] as T;
}

function named(resources: Resource[], kind: string, name: string): Resource | undefined {
  return resources.find((r) => r.kind === kind && r.metadata.name === name);
}

function contains(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value);
}

/** RISKWATCH_CONFIG as the Dockerfile sets it: where the image's riskwatch looks for its config. */
const IMAGE_CONFIG = /RISKWATCH_CONFIG=(\S+)/.exec(fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'))?.[1];

/** Test values for the Secret's keys, in the shape riskwatch checks. */
const SAMPLE_SECRETS: Record<string, string> = {
  CLOUDFLARE_API_TOKEN: 'test-token-0123456789abcdefghijklmnopqrstuv',
  SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX',
  DATABASE_URL: 'postgres://riskwatch:secret@postgres.example.com:5432/riskwatch',
  WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  PAGERDUTY_ROUTING_KEY: '0123456789abcdef0123456789abcdef',
};

const MANIFESTS = [
  { file: 'riskwatch.yaml', workload: 'StatefulSet', state: 'sqlite', replicas: 1 },
  { file: 'riskwatch-postgres.yaml', workload: 'Deployment', state: 'postgres', replicas: 2 },
] as const;

describe.each(MANIFESTS)('deploy/kubernetes/$file', ({ file, workload: workloadKind, state, replicas }) => {
  const resources = readManifest(file);
  const workload = only<Workload>(resources, workloadKind);
  const pod = workload.spec.template.spec;
  const container = pod.containers[0]!;
  const configMap = only<Resource & { data: Record<string, string> }>(resources, 'ConfigMap');
  const secret = only<Resource & { type?: string; stringData: Record<string, string> }>(resources, 'Secret');
  const service = only<Service>(resources, 'Service');

  it('every resource validates against the Kubernetes OpenAPI schema, with no unknown field', async () => {
    expect(resources.length).toBeGreaterThanOrEqual(4);
    for (const resource of resources) {
      const Model = await modelFor(resource);
      expect(() => new Model(resource).validate(), `${resource.kind}/${resource.metadata?.name}`).not.toThrow();
      expect(knownFieldProblems(resource)).toEqual([]);
      // What the API server checks beyond the schema: a DNS-1123 name, unique per kind.
      expect(resource.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(resources.filter((r) => r.kind === resource.kind && r.metadata.name === resource.metadata.name)).toHaveLength(1);
    }
  });

  it(`runs ${replicas} replica(s) of the riskwatch image, selected by its own labels`, () => {
    expect(workload.spec.replicas).toBe(replicas);
    expect(pod.containers).toHaveLength(1);
    expect(container.image).toBe('registry.example.com/riskwatch:0.1.0');
    // No command or args: the image's ENTRYPOINT (tini -- bin/riskwatch) and CMD (run) stay.
    expect(container).not.toHaveProperty('command');
    expect(container).not.toHaveProperty('args');
    expect(pod.shareProcessNamespace ?? false).toBe(false); // else PID 1 is the pause process, and `kill -HUP 1` reaches no riskwatch
    expect(contains(workload.spec.template.metadata.labels, workload.spec.selector.matchLabels)).toBe(true);
    expect(contains(workload.spec.template.metadata.labels, service.spec.selector)).toBe(true);
    for (const other of resources.filter((r) => r.kind === 'PodDisruptionBudget')) {
      expect(contains(workload.spec.template.metadata.labels, (other as Resource & { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector.matchLabels)).toBe(true);
    }
    if (workloadKind === 'StatefulSet') {
      expect(workload.spec.serviceName).toBe(service.metadata.name);
      expect(service.spec.clusterIP).toBe('None'); // a StatefulSet's governing Service is headless
    }
  });

  it('serves /healthz and /readyz on the port named http, which the Service exposes', () => {
    const http = container.ports?.find((p) => p.name === 'http');
    expect(http?.containerPort).toBe(9464);
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    if (container.startupProbe) expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(service.spec.ports).toEqual([{ name: 'http', port: 9464, targetPort: 'http' }]);
  });

  it('refers only to ConfigMaps, Secrets and volumes the file defines', () => {
    const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
    const claims = new Set((workload.spec.volumeClaimTemplates ?? []).map((c) => c.metadata.name));
    for (const mount of container.volumeMounts ?? []) expect(volumes.has(mount.name) || claims.has(mount.name), `volume ${mount.name}`).toBe(true);
    const configMaps = [...volumes.values()].flatMap((v) => (v.configMap ? [v.configMap.name] : []));
    const secrets = [...volumes.values()].flatMap((v) => (v.secret ? [v.secret.secretName] : []));
    for (const source of container.envFrom ?? []) {
      if (source.configMapRef) configMaps.push(source.configMapRef.name);
      if (source.secretRef) secrets.push(source.secretRef.name);
    }
    for (const variable of container.env ?? []) {
      if (variable.valueFrom?.configMapKeyRef) configMaps.push(variable.valueFrom.configMapKeyRef.name);
      if (variable.valueFrom?.secretKeyRef) secrets.push(variable.valueFrom.secretKeyRef.name);
    }
    expect(configMaps).toContain(configMap.metadata.name);
    expect(secrets).toContain(secret.metadata.name);
    for (const name of configMaps) expect(named(resources, 'ConfigMap', name), `ConfigMap ${name}`).toBeDefined();
    for (const name of secrets) expect(named(resources, 'Secret', name), `Secret ${name}`).toBeDefined();
  });

  it('mounts riskwatch.yaml as a directory where the image looks for it (so a SIGHUP reads the updated file)', () => {
    expect(IMAGE_CONFIG).toBe('/etc/riskwatch/riskwatch.yaml');
    const volume = pod.volumes?.find((v) => v.configMap?.name === configMap.metadata.name);
    const mount = container.volumeMounts?.find((m) => m.name === volume?.name);
    expect(mount).toMatchObject({ mountPath: path.dirname(IMAGE_CONFIG!), readOnly: true });
    expect(mount).not.toHaveProperty('subPath'); // a subPath mount is never updated
    expect(Object.keys(configMap.data)).toEqual([path.basename(IMAGE_CONFIG!)]);
  });

  it('is hardened: non-root uid 1000 (the image user), read-only root, no privilege escalation, no capabilities', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(container.resources).toEqual({ requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '256Mi' } });
    // The root file system is read-only: /tmp is an emptyDir.
    const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
    expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
  });

  it('holds a riskwatch.yaml that riskwatch loads, listening on 0.0.0.0:9464, its secrets all in the Secret', () => {
    const text = configMap.data['riskwatch.yaml']!;
    const referenced = [...new Set([...text.replace(/^\s*#.*$/gm, '').matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]!))].sort();
    expect(referenced).toContain('CLOUDFLARE_API_TOKEN');
    expect(Object.keys(secret.stringData).sort()).toEqual(referenced);
    expect(secret.type).toBe('Opaque');
    const env = Object.fromEntries(referenced.map((name) => [name, SAMPLE_SECRETS[name]]));
    expect(Object.values(env), 'a sample value for every variable').not.toContain(undefined);

    const config = parseConfig(text, IMAGE_CONFIG!, env);
    expect(config.http.listen).toEqual({ host: '0.0.0.0', port: container.ports?.find((p) => p.name === 'http')?.containerPort });
    expect(config.state.kind).toBe(state);
    if (config.state.kind === 'sqlite') {
      // On the state volume: the rest of the file system is read-only.
      expect(config.state.file).toBe('/var/lib/riskwatch/riskwatch.db');
      const stateDir = path.dirname(config.state.file);
      const mount = container.volumeMounts?.find((m) => m.mountPath === stateDir);
      expect(workload.spec.volumeClaimTemplates?.map((c) => c.metadata.name)).toContain(mount?.name);
    } else {
      expect(workload.spec.volumeClaimTemplates).toBeUndefined();
      expect(config.state.url.reveal()).toBe(SAMPLE_SECRETS.DATABASE_URL);
    }
  });

  it('ships placeholder secrets that riskwatch refuses, rather than runs on', () => {
    for (const value of Object.values(secret.stringData)) expect(value).toBe('replace-me');
    // riskwatch exits 2 at start, saying which: the pod's log names what to replace.
    expect(() => parseConfig(configMap.data['riskwatch.yaml']!, IMAGE_CONFIG!, secret.stringData)).toThrow(/sinks\[0\]\.url: must be an http\(s\) URL/);
  });
});

describe('the checks catch a broken manifest', () => {
  const statefulSet = () => structuredClone(only<Workload>(readManifest('riskwatch.yaml'), 'StatefulSet'));

  it('validate() throws on a wrong type and on a missing required field', () => {
    expect(() => new StatefulSet(statefulSet() as never).validate()).not.toThrow();

    const wrongType = statefulSet() as Json & { spec: Json };
    wrongType.spec.replicas = 'one';
    expect(() => new StatefulSet(wrongType as never).validate()).toThrow(/replicas/);

    const unnamed = statefulSet();
    delete (unnamed.spec.template.spec.containers[0] as Partial<Container>).name;
    expect(() => new StatefulSet(unnamed as never).validate()).toThrow(/name/);

    const badEnum = statefulSet();
    (badEnum.spec.template.spec.containers[0] as Json).imagePullPolicy = 'Sometimes';
    expect(() => new StatefulSet(badEnum as never).validate()).toThrow(/imagePullPolicy/);
  });

  it('an unknown field (a typo) is found, at any depth', () => {
    const typo = statefulSet();
    const container = typo.spec.template.spec.containers[0] as Json;
    container.readinesProbe = container.readinessProbe;
    delete container.readinessProbe;
    (typo.spec.template.spec.securityContext as Json).runAsUsr = 1000;
    (container.resources as Json).limit = { memory: '256Mi' };
    expect(() => new StatefulSet(typo as never).validate()).not.toThrow(); // what validate() alone misses
    expect(knownFieldProblems(typo)).toEqual([
      'StatefulSet/riskwatch.spec.template.spec.securityContext.runAsUsr',
      'StatefulSet/riskwatch.spec.template.spec.containers[0].resources.limit',
      'StatefulSet/riskwatch.spec.template.spec.containers[0].readinesProbe',
    ]);
  });
});
