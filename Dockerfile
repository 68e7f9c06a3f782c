# syntax=docker/dockerfile:1
# riskwatch: multi-stage, small, non-root. Config at /etc/riskwatch/riskwatch.yaml,
# state on the /var/lib/riskwatch volume, /healthz for the health check.

# --- build: the sources bundled by esbuild (npm run build) -------------------
# Node can run the TypeScript sources, but strips their types at every start
# and loads ~190 module files for a command. The image ships the bundle,
# dist/main.mjs and its chunks (one per command, sink, store or log format,
# loaded only when used): a faster start and less memory. It holds every
# dependency, so the image needs no node_modules at all (26 MB less). The
# build stage installs the dev dependencies too (esbuild); none reaches the
# runtime. tsconfig.json stays out: esbuild makes the same bundle without it.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
RUN npm run build

# --- runtime ----------------------------------------------------------------
FROM node:24-slim
ENV NODE_ENV=production \
    RISKWATCH_CONFIG=/etc/riskwatch/riskwatch.yaml
# tini forwards signals to Node and reaps children, so SIGTERM means a clean stop.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/riskwatch /var/lib/riskwatch \
 && chown node:node /var/lib/riskwatch
WORKDIR /app
COPY bin ./bin
# bin/riskwatch runs dist/main.mjs where there is no src/, on the image's Node
# (24; no node_modules, so not the pinned one). The version is built in.
COPY --from=build /app/dist ./dist
USER node
VOLUME ["/var/lib/riskwatch"]
# /healthz, /readyz, /metrics. The config must say `http: { listen: 0.0.0.0:9464 }`
# for them to be reachable from outside the container; the health check uses loopback.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The one entry point: it execs Node (the image's, 24) with the flags riskwatch wants, so tini's child is riskwatch.
ENTRYPOINT ["/usr/bin/tini", "--", "/app/bin/riskwatch"]
CMD ["run"]
