# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY simulators ./simulators
COPY bench ./bench
# the bench shares the throwaway-server helpers with the tests
COPY tests/helpers ./tests/helpers
RUN npm run build

# Runtime stage: production dependencies only, non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    DATA_DIR=/var/lib/energy-ingest \
    MQTT_HOST=0.0.0.0 \
    HTTP_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config/default.yaml ./config/default.yaml
RUN groupadd --system energy && useradd --system --gid energy --home-dir /var/lib/energy-ingest energy \
    && mkdir -p /var/lib/energy-ingest && chown energy:energy /var/lib/energy-ingest
USER energy
VOLUME ["/var/lib/energy-ingest"]
EXPOSE 1883 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/energy-ingest.js"]
CMD ["start"]
