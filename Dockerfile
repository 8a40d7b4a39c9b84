# The sagaflow image: the `sagaflow` CLI (worker, migrate, publish, serve, replay, ...) with the
# order example, on Node 20.
#
#   docker build -t sagaflow:local .
#   docker run --rm sagaflow:local                                   # usage
#   docker run --rm -e DATABASE_URL=postgres://... sagaflow:local migrate --module examples/order
#   docker run --rm -e DATABASE_URL=... -e SAGAFLOW_TRANSPORT=rabbitmq -e AMQP_URL=... \
#     sagaflow:local worker --module examples/order --role orchestrator
#
# The image runs the compiled dist/, not src/ through tsx:
# - `npm run build` (tsc) is the gate of the build stage: a type error fails the image build, and
#   the image runs exactly the JavaScript tsc produced from the sources it checked;
# - no TypeScript compiler on the hot path: every start, and every HEALTHCHECK run (a new
#   process every few seconds), loads plain JavaScript instead of transpiling ~100 files again;
# - src/ is not in the image, so bin/sagaflow.js takes its "installed package" branch
#   (dist/src/cli/main.js), the layout it was written for.
# tsx stays installed (a production dependency): user modules written in TypeScript, mounted
# into the container, are still loaded by `--module my-module.ts`.
#
# Configuration is environment only (see README, src/config.ts); nothing secret is baked in.
#
# Only classic Dockerfile syntax (no `# syntax=` line, no RUN --mount): BuildKit would pull its
# frontend image from a registry, and the legacy builder (Compose v1) must build it too. The base
# is a build argument: `--build-arg NODE_IMAGE=...` (docker-compose.yml passes SAGAFLOW_NODE_IMAGE),
# e.g. the stand-in of scripts/docker/offline-images.sh on an engine that cannot pull.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, compile src/ and examples/ to dist/ ----------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY examples ./examples
RUN npm run build

# ---- prod-deps: production dependencies only, from the same lock file ------------------------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# packageRoot() finds package.json next to migrations/ (the CLI reads its version there).
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# `--module examples/order` works as in a checkout (README, docker-compose.yml): the path resolves
# through this link to dist/examples/order/index.js, whose `../../src/index.js` is dist/src.
RUN ln -s dist/examples examples
# Everything above is owned by root and read-only for the process. 1000 is the base image's
# `node` user, given by number so that runAsNonRoot-style checks can verify it.
USER 1000:1000
# Liveness for the long-running commands (`sagaflow health --broker`): the configuration parses,
# the database answers with these credentials, the schema is at the migration this image knows,
# and the broker accepts a connection. docker-compose.yml uses the same check for the workers and
# /readyz (ready: database answers, schema current) for `serve`. A new Node process per check: 30 s deadline, since one was seen taking 9 s
# on a loaded 2-core machine.
HEALTHCHECK --interval=15s --timeout=30s --start-period=30s --retries=3 \
  CMD node /app/bin/sagaflow.js health --broker || exit 1
ENTRYPOINT ["node", "/app/bin/sagaflow.js"]
CMD ["--help"]
